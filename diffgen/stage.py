"""Stages, their composition, and generators (modelled on optax's ``GradientTransformation``).

The batching rule
-----------------
**A stage is written for a batch, and nothing vmaps it again.** ``apply(params, keys, events)``
receives ``N`` events and ``keys``, a typed PRNG key array of shape ``[N]``: event ``i`` draws its
random numbers from ``keys[i]`` only (a stage may ``vmap`` its own per-event helpers inside, as an
implementation detail, but no caller vmaps a stage). This is what lets a stage schedule
variable-length work over the batch (:mod:`diffgen.schedule`) and still give every event the same
result whatever the batch it is in. A scalar key is accepted for convenience and turned into
``fold_in(key, i)`` for event ``i`` (:func:`event_keys`).

A :class:`Stage` is two pure functions in an immutable object made by a factory that closes over
static configuration:

* ``init(key) -> params``: default parameters (a dict keyed by setting name, and network weights);
* ``apply(params, keys, events) -> events``: the physics, jittable, fixed shapes.

:func:`chain` composes named stages; they run in the listed order, each with the per-event keys
``fold_in(keys[i], stable_id(name))`` so inserting a stage does not reseed the others.

A :class:`Generator` is a small value: a chain whose first stage creates events from nothing, plus
static information. The public functions built on it (also available as methods) are

* :func:`apply_indices` ``(gen, params, key, idx)``: the events of global indices ``idx`` — event
  ``idx[i]`` depends only on ``fold_in(key, idx[i])``; pure and traceable;
* :func:`sample` ``(gen, params, key, n, offset=0)``: validated, jitted, run in fixed-size blocks
  (so a new ``n`` does not recompile the chain) and sharded over the local devices;
* :func:`sample_traced`: the same without host-side checks or blocking, for ``grad``/``jit``;
* :func:`diffgen.generate` (in :mod:`diffgen.generate`): many events in chunks, bounded memory.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.events import Events, Status
from diffgen.params import check_params

__all__ = ["Stage", "chain", "Generator", "stable_id", "event_keys", "apply_indices", "sample", "sample_traced",
           "block_plan", "diagnose", "check_key", "check_n", "check_offset", "uniforms", "normals", "fold_keys",
           "MAX_EVENTS", "DEFAULT_BLOCK"]

Params = Any

#: events are indexed by uint32 (the per-event key is fold_in(key, index)): 2**32 events per key
MAX_EVENTS = 2**32
#: events per compiled block of :func:`sample` / :func:`diffgen.generate` (smaller n: the next power of two ≥ 64)
DEFAULT_BLOCK = 2048
_MIN_BLOCK = 64


class Stage(NamedTuple):
    """A pure event-processing step: ``init(key) -> params``, ``apply(params, keys, events) -> events``.

    ``diagnose`` (optional) is the one route for diagnostics: ``(params, keys, events) -> (events, info)``
    with the same events as ``apply`` and a dict of device arrays (e.g. work per event and the
    scheduler's :class:`~diffgen.schedule.PoolStats`). :func:`chain` composes it and :func:`diagnose`
    runs it for a generator.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array, Events], Events]
    diagnose: Callable | None = None
    #: for a :func:`chain`, its ``(name, stage)`` pairs in order (empty otherwise): lets
    #: :func:`diffgen.expect.sample_replicated` run a chain in two parts (variance reduction, issue 17)
    parts: tuple = ()


