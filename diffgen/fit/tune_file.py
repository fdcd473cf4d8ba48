"""Backend of ``diffgen tune tune.toml``: a fit described in a TOML file, with a report.

:func:`load` reads and validates *everything* before any event is generated (unknown sections or
keys, unknown process, unknown or unused settings, bounds outside the physical range, start values
outside the bounds, missing or malformed target files, unknown observables, mismatched binning,
non-positive steps or events, an unwritable output directory); each problem is a ``ValueError``
naming the offending key. :func:`run` then fits and writes, atomically, into the output directory:

* ``report.md`` — fitted values ± errors, correlation matrix, χ²/ndf per target before and after;
* ``<target>.png`` — data vs. simulation before and after the fit (with a ratio panel);
* ``loss.png`` and ``params.png`` — loss history and parameter traces;
* ``tune.cmnd`` — the fitted settings as Pythia-style ``name = value`` lines;
* ``fit.json`` — values, errors, covariance and χ² in machine-readable form.

Paths in the file are relative to the file's directory.

Schema (every key except ``generator.process``, ``fit.free`` and the targets is optional)::

    [generator]
    process = "ee-mumu"            # a name in diffgen.presets.PROCESSES
    sqrt_s = 91.2                  # GeV (default 91.188)
    [generator.settings]           # fixed settings applied before the fit
    "23:mWidth" = 2.4952

    [fit]
    free = ["23:m0", "StandardModel:sin2thetaWbar"]
    steps = 200                    # maximum optimiser steps (> 0)
    events = 20000                 # events per condition group per step (> 0)
    learning_rate = 0.02           # Adam, in the unconstrained coordinates
    common_random_numbers = true
    seed = 1
    smoothing = 0.25               # soft-binning width in bin widths; false for hard bins
    tol = 1e-6
    patience = 10
    covariance_events = 80000      # default 4 × events
    newton_steps = 5
    [fit.bounds]                   # default: the settings' physical ranges
    "23:m0" = [90.0, 92.5]

    [output]
    dir = "tune-out"               # default: "<file stem>-fit" next to the file

    [[target]]                     # one table per target
    name = "cos_theta_88"          # unique (default: "target<i>")
    observable = "cos_theta"       # a name in diffgen.fit.targets.observable_registry()
    yoda = "data/cos88.yoda"       # YODA text (HISTO1D or SCATTER2D) ...
    histogram = "/REF/d01-x01-y01" # ... and which histogram in it, if several
    normalisation = "unit"         # "events", "unit" or "sigma" (default: "unit" for YODA, else "events")
    bins = [-1.0, -0.5, 0.0, 0.5, 1.0]   # optional for YODA (checked), required for events
    conditions = { "Beams:eCM" = 88.0 }

    [[target]]
    name = "cos_theta_94"
    observable = "cos_theta"
    events = "other_generator_94.npz"     # .npz/.parquet/.lhe/.hepmc3
    bins = { n = 10, range = [-1.0, 1.0] }
    conditions = { "Beams:eCM" = 94.0 }

    [[target]]                     # or inline arrays
    name = "inline"
    observable = "cos_theta"
    edges = [-1.0, 0.0, 1.0]
    contents = [0.4, 0.6]
    errors = [0.01, 0.01]
    density = false                # true: contents, errors are per unit x (times bin widths on reading)

Example:
    >>> import os, tempfile
    >>> from diffgen.fit import tune_file
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.toml")
    >>> _ = open(p, "w").write('[generator]\\nprocess = "ee-mumu"\\n[fit]\\nfree = ["23:m0"]\\n'
    ...     '[[target]]\\nobservable = "cos_theta"\\nedges = [-1.0, 0.0, 1.0]\\n'
    ...     'contents = [0.45, 0.55]\\nerrors = [0.01, 0.01]\\n')
    >>> cfg = tune_file.load(p)
    >>> cfg.free, cfg.targets[0].name
    (('23:m0',), 'target0')
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from diffgen.fit.targets import (
    NORMALISATIONS,
    BinnedTarget,
    Observable,
    as_observable,
    check_binning,
    from_arrays,
    from_events,
    from_yoda_text,
    observable_registry,
    unknown_observable_message,
)

__all__ = ["TuneConfig", "TuneOutput", "load", "run", "write_report"]

_TOP = {"generator", "fit", "output", "target"}
_GENERATOR = {"process", "sqrt_s", "settings"}
_FIT = {"free", "steps", "events", "learning_rate", "common_random_numbers", "seed", "smoothing", "tol",
        "patience", "covariance_events", "newton_steps", "bounds"}
_OUTPUT = {"dir"}
_TARGET = {"name", "observable", "yoda", "histogram", "events", "normalisation", "bins", "conditions", "edges",
           "contents", "errors", "density"}


class TuneConfig(NamedTuple):
    """A validated tune file: everything :func:`diffgen.fit.fit` needs, plus where to write."""

    path: str
    gen: Any
    params: Any
    targets: tuple
    observables: tuple
    free: tuple
    bounds: dict
    fit_options: dict
    seed: int
    out_dir: str
    process: str
    sqrt_s: float
    labels: dict | None = None  #: target name -> registry observable name (axis labels)


class TuneOutput(NamedTuple):
    """Result of :func:`run`: the fit result, the config and the written files."""

    result: Any
    config: TuneConfig
    report: str
    files: tuple


def _check_keys(table, allowed, where: str) -> None:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")


def _positive_int(value, where: str, allow_zero: bool = False) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{where} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
    return int(value)


def _positive_float(value, where: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{where} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def _bins(spec, where: str) -> np.ndarray:
    if isinstance(spec, Mapping):
        _check_keys(spec, {"n", "range"}, where)
        n = _positive_int(spec.get("n"), f"{where}.n")
        rng = spec.get("range")
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
                and rng[1] > rng[0]):
            raise ValueError(f"{where}.range must be [lo, hi] with hi > lo, got {rng!r}")
        return np.linspace(float(rng[0]), float(rng[1]), n + 1)
    if isinstance(spec, list) and len(spec) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                         for v in spec):
        e = np.asarray(spec, float)
        if not np.all(np.diff(e) > 0):
            raise ValueError(f"{where}: bin edges must be strictly increasing, got {spec}")
        return e
    raise ValueError(f"{where} must be a list of edges or {{n = ..., range = [lo, hi]}}, got {spec!r}")


def _resolve(base: str, rel: str, where: str) -> str:
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{where} must be a file path, got {rel!r}")
    path = rel if os.path.isabs(rel) else os.path.join(base, rel)
    if not os.path.isfile(path):
        raise ValueError(f"{where}: file {path!r} does not exist")
    return path


def _load_target(i: int, t, base: str, registry, names_seen: set) -> tuple[BinnedTarget, Observable]:
    where = f"target[{i}]"
    _check_keys(t, _TARGET, where)
    name = t.get("name", f"target{i}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string, got {name!r}")
    where = f"target[{i}] ({name!r})"
    if name in names_seen:
        raise ValueError(f"{where}.name: target names must be unique; {name!r} appears twice")
    names_seen.add(name)
    obs_name = t.get("observable")
    if not isinstance(obs_name, str):
        raise ValueError(f"{where}.observable is required: a name from {sorted(registry)}")
    if obs_name not in registry:
        raise ValueError(f"{where}.observable: {unknown_observable_message(obs_name, registry)}")
    sources = [k for k in ("yoda", "events", "contents") if k in t]
    if len(sources) != 1:
        raise ValueError(f"{where}: give exactly one data source: 'yoda', 'events', or inline 'edges'/'contents'/"
                         f"'errors'; got {sources or 'none'}")
    source = sources[0]
    default_norm = "unit" if source == "yoda" else "events"
    norm = t.get("normalisation", default_norm)
    if norm not in NORMALISATIONS:
        raise ValueError(f"{where}.normalisation must be one of {NORMALISATIONS}, got {norm!r}")
    conditions = t.get("conditions", {})
    if not isinstance(conditions, Mapping):
        raise ValueError(f"{where}.conditions must be a table of settings, got {conditions!r}")
    bins = _bins(t["bins"], f"{where}.bins") if "bins" in t else None
    if "histogram" in t and source != "yoda":
        raise ValueError(f"{where}.histogram is only meaningful with 'yoda'")
    density = t.get("density", False)
    if "density" in t and source != "contents":
        raise ValueError(f"{where}.density is only meaningful with inline 'contents'")
    if not isinstance(density, bool):
        raise ValueError(f"{where}.density must be true or false, got {density!r}")
    try:
        if source == "yoda":
            path = _resolve(base, t["yoda"], f"{where}.yoda")
            target = from_yoda_text(path, name, histogram=t.get("histogram"), normalisation=norm,
                                    observable=name, conditions=conditions)
        elif source == "events":
            path = _resolve(base, t["events"], f"{where}.events")
            if bins is None:
                raise ValueError("'bins' is required with 'events'")
            obs = (name, registry[obs_name], bins)
            target = from_events(path, [obs], normalisation=norm, conditions=conditions)[0]
        else:
            missing = [k for k in ("edges", "errors") if k not in t]
            if missing:
                raise ValueError(f"inline data needs {missing}")
            target = from_arrays(name, t["contents"], t["errors"], t["edges"], normalisation=norm,
                                 observable=name, conditions=conditions, density=density)
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    observable = as_observable((name, registry[obs_name], target.edges if bins is None else bins))
    try:
        check_binning(target, observable)
    except ValueError as err:
        raise ValueError(f"{where}.bins: {err}") from None
    return target, observable


def _check_output_dir(out_dir: str, what: str) -> None:
    """``out_dir`` is a directory, or can be made (missing levels included) in a writable one."""
    from diffgen.io.atomic import check_writable

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{what}: {out_dir!r} exists and is not a directory")
    existing = os.path.abspath(out_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what}: cannot create {out_dir!r}: {existing!r} is not a directory")
    try:
        check_writable(os.path.join(existing, "report.md"))
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def load(path, out_dir=None) -> TuneConfig:
    """Read and validate a tune file (see the module docstring); ``ValueError`` naming the bad key.

    ``out_dir`` overrides the file's ``[output] dir`` (and is the directory checked for writing).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the 'tomli' package
        import tomli as tomllib

    import diffgen
    from diffgen import presets
    from diffgen.fit.fitter import make_problem

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"tune file {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"tune file {path!r} is not valid TOML: {err}") from None
    base = os.path.dirname(os.path.abspath(path))
    _check_keys(doc, _TOP, f"tune file {path!r}")

    g = doc.get("generator")
    if g is None:
        raise ValueError("[generator] section is required (with process = ...)")
    _check_keys(g, _GENERATOR, "[generator]")
    process = g.get("process")
    if process not in presets.PROCESSES:
        allowed = ", ".join(sorted(presets.PROCESSES))
        raise ValueError(f"generator.process: unknown process {process!r}; allowed: {allowed}")
    sqrt_s = _positive_float(g.get("sqrt_s", 91.188), "generator.sqrt_s")
    try:
        gen = presets.make(process, sqrt_s)
    except ValueError as err:
        raise ValueError(f"generator: {err}") from None
    fixed = g.get("settings", {})
    if not isinstance(fixed, Mapping):
        raise ValueError(f"generator.settings must be a table of setting = value, got {fixed!r}")
    params = gen.default_params()
    for k, v in fixed.items():
        try:
            params = diffgen.with_settings(params, {k: v})
        except ValueError as err:
            raise ValueError(f"generator.settings.{k!r}: {err}") from None

    f = doc.get("fit")
    if f is None:
        raise ValueError("[fit] section is required (with free = [...])")
    _check_keys(f, _FIT, "[fit]")
    free = f.get("free")
    if not (isinstance(free, list) and free and all(isinstance(x, str) for x in free)):
        raise ValueError(f"fit.free must be a non-empty list of setting names, got {free!r}")
    used = set(diffgen.settings(params))
    for name in free:
        if name not in used:
            from diffgen.params import SETTINGS, _unknown_message

            why = _unknown_message(name, SETTINGS.keys()) if name not in SETTINGS else \
                f"setting {name!r} is not used by process {process!r}; its settings: {sorted(used)}"
            raise ValueError(f"fit.free: {why}")
    bounds = f.get("bounds", {})
    if not isinstance(bounds, Mapping):
        raise ValueError(f"fit.bounds must be a table of name = [lo, hi], got {bounds!r}")
    from diffgen.fit.transforms import resolve_bounds

    for k in bounds:
        try:
            resolve_bounds(free, {k: bounds[k]})
        except ValueError as err:
            raise ValueError(f"fit.bounds.{k!r}: {err}") from None
    smoothing = f.get("smoothing", 0.25)
    if smoothing is False:
        smoothing = None
    elif smoothing is not None:
        smoothing = _positive_float(smoothing, "fit.smoothing")
    options = {
        "steps": _positive_int(f.get("steps", 200), "fit.steps"),
        "n_events": _positive_int(f.get("events", 20000), "fit.events"),
        "learning_rate": _positive_float(f.get("learning_rate", 0.02), "fit.learning_rate"),
        "common_random_numbers": f.get("common_random_numbers", True),
        "smoothing": smoothing,
        "tol": _positive_float(f.get("tol", 1e-6), "fit.tol", allow_zero=True),
        "patience": _positive_int(f.get("patience", 10), "fit.patience"),
        "newton_steps": _positive_int(f.get("newton_steps", 5), "fit.newton_steps", allow_zero=True),
    }
    if not isinstance(options["common_random_numbers"], bool):
        raise ValueError(f"fit.common_random_numbers must be true or false, got {options['common_random_numbers']!r}")
    if "covariance_events" in f:
        options["covariance_events"] = _positive_int(f["covariance_events"], "fit.covariance_events")
    seed = _positive_int(f.get("seed", 1), "fit.seed", allow_zero=True)

    raw_targets = doc.get("target")
    if not raw_targets:
        raise ValueError("at least one [[target]] table is required")
    if not isinstance(raw_targets, list):
        raise ValueError("target must be an array of tables: write [[target]]")
    registry = observable_registry()
    seen: set = set()
    loaded = [_load_target(i, t, base, registry, seen) for i, t in enumerate(raw_targets)]
    targets = tuple(t for t, _ in loaded)
    observables = tuple(o for _, o in loaded)

    out = doc.get("output", {})
    _check_keys(out, _OUTPUT, "[output]")
    out_rel = out.get("dir", os.path.splitext(os.path.basename(path))[0] + "-fit")
    if not isinstance(out_rel, str) or not out_rel:
        raise ValueError(f"output.dir must be a directory path, got {out_rel!r}")
    if out_dir is None:
        out_dir, what = (out_rel if os.path.isabs(out_rel) else os.path.join(base, out_rel)), "output.dir"
    else:  # an override (diffgen tune --out DIR) replaces [output] dir, which is then not checked
        out_dir, what = os.fspath(out_dir), "--out"
    _check_output_dir(out_dir, what)

    # the whole fit problem: start values inside bounds, conditions valid, binning consistent
    try:
        make_problem(gen, params, targets, observables, free, bounds, smoothing)
    except ValueError as err:
        raise ValueError(f"fit: {err}") from None
    labels = {t.name: raw["observable"] for t, raw in zip(targets, raw_targets)}
    return TuneConfig(os.path.abspath(path), gen, params, targets, observables, tuple(free), dict(bounds), options,
                      seed, os.path.abspath(out_dir), process, sqrt_s, labels)


