"""Samplers: densities on [0, 1]^d that draw points from uniforms and evaluate their own log density.

A :class:`Sampler` is the phase-space mapping a process or an integrator uses:

* ``sample(params, u[N, n_uniforms], cond=None) -> (x[N, dim], log_q[N])`` — a deterministic, differentiable
  function of the uniforms u (the batching rule: event i's point depends on its own uniforms only), with
  log_q = log q(x) the density of x on the unit cube;
* ``log_prob(params, x[N, dim], cond=None) -> log_q[N]`` — the same density at any point (needed to train
  on stored samples and for multi-channel mixtures).

An integral is then ∫ f(x) dx = E_{x∼q}[f(x) / q(x)], and the event weight is w = f(x) · exp(−log_q).

:func:`flow_sampler` wraps a :class:`~diffgen.flows.Flow` (log_q = −log|det ∂x/∂u|); :func:`uniform_sampler`
is flat sampling (log_q = 0).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.flows import spline_flow, flow_sampler
    >>> sampler = flow_sampler(spline_flow(2, bins=4, hidden=(8,)))
    >>> params = sampler.init(jax.random.key(0))
    >>> x, log_q = sampler.sample(params, jnp.full((2, 2), 0.25))
    >>> x.shape, bool(jnp.allclose(log_q, sampler.log_prob(params, x), atol=1e-5))
    ((2, 2), True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

from diffgen.checks import check_int
from diffgen.flows.flow import Flow

__all__ = ["Sampler", "flow_sampler", "uniform_sampler"]


class Sampler(NamedTuple):
    """A density on [0, 1]^dim sampled from ``n_uniforms`` uniforms per point (see module docstring)."""

    dim: int
    n_uniforms: int
    init: Callable
    sample: Callable
    log_prob: Callable


def flow_sampler(flow: Flow, channel_map=None) -> Sampler:
    """x = F(u) for a flow F: log q(x) = −log|det ∂F/∂u| = log|det ∂F⁻¹/∂x|. With ``channel_map`` M (a fixed
    :class:`~diffgen.flows.ChannelMap`, e.g. :func:`~diffgen.flows.axis_map`), x = M(F(u)) and
    log q(x) = −log|det ∂F/∂u| − log|det ∂M/∂z|: the flow learns what the map leaves."""
    if not isinstance(flow, Flow):
        raise ValueError(f"flow_sampler needs a Flow (diffgen.flows.spline_flow), got {flow!r}")
    if channel_map is not None:
        from diffgen.flows.channels import ChannelMap

        if not isinstance(channel_map, ChannelMap) or channel_map.dim != flow.dim:
            raise ValueError(f"flow_sampler channel_map must be a ChannelMap of dim {flow.dim}, got {channel_map!r}")

    def sample(params, u, cond=None):
        z, log_det = flow.forward(params, u, cond)
        if channel_map is None:
            return z, -log_det
        x, ld_map = channel_map.forward(z)
        return x, -log_det - ld_map

    def log_prob(params, x, cond=None):
        if channel_map is None:
            return flow.inverse(params, x, cond)[1]
        z, ld_map = channel_map.inverse(x)
        return flow.inverse(params, z, cond)[1] + ld_map

    return Sampler(flow.dim, flow.dim, flow.init, sample, log_prob)


def uniform_sampler(dim: int) -> Sampler:
    """Flat sampling, x = u and q = 1 (no parameters)."""
    dim = check_int(dim, "sampler dim", lo=1)

    def sample(params, u, cond=None):
        return u, jnp.zeros(u.shape[0], u.dtype)

    def log_prob(params, x, cond=None):
        return jnp.zeros(x.shape[0], x.dtype)

    return Sampler(dim, dim, lambda key: {}, sample, log_prob)
