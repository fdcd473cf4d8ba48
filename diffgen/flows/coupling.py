"""Masked coupling layers with rational-quadratic-spline transforms (Dinh et al.; Durkan et al.; i-flow).

A coupling layer splits the coordinates by a static boolean mask m: the coordinates with m = False pass
through unchanged and, together with an optional condition c (e.g. physics parameters θ), feed a
conditioner network NN that outputs the spline parameters of the coordinates with m = True:

    x_A = u_A,   x_B = S_{NN(u_A, c)}(u_B),   log|det ∂x/∂u| = Σ_{i∈B} log S'(u_i).

The Jacobian is triangular, so the log-determinant is exact. The conditioner's last layer starts at zero,
so a new layer is the identity (spline parameters 0, see :mod:`diffgen.flows.spline`).

:func:`binary_masks` gives i-flow's masks: for dimension d, bit b of the coordinate index and its complement,
for each of ⌈log2 d⌉ bits, so every pair of coordinates is split by at least one layer.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.flows.coupling import binary_masks
    >>> [m.astype(int).tolist() for m in binary_masks(3)]
    [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from diffgen.flows.spline import n_spline_params, rq_spline_forward, rq_spline_inverse

__all__ = ["binary_masks", "Conditioner", "CouplingLayer", "coupling_layer"]


def binary_masks(dim: int) -> list[np.ndarray]:
    """i-flow's masks for ``dim`` ≥ 2 coordinates: bit b of the index, then its complement, b < ⌈log2 dim⌉."""
    if dim < 2:
        raise ValueError(f"coupling masks need dim >= 2 coordinates, got {dim}")
    idx = np.arange(dim)
    masks = []
    for b in range(math.ceil(math.log2(dim))):
        m = ((idx >> b) & 1) == 0
        masks += [m, ~m]
    return masks


class Conditioner(nn.Module):
    """MLP from (passive coordinates, condition) to spline parameters f[N, n_out]; last layer zero."""

    hidden: Sequence[int]
    n_out: int

    @nn.compact
    def __call__(self, z):
        for width in self.hidden:
            z = nn.gelu(nn.Dense(width)(z))
        return nn.Dense(self.n_out, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(z)


class CouplingLayer(NamedTuple):
    """One coupling layer: ``init(key) -> params``,
    ``forward``/``inverse(params, z[N, d], cond) -> (z', log_det[N])``."""

    init: callable
    forward: callable
    inverse: callable


def coupling_layer(mask, bins: int, hidden: Sequence[int], cond_dim: int = 0) -> CouplingLayer:
    """A spline coupling layer transforming the coordinates where ``mask`` is True (see module docstring)."""
    mask = np.asarray(mask, bool)
    active = np.flatnonzero(mask)
    passive = np.flatnonzero(~mask)
    if active.size == 0:
        raise ValueError(f"coupling mask {mask.astype(int).tolist()} transforms no coordinate")
    n_par = n_spline_params(bins)
    net = Conditioner(tuple(hidden), active.size * n_par)
    n_in = passive.size + cond_dim

    def features(z, cond):
        parts = [z[:, passive]]
        if cond_dim:
            parts.append(jnp.broadcast_to(cond, (z.shape[0], cond_dim)))
        if n_in == 0:  # nothing to condition on (one coordinate, no condition): learned constant spline
            parts = [jnp.ones((z.shape[0], 1), z.dtype)]
        return jnp.concatenate(parts, axis=1)

    def init(key):
        return net.init(key, jnp.zeros((1, max(n_in, 1))))

    def run(params, z, cond, transform):
        theta = net.apply(params, features(z, cond)).reshape(z.shape[0], active.size, n_par)
        za, log_det = transform(z[:, active], theta)
        return z.at[:, active].set(za), jnp.sum(log_det, axis=1)

    return CouplingLayer(init=init,
                         forward=lambda p, z, cond=None: run(p, z, cond, rq_spline_forward),
                         inverse=lambda p, z, cond=None: run(p, z, cond, rq_spline_inverse))
