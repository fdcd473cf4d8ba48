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

:func:`axis_map` maps chosen coordinates by one-dimensional maps and leaves the others alone, as the
s- and t-channel mappings of a matrix-element generator do: :func:`cauchy` (the tan map above on one axis,
a Breit–Wigner resonance) and :func:`pole` (samples ∝ 1/(c + x) or 1/(c + 1 − x) exactly, for the
1/y soft and collinear poles of a QCD matrix element cut off at y_cut):
x = c[(1 + 1/c)^z − 1], dx/dz = ln(1 + 1/c) (c + x). A flow in front of such a map only has to learn the
smooth remainder of the integrand, so one channel can reach an unweighting efficiency that a flow on
the raw cube does not within a short training (benchmarks/RESULTS.md, *flows_vs_vegas*).

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

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.flows.flow import Flow
from diffgen.flows.sampler import Sampler

__all__ = ["ChannelMap", "Map1D", "peak_map", "identity_map", "axis_map", "cauchy", "pole", "pole_forward",
           "pole_inverse", "multichannel"]


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
    return axis_map(centre.size, {i: cauchy(c, w) for i, (c, w) in enumerate(zip(centre, width))})


class Map1D(NamedTuple):
    """A bijection of [0, 1] acting elementwise: ``forward(z) -> (x, log dx/dz)``, ``inverse(x) -> (z, log dz/dx)``."""

    forward: Callable
    inverse: Callable


def cauchy(centre: float, width: float) -> Map1D:
    """The tan (Breit–Wigner) map of one coordinate: density ∝ 1/((x − centre)² + width²) on [0, 1]."""
    centre, width = float(centre), float(width)
    if not (0.0 < centre < 1.0) or not math.isfinite(centre):
        raise ValueError(f"cauchy centre must be in (0, 1), got {centre}")
    if not (width > 0.0) or not math.isfinite(width):
        raise ValueError(f"cauchy width must be > 0, got {width}")
    r0, r1 = math.atan(-centre / width), math.atan((1.0 - centre) / width)
    log_scale = math.log((r1 - r0) * width)

    def forward(z):
        t = jnp.tan(r0 + z * (r1 - r0))
        return jnp.clip(centre + width * t, 0.0, 1.0), log_scale + jnp.log1p(t * t)

    def inverse(x):
        t = (x - centre) / width
        return jnp.clip((jnp.arctan(t) - r0) / (r1 - r0), 0.0, 1.0), -(log_scale + jnp.log1p(t * t))

    return Map1D(forward, inverse)


def pole_forward(z, offset):
    """d ∈ [0, 1] with density ∝ 1/(offset + d) from z ∈ [0, 1]; ``offset`` > 0 may be an array (e.g. depend on
    another coordinate, for a triangular map). Returns (d, log dd/dz)."""
    log_k = jnp.log1p(1.0 / offset)
    d = jnp.clip(offset * jnp.expm1(z * log_k), 0.0, 1.0)
    return d, jnp.log(log_k) + jnp.log(offset + d)


def pole_inverse(d, offset):
    """The inverse of :func:`pole_forward`: (z, log dz/dd)."""
    log_k = jnp.log1p(1.0 / offset)
    return jnp.clip(jnp.log1p(d / offset) / log_k, 0.0, 1.0), -(jnp.log(log_k) + jnp.log(offset + d))


def pole(offset: float, at: float = 0.0) -> Map1D:
    """Density ∝ 1/(offset + d) on [0, 1], d the distance from the end ``at`` (0 or 1): a 1/y pole cut off at
    ``offset`` > 0 (module docstring)."""
    c = float(offset)
    if not (c > 0.0) or not math.isfinite(c):
        raise ValueError(f"pole offset must be > 0, got {offset}")
    if at not in (0, 1):
        raise ValueError(f"pole end 'at' must be 0 or 1, got {at}")
    flip = at == 1

    def forward(z):
        d, ld = pole_forward(z, c)
        return (1.0 - d if flip else d), ld

    def inverse(x):
        return pole_inverse(jnp.clip(1.0 - x if flip else x, 0.0, 1.0), c)

    return Map1D(forward, inverse)


def axis_map(dim: int, maps) -> ChannelMap:
    """Map the coordinates named in ``maps`` (``{axis: Map1D}``, e.g. :func:`cauchy`, :func:`pole`) and leave the
    others of [0, 1]^dim as they are."""
    dim = check_int(dim, "axis_map dim", lo=1)
    maps = dict(maps)
    for axis, m in maps.items():
        if not isinstance(axis, int) or not (0 <= axis < dim):
            raise ValueError(f"axis_map axis must be an integer in [0, {dim - 1}], got {axis!r}")
        if not isinstance(m, Map1D):
            raise ValueError(f"axis_map needs Map1D values (cauchy, pole), got {m!r} for axis {axis}")

    def apply(which, v):
        cols = [v[:, i] for i in range(dim)]
        log_det = jnp.zeros(v.shape[0], v.dtype)
        for axis, m in maps.items():
            cols[axis], ld = getattr(m, which)(cols[axis])
            log_det = log_det + ld
        return jnp.stack(cols, axis=1), log_det

    return ChannelMap(dim, lambda z: apply("forward", z), lambda x: apply("inverse", x))


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
