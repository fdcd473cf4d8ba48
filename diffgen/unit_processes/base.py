"""Processes as functions of a point of the unit cube, and their stages with any sampler (flat or a flow).

A :class:`UnitProcess` maps x ∈ [0, 1]^dim to events whose ``log_weight`` is the log of the weight in pb
*for flat x*: w(x) = |M|² × flux × phase-space Jacobian, so σ = ∫ w(x) dx. :func:`integrand` is that weight
as a function ``f(x[N, dim]) -> f[N]`` (0 for flagged events), the input of :func:`diffgen.flows.train` and of
VEGAS. :func:`as_stage` makes the hard-process stage: per event it draws ``sampler.n_uniforms`` uniforms from
its own key, maps them to x with density q(x) and adds −log q(x), so E[w] = σ for any sampler q.

Example:
    >>> import jax
    >>> from diffgen.stage import Generator, chain
    >>> from diffgen.unit_processes import as_stage, z_line_shape
    >>> gen = Generator(chain(("hard", as_stage(z_line_shape()))), name="z-line-shape")
    >>> ev = gen.sample(gen.default_params(), jax.random.key(0), 100)
    >>> ev.p4.shape
    (100, 2, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

from diffgen.flows.sampler import Sampler, uniform_sampler
from diffgen.numerics import safe_sqrt
from diffgen.params import SETTINGS
from diffgen.stage import Stage, uniforms

__all__ = ["UnitProcess", "integrand", "as_stage", "default_settings", "ee_beams", "direction"]


class UnitProcess(NamedTuple):
    """``init(key) -> params`` (settings by Pythia-style name), ``events(params, x[N, dim]) -> Events``;
    ``mapping(params) -> ChannelMap`` (or None): the fixed map of the cube onto the process's known structures
    (a resonance's Breit–Wigner, the soft and collinear poles), built from concrete parameter values, to put
    after a flow (``flow_sampler(flow, process.mapping(params))``) so that the flow learns only the rest."""

    name: str
    dim: int
    init: Callable
    events: Callable
    mapping: Callable | None = None


def default_settings(names, sqrt_s=None) -> dict:
    """The settings ``names`` at their defaults (float arrays), with ``Beams:eCM`` = ``sqrt_s`` when given: the
    ``init`` of a unit process."""
    p = {name: jnp.asarray(SETTINGS[name].default, jnp.result_type(float)) for name in names}
    if sqrt_s is not None:
        p["Beams:eCM"] = jnp.asarray(sqrt_s, jnp.result_type(float))
    return p


def ee_beams(e_cm, n: int):
    """``p4_in`` f[n, 2, 4] of e- along +z and e+ along −z at √s = ``e_cm`` (a number or f[n])."""
    half = jnp.broadcast_to(0.5 * e_cm, (n,))[:, None]
    zero = jnp.zeros_like(half)
    return jnp.stack([jnp.concatenate([half, zero, zero, half], 1), jnp.concatenate([half, zero, zero, -half], 1)], 1)


def direction(cos_t, phi):
    """Unit 3-vectors f[N, 3] at polar cosine ``cos_t`` and azimuth ``phi`` (gradient-safe at |cos θ| = 1)."""
    sin_t = safe_sqrt(1.0 - cos_t * cos_t)
    return jnp.stack([sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t], axis=-1)


def integrand(process: UnitProcess, params) -> Callable:
    """``f(x) = w(x)`` in pb for flat x (0 where the event is flagged); ∫ f = σ."""

    def f(x):
        ev = process.events(params, x)
        return jnp.where(ev.status == 0, jnp.exp(ev.log_weight), 0.0)

    return f


def as_stage(process: UnitProcess, sampler: Sampler | None = None) -> Stage:
    """The hard-process stage of ``process`` sampled by ``sampler`` (default flat); its params are the
    process's settings plus ``"sampler"`` (the flow weights, trained with :func:`diffgen.flows.train` on
    :func:`integrand`)."""
    sampler = uniform_sampler(process.dim) if sampler is None else sampler
    if not isinstance(sampler, Sampler) or sampler.dim != process.dim:
        raise ValueError(f"{process.name} needs a Sampler of dim {process.dim}, got {sampler!r}")

    def init(key):
        return {**process.init(key), "sampler": sampler.init(key)}

    def apply(params, keys, events):
        u = uniforms(keys, (sampler.n_uniforms,))
        x, log_q = sampler.sample(params["sampler"], u)
        ev = process.events(params, x)
        return ev.replace(log_weight=ev.log_weight - log_q + events.log_weight)

    return Stage(init=init, apply=apply)
