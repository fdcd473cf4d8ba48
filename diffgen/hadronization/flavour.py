"""Flavour and meson-species selection in string breaks (Pythia 8.3 "Flavour selection").

New flavours. A break creates a q q̄ pair with u : d : s = 1 : 1 : ``StringFlav:probStoUD``
(no diquarks: this first version makes mesons only, so baryons are absent).

Mesons. The quark q (flavour ``i``) and antiquark q̄' (flavour ``j``) form a meson of spin
0 (pseudoscalar) or 1 (vector) with P(vector) = V/(1+V), V chosen by the heavier flavour:
``StringFlav:mesonUDvector`` (u, d), ``StringFlav:mesonSvector`` (s), and Pythia's fixed
``mesonCvector`` = 0.88, ``mesonBvector`` = 2.20 (not tunable here). The PDG code is
100·max + 10·min + 2J+1, with Pythia's particle/antiparticle sign rule. Flavour-diagonal
light mesons mix (Pythia's ``mesonMix``): uū, dd̄ → (110, 220, 330) with probabilities
(½, ½ sin²α, 1 − ½ − ½ sin²α) and ss̄ → (220, 330) with (cos²α, sin²α), α = 90° − (θ + 54.7°)
for pseudoscalars (θ_PS = −15°) and θ + 54.7° for vectors (θ_V = 36°). An η (η′) is then
kept with probability ``etaSup`` = 0.60 (``etaPrimeSup`` = 0.12); Pythia re-picks the new
flavour and spin when it is rejected, so the accepted distribution over (new flavour,
species) is the normalised product p(q) p(spin) p(mix) acc, computed here exactly.

All discrete choices are sampled by inverse CDF on uniforms and return
``log p`` (differentiable in probStoUD and the vector ratios); the caller adds the
score term ``log p − stop_gradient(log p)`` to the event weight.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_log
from diffgen.particles import TABLE

__all__ = [
    "N_FLAV", "N_SPECIES", "MESON_CVECTOR", "MESON_BVECTOR", "THETA_PS", "THETA_V", "ETA_SUP", "ETA_PRIME_SUP",
    "CONSTITUENT_MASS", "meson_pid", "species_probs", "new_flavour_probs", "vector_ratios", "Bundle", "sample_bundle",
    "min_two_meson_mass", "lightest_meson", "is_strange_hadron", "quark_content",
]

N_FLAV = 5  #: quark flavours d, u, s, c, b (index = PDG code − 1)
N_SPECIES = 6  #: species slots per flavour pair: spin (0, 1) × mixing state (0, 1, 2)
MESON_CVECTOR = 0.88  #: Pythia 8.3 StringFlav:mesonCvector
MESON_BVECTOR = 2.20  #: Pythia 8.3 StringFlav:mesonBvector
THETA_PS = -15.0  #: Pythia 8.3 StringFlav:thetaPS (degrees)
THETA_V = 36.0  #: Pythia 8.3 StringFlav:thetaV (degrees)
ETA_SUP = 0.60  #: Pythia 8.3 StringFlav:etaSup
ETA_PRIME_SUP = 0.12  #: Pythia 8.3 StringFlav:etaPrimeSup
#: constituent masses (GeV) of d, u, s, c, b used in the stop rule (Pythia's constituentMass)
CONSTITUENT_MASS = np.array([0.33, 0.33, 0.50, 1.50, 4.80])


def meson_pid(q: int, qbar: int, spin: int, mix: int = 0) -> int:
    """PDG code of the meson (quark flavour ``q``, antiquark flavour ``qbar``, both 1..5).

    ``mix`` selects 110/220/330 for light flavour-diagonal pairs (0 otherwise).

    >>> meson_pid(2, 1, 0), meson_pid(1, 2, 0), meson_pid(2, 3, 1), meson_pid(5, 1, 0)
    (211, -211, 323, -511)
    """
    code = 1 if spin == 0 else 3
    hi, lo = max(q, qbar), min(q, qbar)
    if hi != lo:
        sign = 1 if hi % 2 == 0 else -1
        if hi == qbar:
            sign = -sign
        return sign * (100 * hi + 10 * lo + code)
    if hi <= 3:
        return (110, 220, 330)[mix] + code
    return 100 * hi + 10 * hi + code


def _mix_probs(q: int, spin: int) -> tuple[float, float, float]:
    theta = THETA_PS if spin == 0 else THETA_V
    alpha = (90.0 - (theta + 54.7)) if spin == 0 else (theta + 54.7)
    s2 = math.sin(math.radians(alpha)) ** 2
    if q <= 2:
        return 0.5, 0.5 * s2, 1.0 - 0.5 - 0.5 * s2
    if q == 3:
        return 0.0, 1.0 - s2, s2
    return 1.0, 0.0, 0.0


_PDG_MASS = {p.pid: p.mass for p in TABLE}


def _tables():
    pid = np.zeros((N_FLAV, N_FLAV, N_SPECIES), np.int32)
    fixed = np.zeros((N_FLAV, N_FLAV, N_SPECIES))  # mixing × η/η′ acceptance
    spin = np.zeros(N_SPECIES, np.int32)
    for q in range(1, N_FLAV + 1):
        for qb in range(1, N_FLAV + 1):
            for sp in (0, 1):
                mixes = _mix_probs(q, sp) if q == qb else (1.0, 0.0, 0.0)
                for m in range(3):
                    k = 3 * sp + m
                    spin[k] = sp
                    if mixes[m] <= 0.0:
                        continue
                    code = meson_pid(q, qb, sp, m)
                    if abs(code) not in _PDG_MASS:  # B_c is not in particles.TABLE
                        continue
                    acc = ETA_SUP if code == 221 else ETA_PRIME_SUP if code == 331 else 1.0
                    pid[q - 1, qb - 1, k] = code
                    fixed[q - 1, qb - 1, k] = mixes[m] * acc
    vclass = np.maximum(np.maximum.outer(np.arange(1, 6), np.arange(1, 6)) - 2, 0)  # 0 ud, 1 s, 2 c, 3 b
    return pid, fixed, spin, vclass


_PID, _FIXED, _SPIN, _VCLASS = _tables()
_MASS = np.vectorize(lambda c: _PDG_MASS.get(abs(int(c)), 0.0))(_PID)  # f[5, 5, 6]; 0 for empty slots
_BIG = 1.0e3


def species_probs(vector_ratios):
    """Unnormalised weights of the 6 species slots for every (q, q̄') pair, f[5, 5, 6].

    ``vector_ratios``: f[4] (V_ud, V_s, V_c, V_b).
    """
    v = jnp.asarray(vector_ratios)[jnp.asarray(_VCLASS)]  # [5, 5]
    p_vec = v / (1.0 + v)
    p_spin = jnp.where(jnp.asarray(_SPIN)[None, None, :] == 1, p_vec[..., None], 1.0 - p_vec[..., None])
    return p_spin * jnp.asarray(_FIXED, dtype=p_vec.dtype)


def new_flavour_probs(prob_s_to_ud):
    """P(d), P(u), P(s) of a new string-break flavour, f[3]."""
    rho = jnp.asarray(prob_s_to_ud)
    w = jnp.stack([jnp.ones_like(rho), jnp.ones_like(rho), rho])
    return w / (2.0 + rho)


def vector_ratios(params):
    """(V_ud, V_s, V_c, V_b) from a hadronization params dict."""
    vud = jnp.asarray(params["StringFlav:mesonUDvector"])
    vs = jnp.asarray(params["StringFlav:mesonSvector"], dtype=vud.dtype)
    return jnp.stack([vud, vs, jnp.full_like(vud, MESON_CVECTOR), jnp.full_like(vud, MESON_BVECTOR)])


class Bundle(NamedTuple):
    """The discrete choices of one fragmentation step from one string end.

    ``q_new``: flavour (1..3) of the new q q̄ pair; ``pid_h``/``mass_h``: the hadron made at
    the chosen end; ``pid_c``/``mass_c``: the hadron that would close the string if the
    step is the last (new flavour joined with the other end); ``log_prob``: log of the
    probability of these choices (differentiable).
    """

    q_new: jax.Array
    pid_h: jax.Array
    mass_h: jax.Array
    pid_c: jax.Array
    mass_c: jax.Array
    log_prob: jax.Array


def _pair_index(from_positive, f_end, f_other, q_new):
    """(q, q̄) flavour indices (0-based) of the end hadron and of the closing hadron."""
    qh = jnp.where(from_positive, f_end, q_new)
    qbh = jnp.where(from_positive, q_new, f_end)
    qc = jnp.where(from_positive, q_new, f_other)
    qbc = jnp.where(from_positive, f_other, q_new)
    return qh - 1, qbh - 1, qc - 1, qbc - 1


def sample_bundle(u, from_positive, f_pos, f_neg, sp_weights, flav_probs, w_max=None, margin=0.0):
    """Sample a :class:`Bundle` for a step from the positive (colour) or negative end.

    Args:
        u: a uniform in [0, 1) (one per bundle; shape ``()``, vmapped by the caller).
        from_positive: bool, the step is taken at the quark (colour) end.
        f_pos, f_neg: current end flavours (1..5) of the quark and of the antiquark end.
        sp_weights: :func:`species_probs` table; flav_probs: :func:`new_flavour_probs`.
        w_max: if given, only outcomes with ``mass_h + mass_c + margin <= w_max`` are allowed
            (used for the first step of a light string so that its final two hadrons fit).

    The outcome space is (q_new ∈ {d,u,s}) × (6 species of the end hadron) × (6 species of
    the closing hadron), 108 outcomes: P = p(q_new, h) · p(c | q_new), where p(q_new, h)
    includes the η/η′ re-pick normalisation and p(c | q_new) the closing hadron's
    spin/mixing choice with its own normalisation (Pythia's ``finalTwo`` retries only that).
    """
    f_end = jnp.where(from_positive, f_pos, f_neg)
    f_other = jnp.where(from_positive, f_neg, f_pos)
    qn = jnp.arange(1, 4)
    qh, qbh, qc, qbc = _pair_index(from_positive, f_end, f_other, qn)  # each [3]
    wh = flav_probs[:, None] * sp_weights[qh, qbh]  # [3, 6]
    ph = wh / jnp.sum(wh)
    wc = sp_weights[qc, qbc]  # [3, 6]
    pc = wc / jnp.sum(wc, axis=-1, keepdims=True)
    joint = ph[:, :, None] * pc[:, None, :]  # [3, 6, 6]
    mh = jnp.asarray(_MASS)[qh, qbh]  # [3, 6]
    mc = jnp.asarray(_MASS)[qc, qbc]
    if w_max is not None:
        fits = mh[:, :, None] + mc[:, None, :] + margin <= w_max
        joint = jnp.where(fits, joint, 0.0)
        joint = safe_div(joint, jnp.sum(joint))
    flat = joint.reshape(-1)
    # inverse CDF of the 108 outcomes in the order (q_new, h, c), in two short stages: the block
    # (q_new, h) from its 18 marginals, then c from the 6 in the block with the rescaled remainder of
    # u — the same outcome as one cumulative sum over all 108, at a fraction of the cost
    sg = jax.lax.stop_gradient(joint).reshape(18, 6)
    block = jnp.sum(sg, axis=-1)
    cdf_b = jnp.cumsum(block)
    target = u * cdf_b[-1]
    ib = jnp.clip(jnp.sum(cdf_b <= target), 0, 17)
    rest = target - (cdf_b[ib] - block[ib])
    cdf_c = jnp.cumsum(sg[ib])
    ic = jnp.clip(jnp.sum(cdf_c <= rest), 0, 5)
    k = ib * 6 + ic
    # never land on a zero-probability outcome (u at a CDF plateau or rounding at a block edge)
    k = jnp.where(flat[k] > 0, k, jnp.argmax(jax.lax.stop_gradient(flat) > 0))
    iq, ih, ic = k // 36, (k // 6) % 6, k % 6
    pid_h = jnp.asarray(_PID)[qh[iq], qbh[iq], ih]
    pid_c = jnp.asarray(_PID)[qc[iq], qbc[iq], ic]
    return Bundle(q_new=qn[iq], pid_h=pid_h, mass_h=mh[iq, ih], pid_c=pid_c, mass_c=mc[iq, ic],
                  log_prob=safe_log(flat[k], floor=0.0))


def _min_two():
    """Lightest two-meson state (GeV) reachable from ends (q, q̄'), f[5, 5]."""
    out = np.full((N_FLAV, N_FLAV), np.inf)
    for q in range(N_FLAV):
        for qb in range(N_FLAV):
            for qn in range(3):
                mh = _MASS[q, qn][_FIXED[q, qn] > 0].min()
                mc = _MASS[qn, qb][_FIXED[qn, qb] > 0].min()
                out[q, qb] = min(out[q, qb], mh + mc)
    return out


def _lightest():
    pid = np.zeros((N_FLAV, N_FLAV), np.int32)
    m = np.zeros((N_FLAV, N_FLAV))
    for q in range(N_FLAV):
        for qb in range(N_FLAV):
            ok = _FIXED[q, qb] > 0
            if not ok.any():  # c b̄ / b c̄: no meson in the table; collapse fails (pid 0)
                continue
            k = np.argmin(np.where(ok, _MASS[q, qb], np.inf))
            pid[q, qb], m[q, qb] = _PID[q, qb, k], _MASS[q, qb, k]
    return pid, m


_MIN_TWO = _min_two()
_LIGHTEST_PID, _LIGHTEST_MASS = _lightest()


def min_two_meson_mass(f_pos, f_neg):
    """Mass (GeV) of the lightest two-meson state a string with ends (q, q̄') can make."""
    return jnp.asarray(_MIN_TWO)[f_pos - 1, f_neg - 1]


def lightest_meson(f_pos, f_neg):
    """(pid, mass) of the lightest meson with flavour q q̄' (used to collapse light strings)."""
    return jnp.asarray(_LIGHTEST_PID)[f_pos - 1, f_neg - 1], jnp.asarray(_LIGHTEST_MASS)[f_pos - 1, f_neg - 1]


def quark_content(pid):
    """Net quark content of mesons, i32[..., 5]: (#q − #q̄) for d, u, s, c, b (0 for others).

    For flavour-diagonal mesons this is zero; for ``±(100 i + 10 j + k)`` with i ≠ j it is
    ±1 for the quark and ∓1 for the antiquark as implied by the PDG sign convention.
    """
    pid = jnp.asarray(pid)
    a = jnp.abs(pid)
    is_meson = (a > 100) & (a < 1000)
    hi = (a // 100) % 10
    lo = (a // 10) % 10
    # particle (pid > 0): the heavier flavour is a quark if up-type, an antiquark if down-type
    hi_is_quark = (hi % 2 == 0) == (pid > 0)
    sign_hi = jnp.where(hi_is_quark, 1, -1)
    flav = jnp.arange(1, N_FLAV + 1)
    content = (sign_hi[..., None] * (hi[..., None] == flav) - sign_hi[..., None] * (lo[..., None] == flav))
    return jnp.where((is_meson & (hi != lo))[..., None], content, 0).astype(jnp.int32)


def is_strange_hadron(pid):
    """True for hadrons containing an s or s̄ valence quark (K, K*, φ, D_s, B_s, …; η/η′ not counted)."""
    a = jnp.abs(jnp.asarray(pid))
    hi = (a // 100) % 10
    lo = (a // 10) % 10
    return (a > 100) & (a < 1000) & ((hi == 3) | (lo == 3)) & ~((a == 331) | (a == 221))
