"""Command-line interface: ``diffgen generate``, ``tune``, ``merge``, ``settings`` and ``train-hadronization``.

Example::

    diffgen generate --process ee-mumu --sqrt-s 91.188 --events 100000 --seed 1 \\
        --set "23:m0=91.2" --out events.lhe --plot costheta.png

Settings as in Pythia: ``--settings run.cmnd`` reads a ``.cmnd`` file (:mod:`diffgen.cmnd`) and
``--set "Group:name = value"`` (repeatable) overrides it, switches included
(``--set "HadronLevel:Decay = off"``); ``Beams:eCM`` there is the same as ``--sqrt-s``.

Everything is validated before any event is generated: process name, √s (against the process's
threshold), number of events (``--events 1e5`` is fine), ``--set`` syntax, setting names and ranges,
output paths (an existing ``--out`` or ``--plot`` needs ``--force``) and a ``--compare`` file.
Ctrl-C stops with exit code 130 and leaves no partial file; progress bars are drawn only on a terminal.
A run in which every event is flagged (zero weight, e.g. ``BELOW_THRESHOLD``) exits with code 1,
naming the flags, and leaves no output file.

``--plot`` draws 1/σ dσ/dX (``--absolute``: dσ/dX in pb) with physics labels, log scales (log x
and log-spaced bins for y23) and integer-aligned count bins (:mod:`diffgen.plotting`) of the
``--observables`` (default: the process's); ``--compare FILE`` overlays a reference (an event file
analysed like the run, or YODA histograms matched by name) with a ratio panel. The terminal gets one
line per histogram, ``--histograms`` the full text histograms.

``generate`` and ``tune`` keep JAX's persistent compilation cache (compiled programs, so a second
run skips most of the compilation) in ``$DIFFGEN_CACHE_DIR``, by default
``$XDG_CACHE_HOME/diffgen/jax`` or ``~/.cache/diffgen/jax``; ``--no-cache`` or an empty
``DIFFGEN_CACHE_DIR`` turns it off.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from diffgen.checks import check_int
from diffgen.events import status_summary
from diffgen.params import DEFAULT_SQRT_S

__all__ = ["main", "parse_set", "parse_count", "text_histogram", "cache_dir"]


class AllEventsFlagged(Exception):
    """A ``generate`` run produced no event with status 0: nothing to write, σ = 0 is meaningless."""


def _check_some_event_good(n_events: int, n_flagged: int, flags: dict[str, int], what: str) -> None:
    """``AllEventsFlagged`` naming the flags when all ``n_events`` generated events were flagged."""
    if n_events > 0 and n_flagged >= n_events:
        named = ", ".join(f"{name} ({count})" for name, count in flags.items() if count) or "unknown"
        raise AllEventsFlagged(f"all {n_events} generated events were flagged (weight 0) by {named}; "
                               f"no output written. {what}")


_OUT_SUFFIXES = (".lhe", ".npz", ".parquet", ".hepmc3", ".hepmc", ".lhe.gz", ".hepmc3.gz", ".hepmc.gz")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def parse_set(items, ignore_unknown: bool = False) -> dict[str, float | bool]:
    """Parse ``["name=value", ...]`` into a dict (``ValueError`` on malformed entries).

    Numbers become floats, Pythia's switches (``HadronLevel:Decay = off``) bools; names are matched
    without regard to case (:func:`diffgen.params.parse_settings`). As in a ``.cmnd`` file (and
    Pythia's ``readString``), ``"name value"`` without ``=`` is accepted too.

    Example:
        >>> parse_set(["23:m0 = 91.2", "hadronlevel:decay=off", "TimeShower:alphaSvalue 0.13"])
        {'23:m0': 91.2, 'HadronLevel:Decay': False, 'TimeShower:alphaSvalue': 0.13}
    """
    from diffgen.params import parse_settings, split_entry

    out: dict[str, float | bool] = {}
    for item in items or []:
        try:  # the settings' own line parser (as in .cmnd files), with a message in the CLI's terms
            split_entry(item.strip(), "--set")
        except ValueError:
            raise ValueError(f"malformed --set {item!r}: expected NAME=VALUE (or Pythia's NAME VALUE) with a "
                             "'Group:name' setting name, e.g. --set \"23:m0=91.2\"") from None
        out.update(parse_settings([item], ignore_unknown=ignore_unknown, where=f"--set {item!r}"))
    return out


def parse_count(text, name: str = "--events") -> int:
    """A positive event count from ``100000``, ``100_000`` or ``1e5`` (``ValueError`` otherwise).

    Example:
        >>> parse_count("1e5"), parse_count("2_000")
        (100000, 2000)
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return check_int(text, name)
    try:
        v = int(str(text).replace("_", ""))
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a positive integer such as 100000 or 1e5, got {text!r}") from None
        if not (math.isfinite(f) and f == int(f)):
            raise ValueError(f"{name} must be a whole number of events, got {text!r}") from None
        v = int(f)
    return check_int(v, name)


def _check_output(path: str, suffixes, what: str, force: bool = True) -> None:
    from diffgen.io.atomic import check_writable

    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory")
    if os.path.lexists(path) and not force:
        raise ValueError(f"{what} {path!r} exists; use --force to overwrite it")
    if not path.lower().endswith(suffixes):
        raise ValueError(f"{what} {path!r} has an unknown suffix; allowed: {', '.join(suffixes)}")
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise ValueError(f"{what} {path!r}: directory {directory!r} does not exist")
    check_writable(path)


def text_histogram(contents, errors, edges, width: int = 50, label: str = "") -> str:
    """A terminal histogram: one line per bin with a bar scaled to the largest bin.

    Edges are printed with three decimals (``[+0.250,+0.500)``), or in exponent form
    (``[+3.16e-05,+4.22e-05)``) when three decimals would print two edges alike (log-spaced y23 bins).
    """
    contents = np.asarray(contents, float)
    errors = np.asarray(errors, float)
    edges = np.asarray(edges, float)
    top = contents.max() if contents.size and contents.max() > 0 else 1.0
    lines = [label] if label else []
    shown = [f"{e:+7.3f}" for e in edges]
    if len(set(shown)) < len(shown):
        shown = [f"{e:+9.2e}" for e in edges]
    for lo, hi, c, e in zip(shown[:-1], shown[1:], contents, errors):
        bar = "#" * int(round(width * max(c, 0.0) / top))
        lines.append(f"[{lo},{hi}) {c:11.4g} ± {e:9.3g} |{bar}")
    return "\n".join(lines)


def _analytic_dsigma(gen, params, centres):
    """Σ_f dσ_f/dcos θ at the bin centres (pb), for the overlay."""
    from diffgen.amplitudes import ee_ffbar
    from diffgen.processes import fermion_mass

    hard = params["hard"]
    total = np.zeros_like(centres)
    for f in gen.info.get("flavours", ()):
        total += np.asarray(ee_ffbar.dsigma_dcos(hard, f, fermion_mass(f), centres))
    return total


def _analytic_sigma(gen, params) -> float:
    """Σ_f σ_f (pb), to normalise the analytic curve."""
    from diffgen.amplitudes import ee_ffbar
    from diffgen.processes import fermion_mass

    return float(sum(float(ee_ffbar.sigma_total(params["hard"], f, fermion_mass(f)))
                     for f in gen.info.get("flavours", ())))


#: Registry names of the histograms ``diffgen generate`` prints, by process (default: ``cos_theta``);
#: ``--observables`` replaces them (y23 is not among the defaults: Durham clustering costs O(P³) per event).
_PRINTED = {"ee-hadrons": ("thrust", "c_parameter", "sphericity", "charged_multiplicity")}


def _observable_names(process: str, observables: str | None = None) -> tuple[str, ...]:
    """The registry names the run histograms: ``--observables`` (comma-separated), else the process's
    defaults (:data:`_PRINTED`). ``ValueError`` for an unknown name (with close matches) or a repeat."""
    if observables is None:
        return tuple(_PRINTED.get(process, ("cos_theta",)))
    from diffgen.observables import observable_spec

    names = tuple(n.strip() for n in str(observables).split(","))
    if not all(names):
        raise ValueError(f"--observables must be registry names separated by commas, got {observables!r}")
    for name in names:
        try:
            observable_spec(name)
        except ValueError as err:
            raise ValueError(f"--observables: {err}") from None
    if len(set(names)) < len(names):
        raise ValueError(f"--observables names an observable twice: {observables!r}")
    return names


class _Histogrammed(NamedTuple):
    """One histogram of the run: its registry name, plain-text label, a host function of a chunk
    giving the plotted variable (1 − T for thrust, :mod:`diffgen.plotting`), and the edges."""

    name: str
    label: str
    fn: Callable
    edges: np.ndarray


def _histogram_specs(process: str, bins: int, edges: dict | None = None,
                     names: Sequence[str] | None = None) -> list[_Histogrammed]:
    """The histograms the CLI fills: ``names`` (default: the process's, :func:`_observable_names`) from
    :data:`diffgen.observables.REGISTRY` with the plot styles of :mod:`diffgen.plotting`: the default
    binning of :func:`diffgen.plotting.default_edges` (``bins`` equal bins in the plotted range,
    ``bins`` log-spaced ones for y23, integer-aligned bins of the registry's width for counts), or
    ``edges[name]`` (a YODA reference's binning)."""
    import jax

    from diffgen import plotting
    from diffgen.observables import observable_spec

    out = []
    for name in _observable_names(process) if names is None else names:
        spec = observable_spec(name)
        st = plotting.style(name)
        f = jax.jit(spec.fn)
        tr = st.transform or (lambda x: x)
        if edges and name in edges:
            e = np.asarray(edges[name], float)
        else:
            e = plotting.default_edges(name, bins, spec.range, spec.step)
        out.append(_Histogrammed(name, st.text, lambda ev, f=f, tr=tr: np.asarray(tr(np.asarray(f(ev), float))), e))
    return out


def _plot(args, hists, refs, title, analytic=None) -> list:
    """Draw the run's histograms (and references) into ``args.plot``; return the drawn panels."""
    from diffgen import plotting

    fig, drawn = plotting.figure(hists, refs, absolute=args.absolute, title=title,
                                 extra={"cos_theta": analytic} if analytic is not None else None)
    plotting.save_figure(fig, args.plot)
    return drawn


_YODA_SUFFIXES = (".yoda",)


class _Compare(NamedTuple):
    """A ``--compare`` reference read before generation: YODA histograms by path, or events.

    ``sigma_pb``: for HepMC3 and LHE files, the file's cross-section (HepMC3 ``GenCrossSection``,
    LHE ``XSECUP``) to which the event weights are normalised (another generator's weights need not
    be in pb: Pythia's are 1); None for npz/Parquet (diffgen's own weights, already in pb).
    """

    path: str
    yoda: dict | None
    events: object | None
    n: int
    sigma_pb: float | None = None


_XSEC_SUFFIXES = (".lhe", ".lhe.gz", ".hepmc3", ".hepmc3.gz", ".hepmc", ".hepmc.gz")


def _read_compare(path: str, absolute: bool = False) -> _Compare:
    """Read ``--compare FILE`` (before any event is generated): ``ValueError`` naming the file if it is
    missing, of an unknown kind or unreadable, or if ``absolute`` (``--absolute``) needs a cross-section
    that a HepMC3/LHE file does not give."""
    from diffgen.io import SUFFIXES, read_events
    from diffgen.io.yoda import read_histograms

    if not os.path.isfile(path):
        raise ValueError(f"--compare {path!r} does not exist or is not a file")
    low = path.lower()
    if not low.endswith(SUFFIXES + _YODA_SUFFIXES):
        raise ValueError(f"--compare {path!r} has an unknown suffix; allowed: {', '.join(SUFFIXES + _YODA_SUFFIXES)}")
    try:
        if low.endswith(_YODA_SUFFIXES):
            return _Compare(path, read_histograms(path), None, 0)
        events, meta = read_events(path)
    except ValueError as err:
        raise ValueError(f"--compare {path!r} cannot be read: {err}") from None
    except Exception as err:  # noqa: BLE001 - any failure of a reader (zip, gzip, UnicodeDecodeError, OSError)
        raise ValueError(f"--compare {path!r} cannot be read: {type(err).__name__}: {err}") from None
    n = events.n_events
    n_gen = meta.get("n_generated") if isinstance(meta, dict) else None
    if isinstance(n_gen, (int, np.integer)) and n_gen >= n:  # LHE/HepMC leave flagged events out
        n = int(n_gen)
    if events.n_events == 0:
        raise ValueError(f"--compare {path!r} holds no events")
    sigma = None
    if low.endswith(_XSEC_SUFFIXES):
        sigma = meta.get("sigma_pb") if isinstance(meta, dict) else None
        sigma = float(sigma) if sigma is not None and math.isfinite(float(sigma)) and float(sigma) > 0 else None
        if sigma is None and absolute:
            raise ValueError(f"--compare {path!r} --absolute: the file gives no positive cross-section (HepMC3 "
                             "GenCrossSection, LHE XSECUP in <init>), and its event weights need not be in pb "
                             "(Pythia's are 1); drop --absolute to compare shapes (1/sigma dsigma/dX)")
    return _Compare(path, None, events, n, sigma)


def _compare_edges(compare: _Compare | None, names: Sequence[str]) -> dict | None:
    """The run's edges taken from a YODA reference, ``{name: edges}`` (``ValueError`` if none matches)."""
    if compare is None or compare.yoda is None:
        return None
    from diffgen import plotting

    names = list(names)
    try:
        matched = plotting.match_yoda(list(compare.yoda), names)
    except ValueError as err:
        raise ValueError(f"--compare {compare.path!r}: {err}") from None
    return {name: plotting.yoda_reference(name, compare.yoda[p], "").edges for name, p in matched.items()}


def _references(compare: _Compare | None, specs: list[_Histogrammed], chunk: int) -> dict:
    """``{name: (Hist1D, kind)}`` for :func:`diffgen.plotting.figure`: the YODA histograms matched by
    name, or the reference events analysed with the run's own observables and edges, in chunks."""
    if compare is None:
        return {}
    from diffgen import plotting

    label = os.path.basename(compare.path)
    if compare.yoda is not None:
        matched = plotting.match_yoda(list(compare.yoda), [s.name for s in specs])
        return {name: (plotting.yoda_reference(name, compare.yoda[p], label), "yoda") for name, p in matched.items()}
    ev = compare.events
    n = ev.n_events
    size = min(chunk, n)
    values = {s.name: [] for s in specs}
    weights = []
    for start in range(0, n, size):  # a padded last chunk: one compiled shape
        idx = np.minimum(np.arange(start, start + size), n - 1)
        part = ev[idx]
        keep = min(size, n - start)
        status = np.asarray(part.status)[:keep]
        weights.append(np.where(status == 0, np.exp(np.asarray(part.log_weight, float)[:keep]), 0.0))
        for s in specs:
            values[s.name].append(s.fn(part)[:keep])
    w = np.concatenate(weights)
    if compare.sigma_pb is not None:  # weights normalised to the file's σ: Σw / n = σ (Rivet's convention)
        if not w.sum() > 0:
            raise ValueError(f"--compare {compare.path!r}: the events carry no positive weight")
        w = w * (compare.sigma_pb * compare.n / w.sum())
    return {s.name: (plotting.Hist1D.fill(s.name, np.concatenate(values[s.name]), w, s.edges, compare.n, label),
                     "events") for s in specs}


def cache_dir(no_cache: bool = False, environ=None) -> str | None:
    """The persistent compilation cache directory of the CLI, or None when it is off.

    ``$DIFFGEN_CACHE_DIR`` if set (empty: off), else ``$XDG_CACHE_HOME/diffgen/jax``, else
    ``~/.cache/diffgen/jax``; None with ``no_cache`` (``--no-cache``).
    """
    environ = os.environ if environ is None else environ
    if no_cache:
        return None
    if "DIFFGEN_CACHE_DIR" in environ:
        return environ["DIFFGEN_CACHE_DIR"] or None
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "diffgen", "jax")


