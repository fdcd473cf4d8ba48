"""HepMC3 ASCII event files (via ``pyhepmc``), the format Rivet analyses and detector simulations read.

What diffgen writes (HepMC3 ``Asciiv3``, units GeV and mm, full double precision):

* a run header: the tool ``diffgen`` with its version, one weight named ``Default``, and the user's
  metadata as the JSON run attribute ``diffgen_metadata``; each scalar metadata value is also a run
  attribute of its own (``A sqrt_s 91.188``, ``A seed 1``), and each entry of a metadata table too
  (``A settings.StringZ:aLund 0.68``), so HepMC3 tools that know nothing of JSON can read them;
* one HepMC event per good event (``status == 0``; events with status flags are skipped and counted,
  as for LHE): the two incoming particles of ``Events.p4_in``/``pid_in`` as beams (HepMC status 4),
  one vertex, and the occupied outgoing slots in slot order as final-state particles (status 1).
  By default diffgen's ``Events`` keep the final state only, so there is no history (no Z, partons or
  resonances) in the record — enough for particle-level analyses, which select status 1. Events
  with a full record (``ee_hadrons(record=True)``, ``diffgen generate --record full``) are written as
  a graph instead, with Pythia's status codes for the intermediates (which HepMC3 leaves to the
  generator): beams (4) → the γ*/Z (22) → the hard q q̄ (23) → one shower vertex → the partons after
  the shower (71) → one hadronization vertex → the primary hadrons → one vertex per decay (the mother
  with status 2), so analyses that look for π0, K_S, Λ, D or B find them. The shower's intermediate
  partons (Pythia's 51–59) are not kept: the shower vertex has the hard partons in and the final
  partons out. Four-momentum balances at every vertex to float32 rounding;
* the event weight ``exp(log_weight)`` in pb and, when ``sigma_pb`` is given, a ``GenCrossSection``
  (σ, its error, and the numbers of accepted and attempted events) in every event, which Rivet uses to
  normalise histograms;
* generated masses from the PDG table (:data:`diffgen.particles.TABLE`, float64) for hadrons, leptons,
  photons and the beams, not recomputed from float32 momenta; quarks and gluons, which have no fixed
  mass, codes the table does not know and a full record's γ*/Z get the mass of their four-momentum,
  ``m = sqrt(max(E² − |p|², 0))`` (:func:`diffgen.io.mass.file_mass`).

A name ending in ``.gz`` is written gzip-compressed. The file appears at its final path only when it
is complete (:func:`diffgen.io.atomic.atomic_write`).

:func:`read_hepmc` reads any HepMC3 ASCII file, diffgen's or another generator's (e.g. Pythia's
``Pythia8ToHepMC``): the final-state particles (status 1), the first two beam particles (status 4),
the first event weight, the run metadata and the last event's cross-section.

Example:
    >>> import os, tempfile
    >>> from diffgen.events import Events
    >>> p = os.path.join(tempfile.mkdtemp(), "ev.hepmc3")
    >>> ev = Events.empty(2, 3)
    >>> ev = ev.replace(pid=ev.pid.at[:, 0].set(13), mask=ev.mask.at[:, 0].set(True))
    >>> write_hepmc(p, ev, sigma_pb=1480.0, error_pb=2.0, process="ee-mumu")
    0
    >>> events, meta = read_hepmc(p)
    >>> events.pid.tolist(), meta["process"], meta["sigma_pb"]
    ([[13], [13]], 'ee-mumu', 1480.0)
"""

from __future__ import annotations

import contextlib
import gzip
import os
from typing import Any

import numpy as np

from diffgen._version import __version__
from diffgen.checks import check_optional_int
from diffgen.events import Events
from diffgen.io.atomic import atomic_write
from diffgen.io.lhe import check_finite
from diffgen.io.mass import file_mass, generated_mass
from diffgen.io.npz import decode_metadata, encode_metadata, events_from_arrays, host_arrays

__all__ = ["write_hepmc", "read_hepmc", "HepMCStream", "SUFFIXES", "run_attributes"]

SUFFIXES = (".hepmc3", ".hepmc", ".hepmc3.gz", ".hepmc.gz")
_META_KEY = "diffgen_metadata"
_BEAM, _FINAL = 4, 1


def _pyhepmc(path) -> Any:
    try:
        import pyhepmc
    except ImportError:  # pragma: no cover - pyhepmc is a core dependency
        raise ValueError(f"HepMC file {os.fspath(path)!r} needs the package pyhepmc (pip install pyhepmc)") from None
    return pyhepmc


