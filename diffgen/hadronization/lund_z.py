"""Sampling the Lund symmetric fragmentation function with implicit reparameterisation.

The light-cone fraction ``z`` taken by a hadron of transverse mass m⊥ follows
(B. Andersson et al., Phys. Rept. 97 (1983) 31; Pythia 8.3 manual "Fragmentation
functions", including the Bowler factor for heavy string ends)

    f(z) ∝ z^(−α) (1 − z)^a exp(−c / z),   0 < z < 1,
    c = b m⊥²,   α = 1 (light end) or 1 + r_Q b m_Q² (c or b end),

optionally truncated to a window ``z_lo <= z <= z_hi`` (the kinematically allowed
range near the end of a string, see :mod:`diffgen.hadronization.fragment`).

Numerical CDF. In ``s = log z`` the density is ``g(s) = exp(−(α−1)s + a log(1−e^s) − c e^−s)``.
It is tabulated on a fixed grid of :data:`GRID_SIZE` nodes in
``s ∈ [s_min, s_max]`` (clustered quadratically towards z → 1) with
``s_min = log(c / (c + X))``, ``X = max(α − 1, 0) + 40``
(the density there is below ``e^−40`` of its peak) and ``s_max = log(1 − 10⁻⁶)``; the CDF
``F`` is the cumulative trapezoid rule, linear in ``s`` between nodes (monotone, so
``F⁻¹`` is exact for it). The node positions are held fixed under differentiation.

Implicit reparameterisation. ``s = F⁻¹(F(s_lo) + u (F(s_hi) − F(s_lo)))`` with ``u`` uniform
has no closed form; its derivative follows from the implicit function theorem on
``G(s; θ) = F(s) − F(s_lo) − u (F(s_hi) − F(s_lo)) = 0``:

    ds = −(∂G/∂θ · dθ + ∂G/∂s_lo ds_lo + ∂G/∂s_hi ds_hi + ∂G/∂u du) / ∂G/∂s,

with ``∂G/∂s = ρ(s)`` the (piecewise-constant) grid density, ``∂G/∂s_lo = −(1 − u) ρ(s_lo)``,
``∂G/∂s_hi = −u ρ(s_hi)`` and ``∂G/∂θ`` (θ = a, c, α) from a forward-mode derivative of the
grid CDF at fixed nodes. This is a ``jax.custom_jvp`` rule, so reverse mode stores a
handful of numbers per sample instead of the grid.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.hadronization.lund_z import sample_log_z
    >>> s = sample_log_z(jnp.array(0.5), 0.68, 0.98 * 0.3, 1.0)
    >>> 0.0 < float(jnp.exp(s)) < 1.0
    True
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from diffgen.numerics import safe_div

__all__ = ["GRID_SIZE", "sample_log_z", "sample_log_z_scored", "window_mass", "window_masses", "log_density",
           "cdf_grid", "cdf_at", "S_MAX", "diquark_shape"]

GRID_SIZE = 256  #: nodes of the tabulated CDF in s = log z
S_MAX = math.log1p(-1e-6)  #: upper end of the grid (z = 1 − 10⁻⁶)
_TAIL = 40.0  #: the grid starts where the density is ~e^−40 of its peak


def diquark_shape(a, a_extra_diquark, old_is_diquark, new_is_diquark, alpha):
    """Lund ``a`` and power ``α`` of ``1/z`` for a step whose end ("old") or new flavour is a diquark.

    Pythia 8.3's ``StringZ::zFrag`` with ``StringZ:aExtraDiquark`` (Monash 0.97) as the Monash tune uses it
    (``StringZ:useOldAExtra = on``, which every tune before 8.315, Monash included, switches on; checked
    in Pythia 8.317): ``f(z) ∝ z^−c (1 − z)^(a + δ_old) exp(−b m⊥²/z)`` with
    ``c = α + δ_new − δ_old`` and ``δ = aExtraDiquark`` for a diquark, 0 otherwise. So the extra ``a`` sits
    in ``(1 − z)^a`` when the hadron is made *from* a diquark end (the baryon that completes a diquark),
    and in the power of ``z`` with opposite signs for the old and new flavour. (Pythia ≥ 8.315 with
    ``useOldAExtra = off`` puts the new flavour's ``a`` in ``(1 − z)^a`` instead.)

    Args:
        a: ``StringZ:aLund``; a_extra_diquark: ``StringZ:aExtraDiquark``;
        old_is_diquark, new_is_diquark: bool arrays; alpha: the power of ``1/z`` without diquarks
        (1, or the Bowler power for c/b ends).

    Returns:
        ``(a_shape, alpha_shape)`` to pass to :func:`sample_log_z` (as ``a`` and ``alpha``).

    >>> [round(float(x), 2) for x in diquark_shape(0.68, 0.97, True, False, 1.0)]
    [1.65, 0.03]
    """
    d_old = jnp.where(old_is_diquark, a_extra_diquark, 0.0)
    d_new = jnp.where(new_is_diquark, a_extra_diquark, 0.0)
    return a + d_old, alpha + d_new - d_old


def log_density(s, a, c, alpha):
    """Unnormalised log density of ``s = log z``: −(α−1)s + a log(1 − e^s) − c e^−s (s < 0)."""
    return -(alpha - 1.0) * s + a * jnp.log(-jnp.expm1(s)) - c * jnp.exp(-s)


def _grid_nodes(c, alpha):
    """Grid start ``s_min`` and range ``S_MAX − s_min`` (held fixed under differentiation)."""
    c = jax.lax.stop_gradient(jnp.maximum(c, 1e-8))
    alpha = jax.lax.stop_gradient(alpha)
    x = jnp.maximum(alpha - 1.0, 0.0) + _TAIL
    s_min = jnp.minimum(jnp.log(c / (c + x)), S_MAX - 0.01)
    return s_min, S_MAX - s_min


def _node_s(s_min, width, i):
    """Node positions s_i = s_min + width·φ(i/(n−1)), φ(w) = 1 − (1 − w)²: the nodes cluster
    quadratically towards z → 1, where (1 − z)^a is not smooth."""
    w = i / (GRID_SIZE - 1.0)
    return s_min + width * (1.0 - (1.0 - w) ** 2)


def _grid(a, c, alpha):
    """:func:`cdf_grid` and the normalised probability of each interval."""
    a, c, alpha = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(c), jnp.asarray(alpha))
    s_min, width = _grid_nodes(c, alpha)
    i = jnp.arange(GRID_SIZE, dtype=width.dtype)
    s = _node_s(s_min[..., None], width[..., None], i)
    logg = log_density(s, a[..., None], c[..., None], alpha[..., None])
    logg = logg - jax.lax.stop_gradient(jnp.max(logg, axis=-1, keepdims=True))
    g = jnp.exp(logg)
    trap = 0.5 * (g[..., 1:] + g[..., :-1]) * (s[..., 1:] - s[..., :-1])
    cum = jnp.concatenate([jnp.zeros_like(g[..., :1]), jnp.cumsum(trap, axis=-1)], axis=-1)
    return s_min, width, cum / cum[..., -1:], trap / cum[..., -1:]


def cdf_grid(a, c, alpha):
    """Normalised CDF ``F`` of ``s`` at the grid nodes: (s_min, width, F[..., GRID_SIZE]).

    ``a``, ``c``, ``alpha`` broadcast against each other; the node axis is appended last.
    """
    return _grid(a, c, alpha)[:3]


def _locate(s, s_min, width):
    """Interval index, fractional position in it, and the interval's end nodes, for ``s``
    (clipped to the grid). Only the index is found non-differentiably."""
    v = jnp.clip((s - s_min) / width, 0.0, 1.0)
    w = 1.0 - jnp.sqrt(1.0 - jax.lax.stop_gradient(v))
    i = jnp.clip(jnp.floor(w * (GRID_SIZE - 1.0)).astype(jnp.int32), 0, GRID_SIZE - 2)
    s0 = _node_s(s_min, width, i.astype(width.dtype))
    s1 = _node_s(s_min, width, i.astype(width.dtype) + 1.0)
    sc = s_min + width * v
    return i, (sc - s0) / (s1 - s0), s0, s1


def _take(f, i):
    return jnp.take_along_axis(f, i[..., None], axis=-1)[..., 0]


def cdf_at(s, s_min, width, f):
    """Grid CDF (linear in s between nodes) at ``s``."""
    i, t, _, _ = _locate(s, s_min, width)
    f0, f1 = _take(f, i), _take(f, i + 1)
    return f0 + t * (f1 - f0)


def _density_at(s, s_min, width, f):
    """Piecewise-constant density dF/ds of the grid CDF at ``s`` (0 outside the grid)."""
    i, _, s0, s1 = _locate(s, s_min, width)
    inside = (s >= s_min) & (s <= S_MAX)
    return jnp.where(inside, (_take(f, i + 1) - _take(f, i)) / (s1 - s0), 0.0)


def _invert(target, s_min, width, f):
    """s with F(s) = target on the grid CDF (non-differentiable search, linear interpolation)."""
    i = jnp.sum(f <= target[..., None], axis=-1) - 1
    i = jnp.clip(i, 0, GRID_SIZE - 2)
    f0, f1 = _take(f, i), _take(f, i + 1)
    t = jnp.clip(safe_div(target - f0, f1 - f0), 0.0, 1.0)
    s0 = _node_s(s_min, width, i.astype(width.dtype))
    s1 = _node_s(s_min, width, i.astype(width.dtype) + 1.0)
    return s0 + t * (s1 - s0)


def _primal(u, a, c, alpha, s_lo, s_hi):
    s_min, width, f = cdf_grid(a, c, alpha)
    f_lo = cdf_at(s_lo, s_min, width, f)
    f_hi = cdf_at(s_hi, s_min, width, f)
    target = f_lo + u * (f_hi - f_lo)
    s = _invert(target, s_min, width, f)
    return jnp.clip(s, s_lo, s_hi), (s_min, width, f, f_lo, f_hi)


@jax.custom_jvp
def _sample(u, a, c, alpha, s_lo, s_hi):
    return _primal(u, a, c, alpha, s_lo, s_hi)[0]


@_sample.defjvp
def _sample_jvp(primals, tangents):
    u, a, c, alpha, s_lo, s_hi = primals
    du, da, dc, dalpha, ds_lo, ds_hi = tangents
    s, (s_min, width, f, f_lo, f_hi) = _primal(u, a, c, alpha, s_lo, s_hi)

    def g_of_theta(a_, c_, alpha_):
        # G at fixed nodes and fixed evaluation points: only the grid values move.
        _, _, f_ = cdf_grid(a_, c_, alpha_)
        f_lo_ = cdf_at(s_lo, s_min, width, f_)
        return cdf_at(s, s_min, width, f_) - f_lo_ - u * (cdf_at(s_hi, s_min, width, f_) - f_lo_)

    _, dg_theta = jax.jvp(g_of_theta, (a, c, alpha), (da, dc, dalpha))
    rho = _density_at(s, s_min, width, f)
    rho_lo = _density_at(s_lo, s_min, width, f)
    rho_hi = _density_at(s_hi, s_min, width, f)
    num = dg_theta - (1.0 - u) * rho_lo * ds_lo - u * rho_hi * ds_hi - (f_hi - f_lo) * du
    ok = rho > 1e-12
    implicit = -num / jnp.where(ok, rho, 1.0)
    # Degenerate window (no probability mass inside): s follows the window edges.
    fallback = (1.0 - u) * ds_lo + u * ds_hi
    return s, jnp.where(ok, implicit, fallback)


def sample_log_z(u, a, c, alpha=1.0, s_lo=None, s_hi=None):
    """Draw ``s = log z`` from the (truncated) Lund function by inverting the grid CDF at ``u``.

    Args:
        u: uniforms in [0, 1), any shape.
        a: Lund ``a`` (``StringZ:aLund``).
        c: ``b m⊥²`` (dimensionless), > 0.
        alpha: power of ``1/z`` (1, or 1 + r_Q b m_Q² for a heavy-quark end).
        s_lo, s_hi: optional truncation window in ``log z`` (default: the whole grid).

    Returns:
        ``log z`` with the shape of the broadcast inputs; differentiable in every argument
        by implicit reparameterisation (module docstring).
    """
    u, a, c, alpha = jnp.broadcast_arrays(*(jnp.asarray(x, dtype=jnp.result_type(float)) for x in (u, a, c, alpha)))
    s_lo = jnp.full_like(u, -1e4) if s_lo is None else jnp.broadcast_to(s_lo, u.shape).astype(u.dtype)
    s_hi = jnp.full_like(u, S_MAX) if s_hi is None else jnp.broadcast_to(s_hi, u.shape).astype(u.dtype)
    return _sample(u, a, c, alpha, s_lo, s_hi)


def sample_log_z_scored(u, a, c, alpha, s_lo, s_hi):
    """The draw of :func:`sample_log_z` held fixed under differentiation, with its log density: ``(s, log p(s))``.

    ``p`` is the density of the grid sampler itself (piecewise constant in ``s``, truncated to ``[s_lo, s_hi]``,
    nodes fixed as for the implicit derivative), differentiable in ``a``, ``c``, ``alpha`` and the window edges,
    so ``log p − stop_gradient(log p)`` is the draw's score (the score-function alternative to implicit
    reparameterisation; ``string_fragmentation(continuous="score")``). One grid serves both.

    Example:
        >>> import jax
        >>> s, lp = sample_log_z_scored(0.5, 0.68, 0.3, 1.0, -1e4, S_MAX)
        >>> float(jax.grad(lambda a: sample_log_z_scored(0.5, a, 0.3, 1.0, -1e4, S_MAX)[0])(0.68))
        0.0
    """
    u, a, c, alpha = jnp.broadcast_arrays(*(jnp.asarray(x, dtype=jnp.result_type(float)) for x in (u, a, c, alpha)))
    s_lo = jnp.broadcast_to(s_lo, u.shape).astype(u.dtype)
    s_hi = jnp.broadcast_to(s_hi, u.shape).astype(u.dtype)
    s_min, width, f = cdf_grid(a, c, alpha)
    f_lo = cdf_at(s_lo, s_min, width, f)
    f_hi = cdf_at(s_hi, s_min, width, f)
    sg = jax.lax.stop_gradient
    target = sg(f_lo + u * (f_hi - f_lo))
    s = sg(jnp.clip(_invert(target, s_min, width, sg(f)), s_lo, s_hi))
    rho = _density_at(s, s_min, width, f)
    log_p = jnp.log(jnp.where(rho > 0, rho, 1.0)) - jnp.log(jnp.where(f_hi > f_lo, f_hi - f_lo, 1.0))
    return s, jnp.where((rho > 0) & (f_hi > f_lo), log_p, 0.0)


def window_mass(a, c, alpha, s_lo, s_hi):
    """Probability that an untruncated draw of ``s = log z`` falls in ``[s_lo, s_hi]``: ``F(s_hi) − F(s_lo)``
    on the grid CDF, clipped to [0, 1]. Differentiable in every argument (the grid's node positions are held
    fixed, as for :func:`sample_log_z`), so its log is the score of "the draw was inside the window".

    Example:
        >>> float(window_mass(0.68, 0.3, 1.0, -1e4, S_MAX))
        1.0
    """
    return window_masses(a, c, alpha, s_lo, s_hi)[0]


def window_masses(a, c, alpha, s_lo, s_hi):
    """``(P(inside), P(outside))`` of the window ``[s_lo, s_hi]`` for an untruncated draw of ``s = log z``.

    The outside probability is ``F(s_lo) + (1 − F(s_hi))`` with the upper tail summed from the top of the
    grid, not ``1 − P(inside)``: in float32 the latter loses all precision when the window holds nearly all
    the mass, and its log's derivative (a score, ``∝ 1/P(outside)``) with it.

    Example:
        >>> p_in, p_out = window_masses(0.68, 0.3, 1.0, -1e4, -1e-3)
        >>> abs(float(p_in) + float(p_out) - 1.0) < 1e-6 and 0.0 < float(p_out) < 1e-3
        True
    """
    s_min, width, f, prob = _grid(a, c, alpha)
    s_lo = jnp.broadcast_to(s_lo, s_min.shape).astype(s_min.dtype)
    s_hi = jnp.broadcast_to(s_hi, s_min.shape).astype(s_min.dtype)
    p_in = jnp.clip(cdf_at(s_hi, s_min, width, f) - cdf_at(s_lo, s_min, width, f), 0.0, 1.0)
    # upper tail 1 − F(s_hi) as the sum of the intervals above s_hi (one masked sum: no cancellation, and
    # cheaper than a second prefix sum on a CPU)
    i, t, _, _ = _locate(s_hi, s_min, width)
    above = jnp.sum(jnp.where(jnp.arange(GRID_SIZE - 1) > i[..., None], prob, 0.0), axis=-1)
    tail = above + (1.0 - t) * _take(prob, i)
    p_out = jnp.clip(cdf_at(s_lo, s_min, width, f) + tail, 0.0, 1.0)
    return p_in, p_out
