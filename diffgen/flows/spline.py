"""Monotone rational-quadratic splines on the unit interval (Durkan et al., arXiv:1906.04032).

A spline with K bins maps [0, 1] onto [0, 1] through the knots (x_k, y_k), k = 0..K, with
x_0 = y_0 = 0, x_K = y_K = 1, bin widths w_k, heights h_k and positive knot derivatives d_k.
With s_k = h_k / w_k and ξ = (x − x_k)/w_k ∈ [0, 1] in bin k,

    y = y_k + h_k [s_k ξ² + d_k ξ(1 − ξ)] / [s_k + (d_{k+1} + d_k − 2 s_k) ξ(1 − ξ)],

    dy/dx = s_k² [d_{k+1} ξ² + 2 s_k ξ(1 − ξ) + d_k (1 − ξ)²] / [s_k + (d_{k+1} + d_k − 2 s_k) ξ(1 − ξ)]²,

and the inverse solves a quadratic in ξ in its numerically stable form ξ = 2c / (−b − √(b² − 4ac)).

Unconstrained parameters θ = (θ_w[K], θ_h[K], θ_d[K+1]) give w = m_w + (1 − K m_w) softmax(θ_w) (the
same for h) and d = m_d + softplus(θ_d + c) with c such that θ_d = 0 gives d = 1: **θ = 0 is the
identity map** (all s_k = d_k = 1). The boundary derivatives d_0, d_K are learned too (the interval
is the whole domain, as in i-flow), so the map is a C¹ bijection of [0, 1].

Shapes: ``x`` f[...], ``theta`` f[..., 3K + 1] broadcast against it; returns ``(y, log|dy/dx|)``
of x's shape. All branches are gradient safe (inputs clipped into [0, 1], no division by zero).

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.flows.spline import rq_spline_forward, rq_spline_inverse
    >>> theta = jnp.zeros((3, 3 * 8 + 1))               # identity
    >>> x = jnp.array([0.1, 0.5, 0.9])
    >>> y, log_det = rq_spline_forward(x, theta)
    >>> [round(float(v), 6) for v in y], [round(abs(float(v)), 6) for v in log_det]
    ([0.1, 0.5, 0.9], [0.0, 0.0, 0.0])
    >>> bool(jnp.allclose(rq_spline_inverse(y, theta)[0], x))
    True
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["rq_spline_forward", "rq_spline_inverse", "n_spline_params", "MIN_BIN", "MIN_DERIVATIVE"]

#: smallest bin width/height as a fraction of the interval (keeps s_k away from 0 and ∞)
MIN_BIN = 1e-3
#: smallest knot derivative
MIN_DERIVATIVE = 1e-3
_D_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))  # softplus(0 + shift) = 1 − MIN_DERIVATIVE


def n_spline_params(bins: int) -> int:
    """Unconstrained parameters per transformed coordinate: 3K + 1."""
    return 3 * bins + 1


def _knots(theta):
    k = (theta.shape[-1] - 1) // 3
    w = MIN_BIN + (1.0 - k * MIN_BIN) * jax.nn.softmax(theta[..., :k], axis=-1)
    h = MIN_BIN + (1.0 - k * MIN_BIN) * jax.nn.softmax(theta[..., k:2 * k], axis=-1)
    d = MIN_DERIVATIVE + jax.nn.softplus(theta[..., 2 * k:] + _D_SHIFT)
    zeros = jnp.zeros_like(w[..., :1])
    xk = jnp.concatenate([zeros, jnp.cumsum(w, axis=-1)], axis=-1)
    yk = jnp.concatenate([zeros, jnp.cumsum(h, axis=-1)], axis=-1)
    # pin the last knot at exactly 1 (cumsum rounding)
    xk = xk.at[..., -1].set(1.0)
    yk = yk.at[..., -1].set(1.0)
    return xk, yk, d


def _bin_values(knots_pos, value, xk, yk, d):
    """Index of the bin holding ``value`` on the grid ``knots_pos`` and that bin's (x_k, w, y_k, h, d_k, d_k+1)."""
    k = xk.shape[-1] - 1
    idx = jnp.sum(value[..., None] >= knots_pos[..., 1:-1], axis=-1)
    idx = jnp.clip(idx, 0, k - 1)[..., None]

    def take(a, i):
        return jnp.take_along_axis(a, i, axis=-1)[..., 0]

    x0, x1 = take(xk, idx), take(xk, idx + 1)
    y0, y1 = take(yk, idx), take(yk, idx + 1)
    return x0, x1 - x0, y0, y1 - y0, take(d, idx), take(d, idx + 1)


def _check_theta(x, theta):
    if theta.shape[-1] < 4 or (theta.shape[-1] - 1) % 3:
        raise ValueError(f"spline parameters must have 3K + 1 entries (K >= 1 bins) on the last axis, "
                         f"got {theta.shape[-1]}")


def rq_spline_forward(x, theta):
    """y = S_θ(x) and log|dy/dx| (module docstring); x in [0, 1] (clipped), ``theta`` f[..., 3K+1]."""
    _check_theta(x, theta)
    x = jnp.clip(x, 0.0, 1.0)
    xk, yk, d = _knots(theta)
    x0, w, y0, h, d0, d1 = _bin_values(xk, x, xk, yk, d)
    s = h / w
    xi = jnp.clip((x - x0) / w, 0.0, 1.0)
    t = xi * (1.0 - xi)
    den = s + (d1 + d0 - 2.0 * s) * t
    y = y0 + h * (s * xi * xi + d0 * t) / den
    dydx = s * s * (d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) ** 2) / (den * den)
    return jnp.clip(y, 0.0, 1.0), jnp.log(dydx)


def rq_spline_inverse(y, theta):
    """x = S_θ⁻¹(y) and log|dx/dy| = −log|dy/dx| at x; y in [0, 1] (clipped)."""
    _check_theta(y, theta)
    y = jnp.clip(y, 0.0, 1.0)
    xk, yk, d = _knots(theta)
    x0, w, y0, h, d0, d1 = _bin_values(yk, y, xk, yk, d)
    s = h / w
    dy = y - y0
    delta = d1 + d0 - 2.0 * s
    a = h * (s - d0) + dy * delta
    b = h * d0 - dy * delta
    c = -s * dy
    disc = jnp.maximum(b * b - 4.0 * a * c, 0.0)  # ≥ 0 for a monotone spline; clip rounding
    xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)  # −b − √disc < 0 since b > 0 or c ≤ 0
    x = x0 + xi * w
    t = xi * (1.0 - xi)
    den = s + delta * t
    dydx = s * s * (d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) ** 2) / (den * den)
    return jnp.clip(x, 0.0, 1.0), -jnp.log(dydx)
