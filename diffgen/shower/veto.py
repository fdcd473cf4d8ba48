"""The veto algorithm's overestimate, its exact sampling, and the score weights.

Overestimate
------------
Per unit t = ln p⊥² (GeV²) the trial density of all dipole ends e of an event is

    ρ̂(t) = H (α_s(t; α₀)/2π) C_m,   C_m = Σ_e (S_e − B_e lo_m) 1[t ≤ κ_e]   for t in interval m,

where κ_e = ℓ̂_e − ln 4 with ℓ̂_e ≥ ln M_e² the dipole's log-mass rounded *up* to a static grid (so
p⊥² ≤ M̂_e²/4 at the kink), S_e − B_e t ≥ 0 collects the end's channels (the exact width of the
z range at t, see :mod:`diffgen.shower.fsr`), H = :data:`~diffgen.shower.coupling.HEADROOM` and
α₀ = stop_gradient(α_s(m_Z)). The intervals m lie between static breakpoints: the grid kinks and
the n_f thresholds ln m_c², ln m_b², ln m_t²; on each, S − B t is replaced by its largest value
(at the interval's lower end lo_m) and α_s(t) = 2π/(b₀ (t − ln Λ²_{n_f})) is exact one-loop. A
trial at t is first thinned by f = Σ_e (S_e − B_e t)/C_m ≤ 1 (θ-independent; folded into the
ratio below), then the end is chosen ∝ S_e − B_e t.

Sampling
--------
On interval m, ∫_{lo}^{hi} ρ̂ = A_m ln((hi − L_m)/(lo − L_m)) with A_m = H C_m/b₀ and
L_m = ln Λ²_{n_f(m)}; the cumulative sum over intervals (clipped to [t_cut, t_cur]) locates the
interval where ∫_t^{t_cur} ρ̂ = E ~ Exp(1) falls, and there t = L + (hi − L) exp(−D/A_m). The
interval ends lie above the cut-off t_cut = ln p⊥²,cut > ln(1.21 Λ²) (see
:func:`~diffgen.shower.coupling.log_pt2_cut`), so every logarithm is finite. Above t_cur nothing
is sampled; if E exceeds the whole integral down to t_cut the evolution stops.

Score weights (DESIGN §2)
-------------------------
A trial at t with θ-independent ratio r (thinning × kernel or matrix element over overestimate, 0
outside phase space) is accepted with p(θ) = [α_s(t; α)/(H α_s(t; α₀))] r ≤ r/H·(1 + O(α − α₀)).
The loop records (t, ±r) of every decision; afterwards :func:`score_log_weight` adds
log p − sg(log p) for accepts and log(1 − p) − sg(log(1 − p)) for rejects (p clipped into
(0, 1)): value 0, gradient ∂θ log P(accept/reject history) at fixed trials. Any overestimate
≥ the true density generates the same events, so holding the trial density fixed at α₀ while
differentiating in α is exact: ∂⟨O⟩/∂α of any weighted mean ⟨O⟩ = Σ w O/Σ w is unbiased.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div
from diffgen.shower import coupling as _as

__all__ = ["LN4", "grid_up", "next_trial_t", "cut_off_step", "accept_probability", "score_log_weight"]

LN4 = math.log(4.0)
_P_EPS = 2.0**-24  # p is clipped into [_P_EPS, 1 − _P_EPS] inside the logarithms


# The dipole-end overestimates use ℓ̂ = ln M² rounded *up* to a static grid, so that every kink
# of ρ̂ (at ℓ̂ − ln 4) and every α̂ edge is known at trace time and pre-sorted (no per-step sort).
# Steps of 0.25 in ln M² up to M ≈ 115 GeV (where the dipoles of LEP events live), then of 1.
_GRID_STEP = 0.25
_GRID_LO = -4.0  # ln(GeV²): below any dipole able to radiate above p⊥ = 0.1 GeV
_GRID_FINE = 55  # fine points: −4 … 9.5
_GRID_COARSE = 15  # coarse points: 10.5 … 24.5 (√s up to ≈ 2e5 GeV)
_GRID_N = _GRID_FINE + _GRID_COARSE
_GRID_MID = _GRID_LO + _GRID_STEP * (_GRID_FINE - 1)
_GRID = np.concatenate([_GRID_LO + _GRID_STEP * np.arange(_GRID_FINE), _GRID_MID + 1.0 + np.arange(_GRID_COARSE)])


def _merged_breakpoints():
    """Static descending breakpoints (grid kinks ĝ_k − ln 4 and the n_f thresholds), their grid class,
    whether each is a threshold, and n_f − 3 on every interval m = 0..P (interval m lies below
    breakpoint m − 1 and above breakpoint m; the last one extends down to the cut-off)."""
    thresholds = np.array(_as.LN_THRESHOLDS)
    x = np.concatenate([_GRID - LN4, thresholds])
    cls = np.concatenate([np.arange(_GRID_N), -np.ones(len(thresholds), int)])
    order = np.argsort(-x, kind="stable")
    x, cls = x[order], cls[order]
    lower = np.concatenate([x, [-np.inf]])  # lower end of each interval
    nf_index = np.sum(lower[:, None] >= thresholds[None, :], axis=1)  # 0: n_f = 3 … 3: n_f = 6
    return x, np.maximum(cls, 0), cls < 0, nf_index


_BP_X, _BP_CLASS, _BP_IS_EDGE, _BP_NF = _merged_breakpoints()
_BP_B0 = np.array(_as.B0)[_BP_NF]


def grid_up(ell):
    """ℓ rounded up to the static grid, and its class index."""
    fine = jnp.ceil((ell - _GRID_LO) / _GRID_STEP)
    coarse = _GRID_FINE - 1 + jnp.ceil(ell - _GRID_MID)
    k = jnp.clip(jnp.where(ell <= _GRID_MID, fine, coarse), 0, _GRID_N - 1).astype(jnp.int32)
    return jnp.asarray(_GRID, ell.dtype)[k], k


def next_trial_t(t_cur, t_cut, log_lam2, kink, cls, coef_b_end, coef_s_end, expo):
    """Next trial ln p⊥² below ``t_cur`` for the overestimate of the module docstring.

    ``t_cut``: ln p⊥²,cut; ``log_lam2``: ln Λ²_{n_f} for n_f = 3..6 at α₀ (no gradient is taken
    through the trial); ``kink``, ``cls``: κ_e and grid class of every dipole end; ``coef_b_end``,
    ``coef_s_end``: B_e, S_e (0 for inactive ends); ``expo``: an Exp(1) number. Solves
    ∫_t^{t_cur} ρ̂ = ``expo`` exactly. Returns ``(t, c_m, stop)``: the trial, the constant C_m of its
    interval (for the thinning ratio Σ_e (S_e − B_e t)/C_m) and whether it fell below ``t_cut``.
    """
    dtype = t_cur.dtype
    hist = jnp.zeros((_GRID_N, 2), dtype).at[cls].add(jnp.stack([coef_b_end, coef_s_end], axis=-1))
    d_bs = jnp.where(jnp.asarray(_BP_IS_EDGE)[:, None], 0.0, hist[jnp.asarray(_BP_CLASS)])
    xs = jnp.asarray(_BP_X, dtype)
    zero = jnp.zeros((1,), dtype)
    coef_b = jnp.concatenate([zero, jnp.cumsum(d_bs[:, 0])])  # ΣB of the ends active in interval m
    coef_s = jnp.concatenate([zero, jnp.cumsum(d_bs[:, 1])])
    upper = jnp.clip(jnp.concatenate([t_cur[None], xs]), t_cut, t_cur)
    lower = jnp.clip(jnp.concatenate([xs, t_cut[None]]), t_cut, t_cur)
    lam = jnp.asarray(log_lam2, dtype)[jnp.asarray(_BP_NF)]
    c_m = jnp.maximum(coef_s - coef_b * lower, 0.0)
    a_m = (_as.HEADROOM * c_m / jnp.asarray(_BP_B0, dtype))
    span = jnp.log(safe_div(upper - lam, lower - lam, 1.0))  # lower − lam ≥ ln 1.21 > 0
    h = a_m * span
    cum = jnp.cumsum(h)
    stop = ~(cum[-1] >= expo)
    m = jnp.minimum(jnp.sum(cum < expo), cum.shape[0] - 1)
    prev = jnp.where(m > 0, cum[jnp.maximum(m - 1, 0)], 0.0)
    d = expo - prev
    t = lam[m] + (upper[m] - lam[m]) * jnp.exp(-safe_div(d, a_m[m], 1.0e30))
    t = jnp.where(stop, t_cut - 1.0, jnp.clip(t, lower[m], upper[m]))
    return t, c_m[m], stop


def cut_off_step(t, t_min, width):
    """The smooth cut-off s((t − t_min)/w), s(u) = 1/2 + 3u/4 − u³/4 on |u| < 1, 0 below, 1 above
    (C¹, s(u) + s(−u) = 1); the hard step 1[t ≥ t_min] for ``width`` = 0 (static)."""
    if width <= 0:
        return jnp.where(t >= t_min, 1.0, 0.0).astype(jnp.result_type(t))
    u = jnp.clip((t - t_min) / width, -1.0, 1.0)
    return 0.5 + 0.75 * u - 0.25 * u * u * u


def accept_probability(t, alpha_mz, ratio, t_min=None, width=0.0, dt=0.0):
    """p = α_s(e^t; α)/(H α_s(e^t; α₀)) · s((t + dt − t_min)/w) · ratio with α₀ = stop_gradient(α): in value
    s/H · ratio; differentiable in α_s(m_Z) = ``alpha_mz`` and in ``t_min`` = ln pTmin² (no step if
    ``t_min`` is None). ``dt`` shifts the ln p⊥² the cut-off sees (Pythia's mass-reduced p⊥ of a gluon
    emitted by a massive quark, :func:`diffgen.shower.dipole_kinematics.pythia_split`)."""
    q2 = jnp.exp(t)
    inv_true = _as.inverse_alpha_s(q2, alpha_mz)
    inv_trial = _as.inverse_alpha_s(q2, jax.lax.stop_gradient(alpha_mz))
    step = 1.0 if t_min is None else cut_off_step(t + dt, t_min, width)
    return safe_div(inv_trial, _as.HEADROOM * inv_true) * step * ratio


def score_log_weight(alpha_mz, rec_t, rec_q, t_min=None, width=0.0, rec_d=0.0):
    """Σ over recorded trials of log p − sg(log p) (accepts, q > 0) or log(1 − p) − sg(...) (rejects, q < 0).

    ``rec_t``: ln p⊥² of each trial; ``rec_q``: ± the θ-independent ratio (0: no decision); ``t_min``
    [N] or scalar, ``width``: the smooth cut-off. The value is 0; the gradient in ``alpha_mz`` and
    ``t_min`` is the score of the accept/reject history. ``rec_d``: the cut-off's shift of each trial
    (``dt`` of :func:`accept_probability`).
    """
    t_min_b = None if t_min is None else jnp.asarray(t_min)[..., None]
    pc = jnp.clip(accept_probability(rec_t, alpha_mz, jnp.abs(rec_q), t_min_b, width, rec_d), _P_EPS, 1.0 - _P_EPS)
    log_p = jnp.log(pc)
    log_q = jnp.log1p(-pc)
    sg = jax.lax.stop_gradient
    term = jnp.where(rec_q > 0, log_p - sg(log_p), jnp.where(rec_q < 0, log_q - sg(log_q), 0.0))
    return jnp.sum(term, axis=-1)
