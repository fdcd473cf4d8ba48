"""Mini-strings: colour singlets too light for string fragmentation become two hadrons (Pythia's
``MiniStringFragmentation``).

A chain whose mass excess ``W − m_c(end₁) − m_c(end₂)`` (constituent masses, Pythia's
``ColConfig::insert``) is below ``HadronLevel:mStringMin`` (default 1 GeV) is not fragmented as a string.
As in Pythia 8.3 (``MiniStringFragmentation::ministring2two``; Sjöstrand et al., the Pythia 8.3 manual,
"Fragmentation: mini-strings"):

1. **Flavours** — a new flavour is drawn at one end (the diquark end if there is one, else either end with
   probability ½) and the two hadrons ``end₁ + new`` and ``end₂ + anti-new`` are chosen with the string's
   own flavour and species probabilities (:func:`~diffgen.hadronization.flavour.sample_bundle`, which
   includes Pythia's re-picks). If the two masses do not fit in ``W`` the draw is repeated, at most
   :data:`N_TRY` times (``MiniStringFragmentation:nTry = 2``); after that the chain becomes one hadron
   and shuffles momentum with the heaviest string of the event (the light-string collapse of
   :func:`~diffgen.hadronization.string.collapse_light_chains`, Pythia's ``ministring2one``). Without
   such a string, Pythia makes 100 more two-hadron tries; here that is one draw conditioned on fitting.
2. **pT** — the decay is isotropic in the rest frame, suppressed at large pT by the fragmentation
   Gaussian: ``p⊥² = (1 − cos²θ) p²`` with ``cos θ`` uniform on [0, 1], accepted with probability
   ``exp(−p⊥²/σ_had²)``, ``σ_had² = 2 max(0.2, σ)²`` (``StringPT:sigma``). In ``c = cos θ`` this is the
   density ``∝ exp(k c²)`` on [0, 1] with ``k = p²/σ_had²``; it is drawn here by rejection from the
   envelope ``∝ exp(k c)`` (exact inverse CDF, accepted with ``exp(−k c(1 − c))``, at least ½ on
   average for any ``k``), :data:`N_PT_PROPOSALS` proposals.
3. **Direction** — the hadron with the first end's flavour goes along that end (the effective two-parton
   axis: gluon momenta split between the ends in proportion to their closeness, as Pythia) except with
   probability ``1/(1 + exp(b λ))``, ``λ = 2 W p c`` (``b = StringZ:bLund``), when the two swap.
   Light-cone fractions ``x± = ½(1 ± (m⊥₁² − m⊥₂²)/W²) ± λ/2W²`` put both hadrons exactly on shell with
   ``p₁ + p₂ = P``.

Gradients. The flavour draws (failed attempts included), the pT acceptances and the swap are discrete
choices whose log-probabilities are returned for the caller's score term ``log p − sg(log p)``; the
proposals ``c``, the azimuth and the light-cone kinematics are reparameterised. The choice of
mini-string vs string (a mass cut on the parton system, like Pythia's) and whether the hadron masses
fit are discontinuities of the parton kinematics; the estimator ignores them, as it ignores the light-
string collapse threshold.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen.hadronization.flavour import CONSTITUENT_MASS, is_diquark_code, sample_bundle
from diffgen.hadronization.fragment import FragParams
from diffgen.hadronization.string import Chains, Regions, light_cone_frame
from diffgen.numerics import safe_div, safe_log, safe_sqrt

__all__ = ["M_STRING_MIN", "N_TRY", "N_PT_PROPOSALS", "SIGMA_MIN", "MAX_MINI", "effective_ends", "ministrings"]

M_STRING_MIN = 1.0  #: GeV, Pythia 8.3 HadronLevel:mStringMin (allowed 0.5 … 1.5)
N_TRY = 2  #: Pythia 8.3 MiniStringFragmentation:nTry
N_PT_PROPOSALS = 24  #: rejection proposals for p⊥ (each accepted with probability ≥ ~½; see module docstring)
MAX_MINI = 2  #: mini-strings treated per event (two-hadron events: 3.5 % at the Z pole, ≥ 2 of them 0.2 %)
SIGMA_MIN = 0.2  #: GeV, Pythia's StringPT::SIGMAMIN in σ_had² = 2 max(SIGMAMIN, σ)²
_N_U = 2 * N_TRY + 2 + 2 * N_PT_PROPOSALS + 2


def effective_ends(chains: Chains, regions: Regions):
    """Pythia's effective two-parton ends of each chain: each gluon's momentum is split between the ends in
    the ratio ``(p_end₂·p_g) / ((p_end₁ + p_end₂)·p_g)`` to the first. Returns ``(p₁ f[S, 4], p₂ f[S, 4])``
    with ``p₁ + p₂`` the chain's momentum (ends as their light-cone region vectors)."""
    n_e = regions.pos.shape[0]
    e = jnp.arange(n_e)[None, :]
    lo = chains.start[:, None]
    hi = lo + chains.n_reg[:, None]
    end1 = regions.pos[chains.start]
    end2 = regions.neg[chains.start + chains.n_reg - 1]
    gluon = jnp.concatenate([jnp.zeros_like(regions.neg[:1]), regions.neg[:-1]]) + regions.pos  # [E, 4]
    is_g = (e > lo) & (e < hi) & chains.active[:, None]
    num = kin.minkowski_dot(end2[:, None, :], gluon[None])
    den = kin.minkowski_dot((end1 + end2)[:, None, :], gluon[None])
    ratio = jnp.where(is_g, safe_div(num, den, 0.5), 0.0)
    p1 = end1 + jnp.sum(ratio[..., None] * gluon[None], axis=1)
    return p1, chains.p_total - p1