class HepMCStream:
    """Append batches of events to one HepMC3 file; the file appears at ``path`` only on :meth:`close`.

    Used by :func:`write_hepmc` (one batch) and :class:`diffgen.io.EventWriter` (chunk by chunk, so a
    long run's output never has to sit in memory). Event numbers count every event offered, written or
    skipped, so they are the events' indices in the run.
    """

    def __init__(self, path: str | os.PathLike, **metadata: Any):
        pyhepmc = _pyhepmc(path)
        meta_json = encode_metadata(metadata)  # fail before opening the file
        self._pyhepmc = pyhepmc
        self._run = pyhepmc.GenRunInfo()
        self._run.tools = [pyhepmc.GenRunInfo.ToolInfo("diffgen", __version__, "differentiable event generator in JAX")]
        self._run.weight_names = ["Default"]
        self._run.attributes[_META_KEY] = meta_json
        for name, value in run_attributes(metadata).items():
            self._run.attributes[name] = value
        self.n_seen = 0
        self.n_written = 0
        self._stack = contextlib.ExitStack()
        try:
            raw = self._stack.enter_context(atomic_write(path, "wb"))
            f = raw
            if os.fspath(path).lower().endswith(".gz"):
                f = self._stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0))
            self._out = self._stack.enter_context(pyhepmc.open(f, "w"))
        except BaseException as err:
            self.abort(err)
            raise

    def write(self, events: Events, sigma_pb: float | None = None, error_pb: float | None = None) -> int:
        """Write the good events of a batch; ``sigma_pb``/``error_pb`` (the current estimate) go into each
        event's ``GenCrossSection``. Returns the number of events skipped for a non-zero ``status``."""
        a = host_arrays(events)
        sigma_pb, error_pb = _check_cross_section(sigma_pb, error_pb)
        good = np.flatnonzero(a["status"] == 0)
        p4, pid, mask = a["p4"].astype(np.float64), a["pid"].astype(np.int32), a["mask"].astype(bool)
        p4_in, pid_in = a["p4_in"].astype(np.float64), a["pid_in"].astype(np.int32)
        weights = np.exp(a["log_weight"].astype(np.float64))
        mass, mass_in = file_mass(p4, pid), file_mass(p4_in, pid_in)
        if events.record is not None:
            self._write_records(events.record, good, p4_in, pid_in, mass_in, weights, sigma_pb, error_pb)
            self.n_seen += int(a["status"].size)
            return int(a["status"].size - good.size)
        for i in good:
            slots = np.flatnonzero(mask[i])
            k = 2 + slots.size
            mom = np.concatenate([p4_in[i], p4[i, slots]])
            parents = np.full((k, 2), -1, np.int64)
            parents[2:] = (0, 1)
            self._emit(int(i), mom, np.concatenate([mass_in[i], mass[i, slots]]),
                       np.concatenate([pid_in[i], pid[i, slots]]),
                       np.array([_BEAM, _BEAM] + [_FINAL] * slots.size), parents, weights[i], sigma_pb, error_pb)
        self.n_seen += int(a["status"].size)
        return int(a["status"].size - good.size)

    def _write_records(self, record, good, p4_in, pid_in, mass_in, weights, sigma_pb, error_pb) -> None:
        """The full record (``--record full``) as a vertex graph, through HEPEVT mother ranges (see the module
        docstring): beams (4) → γ*/Z (22) → hard partons (23) → shower vertex → partons (71) → hadronization
        vertex → primary hadrons → a vertex per decay (mother status 2)."""
        from diffgen.events import (
            FROM_BEAMS,
            FROM_SHOWER,
            FROM_STRINGS,
            RECORD_HARD_PARTON,
            RECORD_HARD_RESONANCE,
            RECORD_PARTON,
        )

        r_p4 = np.asarray(record.p4, np.float64)
        r_pid = np.asarray(record.pid, np.int32)
        r_st = np.asarray(record.status, np.int32)
        r_par = np.asarray(record.parent, np.int64)
        # the γ*/Z is off its pole: the mass of its momentum (√ŝ), not the table's
        r_mass = np.where(r_st == RECORD_HARD_RESONANCE, generated_mass(r_p4), file_mass(r_p4, r_pid))
        for i in good:
            keep = np.flatnonzero(r_st[i] != 0)
            where = np.full(r_st.shape[1], -1, np.int64)
            where[keep] = 2 + np.arange(keep.size)
            st = r_st[i, keep]
            par = r_par[i, keep]
            mothers = np.empty((keep.size, 2), np.int64)
            mothers[par == FROM_BEAMS] = (0, 1)
            # a group's entries are contiguous in the record (each is written by one stage), so one range
            mothers[par == FROM_STRINGS] = _group_range(where[keep[st == RECORD_PARTON]])
            mothers[par == FROM_SHOWER] = _group_range(where[keep[st == RECORD_HARD_PARTON]])
            dec = par >= 0
            mothers[dec] = np.stack([where[par[dec]], where[par[dec]]], axis=1)
            parents = np.concatenate([np.full((2, 2), -1, np.int64), mothers])
            self._emit(int(i), np.concatenate([p4_in[i], r_p4[i, keep]]),
                       np.concatenate([mass_in[i], r_mass[i, keep]]), np.concatenate([pid_in[i], r_pid[i, keep]]),
                       np.concatenate([[_BEAM, _BEAM], st]), parents, weights[i], sigma_pb, error_pb)

    def _emit(self, i, mom, mass, pid, status, parents, weight, sigma_pb, error_pb) -> None:
        """One HepMC event from HEPEVT-style arrays (entry 0, 1: the beams; ``parents``: 0-based ranges)."""
        pyhepmc = self._pyhepmc
        ev = pyhepmc.GenEvent(pyhepmc.Units.GEV, pyhepmc.Units.MM)
        ev.from_hepevt(self.n_seen + i, mom[:, 1].copy(), mom[:, 2].copy(), mom[:, 3].copy(), mom[:, 0].copy(),
                       mass, pid.astype(np.int32), status.astype(np.int32), parents=parents, fortran=False)
        ev.run_info = self._run
        ev.weights = [float(weight)]
        self.n_written += 1
        if sigma_pb is not None:
            xs = pyhepmc.GenCrossSection()
            xs.set_cross_section(sigma_pb, error_pb, self.n_written, self.n_seen + i + 1)
            ev.cross_section = xs
        self._out.write(ev)

    def close(self) -> None:
        """Finish the file and move it to its final path."""
        self._stack.close()

    def abort(self, err: BaseException | None = None) -> None:
        """Drop the partial file (an existing file at the path is left untouched)."""
        err = err or RuntimeError("HepMC output aborted")
        self._stack.__exit__(type(err), err, err.__traceback__)