def run(path, out_dir: str | None = None, progress: bool = True) -> TuneOutput:
    """Load (validating everything first), fit, and write the report and figures (module docstring)."""
    import jax
    import optax

    from diffgen.fit.fitter import fit
    from diffgen.io.atomic import check_writable

    cfg = load(path, out_dir=out_dir)
    os.makedirs(cfg.out_dir, exist_ok=True)
    check_writable(os.path.join(cfg.out_dir, "report.md"))
    opts = dict(cfg.fit_options)
    lr = opts.pop("learning_rate")
    result = fit(cfg.gen, cfg.params, cfg.targets, cfg.observables, cfg.free, bounds=cfg.bounds,
                 optimizer=optax.adam(lr), key=jax.random.key(cfg.seed), progress=progress, **opts)
    report, files = write_report(result, cfg, cfg.out_dir)
    return TuneOutput(result, cfg, report, files)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _markdown(result, cfg: TuneConfig, figures) -> str:
    names = result.free
    lines = [f"# diffgen tune: `{os.path.basename(cfg.path)}`", "",
             f"Process `{cfg.process}`, √s = {cfg.sqrt_s:g} GeV (targets may set their own), seed {cfg.seed}; "
             f"{cfg.fit_options['n_events']} events per condition and step, "
             f"{len(result.loss_history)} optimiser steps, {result.n_events_total} events generated in all.",
             "", f"Converged: **{result.converged}**. {result.message}", "",
             "## Fitted settings", "", "| setting | start | fitted | error | bounds |", "|---|---:|---:|---:|---|"]
    from diffgen.fit.transforms import resolve_bounds

    bounds = resolve_bounds(names, cfg.bounds)
    for n in names:
        lo, hi = bounds[n]
        lines.append(f"| `{n}` | {_fmt(result.start[n])} | {_fmt(result.settings[n])} | {result.errors[n]:.3g} "
                     f"| [{lo:g}, {hi:g}] |")
    how = {"hessian": "the inverse Hessian of χ²/2", "fisher": "the inverse Fisher (Gauss–Newton) matrix"}
    lines += ["", f"Errors from {how.get(result.covariance_method, result.covariance_method)} at the result, "
              "in θ-space (see `diffgen.fit.fitter`).",
              "", "## Correlation matrix", "", "| | " + " | ".join(f"`{n}`" for n in names) + " |",
              "|---|" + "---:|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| `{n}` | " + " | ".join(f"{result.correlation[i, j]:+.3f}" for j in range(len(names))) + " |")
    lines += ["", "## χ²/ndf per target", "", "| target | conditions | normalisation | before | after |",
              "|---|---|---|---:|---:|"]
    for t in cfg.targets:
        b, a = result.chi2_before[t.name], result.chi2_after[t.name]
        cond = ", ".join(f"{k} = {v:g}" for k, v in t.conditions.items()) or "–"
        lines.append(f"| {t.name} | {cond} | {t.normalisation} | {b[0]:.2f}/{b[1]} | {a[0]:.2f}/{a[1]} |")
    tb = sum(v[0] for v in result.chi2_before.values())
    ta = sum(v[0] for v in result.chi2_after.values())
    nd = sum(v[1] for v in result.chi2_after.values())
    lines += [f"| **total** | | | {tb:.2f}/{nd} | {ta:.2f}/{result.ndf} |", "",
              "χ² uses σ² = σ_data² + σ_sim² (the simulation's MC error adds to the data error); the final "
              "sample has covariance_events events per condition.", "", "## Figures", ""]
    lines += [f"![{os.path.splitext(f)[0]}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _save(fig, path):
    import matplotlib.pyplot as plt

    from diffgen.io.atomic import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_report(result, cfg: TuneConfig, out_dir: str):
    """Write report.md, tune.cmnd, fit.json and the PNG figures into ``out_dir`` (atomically).

    Returns (report text, tuple of written paths).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffgen.io.atomic import atomic_write

    files, figures = [], []
    for t in cfg.targets:
        edges = np.asarray(t.edges, float)
        width = np.diff(edges)
        centres = 0.5 * (edges[1:] + edges[:-1])
        fig, (ax, rx) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        ax.errorbar(centres, t.contents / width, yerr=t.errors / width, xerr=width / 2, fmt="o", color="black",
                    ms=3, label="target")
        for label, hists, colour in (("before", result.histograms_before, "tab:blue"),
                                     ("after", result.histograms_after, "tab:red")):
            c, e = hists[t.name]
            chi, ndf = (result.chi2_before if label == "before" else result.chi2_after)[t.name]
            ax.stairs(c / width, edges, color=colour, label=f"{label} fit (χ²/ndf = {chi:.1f}/{ndf})")
            ok = t.contents != 0
            ratio = np.where(ok, c / np.where(ok, t.contents, 1.0), np.nan)
            rx.stairs(ratio, edges, color=colour)
        rel = np.where(t.contents != 0, t.errors / np.where(t.contents != 0, np.abs(t.contents), 1.0), np.nan)
        rx.fill_between(edges, np.append(1 - rel, 1 - rel[-1]), np.append(1 + rel, 1 + rel[-1]), step="post",
                        color="grey", alpha=0.3, label="target error")
        rx.axhline(1.0, color="black", lw=0.8)
        dev = [np.nanmax(np.abs(rel))]
        for hists in (result.histograms_before, result.histograms_after):
            c = hists[t.name][0]
            with np.errstate(divide="ignore", invalid="ignore"):
                dev.append(np.nanmax(np.abs(np.where(t.contents != 0, c / t.contents - 1.0, np.nan))))
        span = 1.3 * max(d for d in dev if np.isfinite(d)) if any(np.isfinite(d) for d in dev) else 0.5
        rx.set_ylim(1.0 - span, 1.0 + span)
        rx.set_ylabel("sim / target")
        rx.set_xlabel((cfg.labels or {}).get(t.name, t.observable_name))
        unit = {"events": "1/N dN/dx", "unit": "normalised dN/dx", "sigma": "dσ/dx [pb]"}[t.normalisation]
        ax.set_ylabel(unit)
        cond = ", ".join(f"{k} = {v:g}" for k, v in t.conditions.items())
        ax.set_title(f"{t.name}" + (f" ({cond})" if cond else ""), fontsize=11)
        ax.legend(fontsize=9)
        fig.tight_layout()
        fname = f"{_safe_name(t.name)}.png"
        _save(fig, os.path.join(out_dir, fname))
        figures.append(fname)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(np.arange(len(result.loss_history)), result.loss_history, color="black")
    ax.set_xlabel("step")
    ax.set_ylabel("χ² (fit sample)")
    if np.all(result.loss_history > 0):
        ax.set_yscale("log")
    ax.set_title("loss history")
    fig.tight_layout()
    _save(fig, os.path.join(out_dir, "loss.png"))
    figures.append("loss.png")

    k = len(result.free)
    fig, axes = plt.subplots(k, 1, figsize=(6.5, 2.2 * k + 0.6), sharex=True, squeeze=False)
    for j, n in enumerate(result.free):
        a = axes[j, 0]
        a.plot(result.param_history[:, j], color="black")
        v, e = result.settings[n], result.errors[n]
        a.axhline(v, color="tab:red", lw=0.8)
        a.axhspan(v - e, v + e, color="tab:red", alpha=0.2)
        a.set_ylabel(n, fontsize=9)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle("optimiser traces (line and band: result ± error, after any Newton steps)", fontsize=10)
    fig.tight_layout()
    _save(fig, os.path.join(out_dir, "params.png"))
    figures.append("params.png")
    files += [os.path.join(out_dir, f) for f in figures]

    report = _markdown(result, cfg, figures)
    for fname, text in (("report.md", report),
                        ("tune.cmnd", "".join(f"{n} = {result.settings[n]:.8g}\n" for n in result.free)),
                        ("fit.json", json.dumps({
                            "settings": result.settings, "errors": result.errors, "free": list(result.free),
                            "covariance": np.asarray(result.covariance).tolist(),
                            "correlation": np.asarray(result.correlation).tolist(),
                            "chi2_before": result.chi2_before, "chi2_after": result.chi2_after,
                            "converged": result.converged, "n_events_total": result.n_events_total,
                            "covariance_method": result.covariance_method, "message": result.message,
                        }, indent=2, default=float) + "\n")):
        p = os.path.join(out_dir, fname)
        with atomic_write(p, "w") as fh:
            fh.write(text)
        files.append(p)
    return report, tuple(files)