def _pt2_draw(u_c, u_a, k):
    """``c = cos θ`` with density ∝ exp(k c²) on [0, 1] by rejection from ∝ exp(k c); returns
    ``(c, log-probability of the accept/reject decisions made)``."""
    small = k < 1e-4
    ks = jnp.where(small, 1.0, k)
    c = jnp.where(small, u_c, jnp.log1p(u_c * jnp.expm1(ks)) / ks)
    c = jnp.clip(c, 0.0, 1.0)
    log_acc = -k * c * (1.0 - c)
    acc = u_a < jnp.exp(log_acc)
    any_acc = jnp.any(acc)
    j = jnp.where(any_acc, jnp.argmax(acc), N_PT_PROPOSALS - 1)
    before = jnp.arange(N_PT_PROPOSALS) < j
    log_rej = safe_log(-jnp.expm1(log_acc), floor=0.0)
    lp = jnp.sum(jnp.where(before, log_rej, 0.0)) + jnp.where(any_acc, log_acc[j], 0.0)
    return c[j], lp


def _keep(take, plus, b, chosen):
    """(pid1, pid2, m1, m2) of bundle ``b`` where ``take`` (hadron 1 carries the first end's flavour)."""
    new = (jnp.where(plus, b.pid_h, b.pid_c), jnp.where(plus, b.pid_c, b.pid_h),
           jnp.where(plus, b.mass_h, b.mass_c), jnp.where(plus, b.mass_c, b.mass_h))
    return tuple(jnp.where(take, n, o).astype(o.dtype) for n, o in zip(new, chosen))


