"""Choose the event-file format from the file name.

============================  =========================================================
suffix                        format
============================  =========================================================
``.npz``                      :mod:`diffgen.io.npz`, exact, all fields
``.parquet``                  :mod:`diffgen.io.parquet`, one row per event
``.lhe``, ``.lhe.gz``         :mod:`diffgen.io.lhe`, Les Houches Event 3.0 (good events only)
``.hepmc3``, ``.hepmc``       :mod:`diffgen.io.hepmc`, HepMC3 ASCII for Rivet (good events
(``.gz`` too)                 only, final state + beams, no history)
============================  =========================================================

For LHE output, ``metadata`` must contain ``sigma_pb`` and ``error_pb``; the other keyword
arguments of :func:`diffgen.io.lhe.write_lhe` (``beam_pids``, ``beam_energies``, ``process_id``,
``scale``, ``alpha_em``, ``alpha_s``, ``weighted``) are taken from it too, and the rest is stored
as JSON in the file's ``<header>``. :func:`read_events` returns that metadata plus the ``<init>``
values (see :func:`diffgen.io.lhe.read_lhe_init`). For HepMC3, ``sigma_pb``/``error_pb`` (optional)
become each event's ``GenCrossSection`` and the rest is stored as a JSON run attribute; reading
accepts any HepMC3 file, e.g. one written by Pythia.

Example:
    >>> import os, tempfile
    >>> from diffgen.events import Events
    >>> p = os.path.join(tempfile.mkdtemp(), "ev.parquet")
    >>> write_events(p, Events.empty(2, 3), sqrt_s=91.188)
    0
    >>> read_events(p)[1]
    {'sqrt_s': 91.188}
"""

from __future__ import annotations

import os
from typing import Any

from diffgen.events import Events
from diffgen.io import hepmc, lhe, npz, parquet

__all__ = ["write_events", "read_events", "SUFFIXES", "format_of"]

SUFFIXES = (".npz", ".parquet", ".lhe", ".lhe.gz") + hepmc.SUFFIXES
LHE_KEYWORDS = ("sigma_pb", "error_pb", "beam_pids", "beam_energies", "process_id", "scale", "alpha_em",
                 "alpha_s", "weighted")


def format_of(path: str | os.PathLike) -> str:
    """The format suffix of ``path`` (one of :data:`SUFFIXES`); ``ValueError`` listing them otherwise."""
    name = os.fspath(path).lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"unknown event-file suffix in {os.fspath(path)!r}; allowed: {', '.join(SUFFIXES)}")


def write_events(path: str | os.PathLike, events: Events, **metadata: Any) -> int:
    """Write ``events`` in the format given by the suffix of ``path`` (atomically).

    Returns:
        The number of events not written: for LHE and HepMC the events with non-zero ``status``, otherwise 0
        (``.npz`` and ``.parquet`` keep every event and its status).

    Raises:
        ValueError: unknown suffix, missing ``sigma_pb``/``error_pb`` for LHE, bad metadata or Events,
            or an unwritable path.
    """
    suffix = format_of(path)
    if suffix == ".npz":
        npz.write_npz(path, events, **metadata)
        return 0
    if suffix == ".parquet":
        parquet.write_parquet(path, events, **metadata)
        return 0
    if suffix in hepmc.SUFFIXES:
        return hepmc.write_hepmc(path, events, **metadata)
    missing = [k for k in ("sigma_pb", "error_pb") if k not in metadata]
    if missing:
        raise ValueError(f"LHE output {os.fspath(path)!r} needs metadata {', '.join(missing)} "
                         "(cross-section and its error in pb)")
    kwargs = {k: metadata.pop(k) for k in LHE_KEYWORDS if k in metadata}
    return lhe.write_lhe(path, events, metadata=metadata, **kwargs)


def read_events(path: str | os.PathLike) -> tuple[Events, dict[str, Any]]:
    """Read an event file written by :func:`write_events`; returns ``(events, metadata)``.

    Raises:
        ValueError: unknown suffix or a malformed file (the message names the file).
        FileNotFoundError: ``path`` does not exist.
    """
    suffix = format_of(path)
    if suffix == ".npz":
        return npz.read_npz(path)
    if suffix == ".parquet":
        return parquet.read_parquet(path)
    if suffix in hepmc.SUFFIXES:
        return hepmc.read_hepmc(path)
    return lhe._read(path)
