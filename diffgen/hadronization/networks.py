"""Flax networks of the ML hadronization layer: the cluster-decay generator and the discriminators.

* :class:`ClusterDecayNet` ``(context f[..., F], noise f[..., D]) -> f[..., 2]``: an MLP whose last
  layer starts at zero, so that the untrained layer gives exactly isotropic cluster decays (the caller
  maps the two outputs (δ₁, δ₂) to cos θ* = tanh((logit u₁ + δ₁)/2) and φ* = 2π u₂ + δ₂).
* :class:`DeepSetsDiscriminator` ``(particles f[N, P, F], mask bool[N, P], event f[N, E]) -> f[N]``: a
  permutation-invariant event classifier (Zaheer et al. 2017; HADML v2, Chan et al.
  arXiv:2305.17169): ρ(mean_i φ(x_i), Σ_i φ(x_i)/20, event features), logits.
* :class:`ParticleDiscriminator` ``(particles f[N, P, F]) -> f[N, P]``: an MLP on single particles
  (the per-object discriminator used when the reference has no cluster record; see
  :mod:`diffgen.hadronization.train`).

Example:
    >>> import jax, jax.numpy as jnp
    >>> net = ClusterDecayNet(hidden=8, depth=2)
    >>> w = net.init(jax.random.key(0), jnp.zeros((3, 5)), jnp.zeros((3, 2)))
    >>> net.apply(w, jnp.ones((3, 5)), jnp.ones((3, 2))).tolist()  # zero last layer: isotropic at init
    [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["ClusterDecayNet", "DeepSetsDiscriminator", "ParticleDiscriminator", "MLP"]


class MLP(nn.Module):
    """``depth`` hidden layers of width ``hidden`` (SiLU), then a linear layer of width ``out``."""

    hidden: int
    depth: int
    out: int
    zero_last: bool = False

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.silu(nn.Dense(self.hidden)(x))
        init = nn.initializers.zeros if self.zero_last else nn.initializers.lecun_normal()
        return nn.Dense(self.out, kernel_init=init)(x)


class ClusterDecayNet(nn.Module):
    """Conditional generator of a cluster's decay angles: (context, noise) → (δ₁, δ₂), zero at init."""

    hidden: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, context, noise):
        x = jnp.concatenate([context, noise], axis=-1)
        return MLP(self.hidden, self.depth, 2, zero_last=True)(x)


class DeepSetsDiscriminator(nn.Module):
    """Permutation-invariant event discriminator: logits f[N] from a masked set of particles."""

    hidden: int = 64
    depth: int = 2
    latent: int = 32

    @nn.compact
    def __call__(self, particles, mask, event):
        phi = MLP(self.hidden, self.depth, self.latent)(particles)  # [N, P, L]
        m = mask[..., None].astype(phi.dtype)
        total = jnp.sum(phi * m, axis=1)
        count = jnp.maximum(jnp.sum(m, axis=1), 1.0)
        x = jnp.concatenate([total / count, total / 20.0, event], axis=-1)
        return MLP(self.hidden, self.depth, 1)(x)[..., 0]


class ParticleDiscriminator(nn.Module):
    """Per-particle discriminator: logits f[N, P]."""

    hidden: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, particles):
        return MLP(self.hidden, self.depth, 1)(particles)[..., 0]
