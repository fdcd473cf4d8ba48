"""Stages and their composition (modelled on optax's ``GradientTransformation``).

A :class:`Stage` is two pure functions in an immutable object made by a factory
that closes over static configuration:

* ``init(key) -> params``: default parameters (a dict keyed by setting name, and
  network weights if any);
* ``apply(params, key, events) -> events``: the physics, jittable, fixed shapes.

:func:`chain` composes named stages into a stage; they run in the listed order,
each with the key ``fold_in(key, stable_id(name))`` so inserting a stage does not
reseed the others. A :class:`Generator` wraps a chain whose first stage creates
events from nothing; ``gen.sample(params, key, n)`` is jitted and compiles once
per ``n``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from diffgen.events import Events, Status
from diffgen.params import check_params

__all__ = ["Stage", "chain", "Generator", "stable_id"]

Params = Any


class Stage(NamedTuple):
    """A pure event-processing step: ``init(key) -> params``, ``apply(params, key, events) -> events``."""

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array, Events], Events]


def stable_id(name: str) -> int:
    """A stable 31-bit integer for a stage name (CRC-32), used with ``fold_in``."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def chain(*named_stages: tuple[str, Stage]) -> Stage:
    """Compose ``(name, stage)`` pairs into one stage; params are ``{name: stage_params}``.

    Example:
        >>> from diffgen.stage import Stage, chain
        >>> ident = Stage(init=lambda key: {}, apply=lambda p, k, ev: ev)
        >>> st = chain(("a", ident), ("b", ident))
        >>> st.init(None)
        {'a': {}, 'b': {}}
    """
    names = [n for n, _ in named_stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    for item in named_stages:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], Stage)):
            raise ValueError(f"chain expects (name, Stage) pairs, got {item!r}")

    def init(key):
        return {name: st.init(None if key is None else jax.random.fold_in(key, stable_id(name)))
                for name, st in named_stages}

    def apply(params, key, events):
        for name, st in named_stages:
            if name not in params:
                raise ValueError(f"params has no entry for stage {name!r}; it has {sorted(params)}")
            events = st.apply(params[name], jax.random.fold_in(key, stable_id(name)), events)
        return events

    return Stage(init=init, apply=apply)


#: events are indexed by uint32 (the per-event key is fold_in(key, index)): 2**32 events per key
MAX_EVENTS = 2**32


def _check_n(n, what: str = "number of events n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int,)) and not (hasattr(n, "__index__")):
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    n = int(n)
    if not 1 <= n <= MAX_EVENTS:
        raise ValueError(f"{what} must be a positive integer in [1, 2**32], got {n}")
    return n


def _check_offset(offset, n: int) -> None:
    """``offset + i`` indexes event i as uint32: it must not wrap round (that would repeat events)."""
    if isinstance(offset, jax.core.Tracer):
        return
    if isinstance(offset, bool) or not hasattr(offset, "__index__"):
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    if not 0 <= int(offset) <= MAX_EVENTS - n:
        raise ValueError(f"offset must be in [0, 2**32 - n] = [0, {MAX_EVENTS - n}] for n = {n} "
                         f"(event indices are uint32), got {int(offset)}")


def check_key(key) -> None:
    """Raise ``ValueError`` unless ``key`` is a JAX PRNG key."""
    if isinstance(key, jax.core.Tracer):
        return
    try:
        ok = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32 and key.shape == (2,))
    except AttributeError:
        ok = False
    if not ok:
        raise ValueError(
            f"key must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got {key!r}")


class Generator:
    """A stage that creates events from nothing, with jitted sampling.

    Attributes:
        stage: the composed :class:`Stage`.
        name: a label (e.g. ``"ee-mumu"``).
        capacity: particle slots of the events it produces (static).
        info: static metadata (process, flavours, √s default, …).
    """

    def __init__(self, stage: Stage, name: str = "generator", info: dict | None = None):
        self.stage = stage
        self.name = name
        self.info = dict(info or {})
        self._sample = jax.jit(self._sample_impl, static_argnums=2)
        self._sample_indices = jax.jit(self.apply_indices)

    def __repr__(self) -> str:
        return f"Generator({self.name!r})"

    def default_params(self) -> Params:
        """Physical defaults (Pythia 8.3 / Monash where Pythia has the parameter)."""
        return self.stage.init(jax.random.key(0))

    def _sample_impl(self, params, key, n, offset=0):
        # Event i (global index offset + i) always uses fold_in(key, offset + i): the events
        # do not depend on how the work is chunked or sharded. Stages are written for a batch;
        # here each runs on a batch of one under vmap, which XLA vectorises.
        idx = jnp.asarray(offset, jnp.uint32) + jnp.arange(n, dtype=jnp.uint32)
        return self.apply_indices(params, key, idx)

    def apply_indices(self, params, key, idx):
        """Events for the global indices ``idx`` (u32[N]): event i uses ``fold_in(key, idx[i])`` only."""
        def one(i):
            ev = self.stage.apply(params, jax.random.fold_in(key, i), Events.empty(1, 0))
            return jax.tree_util.tree_map(lambda a: a[0], ev)

        ev = jax.vmap(one)(idx)
        finite = jnp.isfinite(ev.log_weight) & jnp.all(jnp.isfinite(ev.p4), axis=(1, 2))
        return ev.with_status(~finite, Status.NONFINITE)

    def sample(self, params, key, n: int, offset: int = 0) -> Events:
        """Generate ``n`` weighted events. Jitted; one compilation per ``n`` and dtype.

        Event ``i`` uses the key ``fold_in(key, offset + i)``, so ``sample(p, k, 10)``
        equals the first ten events of ``sample(p, k, 1000)`` bit for bit, and
        ``offset`` lets chunks continue a sequence.

        Concrete parameters are validated first (``ValueError``); traced ones are
        flagged in ``Events.status``.
        """
        n = _check_n(n)
        _check_offset(offset, n)
        check_key(key)
        check_params(params)
        return self._sample(params, key, n, offset)

    def sample_traced(self, params, key, n: int, offset=0) -> Events:
        """Like :meth:`sample` without host-side validation, for use inside ``grad``/``jit``."""
        return self._sample_impl(params, key, n, offset)