def _group_range(entries: np.ndarray) -> tuple[int, int]:
    """The HEPEVT mother range (first, last) of a group of written entries; the beams (0, 1) if it is empty."""
    return (int(entries.min()), int(entries.max())) if entries.size else (0, 1)


def run_attributes(metadata: dict[str, Any]) -> dict[str, Any]:
    """The HepMC3 run attributes of ``metadata``: scalars as they are (bools as ``"true"``/``"false"``), and
    the scalar entries of tables as ``"table.key"``; lists and deeper tables stay in the JSON only.

    Example:
        >>> run_attributes({"seed": 1, "settings": {"23:m0": 91.2}, "ok": True, "xs": [1, 2]})
        {'seed': 1, 'settings.23:m0': 91.2, 'ok': 'true'}
    """
    out: dict[str, Any] = {}

    def scalar(v):
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool):
            return "true" if v else "false"
        return v if isinstance(v, (int, float, str)) else None

    for key, value in metadata.items():
        if key == _META_KEY:
            continue
        if isinstance(value, dict):
            for k, v in value.items():
                if scalar(v) is not None:
                    out[f"{key}.{k}"] = scalar(v)
        elif scalar(value) is not None:
            out[key] = scalar(value)
    return out


def _check_cross_section(sigma_pb, error_pb) -> tuple[float | None, float | None]:
    if error_pb is not None and sigma_pb is None:
        raise ValueError("write_hepmc: error_pb given without sigma_pb")
    if sigma_pb is None:
        return None, None
    sigma_pb = check_finite("sigma_pb", sigma_pb)
    error_pb = 0.0 if error_pb is None else check_finite("error_pb", error_pb)
    if sigma_pb < 0 or error_pb < 0:
        raise ValueError(f"sigma_pb and error_pb must be >= 0, got {sigma_pb} and {error_pb}")
    return sigma_pb, error_pb


def write_hepmc(path: str | os.PathLike, events: Events, *, sigma_pb: float | None = None,
                error_pb: float | None = None, **metadata: Any) -> int:
    """Write the good events (``status == 0``) to a HepMC3 ASCII file, atomically; return how many were skipped.

    Args:
        path: destination (``.hepmc3``/``.hepmc``, optionally ``.gz``).
        events: :class:`~diffgen.events.Events` (jax or NumPy leaves); weights ``exp(log_weight)`` in pb.
        sigma_pb, error_pb: cross-section and its error in pb, stored as each event's ``GenCrossSection``
            (``error_pb`` defaults to 0 when only ``sigma_pb`` is given).
        **metadata: JSON-serialisable values stored as the run attribute ``diffgen_metadata``.

    Returns:
        The number of events skipped because their ``status`` was not 0.

    Raises:
        ValueError: non-finite or negative ``sigma_pb``/``error_pb``, inconsistent Events,
            non-serialisable metadata, or an unwritable path.
    """
    host_arrays(events)
    _check_cross_section(sigma_pb, error_pb)
    out = HepMCStream(path, **metadata)
    try:
        skipped = out.write(events, sigma_pb, error_pb)
    except BaseException as err:
        out.abort(err)
        raise
    out.close()
    return skipped


