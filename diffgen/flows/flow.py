"""A normalizing flow on the unit hypercube: a stack of spline coupling layers.

``spline_flow(dim, ...)`` returns a :class:`Flow` whose ``forward(params, u[N, d], cond) -> (x, log_det)``
maps u ∈ [0, 1]^d to x ∈ [0, 1]^d with log_det = log|det ∂x/∂u| (exact: a sum over triangular layers), and
``inverse(params, x, cond) -> (u, log_det_inverse)`` with log_det_inverse = −log_det at the same point.
If u is uniform, x has the density q(x) = exp(log_det_inverse(x)) = 1 / |det ∂x/∂u|, so an integral over
the cube is ∫ f(x) dx = E_u[f(x(u)) |det ∂x/∂u|] = E_{x∼q}[f(x)/q(x)].

At initialisation every layer is the identity, so a new flow samples flat. ``cond`` (f[N, cond_dim] or
f[cond_dim]) conditions every layer's network, e.g. on physics parameters θ.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.flows import spline_flow
    >>> flow = spline_flow(3, bins=8, hidden=(16,))
    >>> params = flow.init(jax.random.key(0))
    >>> u = jax.random.uniform(jax.random.key(1), (4, 3))
    >>> x, log_det = flow.forward(params, u)
    >>> bool(jnp.allclose(x, u, atol=1e-6)), bool(jnp.allclose(log_det, 0.0, atol=1e-5))
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.flows.coupling import binary_masks, coupling_layer

__all__ = ["Flow", "spline_flow"]


class Flow(NamedTuple):
    """A bijection of [0, 1]^dim with exact log-Jacobian (see module docstring). Static fields: dim, cond_dim."""

    dim: int
    cond_dim: int
    init: Callable
    forward: Callable
    inverse: Callable


def spline_flow(dim: int, bins: int = 16, hidden: Sequence[int] = (32, 32), layers: int | None = None,
                cond_dim: int = 0) -> Flow:
    """Rational-quadratic-spline coupling flow on [0, 1]^dim (i-flow masks; identity at init).

    Args:
        dim: number of coordinates, ≥ 1 (dim = 1: one learned spline, conditioned on ``cond`` if given).
        bins: spline bins K per coordinate, ≥ 2.
        hidden: widths of the conditioner MLP's hidden layers (each ≥ 1).
        layers: number of coupling layers (default: the 2⌈log2 dim⌉ binary masks, at least 2); more cycle the masks.
        cond_dim: size of the optional condition vector (0: unconditional).
    """
    dim = check_int(dim, "flow dim", lo=1)
    bins = check_int(bins, "spline bins", lo=2)
    cond_dim = check_int(cond_dim, "cond_dim", lo=0)
    hidden = tuple(check_int(h, "hidden layer width", lo=1) for h in hidden)
    masks = binary_masks(dim) if dim >= 2 else [np.ones(1, bool)]
    if dim >= 2 and len(masks) < 2:
        masks = masks * 2
    n_layers = max(len(masks), 2 if dim >= 2 else 1) if layers is None else check_int(layers, "layers", lo=1)
    stack = [coupling_layer(masks[i % len(masks)], bins, hidden, cond_dim) for i in range(n_layers)]

    def check_shape(z):
        if z.ndim != 2 or z.shape[1] != dim:
            raise ValueError(f"flow input must have shape [N, {dim}], got {z.shape}")

    def init(key):
        keys = jax.random.split(key, n_layers)
        return {f"layer_{i}": layer.init(k) for i, (layer, k) in enumerate(zip(stack, keys))}

    def forward(params, u, cond=None):
        check_shape(u)
        log_det = jnp.zeros(u.shape[0], u.dtype)
        for i, layer in enumerate(stack):
            u, ld = layer.forward(params[f"layer_{i}"], u, cond)
            log_det = log_det + ld
        return u, log_det

    def inverse(params, x, cond=None):
        check_shape(x)
        log_det = jnp.zeros(x.shape[0], x.dtype)
        for i in reversed(range(n_layers)):
            x, ld = stack[i].inverse(params[f"layer_{i}"], x, cond)
            log_det = log_det + ld
        return x, log_det

    return Flow(dim=dim, cond_dim=cond_dim, init=init, forward=forward, inverse=inverse)