def stable_id(name: str) -> int:
    """A stable 31-bit integer for a stage name (CRC-32), used with ``fold_in``."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _as_typed(key):
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)  # raw uint32 key data (jax.random.PRNGKey)


def event_keys(key, n: int):
    """Per-event keys ``[n]`` for a stage: ``key`` itself if it already is a key array of shape ``[n]``,
    otherwise ``fold_in(key, i)`` for event ``i`` (a single key)."""
    key = _as_typed(key)
    if key.shape == (n,):
        return key
    if key.shape != ():
        raise ValueError(f"a stage needs one key or a key array of shape ({n},) for {n} events, got shape {key.shape}")
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n, dtype=jnp.uint32))


def fold_keys(keys, data: int):
    """``fold_in(keys[i], data)`` for every event key."""
    return jax.vmap(jax.random.fold_in, (0, None))(keys, data)


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

    def run(params, keys, events, with_info):
        keys = event_keys(keys, events.n_events)
        info = {}
        for name, st in named_stages:
            if name not in params:
                raise ValueError(f"params has no entry for stage {name!r}; it has {sorted(params)}")
            k = fold_keys(keys, stable_id(name))
            if with_info and st.diagnose is not None:
                events, info[name] = st.diagnose(params[name], k, events)
            else:
                events = st.apply(params[name], k, events)
        return (events, info) if with_info else events

    return Stage(init=init, apply=lambda p, k, ev: run(p, k, ev, False),
                 diagnose=lambda p, k, ev: run(p, k, ev, True), parts=tuple(named_stages))


def check_n(n, what: str = "number of events n") -> int:
    """A number of events: an integer in [1, 2**32] (``ValueError`` otherwise)."""
    if not isinstance(n, (int, np.integer)) and hasattr(n, "__index__") and not isinstance(n, bool):
        n = int(n.__index__())
    return check_int(n, what, lo=1, hi=MAX_EVENTS)


def check_offset(offset, n: int) -> None:
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
        ok = (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()) or (
            key.dtype == jnp.uint32 and key.shape == (2,))
    except AttributeError:
        ok = False
    if not ok:
        raise ValueError(
            f"key must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got {key!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
    """A chain that creates events from nothing, plus static information (a small value).

    Attributes:
        stage: the composed :class:`Stage`.
        name: a label (e.g. ``"ee-mumu"``).
        info: static metadata (process, flavours, √s default, …).
        block: events per compiled block of :func:`sample` (static; default :data:`DEFAULT_BLOCK`).

    Generators compare and hash by identity: jitted functions take them as a static argument.
    """

    stage: Stage
    name: str = "generator"
    info: dict = dataclasses.field(default_factory=dict)
    block: int = DEFAULT_BLOCK

    def __post_init__(self):
        if not isinstance(self.stage, Stage):
            raise ValueError(f"Generator needs a Stage, got {self.stage!r}")
        object.__setattr__(self, "info", dict(self.info or {}))
        object.__setattr__(self, "block", check_int(self.block, "block (events per compiled block)", lo=1))

    def __repr__(self) -> str:
        return f"Generator({self.name!r})"

    def default_params(self) -> Params:
        """Physical defaults (Pythia 8.3 / Monash where Pythia has the parameter)."""
        return self.stage.init(jax.random.key(0))

    def apply_indices(self, params, key, idx) -> Events:
        """See :func:`apply_indices`."""
        return apply_indices(self, params, key, idx)

    def sample(self, params, key, n: int, offset: int = 0) -> Events:
        """See :func:`sample`."""
        return sample(self, params, key, n, offset)

    def sample_traced(self, params, key, n: int, offset=0) -> Events:
        """See :func:`sample_traced`."""
        return sample_traced(self, params, key, n, offset)


def apply_indices(gen: Generator, params, key, idx) -> Events:
    """The events of global indices ``idx`` (u32[N]): event ``idx[i]`` depends only on ``fold_in(key, idx[i])``.

    Pure and traceable (no host-side checks); the building block of :func:`sample` and
    :func:`diffgen.generate`, and of multi-process generation (each process its own index range).
    """
    idx = jnp.asarray(idx, jnp.uint32)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(_as_typed(key), idx)
    ev = gen.stage.apply(params, keys, Events.empty(idx.shape[0], 0))
    finite = jnp.isfinite(ev.log_weight) & jnp.all(jnp.isfinite(ev.p4), axis=(1, 2))
    return ev.with_status(~finite, Status.NONFINITE)


def diagnose(gen: Generator, params, key, n: int, offset: int = 0):
    """``(events, info)`` for events ``offset .. offset + n − 1`` (one jitted call, no blocking): the events
    equal :func:`sample`'s and ``info`` maps stage names to their diagnostics (see :class:`Stage`)."""
    n = check_n(n)
    check_offset(offset, n)
    check_key(key)
    check_params(params)
    return _diagnose_jit(gen, params, key, jnp.asarray(offset, jnp.uint32) + jnp.arange(n, dtype=jnp.uint32))


@functools.partial(jax.jit, static_argnums=0)
def _diagnose_jit(gen, params, key, idx):
    keys = jax.vmap(jax.random.fold_in, (None, 0))(_as_typed(key), idx)
    if gen.stage.diagnose is None:
        return gen.stage.apply(params, keys, Events.empty(idx.shape[0], 0)), {}
    return gen.stage.diagnose(params, keys, Events.empty(idx.shape[0], 0))


