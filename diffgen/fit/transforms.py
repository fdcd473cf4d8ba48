"""Parameter bounds by a smooth bijection, not by clipping.

A fit works in unconstrained coordinates φ ∈ ℝ^k; the physical parameters are

    θ_j = lo_j + (hi_j − lo_j) · sigmoid(φ_j),      φ_j = logit((θ_j − lo_j)/(hi_j − lo_j)),

so every step of an optimiser lands strictly inside (lo_j, hi_j) and gradients never vanish at a
clipped boundary. The Jacobian is diagonal, dθ_j/dφ_j = (hi_j − lo_j) s_j (1 − s_j) with
s_j = sigmoid(φ_j). Bounds default to the physical range of each setting in
:data:`diffgen.params.SETTINGS`; user bounds must lie inside it (``ValueError`` otherwise).

Example:
    >>> from diffgen.fit.transforms import bounded_transform
    >>> t = bounded_transform(["23:m0"], {"23:m0": (90.0, 92.0)})
    >>> phi = t.inverse({"23:m0": 91.5})
    >>> round(float(t.forward(phi)[0]), 4)
    91.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.params import SETTINGS, range_text, unknown_setting_message

__all__ = ["BoundedTransform", "bounded_transform", "resolve_bounds", "check_free"]


def check_free(free) -> tuple[str, ...]:
    """Validate a list of free setting names (non-empty, unique, known, continuous)."""
    if isinstance(free, str) or not isinstance(free, Sequence):
        raise ValueError(f"free must be a list of setting names, got {free!r}")
    names = tuple(free)
    if not names:
        raise ValueError("free must name at least one setting to fit")
    for name in names:
        if name not in SETTINGS:
            raise ValueError(f"free parameter: {unknown_setting_message(name)}")
        if SETTINGS[name].integer:
            raise ValueError(f"free parameter {name!r} is an integer setting and cannot be fitted by gradients")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"free parameters must be unique; repeated: {dup}")
    return names


def resolve_bounds(free, bounds: Mapping[str, Sequence[float]] | None = None) -> dict[str, tuple[float, float]]:
    """``{name: (lo, hi)}`` for every free setting: the user's bounds, or the physical range.

    ``ValueError`` naming the setting if a bound is not a pair of finite numbers with lo < hi, lies
    outside the physical range, or names a setting that is not free.
    """
    names = check_free(free)
    bounds = {} if bounds is None else bounds
    if not isinstance(bounds, Mapping):
        raise ValueError(f"bounds must map setting names to (lo, hi), got {bounds!r}")
    for key in bounds:
        if key not in names:
            raise ValueError(f"bounds given for {key!r}, which is not a free parameter; free: {list(names)}")
    out = {}
    for name in names:
        spec = SETTINGS[name]
        if name not in bounds:
            out[name] = (float(spec.lo), float(spec.hi))
            continue
        b = bounds[name]
        try:
            lo, hi = (float(v) for v in b)
        except (TypeError, ValueError):
            raise ValueError(f"bounds for {name!r} must be a pair (lo, hi) of numbers, got {b!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise ValueError(f"bounds for {name!r} must be finite with lo < hi, got ({lo}, {hi})")
        if lo < spec.lo or hi > spec.hi:
            raise ValueError(f"bounds ({lo:g}, {hi:g}) for {name!r} lie outside its physical range "
                             f"{range_text(spec)}")
        out[name] = (lo, hi)
    return out


def _sigmoid_host(phi) -> np.ndarray:
    """1 / (1 + exp(−φ)) in float64 without overflow for large |φ|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(phi, float)))


class BoundedTransform(NamedTuple):
    """θ = lo + (hi − lo) sigmoid(φ) for the settings ``names`` (vectors in that order)."""

    names: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray

    def forward(self, phi):
        """θ f[k] from φ f[k] (jittable, differentiable)."""
        phi = jnp.asarray(phi)
        lo, hi = jnp.asarray(self.lo, phi.dtype), jnp.asarray(self.hi, phi.dtype)
        return lo + (hi - lo) * jax.nn.sigmoid(phi)

    def jacobian(self, phi):
        """dθ/dφ, the diagonal f[k] of the (diagonal) Jacobian."""
        phi = jnp.asarray(phi)
        s = jax.nn.sigmoid(phi)
        return jnp.asarray(self.hi - self.lo, phi.dtype) * s * (1.0 - s)

    def forward_host(self, phi) -> np.ndarray:
        """θ from φ in float64 NumPy on the host, for φ f[k] or a stack f[..., k] of them.

        The same map as :meth:`forward`, written as ``(1 + tanh(φ/2))/2`` so that it does not
        overflow when a fit runs to a bound (|φ| large).
        """
        return self.lo + (self.hi - self.lo) * _sigmoid_host(phi)

    def jacobian_host(self, phi) -> np.ndarray:
        """dθ/dφ in float64 NumPy on the host (:meth:`jacobian` without tracing)."""
        s = _sigmoid_host(phi)
        return (self.hi - self.lo) * s * (1.0 - s)

    def forward_and_log_det(self, phi):
        """(θ, log |det dθ/dφ|)."""
        return self.forward(phi), jnp.sum(jnp.log(self.jacobian(phi)))

    def inverse(self, theta):
        """φ from θ, given as f[k] or ``{name: value}``; concrete θ must lie strictly inside the bounds."""
        if isinstance(theta, Mapping):
            missing = [n for n in self.names if n not in theta]
            if missing:
                raise ValueError(f"inverse needs values for {missing}")
            theta = [theta[n] for n in self.names]
        dtype = jnp.result_type(float)
        th = jnp.asarray(jnp.stack([jnp.asarray(t, dtype) for t in theta]) if isinstance(theta, (list, tuple))
                         else theta, dtype)
        if not isinstance(th, jax.core.Tracer):
            v = np.asarray(th, float)
            for name, x, lo, hi in zip(self.names, v, self.lo, self.hi):
                if not lo < x < hi:
                    raise ValueError(f"{name!r} = {x:g} is not strictly inside its fit bounds ({lo:g}, {hi:g}); "
                                     "the start value must lie inside the bounds")
            u = (v - self.lo) / (self.hi - self.lo)
            return jnp.asarray(np.log(u) - np.log1p(-u), dtype)
        u = (th - jnp.asarray(self.lo, dtype)) / jnp.asarray(self.hi - self.lo, dtype)
        return jnp.log(u) - jnp.log1p(-u)

    def to_settings(self, phi) -> dict:
        """``{name: θ_j}`` from φ (values stay traced inside jit/grad)."""
        theta = self.forward(phi)
        return {n: theta[j] for j, n in enumerate(self.names)}


def bounded_transform(free, bounds: Mapping[str, Sequence[float]] | None = None) -> BoundedTransform:
    """The :class:`BoundedTransform` for ``free`` with :func:`resolve_bounds` (``ValueError`` on bad input)."""
    b = resolve_bounds(free, bounds)
    names = tuple(b)
    return BoundedTransform(names, np.asarray([b[n][0] for n in names]), np.asarray([b[n][1] for n in names]))
