"""Final-state p⊥-ordered dipole shower for e+e- → q q̄ (Pythia 8 style), as a :class:`Stage`.

References: T. Sjöstrand, P. Skands, Eur.Phys.J. C39 (2005) 129; Pythia 8.3 manual, "Timelike
Showers".

Algorithm
---------
Every parton radiates from its colour-connected dipole ends (quark: colour end; antiquark:
anticolour end; gluon: one per colour line). A dipole end branches with
(α_s(p⊥²)/2π) dp⊥²/p⊥² dz P(z), evolution variable p⊥²_evol = z(1 − z)(Q² − m²_rad), z the energy
fraction kept by the radiator in the dipole rest frame, and the kernels of
:mod:`diffgen.shower.splitting` (q → qg, g → gg split over the gluon's two ends, g → q q̄ with
n_f ≤ 5 and mass thresholds, Pythia's ``weightGluonToQuark = 4``). One-loop α_s(p⊥²) with
α_s(m_Z) = ``TimeShower:alphaSvalue`` (:mod:`diffgen.shower.coupling`); cut-off
p⊥,cut = max(``TimeShower:pTmin``, 1.1 Λ₃) as in Pythia. All ends of an event evolve
together from p⊥² = M²/4 (M the q q̄ mass) downwards: the highest trial wins, and after a branching
the new dipoles continue from the same p⊥ (p⊥ ordering). Each branching is built with exact local
recoil inside its dipole (:mod:`diffgen.shower.dipole_kinematics`): the radiator + recoiler
four-momentum is conserved, with Pythia's quark masses (:func:`shower_mass`; the hard q q̄ is put on
them) and Pythia's allowed region and mass-reduced momenta of a massive branching
(:func:`~diffgen.shower.dipole_kinematics.pythia_split`; a gluon emission whose reduced p⊥ falls below
the cut-off is rejected). Colour flow is large-N_c: the radiating
end takes a new tag T, and the emitted gluon sits between radiator and recoiler with
(old tag, T); g → q q̄ cuts the gluon's two lines, giving several colour-singlet chains. With
``me_correction`` every emission of the primary q and q̄ is corrected to the e+e- → q q̄ g matrix
element (with quark masses) with the other primary as ME partner, as Pythia's ``TimeShower:MEcorrections = on`` with
``MEafterFirst = on`` does (:mod:`diffgen.shower.me_correction`).

Overestimate (θ-independent)
----------------------------
For a dipole end in a dipole of mass M (log-mass rounded up on a grid, ℓ̂ ≥ ln M²), r = p⊥²/M̂²:

* soft channels: 2C_F/(1 − z) (quark end) or C_A/(1 − z) (gluon end) on 1 − z ∈ (ε, 1), which
  integrates to b ln(1/ε): ε = √r for a massless dipole (the allowed range is then exactly
  √r ≤ 1 − z ≤ 1 − √r), ε = √r/2 with masses (every allowed branching has 1 − z ≥ p⊥/(2M));
* g → q q̄ (gluon ends): c ln(2/√r)/ln 4 with c = (T_R/2)·5, ≥ the flat c below the kink
  p⊥² = M̂²/4 (z flat; the flavour is chosen uniformly among five, thresholds reject);
* times 1.25 · α_s(p⊥²; α₀), the exact one-loop coupling at α₀ = stop_gradient(α_s(m_Z)), which
  bounds the coupling for every allowed α_s(m_Z) (no cap; :mod:`diffgen.shower.coupling`).

Trials (p⊥, end, channel, z, φ, flavour) come from seven uniforms per trial and are exactly
distributed as this overestimate (:mod:`diffgen.shower.veto`); they depend on θ only through
stop-gradient values. A trial is accepted with p(θ) = [α_s(θ)/(1.25 α_s(θ₀))] · [thinning] ·
[kernel (or ME)/overestimate] · [phase space allowed]: the kernel ratios are (1 + z²)/2 (with the
dead-cone term for c, b), (1 + z³)/2 (times the recoil dead cone for a massive recoiler), the
g → q q̄ weight of :func:`~diffgen.shower.splitting.ratio_g2qq` · ln 4/ln(2/√r), and (x₁² + x₂²)/2
for the ME-corrected emissions of the primary quarks.

Score weights
-------------
Every allowed trial is a Bernoulli decision with probability p(θ): an accept adds
log p − stop_gradient(log p) to ``log_weight``, a reject log(1 − p) − stop_gradient(log(1 − p)),
p clipped into (0, 1). Values are 0 (events stay unweighted); the gradient of any Σ w O/Σ w picks
up ∂θ log P(history), so ∂⟨O⟩/∂α_s(m_Z) is unbiased.

Cut-off and the ``TimeShower:pTmin`` gradient: a hard cut in p⊥ moves the support of the
histories, which the score function cannot see (its derivative would need the observable with and
without the emission at the cut). The shower therefore switches emissions off smoothly around
t_min = ln pTmin²: every accept probability is multiplied by s((t − t_min)/w) with the C¹ step
s(u) = 1/2 + 3u/4 − u³/4 on |u| < 1 (0 below, 1 above), w = ``pt_min_width`` (default 0.2 in
ln p⊥², i.e. p⊥ within ±10 % of pTmin), and trials stop at t_floor = max(t_min − w,
ln(1.21 Λ²_max)). Since s(u) + s(−u) = 1, the emission rate removed above pTmin is put back below
it (to first order in w), and s depends on pTmin through the accept probabilities only, so its
score terms make ∂⟨O⟩/∂pTmin unbiased for this smooth cut-off. ``pt_min_width = 0`` gives
Pythia's hard cut at max(pTmin, 1.1 Λ₃) with no pTmin gradient. The 1.1 Λ₃ limit stays a hard
floor: it starts to cut into the smooth step when 1.1 Λ₃ > pTmin e^(−w/2) (at pTmin = 0.5 GeV:
α_s(m_Z) > 0.143, and it replaces pTmin above 0.146), and its α_s dependence is not differentiated.

Fixed shapes
------------
The trial loop is a ``lax.while_loop`` bounded by ``max_trials`` (one trial per event per
iteration; it stops once every event is done, also under ``vmap``). It runs on stop-gradient
parameters and records (ln p⊥², ±ratio) of every trial in fixed [N, max_trials] arrays; the score
weights are computed from that record after the loop, so ``jax.grad`` and ``jax.jvp`` need no
differentiation through the loop. An event that needs more than ``capacity`` slots stops emitting
(kept consistent) and gets :attr:`~diffgen.events.Status.CAPACITY_OVERFLOW`, as does one still
evolving after ``max_trials`` trials.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.events import Events
    >>> from diffgen.shower import final_state_shower
    >>> shower = final_state_shower(capacity=32)
    >>> ev = Events.empty(2, 2).replace(
    ...     p4=jnp.array([[[45.594, 0, 0, 45.594], [45.594, 0, 0, -45.594]]] * 2),
    ...     pid=jnp.array([[1, -1]] * 2), mask=jnp.ones((2, 2), bool),
    ...     colour=jnp.array([[[1, 0], [0, 1]]] * 2))
    >>> out = shower.apply(shower.init(None), jax.random.key(0), ev)
    >>> out.p4.shape
    (2, 32, 4)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.random import threefry_2x32

from diffgen import particles
from diffgen.checks import check_int, check_optional_int
from diffgen.events import Events, Status
from diffgen.kinematics import minkowski_dot
from diffgen.numerics import safe_div, safe_log, safe_sqrt
from diffgen.params import SETTINGS, out_of_range
from diffgen.schedule import run_pool
from diffgen.shower import coupling as _as
from diffgen.shower import splitting as _sp
from diffgen.shower.dipole_kinematics import branch_dipole, precise_dot, pythia_split
from diffgen.shower.me_correction import massive_me_ratio, vector_fraction_couplings
from diffgen.shower.veto import LN4, accept_probability, grid_up, next_trial_t, score_log_weight
from diffgen.stage import Stage, event_keys

__all__ = ["final_state_shower", "SHOWER_SETTINGS", "DEFAULT_CAPACITY", "default_max_trials", "shower_mass"]

SHOWER_SETTINGS = ("TimeShower:alphaSvalue", "TimeShower:pTmin")
DEFAULT_CAPACITY = 48
_SIN2_THETA_W_BAR = SETTINGS["StandardModel:sin2thetaWbar"].default  # Z couplings of the massive ME correction
DEFAULT_PT_MIN_WIDTH = 0.2  #: half-width in ln p⊥² of the smooth cut-off around TimeShower:pTmin
_N_UNIFORMS = 7
_NO_DIPOLE = -1.0e30


def default_max_trials(capacity: int, max_emissions: int | None) -> int:
    """Length of the trial record (the loop stops earlier once every event is done).

    At √s = 91.188 GeV a full shower needs on average 42 trials, 1e-4 of the events more than
    104 and at most 140 in 1e5 events (default 288); the first emission alone at most ~30 (64).
    """
    full = max(6 * capacity, 64)
    if max_emissions is None:
        return full
    return min(full, 32 + 32 * max(max_emissions, 1))


# host-side lookups: importing diffgen must not start a JAX backend (jax.distributed.initialize needs that)
#: Pythia's m0 of d, u, s, c, b (GeV), indexed by |pid| (0 for the gluon and everything else).
_QUARK_MASS = (0.0,) + tuple(next(p.mass for p in particles.TABLE if p.pid == q) for q in range(1, 6))


def shower_mass(pid):
    """Kinematic parton mass of the shower, Pythia's m0: 0 for g; 0.33 (u, d), 0.5 (s), 1.5 (c), 4.8 (b) GeV.

    Pythia showers its quarks with these constituent masses (the Z decay products carry them); with
    massless u, d, s the shower emitted 5 % more partons than Pythia's at the same α_s, all of the excess
    from p⊥ below 1 GeV (``benchmarks/RESULTS.md``, *shower masses*)."""
    a = jnp.abs(jnp.asarray(pid))
    return jnp.where(a <= 5, jnp.asarray(_QUARK_MASS)[jnp.clip(a, 0, 5)], 0.0)


class _State(NamedTuple):
    p4: jax.Array  # [C, 4]
    pid: jax.Array  # [C]
    colour: jax.Array  # [C, 2]
    partner: jax.Array  # [C, 2] slot of the colour (0) / anticolour (1) partner, −1 for none
    ell: jax.Array  # [C, 2] ln M² of the dipole of each end (−1e30 for none)
    n: jax.Array  # occupied slots (0..n-1)
    next_tag: jax.Array
    t: jax.Array  # current ln p⊥² of the evolution
    n_emit: jax.Array
    done: jax.Array
    overflow: jax.Array
    n_trials: jax.Array  # trial steps used (diagnostic)


def _update_ell(ell, p4, pid, partner, changed, dtype):
    """Recompute the cached ln M² of every dipole touching the slots ``changed`` (−1 entries skipped)."""
    c = jnp.maximum(changed, 0)
    q = partner[c]  # [S, 2]
    qc = jnp.maximum(q, 0)
    m_s = shower_mass(pid[c]).astype(dtype)[:, None]
    m_q = shower_mass(pid[qc]).astype(dtype)
    m2 = m_s * m_s + m_q * m_q + 2.0 * precise_dot(p4[c][:, None, :], p4[qc], m_s, m_q)
    val = jnp.where((q >= 0) & (m2 > 0), safe_log(jnp.where(m2 > 0, m2, 1.0)), _NO_DIPOLE)
    big = ell.shape[0]  # out-of-range rows are dropped
    rows_self = jnp.where(changed >= 0, c, big)[:, None] + jnp.zeros((1, 2), jnp.int32)
    cols = jnp.broadcast_to(jnp.arange(2), q.shape)
    ell = ell.at[rows_self, cols].set(val, mode="drop")
    rows_partner = jnp.where((changed[:, None] >= 0) & (q >= 0), q, big)
    return ell.at[rows_partner, 1 - cols].set(val, mode="drop")


def _one_trial(state: _State, rnd, alpha_mz, t_cut, t_min, log_lam2, *, capacity, max_emissions, me_correction,
               width):
    """One veto-algorithm trial for a single event (vmapped over events)."""
    dtype = state.p4.dtype
    slots = jnp.arange(capacity)
    occupied = slots < state.n
    apid = jnp.abs(state.pid)
    is_q = occupied & (apid >= 1) & (apid <= 5)
    is_g = occupied & (state.pid == 21)

    # Every dipole end (slot, side) with cached ln M² rounded up to ℓ̂ (grid class), kink
    # κ = ℓ̂ − ln 4 (p⊥² ≤ M²/4) and, per unit ln p⊥², the overestimate (α̂/2π)[w_soft + w_qq]:
    #   w_soft = b (range_soft), range_soft = ln(1/ε) for 1 − z ∈ (ε, 1), b = 2C_F or C_A,
    #       ε = p⊥/M̂ (massless dipole: the allowed range is exactly √r ≤ 1 − z ≤ 1 − √r, r = p⊥²/M²)
    #       ε = p⊥/(2M̂) (masses: every allowed branching has 1 − z ≥ p⊥/(2E_ab) ≥ p⊥/(2M)),
    #   w_qq = c range_qq/ln 4 with range_qq = ln(2M̂/p⊥) ≥ ln 4 below the kink (≥ the flat c).
    partner = state.partner
    end_on = (is_q | is_g)[:, None] & (partner >= 0) & (state.ell > t_cut + LN4)
    ell, cls = grid_up(jnp.where(end_on, state.ell, 0.0))
    m_self = shower_mass(state.pid)
    massless = (m_self == 0)[:, None] & (shower_mass(state.pid[jnp.maximum(partner, 0)]) == 0)
    lam_soft = ell + jnp.where(massless, 0.0, LN4)  # w_soft = (b/2)(λ_soft − t)
    b_half = jnp.where(end_on, jnp.where(is_g, 0.5 * _sp.B_GLUON, 0.5 * _sp.B_QUARK)[:, None], 0.0)
    c_half = jnp.where(end_on & is_g[:, None], 0.5 * _sp.C_G2QQ / LN4, 0.0)  # w_qq = c_half (ℓ̂ + ln 4 − t)
    coef_b_end = (b_half + c_half).reshape(-1).astype(dtype)
    coef_s_end = (b_half * lam_soft + c_half * (ell + LN4)).reshape(-1).astype(dtype)
    kink = (ell - LN4).reshape(-1)

    expo = -jnp.log1p(-rnd[0])  # Exp(1)
    t_new, c_m, below = next_trial_t(state.t, t_cut, log_lam2, kink, cls.reshape(-1), coef_b_end, coef_s_end,
                                     expo)
    stop = below | ~jnp.any(end_on)
    t_use = jnp.where(below, t_cut, t_new)  # (a trial below the cut-off is never used)
    pt2 = jnp.exp(t_use)

    # choose the dipole end ∝ its density at t_use, then the channel ∝ w_soft : w_qq
    dens = jnp.where((coef_b_end > 0) & (kink >= t_use), coef_s_end - coef_b_end * t_use, 0.0)
    cum = jnp.cumsum(dens)
    dens_total = cum[-1]
    thin = jnp.clip(safe_div(dens_total, c_m), 0.0, 1.0)  # Σ_e (S_e − B_e t)/C_m of the interval
    end = jnp.minimum(jnp.sum(cum <= rnd[1] * cum[-1]), 2 * capacity - 1)
    slot, side_i = end // 2, end % 2
    side = side_i == 1  # False: colour end, True: anticolour end
    range_soft = 0.5 * (lam_soft.reshape(-1)[end] - t_use)
    range_qq = jnp.maximum(0.5 * (ell.reshape(-1)[end] + LN4 - t_use), LN4)
    w_soft = b_half.reshape(-1)[end] * 2.0 * range_soft
    w_qq = c_half.reshape(-1)[end] * 2.0 * range_qq
    oh_i = slots == slot
    pid_i = state.pid[slot]
    col_i = state.colour[slot]
    p_i = state.p4[slot]
    part_i = partner[slot]
    k = jnp.maximum(jnp.where(side, part_i[1], part_i[0]), 0)
    j = jnp.where(side, part_i[0], part_i[1])  # the other partner (gluon radiators), or −1
    oh_k = slots == k
    p_k = state.p4[k]
    pid_k = state.pid[k]
    gluon = pid_i == 21
    g2qq = gluon & (rnd[2] * (w_soft + w_qq) >= w_soft)

    # z: ln(1 − z) uniform on (−range_soft, 0) for the soft channels, flat for g → q q̄
    omz_soft = jnp.exp(-range_soft * rnd[3])
    z = jnp.where(g2qq, rnd[3], 1.0 - omz_soft)
    omz = jnp.where(g2qq, 1.0 - rnd[3], omz_soft)
    phi = 2.0 * math.pi * rnd[4]
    flav = jnp.minimum(1 + jnp.floor(_sp.NF_MAX * rnd[5]).astype(jnp.int32), _sp.NF_MAX)

    m_i = shower_mass(pid_i).astype(dtype)
    m_k = shower_mass(pid_k).astype(dtype)
    m_f = shower_mass(flav).astype(dtype)
    m_a = jnp.where(g2qq, m_f, m_i)
    m_b = jnp.where(g2qq, m_f, 0.0)
    q2 = jnp.where(g2qq, 0.0, m_i * m_i) + pt2 * safe_div(1.0, z * omz)
    m2_dip = jnp.exp(state.ell.reshape(-1)[end])
    # Pythia's region and its massive kinematics: (p⊥², z) → the energy fraction z_e of its momenta
    inside, z_e, omz_e, shrink = pythia_split(m2_dip, m_k, jnp.where(gluon, 0.0, m_i), jnp.where(g2qq, m_f, 0.0),
                                              q2, z, omz, pt2)
    p_a, p_b, p_kn, ok, _, _, _ = branch_dipole(p_i, p_k, m_i, m_k, q2, m_a, m_b, z_e, omz_e, phi)

    ratio = _kernel_ratio(state, slot, k, p_a, p_b, p_kn, m_i, m_k, m_f, m2_dip, q2, z, omz, pt2, range_qq,
                          gluon, g2qq, me_correction=me_correction)
    ratio = jnp.where(ok & inside, ratio, 0.0)
    allowed = ~state.done & ~stop & (ratio > 0)
    # a gluon emitted by a massive quark: the cut-off acts on Pythia's mass-reduced p⊥ = (1 − m²/Q²) p⊥
    dt = jnp.where(g2qq | gluon, 0.0, 2.0 * safe_log(jnp.clip(shrink, 1e-6, 1.0)))

    p = accept_probability(t_new, alpha_mz, thin * ratio, t_min, width, dt)
    accept = allowed & (rnd[6] < p)
    record = (t_new, jnp.where(allowed, jnp.where(accept, thin * ratio, -thin * ratio), 0.0), dt)

    full = state.n >= capacity
    emit = accept & ~full
    overflow_now = accept & full
    b = state.n
    oh_b = slots == b

    t_tag = state.next_tag
    c0, c1 = col_i[0], col_i[1]
    zero = jnp.zeros_like(c0)
    col_a_soft = jnp.where(side, jnp.stack([c0, t_tag]), jnp.stack([t_tag, c1]))
    col_b_soft = jnp.where(side, jnp.stack([t_tag, c1]), jnp.stack([c0, t_tag]))
    col_a_qq = jnp.where(side, jnp.stack([zero, c1]), jnp.stack([c0, zero]))
    col_b_qq = jnp.where(side, jnp.stack([c0, zero]), jnp.stack([zero, c1]))
    col_a = jnp.where(g2qq, col_a_qq, col_a_soft)
    col_b = jnp.where(g2qq, col_b_qq, col_b_soft)
    pid_a = jnp.where(g2qq, jnp.where(side, -flav, flav), pid_i)
    pid_b = jnp.where(g2qq, jnp.where(side, flav, -flav), 21)

    # colour partners (σ = side of the radiating end, σ̄ = 1 − σ):
    #   soft:   P[i,σ] = b, P[b,σ̄] = i, P[b,σ] = k, P[k,σ̄] = b
    #   g→qq̄:  P[i,σ̄] = −1, P[b,σ̄] = j, P[b,σ] = −1, P[j,σ] = b
    sig = jnp.stack([~side, side])  # one-hot of σ over the two columns
    sbar = ~sig
    none = jnp.full((2,), -1, jnp.int32)
    row_i = jnp.where(g2qq, jnp.where(sbar, -1, part_i), jnp.where(sig, b, part_i))
    row_b = jnp.where(g2qq, jnp.where(sbar, j, none), jnp.where(sbar, slot, k))
    row_k_soft = jnp.where(sbar[None, :] & oh_k[:, None], b, partner)
    row_j_qq = jnp.where(sig[None, :] & (slots == j)[:, None], b, partner)
    new_partner = jnp.where(g2qq, row_j_qq, row_k_soft)
    new_partner = jnp.where(oh_i[:, None], row_i[None, :], new_partner)
    new_partner = jnp.where(oh_b[:, None], row_b[None, :], new_partner)

    set_i, set_k, set_b = emit & oh_i, emit & oh_k, emit & oh_b
    p4 = jnp.where(set_i[:, None], p_a, state.p4)
    p4 = jnp.where(set_k[:, None], p_kn, p4)
    p4 = jnp.where(set_b[:, None], p_b, p4)
    pid = jnp.where(set_i, pid_a, jnp.where(set_b, pid_b, state.pid))
    colour = jnp.where(set_i[:, None], col_a, jnp.where(set_b[:, None], col_b, state.colour))
    # the dipoles of i, k, b and j changed: recompute their cached ln M² (both ends of each)
    new_partner = jnp.where(emit, new_partner, partner)
    ell_new = _update_ell(state.ell, p4, pid, new_partner, jnp.stack([slot, k, b, j]), dtype)
    n_emit = state.n_emit + emit.astype(jnp.int32)
    done = state.done | stop | overflow_now
    if max_emissions is not None:
        done = done | (n_emit >= max_emissions)
    return _State(
        p4=p4, pid=pid, colour=colour,
        partner=new_partner, ell=jnp.where(emit, ell_new, state.ell),
        n=state.n + emit.astype(jnp.int32),
        next_tag=state.next_tag + (emit & ~g2qq).astype(jnp.int32),
        t=jnp.where(state.done, state.t, t_new),
        n_emit=n_emit, done=done,
        overflow=state.overflow | overflow_now,
        n_trials=state.n_trials + (~state.done).astype(jnp.int32),
    ), record


def _kernel_ratio(state, slot, k, p_a, p_b, p_kn, m_i, m_k, m_f, m2_dip, q2, z, omz, pt2, range_qq, gluon, g2qq,
                  *, me_correction):
    """Kernel (or matrix element) over overestimate of a trial, Pythia 8.3's defaults:

    * quark ends: with ``me_correction`` (``TimeShower:MEcorrections = on``, ``MEafterFirst = on``)
      every emission of the primary q or q̄ (slots 0 and 1) is corrected to the e+e- → q q̄ g
      matrix element with the other primary as ME partner, x_i = 2P·p_i/P², P = p_rad + p_partner +
      p_g, quark masses included (:func:`~diffgen.shower.me_correction.massive_me_ratio`);
      quarks from g → q q̄ use the kernel with the quasi-collinear dead-cone term (Pythia gives them
      its ME type 66, not implemented here);
    * g → g g: (1 + z³)/2, times Pythia's ``recoilDeadCone`` factor for a massive recoiler;
    * g → q q̄: ``weightGluonToQuark = 4`` (:func:`diffgen.shower.splitting.ratio_g2qq`) times
      ln 4/range_qq (the overestimate's range factor).
    """
    ratio_kernel = _sp.ratio_q2qg(z, omz, pt2, m_i * m_i)
    if me_correction:
        partner_slot = 1 - slot
        p_partner = jnp.where(partner_slot == k, p_kn, state.p4[jnp.clip(partner_slot, 0, 1)])
        x1, x2, p2_tot = _me_fractions(p_a, p_b, p_partner)
        v2, a2 = vector_fraction_couplings(state.pid[jnp.clip(slot, 0, 1)], _SIN2_THETA_W_BAR)
        ratio_me = massive_me_ratio(x1, x2, safe_div(m_i * m_i, p2_tot), v2, a2)
        ratio_kernel = jnp.where(slot <= 1, ratio_me, ratio_kernel)
    ratio_gg = _sp.ratio_g2gg(z) * _sp.recoil_dead_cone(z, q2, m2_dip, m_k * m_k)
    ratio_qq = _sp.ratio_g2qq(z, omz, q2, m_f * m_f, (jnp.sqrt(m2_dip) - m_k) ** 2) * (LN4 / range_qq)
    return jnp.where(g2qq, ratio_qq, jnp.where(gluon, ratio_gg, ratio_kernel))


def _me_fractions(p_rad, p_glue, p_partner):
    """x₁ = 2P·p_rad/P², x₂ = 2P·p_partner/P² (P = p_rad + p_glue + p_partner) and P²."""
    tot = p_rad + p_glue + p_partner
    dot = minkowski_dot
    p2_tot = dot(tot, tot)
    inv = safe_div(2.0, p2_tot)
    return dot(tot, p_rad) * inv, dot(tot, p_partner) * inv, p2_tot


def _initial_state(events: Events, capacity: int) -> _State:
    n_ev = events.n_events
    dtype = events.p4.dtype
    q = events.pid[:, 0]
    m_q = shower_mass(q).astype(dtype)
    pair, m2 = _on_shell_pair(events.p4[:, 0], events.p4[:, 1], m_q)
    pid = jnp.pad(events.pid, ((0, 0), (0, capacity - 2)))
    colour = jnp.pad(events.colour, ((0, 0), (0, capacity - 2), (0, 0)))
    qbar = events.pid[:, 1]
    valid = (events.mask[:, 0] & events.mask[:, 1] & (q >= 1) & (q <= 5) & (qbar == -q)
             & (events.colour[:, 0, 0] > 0) & (events.colour[:, 0, 0] == events.colour[:, 1, 1]))
    valid = valid & (m2 > 4.0 * m_q * m_q) & jnp.isfinite(m2)
    p4 = jnp.pad(jnp.where(valid[:, None, None], pair, events.p4), ((0, 0), (0, capacity - 2), (0, 0)))
    next_tag = jnp.max(events.colour, axis=(1, 2)) + 1
    zeros = jnp.zeros((n_ev,), jnp.int32)
    partner = jnp.full((capacity, 2), -1, jnp.int32).at[0, 0].set(1).at[1, 1].set(0)
    big_l = safe_log(jnp.where(valid, m2, 4.0))
    ell = jnp.full((n_ev, capacity, 2), _NO_DIPOLE, dtype).at[:, 0, 0].set(big_l).at[:, 1, 1].set(big_l)
    return _State(
        p4=p4, pid=pid, colour=colour, partner=jnp.broadcast_to(partner, (n_ev, capacity, 2)), ell=ell,
        n=zeros + 2,
        next_tag=next_tag.astype(jnp.int32), t=big_l - LN4,
        n_emit=zeros, done=~valid, overflow=jnp.zeros((n_ev,), bool),
        n_trials=zeros,
    )


def _on_shell_pair(p1, p2, m):
    """The q q̄ pair put on the shower's mass shell m (Pythia's m0; the hard process makes u, d, s massless):
    the pair's four-momentum P is kept and, in its rest frame, the two momenta are rescaled along their
    axis, p₁,₂ = P/2 ± c Δ⊥ with Δ⊥ the part of (p₁ − p₂)/2 orthogonal to P. Returns (f[N, 2, 4], M²)."""
    dot = minkowski_dot
    tot = p1 + p2
    m2 = dot(tot, tot)
    half = 0.5 * (p1 - p2)
    perp = half - safe_div(dot(half, tot), m2)[..., None] * tot
    c = safe_sqrt(safe_div(jnp.maximum(0.25 * m2 - m * m, 0.0), -dot(perp, perp)))
    return jnp.stack([0.5 * tot + c[..., None] * perp, 0.5 * tot - c[..., None] * perp], axis=1), m2


def evolve(params, key, events: Events, *, capacity: int, max_emissions: int | None, me_correction: bool,
           max_trials: int, pool: int | None = None, pt_min_width: float = 0.0):
    """Run the trial loop of a batch of events (per-event keys ``key[N]`` or one key).

    Returns ``(result, log_weight, valid, param_out_of_range, stats)``: a :class:`ShowerResult`, the
    score log-weight, which events were valid q q̄ input, the parameter-range flag and the scheduler's
    :class:`~diffgen.schedule.PoolStats` (``None`` without trials).
    """
    if events.capacity != 2:
        raise ValueError(f"final_state_shower expects events with 2 slots (q, qbar), got {events.capacity}")
    for name in SHOWER_SETTINGS:
        if name not in params:
            raise ValueError(f"shower params lack {name!r}; they have {sorted(params)}")
    dtype = events.p4.dtype
    alpha_raw = jnp.asarray(params["TimeShower:alphaSvalue"], dtype)
    ptmin_raw = jnp.asarray(params["TimeShower:pTmin"], dtype)
    bad = out_of_range("TimeShower:alphaSvalue", alpha_raw) | out_of_range("TimeShower:pTmin", ptmin_raw)
    spec_a, spec_p = SETTINGS["TimeShower:alphaSvalue"], SETTINGS["TimeShower:pTmin"]
    alpha_mz = jnp.clip(jnp.nan_to_num(alpha_raw, nan=spec_a.default), spec_a.lo, spec_a.hi)
    ptmin = jnp.clip(jnp.nan_to_num(ptmin_raw, nan=spec_p.default), spec_p.lo, spec_p.hi)
    sg = jax.lax.stop_gradient
    t_min = 2.0 * jnp.log(ptmin)  # centre of the smooth cut-off (differentiable)
    if pt_min_width > 0:
        t_cut = jnp.maximum(t_min - pt_min_width, _as.log_pt2_cut(spec_p.lo, alpha_mz))
    else:
        t_cut = _as.log_pt2_cut(ptmin, alpha_mz)  # Pythia's hard max(pTmin, 1.1 Λ₃)

    state = _initial_state(events, capacity)
    valid = ~state.done
    if max_emissions == 0:  # pass-through: no trials at all
        empty = jnp.zeros((events.n_events, 0), dtype)
        p4_in = jnp.pad(events.p4, ((0, 0), (0, capacity - 2), (0, 0)))  # untouched, not put on shell
        result = ShowerResult(p4=p4_in, pid=state.pid, colour=state.colour, n=state.n,
                              done=jnp.ones_like(state.done), overflow=state.overflow, n_trials=state.n_trials,
                              rec_t=empty, rec_q=empty, rec_d=empty)
        return result, jnp.zeros_like(alpha_mz) * empty.sum(1), valid, bad, None
    alpha_value = sg(alpha_mz)  # the loop runs at θ₀; θ enters through the score weights below
    result, stats = _run_trials(state, event_keys(key, events.n_events), alpha_value, sg(t_cut), sg(t_min),
                                sg(_as.log_lambda2(alpha_value)), capacity=capacity, max_emissions=max_emissions,
                                me_correction=me_correction, max_trials=max_trials, pool=pool, width=pt_min_width)
    log_weight = score_log_weight(alpha_mz, result.rec_t, result.rec_q, t_min, pt_min_width, result.rec_d)
    return result, log_weight, valid, bad, stats


class ShowerResult(NamedTuple):
    """Per-event output of the trial loop (leading axis N)."""

    p4: jax.Array
    pid: jax.Array
    colour: jax.Array
    n: jax.Array
    done: jax.Array  #: False: still evolving after ``max_trials`` trials
    overflow: jax.Array
    n_trials: jax.Array
    rec_t: jax.Array  #: [N, max_trials] ln p⊥² of every trial (the record of :func:`score_log_weight`)
    rec_q: jax.Array  #: [N, max_trials] ± ratio of every decision (0: none)
    rec_d: jax.Array  #: [N, max_trials] shift of ln p⊥² seen by the cut-off (mass-reduced p⊥; 0 mostly)


def _run_trials(state: _State, keys, alpha_value, t_cut, t_min, log_lam2, *, capacity, max_emissions,
                me_correction, max_trials, pool, width):
    """The trial loop on the slot pool of :func:`diffgen.schedule.run_pool`: event i's trial s uses the
    threefry words of counters 8s … 8s + 6 under ``keys[i]`` (23-bit uniforms), whatever slot or
    iteration it runs in."""
    n_ev = keys.shape[0]
    dtype = state.p4.dtype
    trial = jax.vmap(lambda s, r: _one_trial(s, r, alpha_value, t_cut, t_min, log_lam2, width=width,
                                             capacity=capacity,
                                             max_emissions=max_emissions, me_correction=me_correction))
    key_data = jax.random.key_data(keys)  # u32[N, 2] (threefry)
    counter = jnp.arange(8, dtype=jnp.uint32)

    def draw(kd, s):
        # one threefry-2x32 evaluation per trial: the 8 words of counters 8s … 8s + 7 of the event's key
        # (each jax.random call is a loop on the CPU; fold_in + uniform would be two)
        bits = jax.vmap(lambda k_, s_: threefry_2x32(k_, s_.astype(jnp.uint32) * 8 + counter))(kd, s)
        return (bits[:, :_N_UNIFORMS] >> 9).astype(dtype) * jnp.asarray(2.0**-23, dtype)

    def load(idx):
        idx = jnp.clip(idx, 0, n_ev - 1)
        st = jax.tree_util.tree_map(lambda a: a[idx], state)
        return (st, key_data[idx]), st.done

    def step(slot, out, ev, steps, busy):
        st, k = slot
        st, (t, q, d) = trial(st, draw(k, steps))
        row = jnp.where(busy, ev, n_ev)
        out = out._replace(rec_t=out.rec_t.at[row, steps].set(t, mode="drop"),
                           rec_q=out.rec_q.at[row, steps].set(q, mode="drop"),
                           rec_d=out.rec_d.at[row, steps].set(d, mode="drop"))
        return (st, k), out, st.done

    def store(out, ev, write, slot, steps):
        st, _ = slot
        row = jnp.where(write, ev, n_ev)
        return out._replace(**{f: getattr(out, f).at[row].set(getattr(st, f), mode="drop")
                               for f in ("p4", "pid", "colour", "n", "done", "overflow", "n_trials")})

    out0 = ShowerResult(p4=state.p4, pid=state.pid, colour=state.colour, n=state.n, done=state.done,
                        overflow=state.overflow, n_trials=state.n_trials,
                        rec_t=jnp.zeros((n_ev, max_trials), dtype), rec_q=jnp.zeros((n_ev, max_trials), dtype),
                        rec_d=jnp.zeros((n_ev, max_trials), dtype))
    return run_pool(load, step, store, out0, n_ev, pool, max_trials)


def final_state_shower(capacity: int = DEFAULT_CAPACITY, max_emissions: int | None = None,
                       me_correction: bool = True, *, max_trials: int | None = None,
                       pool: int | None = None, pt_min_width: float = DEFAULT_PT_MIN_WIDTH) -> Stage:
    """Final-state p⊥-ordered dipole shower of an e+e- → q q̄ event (see module docstring).

    Args:
        capacity: particle slots of the output events (static). With the default 48 fewer than
            1e-4 of the events overflow at √s = 91.188 GeV (mean multiplicity 12, largest seen 38).
        max_emissions: stop after this many accepted branchings (``None``: evolve to p⊥min).
        me_correction: correct the emissions of the primary q, q̄ to the e+e- → q q̄ g matrix element
            (Pythia's ``TimeShower:MEcorrections`` with ``MEafterFirst``).
        max_trials: most trials of one event (default :func:`default_max_trials`).
        pool: slots of the trial scheduler (:func:`diffgen.schedule.run_pool`): events are showered
            ``pool`` at a time, a finished one replaced by the next (static; clipped to the batch;
            default :func:`~diffgen.schedule.default_pool`: 128 on a CPU).
        pt_min_width: half-width w in ln p⊥² of the smooth cut-off around ``TimeShower:pTmin``
            (static, 0 ≤ w ≤ 1; default 0.2): what makes ∂/∂pTmin non-zero (module docstring). 0 is
            Pythia's hard cut, with no pTmin gradient.

    Params: ``TimeShower:alphaSvalue`` (α_s(m_Z), one-loop running) and ``TimeShower:pTmin`` (GeV).

    Input events: two slots, a quark (pid 1..5, colour [t, 0]) and its antiquark (colour [0, t]).
    Output: ``capacity`` slots of quarks and gluons with colour tags forming colour-singlet chains.
    """
    capacity = check_int(capacity, "capacity", lo=3, what="slots for q, qbar and emissions")
    max_emissions = check_optional_int(max_emissions, "max_emissions", lo=0)
    if max_trials is None:
        max_trials = default_max_trials(capacity, max_emissions)
    max_trials = check_int(max_trials, "max_trials", lo=1)
    pool = check_optional_int(pool, "pool (scheduler slots)", lo=1)
    me_correction = bool(me_correction)
    if isinstance(pt_min_width, bool) or not isinstance(pt_min_width, (int, float)) or not 0.0 <= pt_min_width <= 1.0:
        raise ValueError(f"pt_min_width = {pt_min_width!r}: allowed range is a number in [0, 1] (ln pT² units)")
    pt_min_width = float(pt_min_width)

    def init(key):
        return {name: jnp.asarray(SETTINGS[name].default, jnp.result_type(float)) for name in SHOWER_SETTINGS}

    def run(params, key, events: Events):
        state, log_weight, valid, bad, stats = evolve(params, key, events, capacity=capacity,
                                                  max_emissions=max_emissions, me_correction=me_correction,
                                                  max_trials=max_trials, pool=pool, pt_min_width=pt_min_width)
        unfinished = ~state.done
        mask_in = jnp.pad(events.mask, ((0, 0), (0, capacity - 2)))
        mask = jnp.where(valid[:, None], jnp.arange(capacity)[None, :] < state.n[:, None], mask_in)
        out = events.replace(
            p4=jnp.where(mask[..., None], state.p4, 0.0),
            pid=jnp.where(mask, state.pid, 0),
            mask=mask,
            colour=jnp.where(mask[..., None], state.colour, 0),
            log_weight=events.log_weight + log_weight,
        )
        out = out.with_status(state.overflow | unfinished, Status.CAPACITY_OVERFLOW)
        out = out.with_status(bad, Status.PARAM_OUT_OF_RANGE)
        info = {"work": state.n_trials, "emissions": state.n - 2}
        if stats is not None:
            info.update(stats._asdict())
        return out, info

    return Stage(init=init, apply=lambda p, k, ev: run(p, k, ev)[0], diagnose=run)
