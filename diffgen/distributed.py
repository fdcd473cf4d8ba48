"""Generation and gradients over several processes (``jax.distributed``), one machine or many.

Event ``i`` of a run depends only on ``fold_in(key, i)`` (:meth:`diffgen.Generator.apply_indices`),
so a run of ``n`` events can be split into index ranges that separate processes generate on
their own; no communication is needed to generate, and the union is the single-process run bit
for bit. :func:`process_range` gives process ``p`` of ``P`` the contiguous block

    count_p = ⌊n/P⌋ + [p < n mod P],    offset_p = p·⌊n/P⌋ + min(p, n mod P),

so the blocks are in process order, cover 0 … n−1 once, and differ in size by at most one.

Weighted means and their gradients need one reduction. With w = exp(log_weight) (0 for events
with a status flag) and an observable O, each process sums over its block

    S₁ = Σ w·O,   S₀ = Σ w,   ∂S₁/∂θ,   ∂S₀/∂θ,

and ⟨O⟩ = ΣₚS₁ₚ / ΣₚS₀ₚ, ∂⟨O⟩/∂θ = (∂S₁ − ⟨O⟩ ∂S₀)/S₀ with the sums over all processes: the same
estimator and gradient as :func:`diffgen.expect` on all ``n`` events. To avoid overflow each block
(and each chunk inside it) stores its sums scaled by exp(−c) with c its largest log weight
(a :class:`PartialSums`); :func:`combine` rescales them to the common maximum before adding. The
partial sums are exchanged with :func:`jax.experimental.multihost_utils.process_allgather` and
added on every process in process order, so all processes get identical results. They equal the
single-process values up to the order of floating-point additions: the rounding error of a sum of
n terms is at most ≈ n·ε·Σ|terms| (ε = 2⁻⁵³ in float64, 2⁻²⁴ in float32).

On CPU the cross-process collectives use Gloo (JAX's default ``jax_cpu_collectives_implementation``
since 0.4.36; :func:`initialize` selects it where an older JAX has none set).

Example (a single process: :func:`initialize` is optional then)::

    >>> import jax, diffgen
    >>> from diffgen import distributed
    >>> distributed.process_range(10, process_id=1, num_processes=3)
    (4, 3)
    >>> gen = diffgen.presets.ee_mumu()
    >>> ev = distributed.generate_local(gen, gen.default_params(), jax.random.key(0), 100)
    >>> ev.n_events
    100
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.events import Events
from diffgen.flagged import DEFAULT_MAX_FLAGGED, check_flag_counts, check_flag_options, flag_counts
from diffgen.generate import generate
from diffgen.params import check_params
from diffgen.stage import MAX_EVENTS, Generator, check_key, check_n

__all__ = ["initialize", "process_range", "generate_local", "PartialSums", "local_sums", "combine",
           "allgather_sums", "expect_and_grad", "value_and_grad", "jackknife"]


class PartialSums(NamedTuple):
    """Weighted sums over a block of events, scaled by exp(−shift) to avoid overflow.

    ``sum_w_obs`` = Σ exp(log w − shift)·O (shape of one event's O), ``sum_w`` = Σ exp(log w − shift),
    and their gradients with respect to the parameters (pytrees like ``params``; for a vector O the
    leaves of ``grad_sum_w_obs`` have O's shape in front, as :func:`jax.jacrev` gives them). ``shift``
    is the block's largest log weight (−1e30 if it has no event with a weight), constant for autodiff.
    """

    shift: Any
    sum_w_obs: Any
    sum_w: Any
    grad_sum_w_obs: Any
    grad_sum_w: Any


# ------------------------------------------------------------------------------------------------
# process bookkeeping


def _int_arg(value, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def _check_process(process_id, num_processes) -> tuple[int, int]:
    if num_processes is None:
        num_processes = jax.process_count()
    if process_id is None:
        process_id = jax.process_index()
    num_processes = _int_arg(num_processes, "num_processes")
    process_id = _int_arg(process_id, "process_id")
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, num_processes - 1] = [0, {num_processes - 1}], "
                         f"got {process_id}")
    return process_id, num_processes


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, initialization_timeout: int = 300,
               **kwargs) -> tuple[int, int]:
    """Join a multi-process JAX run (:func:`jax.distributed.initialize`); returns ``(process_id, num_processes)``.

    Arguments left as ``None`` come from the environment: ``JAX_COORDINATOR_ADDRESS`` (read by
    JAX, ``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (read here). If
    none of them is set either, JAX detects the cluster itself: under Slurm (``srun``), Open MPI
    (``mpirun``), Kubernetes or on Cloud TPU it finds the coordinator, the number of processes and
    this process's rank without any argument. Other keyword arguments go to
    :func:`jax.distributed.initialize` unchanged (e.g. ``local_device_ids``).

    Call it once per process, before any other JAX computation. On CPU it makes sure a
    cross-process collective implementation (Gloo) is selected.

    Raises:
        ValueError: ``num_processes`` < 1 or ``process_id`` outside [0, num_processes − 1]
            (arguments or environment variables), or only one of them given.
    """
    if num_processes is None:
        num_processes = _env_int("JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("JAX_PROCESS_ID")
    if (num_processes is None) != (process_id is None):
        raise ValueError("give both num_processes and process_id (or JAX_NUM_PROCESSES and JAX_PROCESS_ID), "
                         f"or neither for cluster auto-detection; got num_processes={num_processes}, "
                         f"process_id={process_id}")
    if num_processes is not None:
        _check_process(process_id, num_processes)
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):  # pragma: no cover - old JAX
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=initialization_timeout, **kwargs)
    return jax.process_index(), jax.process_count()


def process_range(n: int, process_id: int | None = None, num_processes: int | None = None) -> tuple[int, int]:
    """``(offset, count)``: the contiguous block of event indices of process ``process_id`` of ``num_processes``.

    count = ⌊n/P⌋ + [p < n mod P] and offset = p·⌊n/P⌋ + min(p, n mod P): the blocks are in process
    order, cover 0 … n − 1 exactly once and differ in size by at most one. The defaults are this
    process's :func:`jax.process_index` and :func:`jax.process_count`.

    Raises:
        ValueError: ``n`` not in [1, 2**32], ``n`` < ``num_processes`` (every process needs an
            event), or ``process_id`` outside [0, num_processes − 1].

    Example:
        >>> [process_range(10, p, 3) for p in range(3)]
        [(0, 4), (4, 3), (7, 3)]
    """
    n = check_n(n)
    p, size = _check_process(process_id, num_processes)
    if n < size:
        raise ValueError(f"number of events n must be >= num_processes = {size} (one event per process at "
                         f"least), got {n}")
    q, r = divmod(n, size)
    return p * q + min(p, r), q + (1 if p < r else 0)


# ------------------------------------------------------------------------------------------------
# generation


def _chunk_plan(offset: int, count: int, chunk: int):
    """(start index, padded size, real size) of each chunk; all chunks padded to ``chunk`` where the
    uint32 index space allows (one compilation), the last one cut."""
    for start in range(offset, offset + count, chunk):
        size = min(chunk, offset + count - start)
        padded = chunk if start + chunk <= MAX_EVENTS else size
        yield start, padded, size


def generate_local(gen: Generator, params, key, n: int, chunk: int = 100_000,
                   process_id: int | None = None, num_processes: int | None = None,
                   on_chunk: Callable[[Events], None] | None = None, keep: bool = True) -> Events | None:
    """This process's events of an ``n``-event run: events ``offset … offset + count − 1``
    (:func:`process_range`), in chunks of at most ``chunk`` (host NumPy arrays).

    Bit for bit the same as the corresponding slice of ``gen.sample(params, key, n)`` or of
    :func:`diffgen.generate` in one process, for any ``chunk`` and number of processes.
    ``on_chunk`` and ``keep`` work as in :func:`diffgen.generate`. Needs no communication:
    ``process_id``/``num_processes`` may be given explicitly, e.g. for a job-array task.

    Raises:
        ValueError: as :func:`process_range`, or a bad ``chunk``, key or params.
    """
    offset, count = process_range(n, process_id, num_processes)
    chunk = min(check_n(chunk, "chunk (events per chunk)"), count)
    return generate(gen, params, key, count, chunk=chunk, on_chunk=on_chunk, keep=keep, offset=offset,
                    progress=False)


# ------------------------------------------------------------------------------------------------
# weighted sums and their gradients


def _sums(params, observable, gen, key, start, size: int, valid, shift=None):
    """(shift, Σ w·O, Σ w, flag counts) over ``size`` events from index ``start``; the first ``valid`` count.

    The flag counts (:func:`diffgen.flagged.flag_counts`) are integers, constant for autodiff."""
    ev = gen.sample_traced(params, key, size, start)
    in_run = jnp.arange(size) < valid
    flags = flag_counts(jax.lax.stop_gradient(ev.status), in_run)
    use = (ev.status == 0) & in_run
    lw = jnp.where(use, ev.log_weight, -jnp.inf)
    if shift is None:
        shift = jax.lax.stop_gradient(jnp.max(jnp.where(use, lw, -1e30)))
    w = jnp.where(use, jnp.exp(jnp.where(use, lw - shift, 0.0)), 0.0)
    values = jnp.asarray(observable(ev))
    if values.shape[:1] != (size,):
        raise ValueError(f"observable must return one value per event (leading axis {size}), "
                         f"got shape {values.shape}")
    mask = use.reshape(use.shape + (1,) * (values.ndim - 1))
    wb = w.reshape(mask.shape)
    return shift, jnp.sum(jnp.where(mask, wb * jnp.where(mask, values, 0.0), 0.0), axis=0), jnp.sum(w), flags


def _chunk_sums_and_grads_impl(params, key, start, valid, *, observable, gen, size):
    def sums(p):
        shift, s1, s0, flags = _sums(p, observable, gen, key, start, size, valid)
        return (s1, s0), (shift, flags)

    (s1, s0), (shift, flags) = sums(params)
    (g1, g0), _ = jax.jacrev(sums, has_aux=True)(params)
    return PartialSums(shift, s1, s0, g1, g0), flags


_chunk_sums_and_grads = jax.jit(_chunk_sums_and_grads_impl, static_argnames=("observable", "gen", "size"))


def _chunk_sums_impl(params, key, start, valid, *, observable, gen, size):
    return _sums(params, observable, gen, key, start, size, valid)


_chunk_sums = jax.jit(_chunk_sums_impl, static_argnames=("observable", "gen", "size"))


def _chunk_surrogate_grad_impl(params, key, start, valid, shift, cot_obs, cot_w, *, observable, gen, size):
    def surrogate(p):
        _, s1, s0, _ = _sums(p, observable, gen, key, start, size, valid, shift=shift)
        return jnp.sum(cot_obs * s1) + cot_w * s0

    return jax.grad(surrogate)(params)


_chunk_surrogate_grad = jax.jit(_chunk_surrogate_grad_impl, static_argnames=("observable", "gen", "size"))


def _check_inputs(gen, params, key, n, chunk, process_id, num_processes):
    if not isinstance(gen, Generator):
        raise ValueError(f"gen must be a diffgen.Generator, got {type(gen).__name__}")
    offset, count = process_range(n, process_id, num_processes)
    chunk = min(check_n(chunk, "chunk (events per chunk)"), count)
    check_key(key)
    check_params(params)
    return offset, count, chunk


def combine(parts: Sequence[PartialSums]) -> PartialSums:
    """Add :class:`PartialSums` of disjoint event blocks: rescale each to the largest shift c, then sum
    in the given order (S = Σₖ exp(cₖ − c)·Sₖ, likewise for the gradients).

    Raises:
        ValueError: ``parts`` is empty.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("combine needs at least one PartialSums")
    shift = parts[0].shift
    for part in parts[1:]:
        shift = jnp.maximum(shift, part.shift)
    total = None
    for part in parts:
        scale = jnp.exp(part.shift - shift)
        scaled = jax.tree_util.tree_map(lambda a, scale=scale: a * scale, part._replace(shift=shift))
        scaled = scaled._replace(shift=shift)
        total = scaled if total is None else jax.tree_util.tree_map(jnp.add, total, scaled)._replace(shift=shift)
    return total


def local_sums(observable: Callable[[Events], Any], gen: Generator, params, key, n: int, chunk: int = 10_000,
               process_id: int | None = None, num_processes: int | None = None,
               with_grad: bool = True) -> PartialSums:
    """:class:`PartialSums` of this process's block of an ``n``-event run (:func:`process_range`).

    ``observable`` maps Events to f[N] or f[N, ...]; its value is used only for events with a
    weight (others, and the padding of the last chunk, contribute exactly 0). Compiles once per
    (observable, generator, chunk size). With ``with_grad=False`` the gradient fields are ``None``.
    """
    return combine(_local_parts(observable, gen, params, key, n, chunk, process_id, num_processes, with_grad)[0])


def _local_parts(observable, gen, params, key, n, chunk, process_id=None, num_processes=None, with_grad=True):
    """(the chunks' :class:`PartialSums`, this process's :func:`diffgen.flagged.flag_counts` summed, host i32)."""
    offset, count, chunk = _check_inputs(gen, params, key, n, chunk, process_id, num_processes)
    parts, flags = [], None
    for start, padded, size in _chunk_plan(offset, count, chunk):
        args = (params, key, jnp.uint32(start), jnp.int32(size))
        if with_grad:
            part, f = _chunk_sums_and_grads(*args, observable=observable, gen=gen, size=padded)
        else:
            shift, s1, s0, f = _chunk_sums(*args, observable=observable, gen=gen, size=padded)
            part = PartialSums(shift, s1, s0, None, None)
        parts.append(part)
        flags = f if flags is None else flags + f
    return parts, np.asarray(flags)


def _global_flags(flags):
    """Every process's flag counts summed (the same on all processes; one exchange)."""
    return np.sum(np.asarray(allgather_sums(flags)), axis=0, dtype=np.int64)


def allgather_sums(tree):
    """Every process's ``tree`` (any pytree of arrays, same structure on all), stacked along a new
    leading axis in process order; the tree itself, with that axis, in a single-process run."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[None], tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree)


def _global(sums: PartialSums) -> PartialSums:
    stacked = allgather_sums(sums)
    count = np.shape(stacked.shift)[0]
    return combine([jax.tree_util.tree_map(lambda a, k=k: jnp.asarray(a[k]), stacked) for k in range(count)])


def _mean_and_grad(total: PartialSums):
    mean = total.sum_w_obs / total.sum_w

    def grad_of(g1, g0):
        m = mean.reshape(mean.shape + (1,) * (g1.ndim - mean.ndim))
        return (g1 - m * g0) / total.sum_w

    return mean, jax.tree_util.tree_map(grad_of, total.grad_sum_w_obs, total.grad_sum_w)


def jackknife(blocks: Sequence[PartialSums]):
    """Delete-one-block jackknife errors of ``(⟨O⟩, ∂⟨O⟩/∂params)`` from the :class:`PartialSums` of K ≥ 2
    disjoint blocks of events: ``√((K − 1)/K · Σₖ (x₍ₖ₎ − x̄)²)`` with x₍ₖ₎ the estimate without block k
    (Quenouille–Tukey; it includes the ratio's denominator, i.e. the weights' own fluctuation, and the
    score-function terms). Blocks should be of equal size (the chunks of one run are, but for the last).

    Raises:
        ValueError: fewer than two blocks.
    """
    blocks = list(blocks)
    k = len(blocks)
    if k < 2:
        raise ValueError(f"jackknife errors need at least 2 blocks of events, got {k}")
    loo = [_mean_and_grad(combine(blocks[:i] + blocks[i + 1:])) for i in range(k)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *loo)
    return jax.tree_util.tree_map(
        lambda x: jnp.sqrt((k - 1) / k * jnp.sum((x - jnp.mean(x, axis=0)) ** 2, axis=0)), stacked)


def expect_and_grad(observable: Callable[[Events], Any], gen: Generator, params, key, n: int,
                    chunk: int = 10_000, with_error: bool = False, *, max_flagged: float = DEFAULT_MAX_FLAGGED,
                    on_flagged: str = "warn"):
    """``(⟨O⟩, ∂⟨O⟩/∂params)`` over an ``n``-event run shared by all processes of the JAX runtime.

    Each process sums over its own block (:func:`process_range`, chunks of ``chunk`` events); the
    :class:`PartialSums` are exchanged (:func:`allgather_sums`) and combined in process order, so
    every process returns the same result: ⟨O⟩ = S₁/S₀ and (∂S₁ − ⟨O⟩ ∂S₀)/S₀, the value and
    gradient of ``jax.grad(lambda p: diffgen.expect(observable, gen, p, key, n))`` up to the order of
    the floating-point additions. All processes must call it with the same arguments. For an O of
    shape f[N, k] the value is f[k] and the gradient leaves have a leading axis k (a Jacobian,
    k + 1 backward passes per chunk; use :func:`value_and_grad` for a scalar loss of many bins).

    With ``with_error=True`` it returns ``(mean, grad, (mean_error, grad_error))``, the Monte Carlo errors
    by the delete-one-chunk jackknife (:func:`jackknife`) over the run's chunks (single process: choose
    ``chunk`` ≤ n/10 for ten or more blocks) or, across processes, over each process's block.

    Like :func:`diffgen.expect` it warns (``on_flagged="raise"``: raises
    :class:`diffgen.flagged.FlaggedEventsError`) when more than ``max_flagged`` of the ``n`` events
    of the run are flagged (zero weight), naming the flags (:mod:`diffgen.flagged`); every process
    sees the counts of the whole run.

    Raises:
        ValueError: as :func:`process_range` (e.g. ``n`` < number of processes), bad key/params/chunk,
            bad ``max_flagged``/``on_flagged``; ``with_error`` with fewer than two blocks.
    """
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    parts, flags = _local_parts(observable, gen, params, key, n, chunk)
    if on_flagged != "ignore":
        check_flag_counts(_global_flags(flags), n, max_flagged, on_flagged, where="expect_and_grad")
    if not with_error:
        return _mean_and_grad(_global(combine(parts)))
    if jax.process_count() == 1:
        blocks = parts
        if len(blocks) < 2:
            raise ValueError(f"with_error needs at least 2 chunks (jackknife blocks): n = {n} events in chunks of "
                             f"{chunk}; pass chunk <= n/10, e.g. chunk={max(1, n // 10)}")
    else:
        stacked = allgather_sums(combine(parts))
        blocks = [jax.tree_util.tree_map(lambda a, k=k: jnp.asarray(a[k]), stacked)
                  for k in range(np.shape(stacked.shift)[0])]
    mean, grad = _mean_and_grad(combine(blocks))
    return mean, grad, jackknife(blocks)


def value_and_grad(loss: Callable[[Any], Any], observable: Callable[[Events], Any], gen: Generator, params, key,
                   n: int, chunk: int = 10_000, *, max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn"):
    """``(L, ∂L/∂params)`` of a scalar ``loss(means)`` of the weighted means ⟨O⟩ = S₁/S₀ over all processes.

    Two passes over the events: the first finds the global S₁, S₀ and the largest log weight c (one
    exchange) and g = ∂L/∂⟨O⟩; the second takes the gradient of the scalar g·S₁ − (g·⟨O⟩)·S₀ with
    weights exp(log w − c), whose sum over processes (a second exchange) divided by S₀ is
    Σⱼ gⱼ ∂⟨Oⱼ⟩/∂θ = ∂L/∂θ, at the cost of one backward pass whatever the number of bins.

    Example: a χ² to target bin fractions ``t`` with errors ``e``:
    ``value_and_grad(lambda m: jnp.sum(((m - t) / e) ** 2), obs, gen, params, key, n)``.

    Flagged events are checked as in :func:`expect_and_grad` (``max_flagged``, ``on_flagged``).

    Raises:
        ValueError: as :func:`expect_and_grad`, or a loss that does not return a scalar.
    """
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    offset, count, chunk = _check_inputs(gen, params, key, n, chunk, None, None)
    parts, flags = _local_parts(observable, gen, params, key, n, chunk, with_grad=False)
    if on_flagged != "ignore":
        check_flag_counts(_global_flags(flags), n, max_flagged, on_flagged, where="value_and_grad")
    total = _global(combine(parts))
    mean = total.sum_w_obs / total.sum_w
    if jnp.ndim(loss(mean)) != 0:
        raise ValueError(f"loss must return a scalar, got shape {jnp.shape(loss(mean))}")
    value, g = jax.value_and_grad(loss)(mean)
    cot_obs, cot_w = g, -jnp.sum(g * mean)
    grad = jax.tree_util.tree_map(jnp.zeros_like, params)
    for start, padded, size in _chunk_plan(offset, count, chunk):
        part = _chunk_surrogate_grad(params, key, jnp.uint32(start), jnp.int32(size), total.shift, cot_obs, cot_w,
                                     observable=observable, gen=gen, size=padded)
        grad = jax.tree_util.tree_map(jnp.add, grad, part)
    grads = allgather_sums(grad)
    summed = jax.tree_util.tree_map(lambda a: jnp.asarray(np.sum(np.asarray(a), axis=0)), grads)
    return value, jax.tree_util.tree_map(lambda a: a / total.sum_w, summed)
