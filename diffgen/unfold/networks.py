"""Small Flax networks for the classifiers: an MLP on event features and a Particle Flow Network.

A :class:`Network` is two pure functions (the optax/blackjax shape): ``init(key, x) -> weights`` and
``apply(weights, x, context=None) -> f[N, n_out]``. ``x`` is ``f[N, F]`` for :func:`mlp` and a
:class:`~diffgen.unfold.inputs.ParticleSet` for :func:`particle_flow`; ``context`` ``f[N, C]`` is an
optional per-event vector appended to the event-level input (the parameters θ of DCTR).

* :func:`mlp`: ``h = σ(W_k … σ(W_1 [x, c] + b_1) …)``, output ``W_out h + b_out``.
* :func:`particle_flow` (Komiske, Metodiev and Thaler's PFN, a Deep Set):
  ``F([Σ_j mask_j Φ(p_j), c])`` with per-particle network Φ and event network F; the masked sum
  makes it invariant under permutations of the particles and blind to padded slots.

:func:`standardise` / :class:`Standardiser` map features to zero mean and unit variance (weighted,
masked for particle sets) before a network sees them.

Example:
    >>> import jax, jax.numpy as jnp
    >>> net = mlp(hidden=(8,))
    >>> w = net.init(jax.random.key(0), jnp.zeros((4, 3)))
    >>> net.apply(w, jnp.ones((4, 3))).shape
    (4, 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.unfold.inputs import ParticleSet

__all__ = ["Network", "mlp", "particle_flow", "Standardiser", "standardiser", "standardise"]


class Network(NamedTuple):
    """``init(key, x, context=None) -> weights``; ``apply(weights, x, context=None) -> f[N, n_out]``."""

    init: Callable
    apply: Callable
    kind: str = "mlp"


def _check_layers(layers, name) -> tuple:
    layers = tuple(layers)
    for n in layers:
        check_int(n, f"{name} layer width", lo=1)
    return layers


class _Dense(nn.Module):
    widths: Sequence[int]
    n_out: int
    activate_last: bool = False

    @nn.compact
    def __call__(self, h):
        for width in self.widths:
            h = nn.gelu(nn.Dense(width)(h))
        h = nn.Dense(self.n_out)(h)
        return nn.gelu(h) if self.activate_last else h


class _PFN(nn.Module):
    phi: Sequence[int]
    latent: int
    f: Sequence[int]
    n_out: int

    @nn.compact
    def __call__(self, values, mask, context):
        per_particle = _Dense(self.phi, self.latent, activate_last=True)(values)  # [N, P, L]
        pooled = jnp.sum(jnp.where(mask[..., None], per_particle, 0.0), axis=1)  # [N, L]
        h = pooled if context is None else jnp.concatenate([pooled, context], axis=-1)
        return _Dense(self.f, self.n_out)(h)


def mlp(hidden=(64, 64), n_out: int = 1) -> Network:
    """A fully connected network on ``f[N, F]`` features (GELU activations).

    The same arguments return the same :class:`Network` object, so jitted training reuses its
    compilations across calls.
    """
    return _mlp(_check_layers(hidden, "hidden"), check_int(n_out, "n_out"))


@functools.lru_cache(maxsize=32)
def _mlp(hidden, n_out) -> Network:
    module = _Dense(hidden, n_out)

    def join(x, context):
        return x if context is None else jnp.concatenate([x, context], axis=-1)

    def init(key, x, context=None):
        return module.init(key, join(jnp.asarray(x), context))

    def apply(weights, x, context=None):
        return module.apply(weights, join(x, context))

    return Network(init, apply, "mlp")


def particle_flow(phi=(64, 64), latent: int = 32, f=(64, 64), n_out: int = 1) -> Network:
    """A Particle Flow Network (Deep Set) on a :class:`ParticleSet` ``(values f[N, P, F], mask bool[N, P])``.

    The same arguments return the same :class:`Network` object (shared compilations).
    """
    return _pfn(_check_layers(phi, "phi"), check_int(latent, "latent"), _check_layers(f, "f"),
                check_int(n_out, "n_out"))


@functools.lru_cache(maxsize=32)
def _pfn(phi, latent, f, n_out) -> Network:
    module = _PFN(phi, latent, f, n_out)

    def init(key, x, context=None):
        return module.init(key, jnp.asarray(x.values), jnp.asarray(x.mask), context)

    def apply(weights, x, context=None):
        return module.apply(weights, x.values, x.mask, context)

    return Network(init, apply, "particle_flow")


class Standardiser(NamedTuple):
    """Feature shift and scale: ``(x − shift) / scale`` (per feature column)."""

    shift: np.ndarray
    scale: np.ndarray


def standardiser(x, weights=None) -> Standardiser:
    """Weighted mean and standard deviation of each feature column (over occupied slots for sets).

    Constant columns get scale 1.
    """
    if isinstance(x, ParticleSet):
        vals = np.asarray(x.values, np.float64)[np.asarray(x.mask)]  # [M, F] occupied slots
        w = None if weights is None else np.broadcast_to(np.asarray(weights)[:, None], x.mask.shape)[x.mask]
    else:
        vals, w = np.asarray(x, np.float64), weights
    w = np.ones(vals.shape[0]) if w is None else np.abs(np.asarray(w, np.float64))
    if vals.shape[0] == 0 or w.sum() <= 0:
        return Standardiser(np.zeros(vals.shape[1], np.float32), np.ones(vals.shape[1], np.float32))
    mean = np.average(vals, axis=0, weights=w)
    std = np.sqrt(np.average((vals - mean) ** 2, axis=0, weights=w))
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return Standardiser(mean.astype(np.float32), std.astype(np.float32))


def standardise(x, s: Standardiser):
    """Apply a :class:`Standardiser` (padded particle slots stay 0). Traceable."""
    if isinstance(x, ParticleSet):
        vals = (x.values - s.shift) / s.scale
        return ParticleSet(jnp.where(x.mask[..., None], vals, 0.0), x.mask)
    return (x - s.shift) / s.scale