def _enable_compilation_cache(no_cache: bool) -> str | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (before anything is compiled).

    Programs that took at least 1 s to compile are kept, whatever their size (JAX's own
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` / ``..._MIN_ENTRY_SIZE_BYTES`` take precedence).
    An unusable directory only turns the cache off, with a note on stderr.
    """
    path = cache_dir(no_cache)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        print(f"diffgen: note: compilation cache off ({path!r}: {err.strerror})", file=sys.stderr)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in os.environ:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def _check_generate_args(args) -> dict[str, float | bool]:
    """Validate the ``generate`` arguments in place (default chunk); return the ``--settings`` file's
    settings updated by ``--set``."""
    from diffgen.cmnd import read_settings

    args.events = parse_count(args.events, "--events")
    if args.chunk is None:
        args.chunk = 2000 if args.process == "ee-hadrons" else 100_000
    args.chunk = check_int(args.chunk, "--chunk")
    args.bins = check_int(args.bins, "--bins")
    args.list = check_int(args.list, "--list", lo=0)
    if args.sqrt_s is not None and not (args.sqrt_s > 0 and math.isfinite(args.sqrt_s)):
        raise ValueError(f"--sqrt-s must be a positive number of GeV, got {args.sqrt_s}")
    changes = {}
    if args.settings:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            changes.update(read_settings(args.settings, ignore_unknown=args.ignore_unknown))
        for w in caught:
            print(f"diffgen: note: {w.message}", file=sys.stderr)
    changes.update(parse_set(args.set, ignore_unknown=args.ignore_unknown))
    if args.out:
        _check_output(args.out, _OUT_SUFFIXES, "--out", args.force)
    if args.plot:
        _check_output(args.plot, _PLOT_SUFFIXES, "--plot", args.force)
    if getattr(args, "record", "final") == "full":
        if args.process != "ee-hadrons":
            raise ValueError(f"--record full keeps partons, hadrons and decays: process ee-hadrons, got "
                             f"{args.process!r}")
        if args.detector:
            raise ValueError("--record full writes the particle-level history; it cannot be combined with "
                             "--detector (reconstructed particles)")
        if not args.out or not args.out.lower().endswith((".hepmc3", ".hepmc3.gz", ".hepmc", ".hepmc.gz")):
            raise ValueError(f"--record full is written as a HepMC3 vertex graph: give --out FILE.hepmc3, "
                             f"got {args.out!r}")
    if not 0 <= args.offset <= 2**32 - args.events:
        raise ValueError(f"--offset must be in [0, 2**32 - --events] = [0, {2**32 - args.events}] "
                         f"(event indices are uint32), got {args.offset}")
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    return changes


class _Totals:
    """Weighted sums over the chunks: σ, A_FB (cos θ > 0 vs < 0) and histograms, in bounded memory."""

    def __init__(self, specs: list[_Histogrammed]):
        self.specs = specs
        self.n = self.bad = 0
        self.flags: dict[str, int] = {}
        self.sw = self.sw2 = self.fw = self.fw2 = self.bw = self.bw2 = 0.0
        self.h = {s.name: np.zeros(len(s.edges) - 1) for s in specs}
        self.h2 = {s.name: np.zeros(len(s.edges) - 1) for s in specs}
        self.mean = {s.name: 0.0 for s in specs}

    def add(self, ev) -> None:
        status = np.asarray(ev.status)
        w = np.where(status == 0, np.exp(np.asarray(ev.log_weight, float)), 0.0)
        self.n += w.size
        self.bad += int(np.count_nonzero(status))
        for flag, count in status_summary(status).items():
            self.flags[flag] = self.flags.get(flag, 0) + count
        self.sw += w.sum()
        self.sw2 += (w * w).sum()
        for s in self.specs:
            x = s.fn(ev)
            self.h[s.name] += np.histogram(x, s.edges, weights=w)[0]
            self.h2[s.name] += np.histogram(x, s.edges, weights=w * w)[0]
            self.mean[s.name] += float(np.sum(w * x))
            if s.name == "cos_theta":
                f = x > 0
                self.fw += w[f].sum()
                self.fw2 += (w[f] ** 2).sum()
                self.bw += w[~f].sum()
                self.bw2 += (w[~f] ** 2).sum()

    def hists(self) -> list:
        """The filled histograms as :class:`diffgen.plotting.Hist1D` (σ normalisation: all events)."""
        from diffgen.plotting import Hist1D

        return [Hist1D(s.name, s.edges, self.h[s.name], self.h2[s.name], self.sw, self.sw2, self.n)
                for s in self.specs]

    def sigma(self) -> tuple[float, float]:
        """σ ± error (pb) from the weights accumulated so far."""
        mean = self.sw / self.n
        return float(mean), float(math.sqrt(max(self.sw2 / self.n - mean**2, 0.0) / self.n))

    def afb(self) -> tuple[float, float] | None:
        """A_FB = (F − B)/(F + B) ± its delta-method error, or None without weight."""
        tot = self.fw + self.bw
        if not tot > 0:
            return None
        return (self.fw - self.bw) / tot, 2.0 * math.sqrt(self.bw ** 2 * self.fw2 + self.fw ** 2 * self.bw2) / tot**2


def run_metadata(args, params) -> dict:
    """What a ``generate`` run's event file records so that it can be regenerated: the diffgen version,
    process, √s, seed, event range, every setting, the stage switches, and the options that change
    which events are written: ``unweighted`` (``--unweighted``), ``overweight_cap`` (``--overweight-cap``,
    None without) and ``record`` (``--record``: ``final`` or ``full``)."""
    import diffgen
    from diffgen.cmnd import plain_value
    from diffgen.params import stage_switches

    return {"generator": "diffgen", "diffgen_version": diffgen.__version__, "process": args.process,
            "sqrt_s": plain_value(diffgen.settings(params)["Beams:eCM"]), "seed": args.seed,
            "event_offset": args.offset, "n_generated": args.events,
            "settings": {k: plain_value(v) for k, v in diffgen.settings(params).items()},
            "switches": {k: ("on" if v else "off") for k, v in stage_switches(params).items()},
            "unweighted": bool(getattr(args, "unweighted", False)),
            "overweight_cap": getattr(args, "overweight_cap", None),
            "record": getattr(args, "record", "final")}


def _run_chunks(args, gen, params, totals: _Totals, transform=None) -> tuple[float, float, int]:
    """Generate in chunks into ``totals``, streaming to ``--out``; (σ, error, events skipped by the writer).
    ``transform(ev) -> (events kept, number dropped)`` (e.g. unweighting) runs on each chunk first."""
    import jax

    import diffgen

    writer = None
    if args.out:
        from diffgen.io import EventWriter

        writer = EventWriter(args.out, **run_metadata(args, params),
                             **({"detector": args.detector} if args.detector else {}))

    generated = {"n": 0, "bad": 0, "flags": {}}  # before any transform (unweighting drops events)

    def on_chunk(ev):
        status = np.asarray(ev.status)
        generated["n"] += status.size
        generated["bad"] += int(np.count_nonzero(status))
        for flag, count in status_summary(status).items():
            generated["flags"][flag] = generated["flags"].get(flag, 0) + count
        dropped = 0
        if transform is not None:
            ev, dropped = transform(ev)
        if totals.n < args.list:  # Pythia's event.list() for the first --list events
            from diffgen.listing import event_listing

            for i in range(min(args.list - totals.n, ev.n_events)):
                print(event_listing(ev, i, index=args.offset + totals.n + i))
        totals.add(ev)
        totals.n += dropped  # dropped events count as generated: sigma = sum(w) / events generated
        if writer is not None:  # stream the chunk out; HepMC3 events carry the running σ estimate
            writer.write(ev, *totals.sigma())

    with writer if writer is not None else contextlib.nullcontext():
        diffgen.generate(gen, params, jax.random.key(args.seed), args.events, chunk=args.chunk,
                         progress=False if args.quiet else None, on_chunk=on_chunk, keep=False, offset=args.offset)
        _check_some_event_good(generated["n"], generated["bad"], generated["flags"],
                               f"Check the settings against `diffgen settings --process {args.process}` and the "
                               f"process's threshold.")  # raising here aborts the writer: no file
        sigma, sigma_err = totals.sigma()
        if writer is not None:
            writer.close(sigma_pb=sigma, error_pb=sigma_err)
    return sigma, sigma_err, writer.n_skipped if writer is not None else 0


def _report(args, params, totals: _Totals, sigma: float, sigma_err: float) -> None:
    """Print the run summary and, per histogram, one compact line (``--histograms``: the full text
    histograms in pb per bin)."""
    import diffgen
    from diffgen.plotting import compact_summary

    is_ffbar = args.process != "ee-hadrons"
    e_cm = float(diffgen.settings(params)["Beams:eCM"])
    n = totals.n
    print(f"diffgen {diffgen.__version__}: {args.process} at sqrt(s) = {e_cm:g} GeV, {n} events, seed {args.seed}")
    for name, value in diffgen.settings(params).items():
        print(f"  {name:32s} = {float(value):.6g}")
    from diffgen.listing import statistics_table

    print(statistics_table(n=n, flags=totals.flags, n_flagged=totals.bad, sigma_pb=sigma, error_pb=sigma_err,
                           title=f"{args.process} at sqrt(s) = {e_cm:g} GeV, seed {args.seed}"))
    if is_ffbar and any(s.name == "cos_theta" for s in totals.specs):  # A_FB is summed with the cos θ histogram
        afb = totals.afb()
        print("A_FB  = undefined (no event with non-zero weight)" if afb is None else
              f"A_FB  = {afb[0]:.5f} +- {afb[1]:.5f}")
    for s, h in zip(totals.specs, totals.hists()):
        mean = totals.mean[s.name] / totals.sw if totals.sw > 0 else float("nan")
        if args.histograms:
            print(f"<{s.label}> = {mean:.5g}")
            print(text_histogram(h.sumw / n, np.sqrt(h.sumw2) / n, s.edges, label=f"dsigma per bin [pb] vs {s.label}"))
            outside = (h.total_w - h.sumw.sum()) / n if n else 0.0
            if outside > 0:  # y23 = 0 (fewer than three particles) lies below its first, positive edge
                share = 100 * (h.total_w - h.sumw.sum()) / h.total_w
                print(f"outside [{s.edges[0]:.4g}, {s.edges[-1]:.4g}): {outside:.4g} pb ({share:.1f}% of sigma)")
        else:
            print(compact_summary(h, mean))


def _report_compare(drawn, path: str) -> None:
    """One line per compared histogram: χ²/ndf of diffgen against the reference."""
    for p in drawn:
        c = p.chi2()
        if c is not None:
            print(f"compare {p.name} with {os.path.basename(path)}: chi2/ndf = {c[0]:.1f}/{c[1]}")


def _cmd_generate(args) -> int:
    import diffgen
    from diffgen import plotting, presets
    from diffgen.cmnd import plain_value

    changes = _check_generate_args(args)
    compare = _read_compare(args.compare, args.absolute) if args.compare else None
    _enable_compilation_cache(args.no_cache)  # before the first compilation
    gen, params = presets.configure(args.process, changes, args.sqrt_s, detector=args.detector,
                                    record=getattr(args, "record", "final") == "full")
    args.sqrt_s = plain_value(diffgen.settings(params)["Beams:eCM"])
    names = _observable_names(args.process, args.observables)
    specs = _histogram_specs(args.process, args.bins, _compare_edges(compare, names), names)
    refs = _references(compare, specs, args.chunk)  # the reference is analysed before generation
    totals = _Totals(specs)
    unweighter = _unweighter(args, gen, params) if args.unweighted else None
    sigma, sigma_err, n_skipped = _run_chunks(args, gen, params, totals, unweighter)
    _report(args, params, totals, sigma, sigma_err)
    if unweighter is not None:
        print(unweighter.summary())
    if args.out:
        print(f"wrote {args.out}{f' ({n_skipped} flagged events left out)' if n_skipped else ''}")
    if compare is not None and not args.plot:
        _report_compare(plotting.panels(totals.hists(), refs, args.absolute), args.compare)
    if args.plot:
        e_cm = float(diffgen.settings(params)["Beams:eCM"])
        analytic = None
        if args.process != "ee-hadrons":
            scale = 1.0 if args.absolute else 1.0 / _analytic_sigma(gen, params)
            analytic = lambda c: scale * _analytic_dsigma(gen, params, c)  # noqa: E731
        drawn = _plot(args, totals.hists(), refs, f"{args.process}, √s = {e_cm:g} GeV", analytic)
        if compare is not None:
            _report_compare(drawn, args.compare)
        print(f"wrote {args.plot}")
    return 0


class _Unweighter:
    """Chunk transform for ``--unweighted``: w_max from a pilot sample, then accept/reject per event."""

    def __init__(self, args, gen, params):
        import jax

        from diffgen.flows.unweight import pilot_max_weight

        self.key = jax.random.fold_in(jax.random.key(args.seed), 2**31 - 2)
        self.cap = args.overweight_cap
        self.w_max = pilot_max_weight(gen, params, jax.random.key(args.seed), min(args.events, 20_000), self.cap)
        self.next_index, self.kept, self.seen, self.over = args.offset, 0, 0, 0

    def __call__(self, ev):
        from diffgen.flows.unweight import unweight_events

        kept, dropped, over = unweight_events(ev, self.w_max, self.key, self.next_index)
        self.next_index += ev.n_events
        self.seen += ev.n_events
        self.kept += kept.n_events
        self.over += over
        return kept, dropped

    def summary(self) -> str:
        cap = f", overweight cap {self.cap:g} of sigma" if self.cap else ""
        return (f"unweighted: kept {self.kept} of {self.seen} events (efficiency {self.kept / self.seen:.4f}), "
                f"w_max = {self.w_max:.6g} pb from a pilot{cap}; {self.over} kept events above w_max keep their weight")


def _unweighter(args, gen, params) -> _Unweighter:
    if args.overweight_cap is not None and not 0 < args.overweight_cap < 1:
        raise ValueError(f"--overweight-cap must be a fraction of sigma in (0, 1), got {args.overweight_cap}")
    return _Unweighter(args, gen, params)


def _cmd_settings(args) -> int:
    import diffgen
    from diffgen import presets
    from diffgen.params import SETTINGS, SWITCHES, range_text, stage_switches

    gen = presets.make(args.process, args.sqrt_s, detector=args.detector)
    params = gen.default_params()
    rows = [(name, f"{float(value):.6g}", range_text(SETTINGS[name]._replace(unit="")), SETTINGS[name].unit,
             SETTINGS[name].doc) for name, value in diffgen.settings(params).items()]
    rows += [(name, "on" if on else "off", "on/off", "", SWITCHES[name]) for name, on in stage_switches(params).items()]
    head = ("setting", "value", "range", "unit", "meaning")
    widths = [max(len(r[k]) for r in rows + [head]) for k in range(4)]
    for r in [head] + rows:
        print("  ".join(f"{r[k]:{widths[k]}s}" for k in range(4)) + "  " + r[4])
    return 0


def _cmd_tune(args) -> int:
    from diffgen.fit import tune_file

    # refuse to overwrite a previous tune's report before the (long) fit runs, as generate --out does
    out_dir = tune_file.load(args.config, out_dir=args.out).out_dir
    if not args.force and os.path.exists(os.path.join(out_dir, "report.md")):
        raise ValueError(f"{out_dir!r} holds a previous tune's report.md; use --force to overwrite it, or --out")
    _enable_compilation_cache(args.no_cache)
    out = tune_file.run(args.config, out_dir=args.out, progress=False if args.quiet else None)
    print(out.result.summary())
    print(f"wrote {os.path.join(out.config.out_dir, 'report.md')} and {len(out.files) - 1} more files")
    return 0


def _cmd_unfold(args) -> int:
    from diffgen.unfold import job

    loaded = job.load(args.config, out_dir=args.out)  # every check, and the files read, before the unfolding
    if not args.force and os.path.exists(os.path.join(loaded.out_dir, job.REPORT)):
        raise ValueError(f"{loaded.out_dir!r} holds a previous unfolding's {job.REPORT}; use --force to overwrite "
                         f"it, or --out")
    _enable_compilation_cache(args.no_cache)
    out = job.run(loaded, progress=False if args.quiet else None)
    last = out.result.info[-1]
    print(f"OmniFold: {len(out.result.info)} iterations, ESS fraction {last.ess_fraction:.3f}, last change "
          f"{last.change:.4f}")
    if out.chi2 is not None:
        for name, ((cb, nb), (ca, na)) in out.chi2.items():
            print(f"  {name:22s} chi2/ndf against the data's truth: prior {cb / max(nb, 1):6.2f}  "
                  f"unfolded {ca / max(na, 1):6.2f}")
    print(f"wrote {', '.join(out.files)}")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)
def _cmd_train_hadronization(args) -> int:
    from diffgen.hadronization.train import REPORT_PNG, TrainConfig, train

    config = TrainConfig(steps=args.steps, batch=args.batch, n_partons=args.partons, n_reference=args.reference_events,
                         lr_gen=args.lr, lr_disc=args.lr_disc, hidden=args.hidden, noise_dim=args.noise_dim,
                         train_settings=tuple(args.train_setting), decays=not args.primary, sqrt_s=args.sqrt_s,
                         seed=args.seed, checkpoint_every=args.checkpoint_every)
    _enable_compilation_cache(args.no_cache)
    report = train(config, args.reference, args.out, progress=not args.quiet, resume=args.resume)
    for label, table in report["chi2"].items():
        print(f"{label:9s} " + "  ".join(f"{k} chi2/ndf {v['chi2_per_ndf']:.2f}" for k, v in table.items()))
    print(f"wrote {os.path.join(args.out, REPORT_PNG)}, the checkpoint and the report in {args.out}")
    return 0


def _add_train_hadronization(sub) -> None:
    h = sub.add_parser("train-hadronization", help="train the ML hadronization layer against hadron-level events",
                       formatter_class=_HelpFormatter)
    h.add_argument("--reference", required=True,
                   help="'string' (diffgen's Lund string model) or an event file (.npz with p4/pid, .hepmc3)")
    h.add_argument("--steps", type=int, default=300, help="training steps")
    h.add_argument("--out", required=True, help="output directory (checkpoint, config, report.png, report.json)")
    h.add_argument("--batch", type=int, default=128, help="events per training batch")
    h.add_argument("--partons", type=int, default=4096, help="parton-level events in the training pool")
    h.add_argument("--reference-events", type=int, default=4096, help="reference events loaded or generated")
    h.add_argument("--lr", type=float, default=1e-3, help="generator learning rate")
    h.add_argument("--lr-disc", type=float, default=1e-3, help="discriminator learning rate")
    h.add_argument("--hidden", type=int, default=64, help="hidden width of the generator network")
    h.add_argument("--noise-dim", type=int, default=4, help="noise inputs of the generator network")
    h.add_argument("--train-setting", action="append", default=[], metavar="NAME",
                   help="also train this ML-layer setting, e.g. ClusterFission:maxMass (repeatable)")
    h.add_argument("--primary", action="store_true", help="compare primary hadrons (no decays; the reference "
                                                          "must hold primary hadrons too)")
    h.add_argument("--sqrt-s", type=float, default=DEFAULT_SQRT_S, help="centre-of-mass energy in GeV")
    h.add_argument("--seed", type=int, default=0, help="random seed")
    h.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    h.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    h.add_argument("--quiet", action="store_true", help="no progress bar")
    h.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")


def build_parser() -> argparse.ArgumentParser:
    from diffgen import presets

    fmt = {"formatter_class": _HelpFormatter}
    parser = argparse.ArgumentParser(prog="diffgen", description="Differentiable event generator", **fmt)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate events, print sigma, A_FB and histograms; plot them", **fmt)
    g.add_argument("--process", default="ee-mumu", help=f"one of {', '.join(sorted(presets.PROCESSES))}")
    g.add_argument("--sqrt-s", type=float, default=None,
                   help=f"centre-of-mass energy in GeV (default: Beams:eCM of --settings/--set, else {DEFAULT_SQRT_S})")
    g.add_argument("--events", default=100_000, help="number of events (100000, 100_000 and 1e5 all work)")
    g.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same events")
    g.add_argument("--offset", type=int, default=0,
                   help="global index of the first event: job-array task t of --events N each uses t*N "
                        "(the tasks' files then merge with `diffgen merge` into the one-run sample)")
    g.add_argument("--settings", metavar="FILE.cmnd",
                   help="Pythia-style settings file ('Group:name = value' lines, '!' comments), read before --set")
    g.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help='change a setting, e.g. --set "23:m0=91.2", --set "HadronLevel:Decay = off" or, as in '
                        'Pythia, --set "StringZ:aLund 0.7" (repeatable)')
    g.add_argument("--ignore-unknown", action="store_true",
                   help="skip settings diffgen does not have (e.g. Pythia's Main:numberOfEvents), with a note, "
                        "instead of stopping")
    g.add_argument("--detector", default=None, metavar="NAME",
                   help="append the parametric detector (ee-hadrons only; e.g. aleph): reconstructed events")
    g.add_argument("--out", help="event file (.lhe, .npz, .parquet or .hepmc3; .lhe.gz/.hepmc3.gz compressed)")
    g.add_argument("--record", choices=("final", "full"), default="final",
                   help="final: the final-state particles; full (ee-hadrons, HepMC3 --out): also the hard "
                        "process, the partons after the shower, primary hadrons and every decay with "
                        "mother/daughter links and HepMC status codes (1 final, 2 decayed, 4 beam; Pythia's 22 "
                        "Z, 23 hard partons, 71 partons), as Rivet analyses of pi0, K0S, Lambda, D, B need")
    g.add_argument("--plot", help="figure of the histograms (.png, .pdf or .svg): 1/sigma dsigma/dX with physics "
                                  "labels, log y for event shapes (1-T, C, ...), log x for y23, integer-aligned "
                                  "bins for counts")
    g.add_argument("--absolute", action="store_true",
                   help="plot dsigma/dX in pb instead of the normalised 1/sigma dsigma/dX")
    g.add_argument("--compare", metavar="FILE",
                   help="overlay a reference with a ratio panel: events (.npz, .parquet, .lhe, .hepmc3; analysed "
                        "with the run's observables and bins) or a YODA file (.yoda; histograms matched by the last "
                        "part of their path, e.g. /REF/thrust or /REF/one_minus_thrust, whose bins the run then uses); "
                        "HepMC3/LHE weights are normalised to the file's cross-section (GenCrossSection, XSECUP), "
                        "which --absolute requires")
    g.add_argument("--histograms", action="store_true",
                   help="print the full text histograms (pb per bin) instead of one summary line each")
    g.add_argument("--force", action="store_true", help="overwrite an existing --out or --plot file")
    g.add_argument("--chunk", type=int, default=None,
                   help="events per chunk (memory bound; default 100000, 2000 for ee-hadrons)")
    g.add_argument("--bins", type=int, default=20,
                   help="bins of each histogram (counts have integer-aligned bins of fixed width, y23 "
                        "log-spaced ones in [10^-4.5, 10^-0.5])")
    g.add_argument("--observables", metavar="NAME[,NAME...]", default=None,
                   help="the observables to histogram and plot, by registry name (diffgen.observables.REGISTRY), "
                        "e.g. thrust,y23; default: thrust, c_parameter, sphericity, charged_multiplicity for "
                        "ee-hadrons, cos_theta otherwise. y23 (Durham clustering, O(P^3) per event) is plotted "
                        "on a log x axis; events with y23 = 0 count in sigma but fall below its first bin")
    g.add_argument("--list", type=int, default=0, metavar="N",
                   help="print the first N events as a table, like Pythia's event.list()")
    g.add_argument("--quiet", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)")
    g.add_argument("--unweighted", action="store_true",
                   help="keep each event with probability w/w_max (w_max from a 20000-event pilot), weight w_max")
    g.add_argument("--overweight-cap", type=float, default=None, metavar="FRACTION",
                   help="with --unweighted: w_max such that weights above it carry this fraction of sigma")
    g.add_argument("--no-cache", action="store_true",
                   help="do not use the persistent compilation cache (default: $DIFFGEN_CACHE_DIR, "
                        "else ~/.cache/diffgen/jax)")
    t = sub.add_parser("tune", help="fit settings to the targets of a TOML tune file and write a report", **fmt)
    t.add_argument("config", help="tune file (.toml); schema in diffgen.fit.tune_config")
    t.add_argument("--out", help="output directory (default: [output] dir in the file, else <file stem>-fit)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)")
    t.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    t.add_argument("--force", action="store_true", help="overwrite a previous tune's report in the output directory")
    u = sub.add_parser("unfold", help="OmniFold a detector-level event file with a simulated (truth, reco) file; "
                                      "write the weights and a report with plots", **fmt)
    u.add_argument("config", help="unfold file (.toml); schema in diffgen.unfold.job")
    u.add_argument("--out", help="output directory (default: [output] dir in the file, else <file stem>-unfold)")
    u.add_argument("--quiet", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)")
    u.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    u.add_argument("--force", action="store_true", help="overwrite a previous unfolding's report in the output "
                                                        "directory")
    from diffgen.io.merge import add_merge_subcommand

    add_merge_subcommand(sub)
    _add_train_hadronization(sub)
    s = sub.add_parser("settings", help="list a process's settings, defaults and ranges", **fmt)
    s.add_argument("--process", default="ee-mumu", help=f"one of {', '.join(sorted(presets.PROCESSES))}")
    s.add_argument("--sqrt-s", type=float, default=DEFAULT_SQRT_S, help="centre-of-mass energy in GeV")
    s.add_argument("--detector", default=None, metavar="NAME", help="with the detector stage (e.g. aleph)")
    return parser


def use_host_cores(environ=None) -> int:
    """Expose every CPU core to XLA as a host device (``--xla_force_host_platform_device_count``), so
    that generation shards the event axis over them. Only before JAX has started a backend and when
    ``XLA_FLAGS`` does not already set it; ``DIFFGEN_HOST_DEVICES=1`` turns it off. Returns the count set (0: none)."""
    env = os.environ if environ is None else environ
    if "xla_force_host_platform_device_count" in env.get("XLA_FLAGS", ""):
        return 0
    try:
        n = int(env.get("DIFFGEN_HOST_DEVICES", os.cpu_count() or 1))
    except ValueError:
        raise ValueError("DIFFGEN_HOST_DEVICES must be a positive integer, "
                         f"got {env['DIFFGEN_HOST_DEVICES']!r}") from None
    if n <= 1:
        return 0
    try:  # a started backend ignores new XLA_FLAGS (JAX has no public query for this)
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return 0
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions: set it anyway
        pass
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
    return n


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from diffgen.io.merge import cmd_merge

    commands = {"generate": _cmd_generate, "tune": _cmd_tune, "settings": _cmd_settings, "merge": cmd_merge,
                "train-hadronization": _cmd_train_hadronization, "unfold": _cmd_unfold}
    use_host_cores()
    try:
        rc = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the try, not at interpreter exit
        return rc
    except ValueError as exc:
        print(f"diffgen: error: {exc}", file=sys.stderr)
        return 2
    except AllEventsFlagged as exc:  # the run worked but gave nothing to use
        print(f"diffgen: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: output files are removed by their writers; no traceback
        print("diffgen: interrupted", file=sys.stderr)
        return 130  # the shell's code for SIGINT (128 + 2)
    except BrokenPipeError:  # e.g. `diffgen generate ... | head`: stop quietly; output files are already closed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not raise again
        return 141  # the shell's code for SIGPIPE (128 + 13)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
