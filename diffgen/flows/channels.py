"""Multi-channel sampling: a mixture of mapped flows for integrands with several peaks.

Channel c is a fixed bijection M_c of the cube (e.g. :func:`peak_map`, centred on a known peak or
resonance, as the s-channel mappings of a matrix-element generator) after its own flow F_c:
x = M_c(F_c(u)), with density q_c(x) = q_{F_c}(z) / |det ∂M_c/∂z| at z = M_c⁻¹(x). The mixture

    q(x) = Σ_c α_c q_c(x),        α = softmax(a),

is sampled by choosing c with probability α_c (one extra uniform per point) and its weight is
w = f(x) / q(x), which needs every channel's density at x (inverse passes). The channel weights α are
parameters: trained with the flows (``learn_weights=True``) or held fixed. Since q is one normalised
density, every estimator, loss and the unweighting treat a multi-channel sampler like any other.

:func:`peak_map` is a per-coordinate Cauchy (tan) mapping x = c + γ tan(ρ_0 + z(ρ_1 − ρ_0)), with
ρ_{0,1} = arctan((0 − c)/γ), arctan((1 − c)/γ), so dx/dz = (ρ_1 − ρ_0) γ (1 + tan²ρ): the Breit–Wigner
mapping of :mod:`diffgen.phasespace.breit_wigner` on the unit interval.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.flows import multichannel, peak_map, spline_flow
    >>> sampler = multichannel([(peak_map([0.3, 0.3], 0.1), spline_flow(2, bins=4, hidden=(8,))),
    ...                         (peak_map([0.7, 0.7], 0.1), spline_flow(2, bins=4, hidden=(8,)))])
    >>> params = sampler.init(jax.random.key(0))
    >>> x, log_q = sampler.sample(params, jax.random.uniform(jax.random.key(1), (5, 3)))
    >>> bool(jnp.allclose(log_q, sampler.log_prob(params, x), atol=1e-4))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.flows.flow import Flow
from diffgen.flows.sampler import Sampler

__all__ = ["ChannelMap", "peak_map", "identity_map", "multichannel"]


class ChannelMap(NamedTuple):
    """A fixed bijection of [0, 1]^dim: ``forward(z) -> (x, log|det ∂x/∂z|)``, ``inverse(x) -> (z, log|det ∂z/∂x|)``."""

    dim: int
    forward: Callable
    inverse: Callable


def identity_map(dim: int) -> ChannelMap:
    """x = z."""
    return ChannelMap(dim, lambda z: (z, jnp.zeros(z.shape[0], z.dtype)),
                      lambda x: (x, jnp.zeros(x.shape[0], x.dtype)))


def peak_map(centre, width) -> ChannelMap:
    """Per-coordinate tan mapping concentrating points around ``centre`` (f[dim] in (0, 1)) with scale
    ``width`` (> 0)."""
    centre = np.atleast_1d(np.asarray(centre, np.float64))
    width = np.broadcast_to(np.asarray(width, np.float64), centre.shape)
    if centre.ndim != 1 or np.any(~np.isfinite(centre)) or np.any((centre <= 0) | (centre >= 1)):
        raise ValueError(f"peak_map centre must be a vector with entries in (0, 1), got {centre.tolist()}")
    if np.any(~np.isfinite(width)) or np.any(width <= 0):
        raise ValueError(f"peak_map width must be > 0, got {width.tolist()}")
    rho0 = np.arctan((0.0 - centre) / width)
    rho1 = np.arctan((1.0 - centre) / width)

    def forward(z):
        c, g, r0, r1 = (jnp.asarray(a, z.dtype) for a in (centre, width, rho0, rho1))
        t = jnp.tan(r0 + z * (r1 - r0))
        x = jnp.clip(c + g * t, 0.0, 1.0)
        return x, jnp.sum(jnp.log((r1 - r0) * g) + jnp.log1p(t * t), axis=1)

    def inverse(x):
        c, g, r0, r1 = (jnp.asarray(a, x.dtype) for a in (centre, width, rho0, rho1))
        t = (x - c) / g
        z = jnp.clip((jnp.arctan(t) - r0) / (r1 - r0), 0.0, 1.0)
        return z, -jnp.sum(jnp.log((r1 - r0) * g) + jnp.log1p(t * t), axis=1)

    return ChannelMap(centre.size, forward, inverse)


def multichannel(channels, learn_weights: bool = True, weights=None) -> Sampler:
    """Mixture sampler over ``channels``, a sequence of ``(ChannelMap, Flow)`` pairs (see module docstring).

    ``weights``: initial channel weights α (default equal); ``learn_weights=False`` keeps them fixed.
    Params: ``{"flows": [flow params per channel], "logit": f[C]}`` (``logit`` is a constant when fixed).
    Uniforms per point: dim + 1 (the first chooses the channel).
    """
    channels = list(channels)
    if len(channels) < 1:
        raise ValueError("multichannel needs at least one (ChannelMap, Flow) channel")
    dim = channels[0][1].dim
    for i, (cmap, flow) in enumerate(channels):
        if not isinstance(cmap, ChannelMap) or not isinstance(flow, Flow):
            raise ValueError(f"channel {i} must be a (ChannelMap, Flow) pair, got {(cmap, flow)!r}")
        if cmap.dim != dim or flow.dim != dim:
            raise ValueError(f"channel {i} has dims (map {cmap.dim}, flow {flow.dim}); all must be {dim}")
    n_ch = len(channels)
    alpha0 = np.full(n_ch, 1.0 / n_ch) if weights is None else np.asarray(weights, np.float64)
    if alpha0.shape != (n_ch,) or np.any(~np.isfinite(alpha0)) or np.any(alpha0 <= 0):
        raise ValueError(f"channel weights must be {n_ch} positive numbers, got {np.asarray(weights).tolist()}")
    logit0 = np.log(alpha0 / alpha0.sum())

    def init(key):
        keys = jax.random.split(key, n_ch)
        return {"flows": [flow.init(k) for (_, flow), k in zip(channels, keys)],
                "logit": jnp.asarray(logit0, jnp.result_type(float))}

    def log_alpha(params):
        logit = params["logit"] if learn_weights else jax.lax.stop_gradient(params["logit"])
        return jax.nn.log_softmax(logit)

    def log_prob(params, x, cond=None):
        terms = []
        for (cmap, flow), fp in zip(channels, params["flows"]):
            z, ld_map = cmap.inverse(x)
            terms.append(flow.inverse(fp, z, cond)[1] + ld_map)
        return jax.scipy.special.logsumexp(jnp.stack(terms, axis=1) + log_alpha(params)[None, :], axis=1)

    def sample(params, u, cond=None):
        if u.ndim != 2 or u.shape[1] != dim + 1:
            raise ValueError(f"multichannel sampler needs uniforms of shape [N, {dim + 1}], got {u.shape}")
        cum = jnp.cumsum(jax.lax.stop_gradient(jnp.exp(log_alpha(params))))
        idx = jnp.clip(jnp.sum(u[:, :1] >= cum[None, :-1], axis=1), 0, n_ch - 1)
        x = jnp.zeros((u.shape[0], dim), u.dtype)
        for c, ((cmap, flow), fp) in enumerate(zip(channels, params["flows"])):
            xc = cmap.forward(flow.forward(fp, u[:, 1:], cond)[0])[0]
            x = jnp.where((idx == c)[:, None], xc, x)
        return x, log_prob(params, x, cond)

    return Sampler(dim, dim + 1, init, sample, log_prob)
