"""Merge the event files of job-array tasks into one file: ``diffgen merge OUT IN1 IN2 ...``.

A batch job array runs the same generator with the same seed in every task, task ``t`` generating
the events ``offset_t … offset_t + n_t − 1`` (event ``i`` depends only on ``fold_in(key, i)``).
:func:`merge_event_files` joins the task files into the file one run of all the events would have
written:

* **compatibility**: all inputs and the output have the same format (suffix); every metadata entry
  except the per-task ones (:data:`PER_TASK_KEYS`) — process, seed, √s, settings, beams, … — is
  equal in all inputs (an entry recorded in one file and not in another is a mismatch);
* **index ranges**: if the inputs record ``event_offset`` (the global index of their first event)
  they are ordered by it and their ranges [offset, offset + n) must not overlap, n being
  ``n_generated`` where recorded, else the number of events in the file; without offsets the
  inputs are kept in the given order and overlaps (e.g. the same task twice) cannot be detected;
* **cross-section**: with N_k events generated in task k (``n_generated``, else the events in the
  file), σ_k and its error δ_k = std(w)/√N_k (the convention of :func:`diffgen.expect.cross_section`
  and ``diffgen generate``), the per-task sums Σw = N_k σ_k and Σw² = N_k (N_k δ_k² + σ_k²) are
  recovered exactly, so the merged

      σ = Σ_k N_k σ_k / N,   δ = sqrt((Σ_k Σw²_k / N − σ²) / N),   N = Σ_k N_k,

  is what one run over all N events reports (up to rounding). For LHE/HepMC files, which leave out
  events with status flags, record ``n_generated`` (the events generated, flagged or not) so that
  N_k counts them;
* **formats**: ``.npz`` and ``.parquet`` are read and written with :func:`diffgen.io.read_events`
  and :func:`diffgen.io.write_events` (exact); LHE (``.lhe``, ``.lhe.gz``) event blocks are copied
  verbatim, one file at a time (memory stays bounded), under a new header and ``<init>`` block
  (σ, δ, and XMAXUP = the largest of the inputs'). HepMC3 is not supported yet (``ValueError``);
* the output is written atomically and must not be one of the inputs.

The merged metadata keeps the common entries, sets ``event_offset`` to the smallest offset and
``n_generated`` to N (where the inputs record them), and ``sigma_pb``/``error_pb`` to σ and δ.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from diffgen.events import Events
from diffgen.io import lhe
from diffgen.io.atomic import check_writable
from diffgen.io.dispatch import format_of, read_events, write_events

__all__ = ["merge_event_files", "MergeResult", "PER_TASK_KEYS", "add_merge_subcommand", "cmd_merge"]

#: metadata entries that differ between the tasks of one run
PER_TASK_KEYS = ("sigma_pb", "error_pb", "max_weight_pb", "event_offset", "n_generated")
#: values of an LHE ``<init>`` block that :func:`diffgen.io.read_lhe_init` adds to the header metadata
_LHE_INIT_KEYS = ("sigma_pb", "error_pb", "max_weight_pb", "beam_pids", "beam_energies", "process_id",
                  "weighted", "idwtup")


class MergeResult(NamedTuple):
    """What :func:`merge_event_files` wrote: events in the file, events generated (N), σ and δ in pb."""

    n_events: int
    n_generated: int
    sigma_pb: float | None
    error_pb: float | None


class _Task(NamedTuple):
    path: str
    metadata: dict[str, Any]
    n_events: int  # events in the file
    n_generated: int
    events: Events | None  # npz/parquet only


def _lhe_count(path: str) -> int:
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return sum(1 for line in f if line.lstrip().startswith("<event"))


def _load(path: str, suffix: str) -> _Task:
    if suffix.startswith(".lhe"):
        meta = lhe.read_lhe_init(path)
        n = _lhe_count(path)
        events = None
    else:
        events, meta = read_events(path)
        n = int(np.shape(events.status)[0])
    n_gen = meta.get("n_generated", n)
    if isinstance(n_gen, bool) or not isinstance(n_gen, int) or n_gen < n:
        raise ValueError(f"event file {path!r}: n_generated must be an integer >= the {n} events in the file, "
                         f"got {n_gen!r}")
    return _Task(path, meta, n, n_gen, events)


def _check_compatible(tasks: Sequence[_Task]) -> None:
    first = tasks[0]
    common = {k: v for k, v in first.metadata.items() if k not in PER_TASK_KEYS}
    for task in tasks[1:]:
        other = {k: v for k, v in task.metadata.items() if k not in PER_TASK_KEYS}
        for key in sorted(set(common) | set(other)):
            a, b = common.get(key, "<not recorded>"), other.get(key, "<not recorded>")
            if a != b:
                raise ValueError(f"cannot merge {task.path!r} with {first.path!r}: metadata {key!r} differs "
                                 f"({b!r} vs {a!r}); only {', '.join(PER_TASK_KEYS)} may differ between tasks")
    for key in ("sigma_pb", "event_offset"):
        has = [key in t.metadata for t in tasks]
        if any(has) and not all(has):
            missing = [t.path for t, h in zip(tasks, has) if not h]
            raise ValueError(f"cannot merge: {key!r} is recorded in some inputs but not in {missing}")


def _order(tasks: list[_Task]) -> list[_Task]:
    if "event_offset" not in tasks[0].metadata:
        return tasks
    for t in tasks:
        off = t.metadata["event_offset"]
        if isinstance(off, bool) or not isinstance(off, int) or off < 0:
            raise ValueError(f"event file {t.path!r}: event_offset must be a non-negative integer, got {off!r}")
    tasks = sorted(tasks, key=lambda t: t.metadata["event_offset"])
    for a, b in zip(tasks, tasks[1:]):
        end = a.metadata["event_offset"] + a.n_generated
        if b.metadata["event_offset"] < end:
            raise ValueError(f"cannot merge: the event ranges of {a.path!r} [{a.metadata['event_offset']}, {end}) "
                             f"and {b.path!r} (from {b.metadata['event_offset']}) overlap; each event index may "
                             "be in one input only")
    return tasks


def combine_cross_sections(sigmas, errors, counts) -> tuple[float, float]:
    """(σ, δ) in pb of the union of samples with (σ_k, δ_k = std(w)/√N_k, N_k): see the module docstring."""
    sigmas, errors, counts = (np.asarray(x, np.float64) for x in (sigmas, errors, counts))
    n = counts.sum()
    sum_w = counts * sigmas
    sum_w2 = counts * (counts * errors**2 + sigmas**2)
    sigma = sum_w.sum() / n
    return float(sigma), float(math.sqrt(max(sum_w2.sum() / n - sigma**2, 0.0) / n))


def _pad(events: Events, capacity: int) -> Events:
    extra = capacity - int(np.shape(events.pid)[1])
    if extra == 0:
        return events

    def pad(a):
        a = np.asarray(a)
        return np.pad(a, [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2))

    return events.replace(p4=pad(events.p4), pid=pad(events.pid), mask=pad(events.mask), colour=pad(events.colour))


def _write_lhe(output: str, tasks: Sequence[_Task], metadata: dict[str, Any], sigma, error) -> None:
    init = tasks[0].metadata
    header = {k: v for k, v in metadata.items() if k not in _LHE_INIT_KEYS}
    head = lhe._head_text(sigma_pb=sigma, error_pb=error, beam_pids=init["beam_pids"],
                          beam_energies=init["beam_energies"], process_id=init["process_id"],
                          weighted=init["weighted"], metadata=header,
                          xmax=max(t.metadata["max_weight_pb"] for t in tasks))
    with lhe._text_output(output) as out:
        out.write(head)
        for task in tasks:
            opener = gzip.open if task.path.lower().endswith(".gz") else open
            with opener(task.path, "rt", encoding="utf-8", newline="\n") as f:
                inside = False
                for line in f:
                    stripped = line.lstrip()
                    if stripped.startswith("<event"):
                        inside = True
                    elif stripped.startswith("</LesHouchesEvents"):
                        inside = False
                    if inside:
                        out.write(line)
        out.write(lhe._FOOTER)


def merge_event_files(inputs: Sequence[str | os.PathLike], output: str | os.PathLike) -> MergeResult:
    """Merge job-array task files ``inputs`` into ``output`` (see the module docstring).

    Raises:
        ValueError: no inputs, an input that is also the output or given twice, different formats,
            incompatible metadata, overlapping event ranges, a HepMC3 file, or an unwritable output.
        FileNotFoundError: an input does not exist.
    """
    inputs = [os.fspath(p) for p in inputs]
    output = os.fspath(output)
    if not inputs:
        raise ValueError("merge needs at least one input file")
    real = [os.path.realpath(p) for p in inputs]
    if os.path.realpath(output) in real:
        raise ValueError(f"the output {output!r} is also an input; write the merged file elsewhere")
    if len(set(real)) != len(real):
        dup = sorted({p for p, r in zip(inputs, real) if real.count(r) > 1})
        raise ValueError(f"an input is given more than once: {dup}")
    suffix = format_of(output)
    for p in inputs:
        if format_of(p) != suffix:
            raise ValueError(f"input {p!r} is not a {suffix} file like the output {output!r}; "
                             "merge files of one format (convert with read_events/write_events first)")
    if suffix not in (".npz", ".parquet", ".lhe", ".lhe.gz"):
        raise ValueError(f"merging {suffix} files is not supported; allowed: .npz, .parquet, .lhe, .lhe.gz")
    check_writable(output)
    tasks = [_load(p, suffix) for p in inputs]
    _check_compatible(tasks)
    tasks = _order(tasks)

    n_gen = sum(t.n_generated for t in tasks)
    metadata = {k: v for k, v in tasks[0].metadata.items() if k not in PER_TASK_KEYS}
    if "event_offset" in tasks[0].metadata:
        metadata["event_offset"] = tasks[0].metadata["event_offset"]
    if any("n_generated" in t.metadata for t in tasks):
        metadata["n_generated"] = n_gen
    sigma = error = None
    if "sigma_pb" in tasks[0].metadata:
        sigma, error = combine_cross_sections([t.metadata["sigma_pb"] for t in tasks],
                                              [t.metadata.get("error_pb", 0.0) for t in tasks],
                                              [t.n_generated for t in tasks])
        metadata.update(sigma_pb=sigma, error_pb=error)
    if suffix.startswith(".lhe"):
        _write_lhe(output, tasks, metadata, sigma, error)
    else:
        capacity = max(int(np.shape(t.events.pid)[1]) for t in tasks)
        write_events(output, Events.concatenate([_pad(t.events, capacity) for t in tasks]), **metadata)
    return MergeResult(sum(t.n_events for t in tasks), n_gen, sigma, error)


# ------------------------------------------------------------------------------------------------
# command line


def add_merge_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add ``merge OUT IN [IN ...]`` to an argparse sub-command set; its handler is :func:`cmd_merge`."""
    m = subparsers.add_parser("merge", help="merge the event files of job-array tasks into one file")
    m.add_argument("output", metavar="OUT", help="merged file (same format as the inputs)")
    m.add_argument("inputs", metavar="IN", nargs="+", help="task files (.npz, .parquet, .lhe or .lhe.gz)")
    m.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    return m


def cmd_merge(args) -> int:
    """Handler of ``diffgen merge``: merge, print a one-line summary, return 0 (``ValueError`` on bad input,
    and for an existing ``OUT`` without ``--force``, as ``generate --out``)."""
    if os.path.lexists(args.output) and not getattr(args, "force", False):
        raise ValueError(f"merge output {args.output!r} exists; use --force to overwrite it")
    res = merge_event_files(args.inputs, args.output)
    xs = "" if res.sigma_pb is None else f", sigma = {res.sigma_pb:.6g} +- {res.error_pb:.3g} pb"
    print(f"wrote {args.output}: {res.n_events} events from {len(args.inputs)} files "
          f"({res.n_generated} generated){xs}")
    return 0
