"""Generating many events in fixed-size chunks, optionally sharded over devices.

Event ``i`` of a run is always generated from ``fold_in(key, i)`` (see
:func:`diffgen.stage.sample`), so the events are bit-identical whatever the
chunk size or the number of devices. Chunks run in the generator's fixed-size
blocks (the last one padded and cut), so the chain compiles once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import jax
import numpy as np

from diffgen.events import Events
from diffgen.params import check_params
from diffgen.stage import Generator, check_key, check_n, check_offset, run_blocks

__all__ = ["generate", "generate_chunks"]


def _progress(total: int, enabled: bool | None, desc: str):
    if enabled is None:
        enabled = sys.stderr.isatty()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        tqdm = None
    if not enabled or tqdm is None:
        return None
    return tqdm(total=total, desc=desc, unit="ev", unit_scale=True, file=sys.stderr)


def generate_chunks(gen: Generator, params, key, n: int, chunk: int = 100_000, devices=None,
                    progress: bool | None = None, offset: int = 0) -> Iterator[Events]:
    """Yield Events in chunks of at most ``chunk`` events (host NumPy arrays), ``n`` in total.

    Events ``offset .. offset + n − 1`` of the sequence of ``key`` (job arrays: task ``t`` of ``n``
    events each uses ``offset = t · n``). Memory is bounded by one chunk. Each chunk runs in the
    generator's fixed blocks (:func:`diffgen.stage.block_plan`), sharded along the event axis over
    ``devices`` (the first k local devices; default: all local devices that divide the block). The
    events do not change.
    """
    n = check_n(n)
    chunk = check_n(chunk, "chunk (events per chunk)")
    check_offset(offset, n)
    check_key(key)
    check_params(params)
    chunk = min(chunk, n)
    n_dev = None
    if devices is not None:
        devices = list(devices)
        if not devices:
            raise ValueError("devices must be a non-empty list of JAX devices")
        if devices != jax.local_devices()[:len(devices)]:
            raise ValueError("devices must be the first k local devices (jax.local_devices()[:k])")
        n_dev = len(devices)
    bar = _progress(n, progress, gen.name)
    try:
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            parts = [ev for ev, _ in run_blocks(gen, params, key, offset + start, size, n_dev, to_host=True)]
            ev = parts[0] if len(parts) == 1 else Events.concatenate(parts)
            if bar is not None:
                bar.update(size)
            yield ev
    finally:
        if bar is not None:
            bar.close()


def generate(gen: Generator, params, key, n: int, chunk: int = 100_000, devices=None,
             progress: bool | None = None, on_chunk: Callable[[Events], None] | None = None,
             keep: bool = True, offset: int = 0) -> Events | None:
    """Generate ``n`` events in chunks; returns them concatenated (host arrays) if ``keep``.

    ``on_chunk(events)`` is called for every chunk (e.g. to fill histograms or write a file),
    so with ``keep=False`` memory stays bounded by one chunk for any ``n``.

    Example:
        >>> import jax, diffgen
        >>> gen = diffgen.presets.ee_mumu()
        >>> ev = diffgen.generate(gen, gen.default_params(), jax.random.key(1), 1000, chunk=300)
        >>> ev.n_events
        1000
    """
    parts = []
    for ev in generate_chunks(gen, params, key, n, chunk=chunk, devices=devices, progress=progress, offset=offset):
        if on_chunk is not None:
            on_chunk(ev)
        if keep:
            parts.append(ev)
    if not keep:
        return None
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *parts)
