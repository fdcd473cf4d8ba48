"""Les Houches Event (LHE) files, version 3.0, for showering in Pythia, Herwig or Sherpa.

Format: the Les Houches accord file format (Alwall et al., hep-ph/0609017) with the
version-3.0 conventions (Andersen et al., arXiv:1405.1067)::

    <LesHouchesEvents version="3.0">
    <header>
    <diffgen>{"sqrt_s": 91.188}</diffgen>          (JSON metadata, XML-escaped; optional)
    </header>
    <init>
     IDBMUP(1) IDBMUP(2) EBMUP(1) EBMUP(2) PDFGUP(1) PDFGUP(2) PDFSUP(1) PDFSUP(2) IDWTUP NPRUP
     XSECUP XERRUP XMAXUP LPRUP
    <generator name="diffgen" version="...">...</generator>
    </init>
    <event>
     NUP IDPRUP XWGTUP SCALUP AQEDUP AQCDUP
     IDUP ISTUP MOTHUP(1) MOTHUP(2) ICOLUP(1) ICOLUP(2) PUP(1..5) VTIMUP SPINUP   (one line per particle)
    </event>
    ...
    </LesHouchesEvents>

What diffgen writes:

* ``<init>``: the beams (``beam_pids``, ``beam_energies`` in GeV), no PDFs (PDFGUP = PDFSUP = 0),
  IDWTUP = −4 for weighted events (XWGTUP averages to σ) or 3 for unweighted ones, NPRUP = 1,
  XSECUP = ``sigma_pb``, XERRUP = ``error_pb``, XMAXUP = the largest event weight written (pb),
  LPRUP = ``process_id``.
* each ``<event>``: the two incoming particles (ISTUP = −1, from ``Events.p4_in``/``pid_in``), then
  the occupied outgoing slots in slot order (ISTUP = 1, MOTHUP = 1 2). Colour tags ``t > 0`` in
  ``Events.colour`` become ``500 + t`` (the usual LHE numbering), 0 stays 0. Masses (PUP(5)) are
  the PDG table's for hadrons, leptons, photons and the beams, and the mass of the four-momentum,
  ``m = sqrt(max(E² − |p|², 0))``, for quarks and gluons (massless u, d, s; c and b with Pythia's m0
  in the hard process) and codes the table does not know (:func:`diffgen.io.mass.file_mass`).
  XWGTUP = ``exp(log_weight)`` in pb; SCALUP defaults to the event's √s = ``sqrt((p_in1 + p_in2)²)``;
  AQEDUP and AQCDUP are −1 when not given. VTIMUP = 0 and SPINUP = 9 (unknown). Floats carry 11
  significant digits.
* events with a non-zero ``status`` are skipped; :func:`write_lhe` returns how many.

Reading uses pylhe (2.x: :meth:`pylhe.LHEFile.fromfile`). :func:`read_lhe` keeps the
particles with ISTUP = −1 (incoming, at most 2) and ISTUP = 1 (outgoing); intermediate
particles are dropped. Colour tags ``c > 500`` come back as ``c − 500``.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from diffgen.events import Events
    >>> ev = Events.empty(1, 2)
    >>> p = os.path.join(tempfile.mkdtemp(), "ev.lhe")
    >>> write_lhe(p, ev, sigma_pb=1480.0, error_pb=2.0)
    0
    >>> read_lhe_init(p)["sigma_pb"]
    1480.0
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import warnings
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import numpy as np

from diffgen._version import __version__
from diffgen.events import Events
from diffgen.io.atomic import atomic_write
from diffgen.io.mass import file_mass
from diffgen.io.npz import decode_metadata, encode_metadata, events_from_arrays, host_arrays

if TYPE_CHECKING:  # pylhe (with awkward, ~0.7 s) is imported when a file is read, not with diffgen
    import pylhe

__all__ = ["write_lhe", "read_lhe", "read_lhe_init"]

_COLOUR_OFFSET = 500


def _num(x: float) -> str:
    return f"{x: .10e}"


def check_finite(name: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number, got {value!r}") from err
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _particle_line(pid, status, m1, m2, c1, c2, px, py, pz, e, m) -> str:
    return (f"{pid:9d} {status:3d} {m1:3d} {m2:3d} {c1:4d} {c2:4d} "
            f"{_num(px)} {_num(py)} {_num(pz)} {_num(e)} {_num(m)} 0.0000e+00 9.0000e+00\n")


def _lhe_colour(tag) -> int:
    tag = int(tag)
    return _COLOUR_OFFSET + tag if tag > 0 else 0


def _head_text(*, sigma_pb, error_pb, beam_pids, beam_energies, process_id, weighted, metadata, xmax) -> str:
    """Everything before the first ``<event>``: the header (metadata) and the ``<init>`` block."""
    out = ['<LesHouchesEvents version="3.0">\n']
    if metadata:
        out.append(f"<header>\n<diffgen>{escape(encode_metadata(metadata))}</diffgen>\n</header>\n")
    out.append("<init>\n")
    out.append(f" {int(beam_pids[0])} {int(beam_pids[1])} {_num(beam_energies[0])} {_num(beam_energies[1])}"
               f" 0 0 0 0 {-4 if weighted else 3} 1\n")
    out.append(f" {_num(sigma_pb)} {_num(error_pb)} {_num(xmax)} {int(process_id)}\n")
    out.append(f'<generator name="diffgen" version="{__version__}">diffgen event generator</generator>\n')
    out.append("</init>\n")
    return "".join(out)


def _max_weight(a: dict[str, np.ndarray], good: np.ndarray) -> float:
    weights = np.exp(a["log_weight"].astype(np.float64))
    return float(np.max(weights[good])) if np.any(good) else 0.0


def _write_events(f, a: dict[str, np.ndarray], good: np.ndarray, *, process_id, scale, alpha_em, alpha_s) -> None:
    """The ``<event>`` blocks of the good events of one batch."""
    weights = np.exp(a["log_weight"].astype(np.float64))
    p4, pid, mask, colour = a["p4"].astype(np.float64), a["pid"], a["mask"].astype(bool), a["colour"]
    p4_in, pid_in = a["p4_in"].astype(np.float64), a["pid_in"]
    mass = file_mass(a["p4"], pid)
    mass_in = file_mass(a["p4_in"], pid_in)
    p_sum = p4_in.sum(axis=1)
    sqrt_s = np.sqrt(np.maximum(p_sum[:, 0] ** 2 - np.sum(p_sum[:, 1:] ** 2, axis=-1), 0.0))
    aqed = -1.0 if alpha_em is None else alpha_em
    aqcd = -1.0 if alpha_s is None else alpha_s
    for i in np.flatnonzero(good):
        slots = np.flatnonzero(mask[i])
        q = sqrt_s[i] if scale is None else scale
        lines = [f"<event>\n {2 + len(slots)} {int(process_id)} {_num(weights[i])} {_num(q)} {_num(aqed)}"
                 f" {_num(aqcd)}\n"]
        for k in range(2):
            e, px, py, pz = p4_in[i, k]
            lines.append(_particle_line(int(pid_in[i, k]), -1, 0, 0, 0, 0, px, py, pz, e, mass_in[i, k]))
        for j in slots:
            e, px, py, pz = p4[i, j]
            lines.append(_particle_line(int(pid[i, j]), 1, 1, 2, _lhe_colour(colour[i, j, 0]),
                                        _lhe_colour(colour[i, j, 1]), px, py, pz, e, mass[i, j]))
        lines.append("</event>\n")
        f.write("".join(lines))


_FOOTER = "</LesHouchesEvents>\n"


def _write_body(f, a: dict[str, np.ndarray], good: np.ndarray, *, sigma_pb, error_pb, beam_pids, beam_energies,
                process_id, scale, alpha_em, alpha_s, weighted, metadata) -> None:
    f.write(_head_text(sigma_pb=sigma_pb, error_pb=error_pb, beam_pids=beam_pids, beam_energies=beam_energies,
                       process_id=process_id, weighted=weighted, metadata=metadata, xmax=_max_weight(a, good)))
    _write_events(f, a, good, process_id=process_id, scale=scale, alpha_em=alpha_em, alpha_s=alpha_s)
    f.write(_FOOTER)


@contextlib.contextmanager
def _text_output(name: str):
    """An atomic UTF-8 text stream at ``name``; gzip-compressed (reproducibly, mtime 0) if it ends in ``.gz``."""
    if name.endswith(".gz"):
        with atomic_write(name, "wb") as raw:
            inner = os.path.basename(name)[:-3]
            with gzip.GzipFile(filename=inner, mode="wb", fileobj=raw, mtime=0) as gz:
                f = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
                yield f
                f.flush()
                f.detach()  # leave gz open for its own close, which writes the gzip trailer
    else:
        with atomic_write(name, "w") as f:
            yield f


def check_options(*, sigma_pb, error_pb, beam_pids, scale, alpha_em, alpha_s, metadata) -> dict[str, Any]:
    """Validate the LHE options that do not depend on the events; returns them normalised."""
    sigma_pb = check_finite("sigma_pb", sigma_pb)
    error_pb = check_finite("error_pb", error_pb)
    if error_pb < 0:
        raise ValueError(f"error_pb must be >= 0, got {error_pb}")
    if len(beam_pids) != 2:
        raise ValueError(f"beam_pids must be two PDG codes, got {beam_pids!r}")
    if metadata:
        encode_metadata(metadata)  # fail before opening the file
    return dict(sigma_pb=sigma_pb, error_pb=error_pb, beam_pids=beam_pids,
                scale=check_finite("scale", scale, allow_none=True),
                alpha_em=check_finite("alpha_em", alpha_em, allow_none=True),
                alpha_s=check_finite("alpha_s", alpha_s, allow_none=True))


def check_beam_energies(beam_energies) -> tuple[float, float]:
    if len(beam_energies) != 2:
        raise ValueError(f"beam_energies must be two energies in GeV, got {beam_energies!r}")
    return tuple(check_finite("beam_energies", e) for e in beam_energies)


def write_lhe(path: str | os.PathLike, events: Events, *, sigma_pb: float, error_pb: float,
              beam_pids: tuple[int, int] = (11, -11), beam_energies: tuple[float, float] | None = None,
              process_id: int = 1, scale: float | None = None, alpha_em: float | None = None,
              alpha_s: float | None = None, weighted: bool = True,
              metadata: dict[str, Any] | None = None) -> int:
    """Write the good events (``status == 0``) to an LHE 3.0 file, atomically; return how many were skipped.

    Args:
        path: destination; a name ending in ``.gz`` is written gzip-compressed.
        events: :class:`~diffgen.events.Events` (jax or NumPy leaves); weights ``exp(log_weight)`` in pb.
        sigma_pb, error_pb: cross-section and its uncertainty for XSECUP/XERRUP, pb.
        beam_pids: IDBMUP, the PDG codes of the two beams.
        beam_energies: EBMUP in GeV; default: the largest incoming energy of each beam among the written
            events (the beam energy when there is no initial-state radiation).
        process_id: IDPRUP/LPRUP.
        scale: SCALUP in GeV for every event; default each event's √s.
        alpha_em, alpha_s: AQEDUP/AQCDUP; −1 (not given) by default.
        weighted: IDWTUP = −4 (weighted events, XWGTUP averages to σ) if True, else 3 (unweighted).
        metadata: JSON-serialisable values stored in ``<header><diffgen>…</diffgen></header>``.

    Returns:
        The number of events skipped because their ``status`` was not 0.

    Raises:
        ValueError: non-finite or negative ``sigma_pb``/``error_pb``, bad ``beam_pids``, inconsistent
            Events, non-serialisable metadata, or an unwritable path.

    Example:
        >>> import os, tempfile
        >>> from diffgen.events import Events
        >>> write_lhe(os.path.join(tempfile.mkdtemp(), "z.lhe.gz"), Events.empty(4, 2),
        ...           sigma_pb=1480.0, error_pb=2.0)
        0
    """
    a = host_arrays(events)
    opts = check_options(sigma_pb=sigma_pb, error_pb=error_pb, beam_pids=beam_pids, scale=scale,
                         alpha_em=alpha_em, alpha_s=alpha_s, metadata=metadata)
    good = a["status"] == 0
    if beam_energies is None:
        e_in = a["p4_in"][good][:, :, 0].astype(np.float64)
        beam_energies = tuple(e_in.max(axis=0)) if len(e_in) else (0.0, 0.0)
    beam_energies = check_beam_energies(beam_energies)
    with _text_output(os.fspath(path)) as f:
        _write_body(f, a, good, beam_energies=beam_energies, process_id=process_id, weighted=weighted,
                    metadata=metadata, **opts)
    return int(np.count_nonzero(~good))


def _open(name: str, where: str) -> pylhe.LHEFile:
    if not os.path.exists(name):
        raise FileNotFoundError(name)
    import pylhe

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            return pylhe.LHEFile.fromfile(name, with_attributes=True, generator=True)
    except (ValueError, RuntimeWarning, OSError, EOFError, IndexError, KeyError, AttributeError) as err:
        raise ValueError(f"{where}: not a readable LHE file ({err})") from err


def _init_dict(lhef: pylhe.LHEFile, where: str) -> dict[str, Any]:
    info = lhef.init.initInfo
    procs = lhef.init.procInfo
    if not procs:
        raise ValueError(f"{where}: <init> block has no process line")
    out: dict[str, Any] = {}
    if lhef.header is not None:
        for element in lhef.header.extra_elements:
            if element.tag == "diffgen":
                out.update(decode_metadata(element.text or "{}", where))
    out.update({
        "sigma_pb": float(sum(p.xSection for p in procs)),
        "error_pb": float(math.sqrt(sum(p.error ** 2 for p in procs))),
        "max_weight_pb": float(max(p.unitWeight for p in procs)),
        "beam_pids": [int(info.beamA), int(info.beamB)],
        "beam_energies": [float(info.energyA), float(info.energyB)],
        "process_id": int(procs[0].procId),
        "weighted": int(info.weightingStrategy) != 3,
        "idwtup": int(info.weightingStrategy),
    })
    return out


def read_lhe_init(path: str | os.PathLike) -> dict[str, Any]:
    """The ``<init>`` block and diffgen header metadata of an LHE file, without reading the events.

    Returns:
        The header's metadata plus ``sigma_pb`` (Σ XSECUP), ``error_pb`` (XERRUP in quadrature),
        ``max_weight_pb`` (XMAXUP), ``beam_pids``, ``beam_energies`` (GeV), ``process_id`` (LPRUP of the
        first process), ``idwtup`` and ``weighted`` (IDWTUP ≠ 3).

    Raises:
        ValueError: the file has no valid ``<init>`` block (the message names the file).
    """
    name = os.fspath(path)
    where = f"LHE file {name!r}"
    lhef = _open(name, where)
    try:
        return _init_dict(lhef, where)
    finally:
        lhef.events.close()


def _read(path: str | os.PathLike) -> tuple[Events, dict[str, Any]]:
    name = os.fspath(path)
    where = f"LHE file {name!r}"
    lhef = _open(name, where)
    meta = _init_dict(lhef, where)
    outgoing, incoming, weights = [], [], []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            for i, event in enumerate(lhef.events):
                parts = event.particles
                if len(parts) != event.eventinfo.nparticles:
                    raise ValueError(f"event {i} declares {event.eventinfo.nparticles} particles "
                                     f"but has {len(parts)}")
                ins = [p for p in parts if p.status == -1]
                if len(ins) > 2:
                    raise ValueError(f"event {i} has {len(ins)} incoming particles, at most 2 are supported")
                if event.eventinfo.weight < 0:
                    raise ValueError(f"event {i} has a negative weight, which log_weight cannot represent")
                incoming.append(ins)
                outgoing.append([p for p in parts if p.status == 1])
                weights.append(event.eventinfo.weight)
    except (ValueError, RuntimeWarning, IndexError, KeyError, AttributeError, EOFError, OSError) as err:
        raise ValueError(f"{where}: malformed or truncated ({err})") from err
    finally:
        lhef.events.close()

    n = len(outgoing)
    capacity = max((len(o) for o in outgoing), default=0)
    p4 = np.zeros((n, capacity, 4))
    pid = np.zeros((n, capacity), np.int32)
    colour = np.zeros((n, capacity, 2), np.int32)
    mask = np.zeros((n, capacity), bool)
    p4_in = np.zeros((n, 2, 4))
    pid_in = np.zeros((n, 2), np.int32)

    def tag(c: int) -> int:
        return c - _COLOUR_OFFSET if c > _COLOUR_OFFSET else c

    for i in range(n):
        for j, p in enumerate(outgoing[i]):
            p4[i, j] = (p.e, p.px, p.py, p.pz)
            pid[i, j] = p.id
            colour[i, j] = (tag(p.color1), tag(p.color2))
            mask[i, j] = True
        for k, p in enumerate(incoming[i]):
            p4_in[i, k] = (p.e, p.px, p.py, p.pz)
            pid_in[i, k] = p.id
    with np.errstate(divide="ignore"):
        log_weight = np.log(np.asarray(weights, np.float64))
    arrays = {"p4": p4, "pid": pid, "mask": mask, "colour": colour, "log_weight": log_weight,
              "status": np.zeros(n, np.uint32), "p4_in": p4_in, "pid_in": pid_in}
    return events_from_arrays(arrays), meta


def read_lhe(path: str | os.PathLike) -> Events:
    """Read an LHE file (plain or gzip) with pylhe into :class:`~diffgen.events.Events`.

    Returns:
        Events with float64 NumPy leaves: outgoing (ISTUP = 1) particles padded to the largest
        multiplicity, incoming (ISTUP = −1) in ``p4_in``/``pid_in``, ``log_weight = log(XWGTUP)``,
        ``status = 0``. Use :func:`read_lhe_init` for σ and the beams.

    Raises:
        ValueError: malformed or truncated file, more than two incoming particles, or a negative event
            weight (the message names the file).
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> import os, tempfile
        >>> from diffgen.events import Events
        >>> p = os.path.join(tempfile.mkdtemp(), "ev.lhe")
        >>> _ = write_lhe(p, Events.empty(2, 3), sigma_pb=1.0, error_pb=0.1)
        >>> read_lhe(p).n_events
        2
    """
    return _read(path)[0]