def _one(u, mini, mass, f_pos, f_neg, p1, p2, has_partner, fp: FragParams):
    dtype = mass.dtype
    ok = jnp.zeros((), bool)
    lp = jnp.zeros((), dtype)
    chosen = (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), dtype), jnp.zeros((), dtype))
    # N_TRY free draws, then (no other string to take the recoil of one hadron) Pythia's last resort:
    # ministring2two with 100 more tries is, to its 100-fold failure probability, a draw conditioned on
    # fitting (w_max), scored as such
    for i in range(N_TRY + 1):
        plus = is_diquark_code(f_pos) | (~is_diquark_code(f_neg) & (u[2 * i] < 0.5))
        last = i == N_TRY
        b = sample_bundle(u[2 * i + 1], plus, f_pos, f_neg, fp.sp_weights, fp.flav_probs,
                          w_max=mass if last else None)
        tried = ~ok & ~has_partner if last else ~ok
        take = tried & (b.mass_h + b.mass_c < mass)
        # free draws are scored whether or not they fit; the conditioned one only where it found a pair
        lp = lp + jnp.where(take if last else tried, b.log_prob, 0.0)
        chosen = _keep(take, plus, b, chosen)
        ok = ok | take
    pid1, pid2, m1, m2 = chosen
    two = mini & ok
    w2 = jnp.where(two, mass * mass, 1.0)
    m1s, m2s = jnp.where(two, m1, 0.1), jnp.where(two, m2, 0.1)
    p_abs2 = jnp.maximum(0.25 * ((w2 - m1s ** 2 - m2s ** 2) ** 2 - (2.0 * m1s * m2s) ** 2) / w2, 0.0)
    sigma2 = 2.0 * jnp.maximum(SIGMA_MIN, fp.sigma) ** 2
    o = 2 * N_TRY + 2
    c, lp_pt = _pt2_draw(u[o:o + N_PT_PROPOSALS], u[o + N_PT_PROPOSALS:o + 2 * N_PT_PROPOSALS], p_abs2 / sigma2)
    pt2 = (1.0 - c * c) * p_abs2
    # λ = √((W² − m⊥₁² − m⊥₂²)² − 4 m⊥₁² m⊥₂²) = 2 W p cos θ
    lam = 2.0 * safe_sqrt(w2) * safe_sqrt(p_abs2) * c
    x = fp.b * lam
    swap = u[-2] < jax.nn.sigmoid(-x)
    lp_swap = jnp.where(swap, jax.nn.log_sigmoid(-x), jax.nn.log_sigmoid(x))
    xpz = jnp.where(swap, -0.5, 0.5) * lam / w2
    xd = (m1s ** 2 - m2s ** 2) / w2
    xe1, xe2 = 0.5 * (1.0 + xd), 0.5 * (1.0 - xd)
    phi = 2.0 * math.pi * u[-1]
    pt = safe_sqrt(pt2)
    px, py = pt * jnp.cos(phi), pt * jnp.sin(phi)
    ok_frame = two & (kin.mass(p1 + p2) > 0)
    _, _, n_plus, n_minus, ex, ey = light_cone_frame(jnp.where(ok_frame, p1, jnp.array([1.0, 0, 0, 1.0], dtype)),
                                                     jnp.where(ok_frame, p2, jnp.array([1.0, 0, 0, -1.0], dtype)))
    h1 = (xe1 + xpz) * n_plus + (xe1 - xpz) * n_minus + px * ex + py * ey
    h2 = (xe2 - xpz) * n_plus + (xe2 + xpz) * n_minus - px * ex - py * ey
    lp = jnp.where(mini, lp + jnp.where(two, lp_pt + lp_swap, 0.0), 0.0)
    return two, jnp.stack([pid1, pid2]), jnp.stack([h1, h2]), lp


def ministrings(key, chains: Chains, regions: Regions, fp: FragParams, m_string_min: float = M_STRING_MIN):
    """Turn the mini-strings of one event into two hadrons each (module docstring).

    At most :data:`MAX_MINI` mini-strings per event are treated (the first in slot order; the work is done on
    ``MAX_MINI`` slots, not on every chain slot); any further ones (≈ 10⁻⁴ of events at the Z pole) take the
    one-hadron route.

    Returns:
        ``(chains, pid i32[K, 2], p4 f[K, 2, 4], valid bool[K, 2], to_collapse bool[S], log_prob, n_two)``
        with ``K = MAX_MINI``: the chains with those made into two hadrons deactivated; the hadrons; the
        mini-strings whose :data:`N_TRY` flavour draws did not fit (to become one hadron); the summed
        log-probability of the discrete choices (for the score); the number of chains made into two hadrons.
    """
    p1, p2 = effective_ends(chains, regions)
    s_count = chains.mass.shape[0]
    k_slots = min(MAX_MINI, s_count)
    dtype = chains.mass.dtype
    mc = jnp.asarray(CONSTITUENT_MASS, dtype)
    is_mini = chains.active & (chains.mass - mc[chains.f_pos - 1] - mc[chains.f_neg - 1] < m_string_min)
    has_partner = jnp.any(chains.active & ~is_mini)  # a string that can take a collapsed chain's recoil
    idx = jnp.argsort(~is_mini, stable=True)[:k_slots]  # the first mini-strings, then anything
    u = jax.random.uniform(key, (k_slots, _N_U), dtype)
    two, pid, p4, lp = jax.vmap(_one, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None))(
        u, is_mini[idx], chains.mass[idx], chains.f_pos[idx], chains.f_neg[idx], p1[idx], p2[idx], has_partner, fp)
    valid = jnp.broadcast_to(two[:, None], pid.shape)
    pid = jnp.where(valid, pid, 0)
    p4 = jnp.where(valid[..., None], p4, 0.0)
    done = jnp.zeros(s_count, bool).at[idx].max(two)
    return (chains._replace(active=chains.active & ~done), pid, p4, valid, is_mini & ~done, jnp.sum(lp),
            jnp.sum(two))