def _check_header(path: str) -> None:
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(256)
    except (OSError, EOFError) as err:
        raise ValueError(f"HepMC file {path!r}: not readable ({err})") from err
    if b"HepMC::Asciiv3" not in head and b"HepMC::IO_GenEvent" not in head:
        raise ValueError(f"HepMC file {path!r}: no 'HepMC::Asciiv3' (or HepMC2 'HepMC::IO_GenEvent') header; "
                         "not a HepMC ASCII file")


def read_hepmc(path: str | os.PathLike, capacity: int | None = None) -> tuple[Events, dict[str, Any]]:
    """Final-state particles (status 1) of a HepMC3 (or HepMC2) ASCII file as :class:`Events`.

    Args:
        path: the file (``.gz`` is decompressed).
        capacity: particle slots per event; default the largest final-state multiplicity. Events with
            more final-state particles than ``capacity`` raise ``ValueError`` (nothing is dropped silently).

    Returns:
        ``(events, metadata)``: Events with float64 host NumPy leaves (weights: the first event weight,
        1 if none; incoming: the first two status-4 particles, zeros if absent; no colour), and the run's
        ``diffgen_metadata`` plus ``sigma_pb``/``error_pb`` from the last event's cross-section when present.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``capacity`` not None or an integer >= 1, not a HepMC ASCII file, no events, or an
            event larger than ``capacity``.
    """
    name = os.fspath(path)
    capacity = check_optional_int(capacity, "capacity", what="particle slots per event")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"HepMC file {name!r} does not exist")
    pyhepmc = _pyhepmc(name)
    _check_header(name)
    p4s, pids, weights, beams, beam_ids = [], [], [], [], []
    metadata: dict[str, Any] = {}
    xsec = None
    with pyhepmc.open(name) as f:
        for ev in f:
            parts = ev.numpy.particles
            status = np.asarray(parts.status)
            mom = np.stack([np.asarray(parts.e), np.asarray(parts.px), np.asarray(parts.py), np.asarray(parts.pz)], -1)
            pid = np.asarray(parts.pid)
            fs, bm = status == _FINAL, np.flatnonzero(status == _BEAM)[:2]
            p4s.append(mom[fs])
            pids.append(pid[fs])
            weights.append(float(ev.weights[0]) if len(ev.weights) else 1.0)
            b4, bid = np.zeros((2, 4)), np.zeros(2, np.int32)
            b4[: bm.size], bid[: bm.size] = mom[bm], pid[bm]
            beams.append(b4)
            beam_ids.append(bid)
            if ev.cross_section is not None:
                xsec = ev.cross_section
            if not metadata and ev.run_info is not None and _META_KEY in ev.run_info.attributes:
                raw = ev.run_info.attributes[_META_KEY]  # str, or an UnparsedAttribute when read lazily
                metadata = decode_metadata(raw if isinstance(raw, str) else raw.astype(str), f"HepMC file {name!r}")
    if not p4s:
        raise ValueError(f"HepMC file {name!r} has no events")
    n = len(p4s)
    largest = max(p.size for p in pids)
    cap = max(1, largest) if capacity is None else capacity
    if cap < largest:
        raise ValueError(f"HepMC file {name!r}: an event has {largest} final-state particles, more than "
                         f"capacity={cap}")
    p4 = np.zeros((n, cap, 4))
    pid = np.zeros((n, cap), np.int32)
    mask = np.zeros((n, cap), bool)
    for i, (a, b) in enumerate(zip(p4s, pids)):
        p4[i, : b.size], pid[i, : b.size], mask[i, : b.size] = a, b, True
    w = np.asarray(weights, float)
    with np.errstate(divide="ignore"):
        lw = np.where(w > 0, np.log(np.where(w > 0, w, 1.0)), -np.inf)
    if xsec is not None:
        metadata["sigma_pb"] = float(xsec.xsec())
        metadata["error_pb"] = float(xsec.xsec_err())
    arrays = {"p4": p4, "pid": pid, "mask": mask, "colour": np.zeros((n, cap, 2), np.int32), "log_weight": lw,
              "status": np.zeros(n, np.uint32), "p4_in": np.stack(beams), "pid_in": np.stack(beam_ids)}
    return events_from_arrays(arrays), metadata