def block_plan(n: int, block: int) -> tuple[int, int]:
    """(block size, number of blocks) that cover ``n`` events: ``n ≤ block`` runs one block of the next
    power of two ≥ max(n, 64) (capped at ``block``); larger ``n`` runs ``ceil(n / block)`` full blocks.
    Padded events are generated and dropped, so the compiled shapes are few and fixed."""
    if n <= block:
        size = min(block, max(_MIN_BLOCK, 1 << (int(n) - 1).bit_length()))
        return size, 1
    return block, -(-n // block)


@functools.lru_cache(maxsize=64)
def _block_runner(gen: Generator, n_dev: int):
    """A jitted ``(params, key, idx[B]) -> Events`` over the first ``n_dev`` local devices (event axis sharded)."""
    fn = functools.partial(apply_indices, gen)
    if n_dev <= 1:
        return jax.jit(fn)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(jax.local_devices()[:n_dev]), ("events",))
    spec = PartitionSpec("events")
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(), spec), out_specs=spec,
                           check_vma=False)  # per-device work is independent: no collectives
    jitted = jax.jit(mapped)
    sharding = NamedSharding(mesh, spec)

    def run(params, key, idx):
        return jitted(params, key, jax.device_put(idx, sharding))

    return run


def devices_for(block: int, devices=None) -> int:
    """How many local devices a block of ``block`` events is sharded over: all local devices (or
    ``devices``, a count) that divide the block evenly."""
    n_dev = jax.local_device_count() if devices is None else int(devices)
    while n_dev > 1 and block % n_dev:
        n_dev -= 1
    return max(n_dev, 1)


def run_blocks(gen: Generator, params, key, start: int, count: int, devices=None, to_host: bool = False):
    """Yield ``(Events, size)`` for events ``start .. start + count − 1`` in fixed blocks (see :func:`block_plan`);
    the padding of the last block is cut. Internal building block of :func:`sample` and ``generate``."""
    size, n_blocks = block_plan(count, gen.block)
    run = _block_runner(gen, devices_for(size, devices))
    for b in range(n_blocks):
        lo = start + b * size
        idx = np.arange(lo, lo + size, dtype=np.uint64).astype(np.uint32)  # indices past 2**32 wrap only in padding
        keep = min(size, start + count - lo)
        ev = run(params, key, idx)
        if to_host:
            ev = jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a)[:k], ev)
        elif keep < size:
            ev = jax.tree_util.tree_map(lambda a, k=keep: a[:k], ev)
        yield ev, keep


def sample(gen: Generator, params, key, n: int, offset: int = 0, devices=None) -> Events:
    """Generate ``n`` weighted events (device arrays). Validated, jitted, compiled once per block shape.

    Event ``i`` uses the key ``fold_in(key, offset + i)``, so ``sample(p, k, 10)`` equals the first ten
    events of ``sample(p, k, 1000)`` bit for bit, and ``offset`` lets chunks continue a sequence. The
    work runs in blocks of ``gen.block`` events (fewer for small ``n``), sharded over the local devices
    (``devices``: how many, default all that divide the block): a new ``n`` reuses the compiled blocks.

    Concrete parameters are validated first (``ValueError``); traced ones are flagged in ``Events.status``.
    """
    n = check_n(n)
    check_offset(offset, n)
    check_key(key)
    check_params(params)
    parts = [ev for ev, _ in run_blocks(gen, params, key, int(offset), n, devices)]
    ev = parts[0] if len(parts) == 1 else jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *parts)
    # the blocks ran sharded over the local devices; hand back ordinary single-device arrays, so that
    # what users compute from the events is not silently an SPMD program with cross-device collectives
    return jax.device_put(ev, jax.local_devices()[0])


def sample_traced(gen: Generator, params, key, n: int, offset=0) -> Events:
    """Like :func:`sample` without host-side validation or blocking, for use inside ``grad``/``jit``."""
    idx = jnp.asarray(offset, jnp.uint32) + jnp.arange(n, dtype=jnp.uint32)
    return apply_indices(gen, params, key, idx)



def uniforms(keys, shape=(), dtype=None):
    """Per-event uniforms in [0, 1): ``[N, *shape]`` from the event keys ``keys[N]`` (event i from keys[i] only)."""
    dtype = dtype or jnp.result_type(float)
    return jax.vmap(lambda k: jax.random.uniform(k, shape, dtype))(keys)


def normals(keys, shape=(), dtype=None):
    """Per-event standard normals ``[N, *shape]`` from the event keys ``keys[N]``."""
    dtype = dtype or jnp.result_type(float)
    return jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys)
