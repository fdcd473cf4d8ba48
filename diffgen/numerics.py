"""Gradient-safe elementary functions (the double-``where`` trick).

``jnp.sqrt(x)`` has an infinite derivative at ``x = 0`` and ``jnp.log(x)`` at
``x <= 0``; even when such a branch is discarded by ``jnp.where`` its NaN/inf
gradient leaks into the result (``0 * inf = nan``). Every function here first
replaces the unsafe inputs by a harmless value, evaluates, and then selects, so
values *and* gradients stay finite for massless, collinear, soft and padded
inputs (see jax-md ``safe_mask`` and the JAX FAQ on ``where``).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["safe_sqrt", "safe_log", "safe_div", "safe_norm", "safe_arctan2", "safe_arccos"]


def safe_sqrt(x, eps: float = 0.0):
    """√max(x, 0) with a zero (not infinite) gradient where ``x <= eps``."""
    ok = x > eps
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def safe_log(x, floor: float = -1e30):
    """log(x) for ``x > 0``; ``floor`` with a zero gradient elsewhere."""
    ok = x > 0
    return jnp.where(ok, jnp.log(jnp.where(ok, x, 1.0)), floor)


def safe_div(num, den, default: float = 0.0):
    """num / den, returning ``default`` (and zero gradient) where ``den == 0``."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), default)


def safe_norm(v, axis: int = -1, keepdims: bool = False):
    """Euclidean norm with a zero gradient at the zero vector."""
    return safe_sqrt(jnp.sum(v * v, axis=axis, keepdims=keepdims))


def safe_arctan2(y, x):
    """atan2(y, x) with value 0 and zero gradient at the origin."""
    ok = (x != 0) | (y != 0)
    return jnp.where(ok, jnp.arctan2(jnp.where(ok, y, 0.0), jnp.where(ok, x, 1.0)), 0.0)


def safe_arccos(x):
    """arccos of ``x`` clipped to [-1, 1], with finite gradient at ±1."""
    lim = 1.0 - 1e-7
    xc = jnp.clip(x, -lim, lim)
    return jnp.arccos(xc)
