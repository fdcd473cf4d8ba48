"""A slot-pool scheduler for variable-length per-event work (shower trials, string steps, …).

Lock-step batching makes every event of a batch wait for the slowest one: a ``while_loop`` over a
batch of ``N`` events runs as many iterations as the longest event needs, so with a long-tailed
distribution of work most lanes idle. :func:`run_pool` instead keeps a pool of ``B ≤ N`` *slots*:
every iteration advances each busy slot by one unit of work; when enough slots have finished
(at least ``refill`` of them, or all busy ones), their results are stored at their events' rows of
the output and the slots are reloaded with the next events in index order — the "persistent
threads" scheme of GPU showers (e.g. GAPS), written with fixed shapes so that it runs the same
way under XLA on a CPU or a GPU. Total iterations ≈ Σ_i work_i / B + the tail of the last events.

Determinism contract: the work of event ``i`` must depend only on its own loaded state and its own
step counter (``steps``, 0, 1, … for that event; use it with ``fold_in`` for random numbers), never
on its slot or on the iteration, so an event's result is the same whatever the batch, pool size or
order in which it is scheduled. The loop is a ``lax.while_loop``: it is not reverse-differentiable,
so stages run it on ``stop_gradient`` inputs and compute gradients from what it records (the shower's
score weights) — see :mod:`diffgen.shower.fsr`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["run_pool", "PoolStats", "default_pool", "prefix_sum"]

#: default slots per backend: on a CPU small pools keep the slot state in cache (measured on the shower,
#: 2048 events: 1740 / 2110 / 2480 / 1920 / 1320 events per CPU-second at 32 / 64 / 128 / 256 / 512 slots);
#: accelerators want many lanes busy.
POOL_CPU = 128
POOL_ACCELERATOR = 4096


def default_pool(pool: int | None) -> int:
    """``pool`` if given, else the backend's default (decided at trace time, so that building a stage
    does not start a JAX backend)."""
    if pool is not None:
        return int(pool)
    return POOL_CPU if jax.default_backend() == "cpu" else POOL_ACCELERATOR


def prefix_sum(x, axis: int = -1):
    """Inclusive prefix sum along ``axis`` for record compaction (bool → int32).

    XLA:CPU lowers ``jnp.cumsum`` to a ``reduce_window`` with an ``n``-wide window, ``n²/2`` additions
    per row: fine for short rows, slow for particle records (n ≈ 160–250, measured 45 ms for 2048 × 242).
    Rows of 128 or more use ⌈log₂ n⌉ shifted adds (Hillis–Steele) instead.
    """
    x = jnp.asarray(x)
    if x.dtype == bool:
        x = x.astype(jnp.int32)
    n = x.shape[axis]
    if n < 128:
        return jnp.cumsum(x, axis=axis)
    x = jnp.moveaxis(x, axis, -1)
    lead = [(0, 0)] * (x.ndim - 1)
    d = 1
    while d < n:
        x = x + jnp.pad(x[..., :-d], lead + [(d, 0)])
        d *= 2
    return jnp.moveaxis(x, -1, axis)


class PoolStats(NamedTuple):
    """Diagnostics of one :func:`run_pool` call (device scalars)."""

    iterations: jax.Array  #: loop iterations
    busy: jax.Array  #: slot-iterations that did work (Σ_i work_i)
    slots: jax.Array  #: pool size B (slot-iterations available = iterations × B)
    refills: jax.Array  #: refill rounds


def _where_tree(cond, new, old):
    def sel(a, b):
        c = cond.reshape(cond.shape + (1,) * (a.ndim - 1))
        return jnp.where(c, a, b)

    return jax.tree_util.tree_map(sel, new, old)


def run_pool(load: Callable, step: Callable, store: Callable, out: Any, n: int, pool: int, max_steps: int,
             refill: int | None = None):
    """Run variable-length work for ``n`` events on a pool of ``pool`` slots.

    Args:
        load: ``idx i32[B] -> (state, done bool[B])``: the initial state of events ``idx`` (callers
            clip out-of-range indices; such slots are masked by the scheduler). ``done`` marks events
            with no work.
        step: ``(state, out, ev i32[B], steps i32[B], busy bool[B]) -> (state, out, done bool[B])``: one
            unit of work for every slot. It must leave slots that are not ``busy`` unchanged, and may
            write per-step records into ``out`` at row ``ev`` (``ev == n`` for empty slots: use
            ``mode="drop"`` scatters).
        store: ``(out, ev i32[B], write bool[B], state, steps i32[B]) -> out``: store the finished
            events' results (``write``) at rows ``ev``.
        out: the initial output pytree (rows ``0..n-1``).
        n: number of events (static).
        pool: slots ``B`` (static; clipped to ``n``; ``None``: :func:`default_pool`).
        max_steps: an event still busy after this many steps is stopped (its ``steps`` equals
            ``max_steps`` in ``store``; the caller flags it).
        refill: reload when at least this many slots have finished (default ``max(1, B // 8)``).

    Returns:
        ``(out, PoolStats)``.
    """
    b = max(1, min(default_pool(pool), int(n)))
    refill = max(1, b // 8) if refill is None else max(1, min(int(refill), b))
    i32 = jnp.int32
    ev0 = jnp.arange(b, dtype=i32)
    state0, done0 = load(ev0)

    def do_refill(args):
        out, state, ev, steps, done, next_ev, refills = args
        finished = done & (ev < n)
        out = store(out, ev, finished, state, steps)
        rank = prefix_sum(done) - 1
        new_ev = next_ev + rank
        give = done & (new_ev < n)
        new_state, new_done = load(jnp.where(give, new_ev, 0))
        state = _where_tree(give, new_state, state)
        ev = jnp.where(give, new_ev, jnp.where(done, n, ev))
        steps = jnp.where(give, 0, steps)
        done = jnp.where(give, new_done, done)
        next_ev = next_ev + jnp.sum(give.astype(i32))
        return out, state, ev, steps, done, next_ev, refills + 1

    def cond(carry):
        _, _, ev, _, _, next_ev, _, _, _ = carry
        return jnp.any(ev < n) | (next_ev < n)

    def body(carry):
        out, state, ev, steps, done, next_ev, it, busy_total, refills = carry
        busy = ~done & (ev < n)
        state, out, done_new = step(state, out, ev, steps, busy)
        steps = steps + busy.astype(i32)
        done = done | done_new | (steps >= max_steps)
        n_fin = jnp.sum((done & (ev < n)).astype(i32))
        all_idle = ~jnp.any(~done & (ev < n))
        need = (n_fin >= refill) | (all_idle & ((n_fin > 0) | (next_ev < n)))
        out, state, ev, steps, done, next_ev, refills = jax.lax.cond(
            need, do_refill, lambda a: a, (out, state, ev, steps, done, next_ev, refills))
        return (out, state, ev, steps, done, next_ev, it + 1, busy_total + jnp.sum(busy.astype(i32)), refills)

    zero = jnp.zeros((), i32)
    # slots whose event has no work count as finished and are refilled after the first iteration
    carry = (out, state0, ev0, jnp.zeros((b,), i32), done0, jnp.asarray(b, i32), zero, zero, zero)
    out, _, _, _, _, _, it, busy_total, refills = jax.lax.while_loop(cond, body, carry)
    return out, PoolStats(iterations=it, busy=busy_total, slots=jnp.asarray(b, i32), refills=refills)
