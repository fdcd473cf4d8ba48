"""The veto algorithm's θ-independent overestimate, its exact sampling, and the score weights.

Overestimate
------------
Per unit t = ln p⊥² (GeV²) the trial density of all dipole ends e of an event is

    ρ̂(t) = (α̂(t)/2π) Σ_e (S_e − B_e t) 1[t ≤ κ_e],   κ_e = ℓ̂_e − ln 4,

where ℓ̂_e ≥ ln M_e² is the dipole's log-mass rounded *up* to a static grid (so p⊥² ≤ M̂_e²/4 at
the kink) and S_e − B_e t ≥ 0 collects the end's channels (see :mod:`diffgen.shower.fsr`). The
coupling α̂(t) is the piecewise-constant :data:`~diffgen.shower.coupling.ALPHA_S_HAT`. Nothing here
depends on a parameter θ.

Sampling
--------
Because the kinks (grid) and the α̂ edges are static, they are merged and sorted once at import;
per trial the ends are histogrammed onto the grid (Σ B, Σ S per class), cumulative sums give the
linear density on every interval between breakpoints, and ∫_t^{t_cur} ρ̂ = E ~ Exp(1) is solved
in closed form on the interval where it falls:

    (B/2) w² + ρ̂'(hi) w = D,   w = hi − t,   w = 2D/(ρ̂' + √(ρ̂'² + 2BD)),

with ρ̂'(hi) = Σ_e (S_e − B_e hi) evaluated directly for precision.

Score weights (DESIGN §2)
-------------------------
A trial at t with θ-independent ratio r (kernel or matrix element over overestimate, 0 outside
phase space) is accepted with p(θ) = [α_s,eff(e^t; θ)/α̂(t)] r, α_s,eff = min(α_s^{1-loop}, α̂). The
loop records (t, ±r) of every decision; afterwards :func:`score_log_weight` adds
log p − sg(log p) for accepts and log(1 − p) − sg(log(1 − p)) for rejects (p clipped into
(0, 1)): value 0, gradient ∂θ log P(accept/reject history). Since the trials themselves do not
depend on θ, this makes ∂⟨O⟩/∂θ of any weighted mean ⟨O⟩ = Σ w O/Σ w unbiased.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_sqrt
from diffgen.shower import coupling as _as

__all__ = ["LN4", "grid_up", "next_trial_t", "alpha_hat_of_t", "accept_probability", "score_log_weight"]

LN4 = math.log(4.0)
_P_EPS = 2.0**-24  # p is clipped into [_P_EPS, 1 − _P_EPS] inside the logarithms

# Overestimate segments: boundaries in ln p⊥² (decreasing) and α̂ on each of len + 1 segments.
_LN_EDGES = tuple(2.0 * math.log(e) for e in _as.PT_EDGES)
_A_HAT = _as.ALPHA_S_HAT


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
    """Static descending breakpoints: grid kinks ĝ_k − ln 4 and the α̂ edges, with their kinds."""
    x = np.concatenate([_GRID - LN4, np.array(_LN_EDGES)])
    cls = np.concatenate([np.arange(_GRID_N), -np.ones(len(_LN_EDGES), int)])
    order = np.argsort(-x, kind="stable")
    x, cls = x[order], cls[order]
    is_edge = cls < 0
    seg_below = np.cumsum(is_edge)  # α̂ segment index just below each breakpoint
    seg = np.concatenate([[0], seg_below])  # for intervals m = 0..P (above breakpoint m)
    return x, np.maximum(cls, 0), is_edge, seg


_BP_X, _BP_CLASS, _BP_IS_EDGE, _BP_SEG = _merged_breakpoints()


def grid_up(ell):
    """ℓ rounded up to the static grid, and its class index."""
    fine = jnp.ceil((ell - _GRID_LO) / _GRID_STEP)
    coarse = _GRID_FINE - 1 + jnp.ceil(ell - _GRID_MID)
    k = jnp.clip(jnp.where(ell <= _GRID_MID, fine, coarse), 0, _GRID_N - 1).astype(jnp.int32)
    return jnp.asarray(_GRID, ell.dtype)[k], k


def next_trial_t(t_cur, kink, cls, coef_b_end, coef_s_end, expo):
    """Next trial ln p⊥² below ``t_cur`` for the summed overestimate density (per unit ln p⊥²)

        ρ̂(t) = (α̂(t)/2π) Σ_e (S_e − B_e t) 1[t ≤ κ_e]

    of the dipole ends e (κ_e = ℓ̂_e − ln 4 on the static grid, class ``cls``; B_e = S_e = 0 for
    inactive ends): solves ∫_t^{t_cur} ρ̂ = ``expo`` exactly. Between the static breakpoints (the
    grid kinks and the α̂ edges) ρ̂ is linear in t and the integral a quadratic. Returns (t, α̂(t)).
    """
    dtype = t_cur.dtype
    hist = jnp.zeros((_GRID_N, 2), dtype).at[cls].add(jnp.stack([coef_b_end, coef_s_end], axis=-1))
    d_bs = jnp.where(jnp.asarray(_BP_IS_EDGE)[:, None], 0.0, hist[jnp.asarray(_BP_CLASS)])
    d_b, d_s = d_bs[:, 0], d_bs[:, 1]
    xs = jnp.asarray(_BP_X, dtype)
    zero = jnp.zeros((1,), dtype)
    coef_b = jnp.concatenate([zero, jnp.cumsum(d_b)])  # ΣB of the ends active below breakpoint m − 1
    coef_s = jnp.concatenate([zero, jnp.cumsum(d_s)])
    upper = jnp.minimum(jnp.concatenate([t_cur[None], xs]), t_cur)
    lower = jnp.minimum(jnp.concatenate([xs, (t_cur - 200.0)[None]]), t_cur)
    ahat = jnp.asarray(np.array(_A_HAT)[_BP_SEG] / (2.0 * math.pi), dtype)
    h = ahat * (upper - lower) * jnp.maximum(coef_s - 0.5 * coef_b * (upper + lower), 0.0)
    cum = jnp.cumsum(h)
    m = jnp.minimum(jnp.sum(cum < expo), cum.shape[0] - 1)
    prev = jnp.where(m > 0, cum[jnp.maximum(m - 1, 0)], 0.0)
    hi = upper[m]
    d = (expo - prev) / ahat[m]
    dens_hi = jnp.sum(jnp.where(kink >= hi, coef_s_end - coef_b_end * hi, 0.0))  # ρ̂·2π/α̂ at hi
    w = safe_div(2.0 * d, dens_hi + safe_sqrt(dens_hi * dens_hi + 2.0 * coef_b[m] * d))
    return hi - w, ahat[m] * (2.0 * math.pi)


def alpha_hat_of_t(t):
    """α̂ on the segment containing ln p⊥² = t (the same α̂ that :func:`next_trial_t` used)."""
    idx = jnp.sum(t[..., None] < jnp.asarray(_LN_EDGES, t.dtype), axis=-1)
    return jnp.asarray(_A_HAT, t.dtype)[idx]


def accept_probability(t, alpha_mz, ratio):
    """p = α_s,eff(p⊥²; α_s(m_Z))/α̂(p⊥) · ratio with α_s,eff = min(α_s^{1-loop}, α̂); differentiable in α_s(m_Z)."""
    ahat = alpha_hat_of_t(t)
    inv_as = _as.inverse_alpha_s(jnp.exp(t), alpha_mz)
    below_cap = inv_as * ahat > 1.0
    alpha_eff = jnp.where(below_cap, safe_div(1.0, jnp.where(below_cap, inv_as, 1.0)), ahat)
    return alpha_eff / ahat * ratio


def score_log_weight(alpha_mz, rec_t, rec_q):
    """Σ over recorded trials of log p − sg(log p) (accepts, q > 0) or log(1 − p) − sg(...) (rejects, q < 0).

    ``rec_t``: ln p⊥² of each trial; ``rec_q``: ± the θ-independent ratio (0: no decision).
    The value is 0; the gradient in ``alpha_mz`` is the score of the accept/reject history.
    """
    pc = jnp.clip(accept_probability(rec_t, alpha_mz, jnp.abs(rec_q)), _P_EPS, 1.0 - _P_EPS)
    log_p = jnp.log(pc)
    log_q = jnp.log1p(-pc)
    sg = jax.lax.stop_gradient
    term = jnp.where(rec_q > 0, log_p - sg(log_p), jnp.where(rec_q < 0, log_q - sg(log_q), 0.0))
    return jnp.sum(term, axis=-1)
