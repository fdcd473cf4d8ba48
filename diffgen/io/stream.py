"""Chunk-by-chunk event output: :class:`EventWriter`.

A long run should not have to keep its events in memory to write them. :class:`EventWriter` takes
the events one chunk at a time (e.g. from :func:`diffgen.generate`'s ``on_chunk``) and writes the
file whose format the suffix names, as :func:`diffgen.io.write_events` does:

* **HepMC3** streams each chunk straight into the (temporary) output file. Each event's
  ``GenCrossSection`` carries the cross-section estimate passed with its chunk — the running
  estimate, as Pythia does — so the last event holds the final value that Rivet uses.
* **LHE** streams the ``<event>`` blocks into a temporary body file; :meth:`EventWriter.close`
  writes the header and ``<init>`` block (σ, its error and the largest weight are known only then)
  and appends the body.
* **npz** and **Parquet** keep the chunks and write them at :meth:`EventWriter.close` (both formats
  are columnar; memory is not bounded for them).

Whatever the format, the file appears at its final path only when :meth:`EventWriter.close`
succeeds; an exception inside ``with EventWriter(...)`` (or :meth:`EventWriter.abort`) leaves no
file and no temporary behind. The result is the same file that :func:`~diffgen.io.write_events`
writes for all the events at once (byte for byte for LHE, and for HepMC3 when every chunk gets the
same cross-section).

Example:
    >>> import os, tempfile
    >>> from diffgen.events import Events
    >>> p = os.path.join(tempfile.mkdtemp(), "ev.lhe")
    >>> with EventWriter(p, process="demo") as out:
    ...     for chunk in (Events.empty(2, 1), Events.empty(3, 1)):
    ...         _ = out.write(chunk)
    ...     out.close(sigma_pb=10.0, error_pb=0.5)
    0
    >>> from diffgen.io import read_events
    >>> read_events(p)[0].n_events
    5
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from diffgen.events import Events
from diffgen.io import hepmc, lhe
from diffgen.io.atomic import check_writable
from diffgen.io.dispatch import LHE_KEYWORDS, format_of, write_events
from diffgen.io.npz import encode_metadata, events_from_arrays, host_arrays, truth_arrays

__all__ = ["EventWriter"]


class EventWriter:
    """Write events chunk by chunk to ``path``; the format follows the suffix (see the module docstring).

    Args:
        path: destination; checked before anything is written (``ValueError`` if unwritable or an
            unknown suffix).
        **metadata: as for :func:`diffgen.io.write_events`. For LHE the keywords of
            :func:`diffgen.io.lhe.write_lhe` (``beam_pids``, ``beam_energies``, ``process_id``, ``scale``,
            ``alpha_em``, ``alpha_s``, ``weighted``) are taken from it; ``sigma_pb``/``error_pb`` are given
            to :meth:`close` (and, for HepMC3, to each :meth:`write`).

    Use it as a context manager, and call :meth:`close` inside the ``with`` block: leaving the block
    without :meth:`close`, or by an exception, removes the partial output.
    """

    def __init__(self, path: str | os.PathLike, **metadata: Any):
        self.path = os.fspath(path)
        self.suffix = format_of(self.path)
        for key in ("sigma_pb", "error_pb"):
            if key in metadata:
                raise ValueError(f"EventWriter: pass {key} to close() (and write() for HepMC), not as metadata")
        check_writable(self.path)
        self.n_skipped = 0
        self.n_events = 0
        self._closed = False
        self._chunks: list[Events] = []
        self._hepmc: hepmc.HepMCStream | None = None
        self._body = None
        self._body_path: str | None = None
        if self.suffix in hepmc.SUFFIXES:
            self._metadata = metadata
            self._hepmc = hepmc.HepMCStream(self.path, **metadata)
        elif self.suffix.startswith(".lhe"):
            self._lhe = {k: metadata.pop(k) for k in LHE_KEYWORDS if k in metadata}
            self._metadata = metadata
            encode_metadata(metadata)
            lhe.check_options(sigma_pb=0.0, error_pb=0.0, beam_pids=self._lhe.get("beam_pids", (11, -11)),
                              scale=self._lhe.get("scale"), alpha_em=self._lhe.get("alpha_em"),
                              alpha_s=self._lhe.get("alpha_s"), metadata=None)
            if self._lhe.get("beam_energies") is not None:
                lhe.check_beam_energies(self._lhe["beam_energies"])
            directory, base = os.path.split(os.path.realpath(self.path))
            fd, self._body_path = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".body.tmp")
            self._body = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
            self._xmax = 0.0
            self._e_beam = np.zeros(2)
        else:
            self._metadata = metadata
            encode_metadata(metadata)

    # ------------------------------------------------------------------------------------------
    def write(self, events: Events, sigma_pb: float | None = None, error_pb: float | None = None) -> int:
        """Add a chunk. ``sigma_pb``/``error_pb``: the current cross-section estimate (used by HepMC3 only).

        Returns the number of events of the chunk that will not be in the file (LHE and HepMC3 skip
        events with a non-zero ``status``; npz and Parquet keep them).
        """
        if self._closed:
            raise ValueError(f"EventWriter for {self.path!r} is closed")
        a = host_arrays(events)
        n = int(a["status"].size)
        if self._hepmc is not None:
            skipped = self._hepmc.write(events, sigma_pb, error_pb)
        elif self._body is not None:
            good = a["status"] == 0
            self._xmax = max(self._xmax, lhe._max_weight(a, good))
            if np.any(good):
                self._e_beam = np.maximum(self._e_beam, a["p4_in"][good][:, :, 0].astype(np.float64).max(axis=0))
            lhe._write_events(self._body, a, good, process_id=self._lhe.get("process_id", 1),
                              scale=self._lhe.get("scale"), alpha_em=self._lhe.get("alpha_em"),
                              alpha_s=self._lhe.get("alpha_s"))
            skipped = int(np.count_nonzero(~good))
        else:
            self._chunks.append(events_from_arrays({**a, **truth_arrays(events)}))  # npz keeps the truth record
            skipped = 0
        self.n_events += n
        self.n_skipped += skipped
        return skipped

    def close(self, sigma_pb: float | None = None, error_pb: float | None = None) -> int:
        """Finish the file and move it to ``path``; returns the number of events not written.

        LHE needs ``sigma_pb`` and ``error_pb`` here; npz and Parquet store them as metadata when given;
        HepMC3 ignores them (each event already carries the estimate given to :meth:`write`).
        """
        if self._closed:
            raise ValueError(f"EventWriter for {self.path!r} is closed")
        try:
            if self._hepmc is not None:
                self._hepmc.close()
            elif self._body is not None:
                self._close_lhe(sigma_pb, error_pb)
            else:
                extra = {k: v for k, v in (("sigma_pb", sigma_pb), ("error_pb", error_pb)) if v is not None}
                chunks = self._chunks or [Events.empty(0, 0)]
                events = Events.concatenate(chunks)  # host chunks stay NumPy with their dtypes
                write_events(self.path, events, **self._metadata, **extra)
        except BaseException as err:
            self.abort(err)
            raise
        self._closed = True
        return self.n_skipped

    def _close_lhe(self, sigma_pb, error_pb) -> None:
        if sigma_pb is None or error_pb is None:
            raise ValueError(f"LHE output {self.path!r} needs sigma_pb and error_pb at close "
                             "(cross-section and its error in pb)")
        opts = lhe.check_options(sigma_pb=sigma_pb, error_pb=error_pb, beam_pids=self._lhe.get("beam_pids", (11, -11)),
                                 scale=None, alpha_em=None, alpha_s=None, metadata=self._metadata)
        beam_energies = self._lhe.get("beam_energies")
        beam_energies = lhe.check_beam_energies(tuple(self._e_beam) if beam_energies is None else beam_energies)
        self._body.close()
        with lhe._text_output(self.path) as f:
            f.write(lhe._head_text(sigma_pb=opts["sigma_pb"], error_pb=opts["error_pb"], beam_pids=opts["beam_pids"],
                                   beam_energies=beam_energies, process_id=self._lhe.get("process_id", 1),
                                   weighted=self._lhe.get("weighted", True), metadata=self._metadata,
                                   xmax=self._xmax))
            with open(self._body_path, encoding="utf-8", newline="\n") as body:
                shutil.copyfileobj(body, f, 1 << 20)
            f.write(lhe._FOOTER)
        self._remove_body()

    def _remove_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(OSError):
                self._body.close()
        if self._body_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._body_path)
            self._body_path = None

    def abort(self, err: BaseException | None = None) -> None:
        """Drop everything written so far; no file appears (an existing file at ``path`` is kept)."""
        if self._closed:
            return
        self._closed = True
        if self._hepmc is not None:
            self._hepmc.abort(err)
        self._remove_body()
        self._chunks = []

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.abort(exc)
