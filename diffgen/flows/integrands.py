"""Test integrands on the unit cube with exactly known integrals.

:func:`camel` is the two-peak "camel" of i-flow/VEGAS studies, normalised so that its integral over
[0, 1]^d is **exactly 1** in any dimension: f(x) = ½ [G(x; μ₁) + G(x; μ₂)] with μ₁ = 1/3, μ₂ = 2/3 in every
coordinate and G a product of normal densities of width s, each divided by its mass inside the unit interval,
Z(μ) = Φ((1 − μ)/s) − Φ(−μ/s). The default s = 0.1/√2 is the usual exp(−(x − μ)²/0.1²) shape.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.flows.integrands import camel
    >>> f = camel(1)
    >>> g = (jnp.arange(100_000) + 0.5) / 100_000
    >>> round(float(jnp.mean(f(g[:, None]))), 6)
    1.0
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import ndtr

from diffgen.checks import check_int

__all__ = ["camel"]


def camel(dim: int, width: float = 0.1 / math.sqrt(2.0), centres=(1.0 / 3.0, 2.0 / 3.0)):
    """``f(x[N, dim]) -> f[N]``: the normalised two-peak camel (module docstring); ∫f = 1 exactly."""
    dim = check_int(dim, "camel dim", lo=1)
    if not (0 < width < 1):
        raise ValueError(f"camel width must be in (0, 1), got {width}")
    if len(centres) != 2 or not all(0 < c < 1 for c in centres):
        raise ValueError(f"camel centres must be two numbers in (0, 1), got {centres}")

    def log_peak(x, mu):
        z = (x - mu) / width
        log_norm = math.log(width * math.sqrt(2.0 * math.pi)) + jnp.log(ndtr((1.0 - mu) / width) - ndtr(-mu / width))
        return jnp.sum(-0.5 * z * z - log_norm, axis=-1)

    def f(x):
        a = log_peak(x, centres[0])
        b = log_peak(x, centres[1])
        return 0.5 * (jnp.exp(a) + jnp.exp(b))

    return f
