"""Tune files, part 1: a fit described in TOML, parsed and validated into a :class:`TuneConfig`.

:func:`load` reads and validates *everything* before any event is generated (unknown sections or
keys, unknown process, unknown or unused settings, bounds outside the physical range, start values
outside the bounds, missing or malformed target files, unknown observables, mismatched binning,
non-positive steps or events, an unwritable output directory, free settings that cannot be fitted
such as ``Beams:eCM``); each problem names the offending key, and *all* the problems of a file are
reported at once, in one ``ValueError`` (one line each). :func:`diffgen.fit.tune_run.run` then fits and
(:mod:`diffgen.fit.tune_report`) writes, atomically, into the output directory:

* ``report.md`` — fitted values ± errors, correlation matrix, χ²/ndf per target before and after;
* ``<target>.png`` — data vs. simulation before and after the fit (with a ratio panel);
* ``loss.png`` and ``params.png`` — loss history and parameter traces;
* ``tune.cmnd`` — √s, switches, fixed and fitted settings as Pythia-style ``name = value`` lines;
* ``fit.json`` — values, errors, covariance and χ² in machine-readable form.

Paths in the file are relative to the file's directory.

Schema (every key except ``generator.process``, ``fit.free`` and the targets is optional)::

    [generator]
    process = "ee-mumu"            # a name in diffgen.presets.PROCESSES
    sqrt_s = 91.2                  # GeV (default 91.188)
    [generator.settings]           # fixed settings applied before the fit (switches too:
    "23:mWidth" = 2.4952           #   "HadronLevel:Decay" = "off"); or settings = "run.cmnd"

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
    observable = "cos_theta"       # a name in diffgen.observables.REGISTRY
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
    >>> from diffgen.fit import tune_config
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.toml")
    >>> _ = open(p, "w").write('[generator]\\nprocess = "ee-mumu"\\n[fit]\\nfree = ["23:m0"]\\n'
    ...     '[[target]]\\nobservable = "cos_theta"\\nedges = [-1.0, 0.0, 1.0]\\n'
    ...     'contents = [0.45, 0.55]\\nerrors = [0.01, 0.01]\\n')
    >>> cfg = tune_config.load(p)
    >>> cfg.free, cfg.targets[0].name
    (('23:m0',), 'target0')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from diffgen.checks import check_int
from diffgen.fit.binning import NORMALISATIONS
from diffgen.fit.problem import make_problem
from diffgen.fit.targets import (
    BinnedTarget,
    Observable,
    as_observable,
    check_binning,
    from_arrays,
    from_events,
    from_yoda_text,
)
from diffgen.fit.transforms import resolve_bounds
from diffgen.observables import REGISTRY, unknown_observable_message
from diffgen.params import DEFAULT_SQRT_S, SETTINGS, unknown_setting_message, with_settings
from diffgen.params import settings as flat_settings
from diffgen.tomlfile import Problems, check_keys, check_output_dir, positive_float, read_toml, resolve_file

__all__ = ["TuneConfig", "load"]

_TOP = {"generator", "fit", "output", "target"}
_GENERATOR = {"process", "sqrt_s", "settings"}
_FIT = {"free", "steps", "events", "learning_rate", "common_random_numbers", "seed", "smoothing", "tol",
        "patience", "covariance_events", "newton_steps", "bounds"}
_OUTPUT = {"dir"}
_TARGET = {"name", "observable", "yoda", "histogram", "events", "normalisation", "bins", "conditions", "edges",
           "contents", "errors", "density"}


#: Settings that ``fit.free`` refuses, and why (a fit needs a parameter with a gradient).
NOT_FITTABLE = {
    "Beams:eCM": "the collision energy is a condition of the data, not a parameter: give it per target "
                 "(conditions = { \"Beams:eCM\" = 94.0 }) or as generator.sqrt_s",
}


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


def _bins(spec, where: str) -> np.ndarray:
    if isinstance(spec, Mapping):
        check_keys(spec, {"n", "range"}, where)
        n = check_int(spec.get("n"), f"{where}.n")
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


def _load_target(i: int, t, base: str, names_seen: set) -> tuple[BinnedTarget, Observable]:
    """The target and its observable from the ``i``-th ``[[target]]`` table."""
    where = f"target[{i}]"
    check_keys(t, _TARGET, where)
    name = t.get("name", f"target{i}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string, got {name!r}")
    where = f"target[{i}] ({name!r})"
    if name in names_seen:
        raise ValueError(f"{where}.name: target names must be unique; {name!r} appears twice")
    names_seen.add(name)
    obs_name = t.get("observable")
    if not isinstance(obs_name, str):
        raise ValueError(f"{where}.observable is required: a name from {sorted(REGISTRY)}")
    if obs_name not in REGISTRY:
        raise ValueError(f"{where}.observable: {unknown_observable_message(obs_name)}")
    fn = REGISTRY[obs_name].fn
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
            path = resolve_file(base, t["yoda"], f"{where}.yoda")
            target = from_yoda_text(path, name, histogram=t.get("histogram"), normalisation=norm,
                                    observable=name, conditions=conditions)
        elif source == "events":
            path = resolve_file(base, t["events"], f"{where}.events")
            if bins is None:
                raise ValueError("'bins' is required with 'events'")
            obs = (name, fn, bins)
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
    observable = as_observable((name, fn, target.edges if bins is None else bins))
    try:
        check_binning(target, observable)
    except ValueError as err:
        raise ValueError(f"{where}.bins: {err}") from None
    return target, observable


class _Generator(NamedTuple):
    gen: Any
    params: Any
    process: str
    sqrt_s: float


def _load_generator(g, base: str = ".") -> _Generator:
    """The ``[generator]`` table: process, √s and fixed settings (a table or a ``.cmnd`` file; switches allowed)."""
    from diffgen import presets
    from diffgen.cmnd import read_settings
    from diffgen.params import SWITCHES

    if g is None:
        raise ValueError("[generator] section is required (with process = ...)")
    check_keys(g, _GENERATOR, "[generator]")
    process = g.get("process")
    if process not in presets.PROCESSES:
        allowed = ", ".join(sorted(presets.PROCESSES))
        raise ValueError(f"generator.process: unknown process {process!r}; allowed: {allowed}")
    sqrt_s = positive_float(g.get("sqrt_s", DEFAULT_SQRT_S), "generator.sqrt_s")
    fixed = g.get("settings", {})
    if isinstance(fixed, str):
        fixed = read_settings(resolve_file(base, fixed, "generator.settings"))
    if not isinstance(fixed, Mapping):
        raise ValueError(f"generator.settings must be a table of setting = value or a .cmnd file, got {fixed!r}")
    if "Beams:eCM" in fixed:
        raise ValueError("generator.settings.'Beams:eCM': give the collision energy as generator.sqrt_s")
    switches = {k: v for k, v in fixed.items() if k in SWITCHES}
    try:
        gen, params = presets.configure(process, switches, sqrt_s)
    except ValueError as err:
        raise ValueError(f"generator: {err}") from None
    problems = Problems()
    for k, v in fixed.items():
        if k not in SWITCHES:
            def one(k=k, v=v, params=params):
                try:
                    return with_settings(params, {k: v})
                except ValueError as err:
                    raise ValueError(f"generator.settings.{k!r}: {err}") from None
            params = problems.attempt(one) or params
    problems.raise_if_any()
    return _Generator(gen, params, process, sqrt_s)


class _Fit(NamedTuple):
    free: tuple
    bounds: dict
    options: dict
    seed: int


def _load_free(f, params, process: str) -> tuple:
    free = f.get("free")
    if not (isinstance(free, list) and free and all(isinstance(x, str) for x in free)):
        raise ValueError(f"fit.free must be a non-empty list of setting names, got {free!r}")
    used = set(flat_settings(params)) if params is not None else set(SETTINGS)
    problems = Problems()
    for name in free:
        if name in NOT_FITTABLE:
            problems.messages.append(f"fit.free: {name!r} cannot be fitted: {NOT_FITTABLE[name]}")
        elif name not in used:
            why = unknown_setting_message(name) if name not in SETTINGS else \
                f"setting {name!r} is not used by process {process!r}; its settings: {sorted(used)}"
            problems.messages.append(f"fit.free: {why}")
    problems.raise_if_any()
    return tuple(free)


def _load_bounds(f, free) -> dict:
    bounds = f.get("bounds", {})
    if not isinstance(bounds, Mapping):
        raise ValueError(f"fit.bounds must be a table of name = [lo, hi], got {bounds!r}")
    for k in bounds:
        try:
            resolve_bounds(free, {k: bounds[k]})
        except ValueError as err:
            raise ValueError(f"fit.bounds.{k!r}: {err}") from None
    return dict(bounds)


def _load_options(f) -> dict:
    """Keyword arguments of :func:`diffgen.fit.fit` (plus ``learning_rate``) from the ``[fit]`` table."""
    smoothing = f.get("smoothing", 0.25)
    if smoothing is False:
        smoothing = None
    elif smoothing is not None:
        smoothing = positive_float(smoothing, "fit.smoothing")
    options = {
        "steps": check_int(f.get("steps", 200), "fit.steps"),
        "n_events": check_int(f.get("events", 20000), "fit.events"),
        "learning_rate": positive_float(f.get("learning_rate", 0.02), "fit.learning_rate"),
        "common_random_numbers": f.get("common_random_numbers", True),
        "smoothing": smoothing,
        "tol": positive_float(f.get("tol", 1e-6), "fit.tol", allow_zero=True),
        "patience": check_int(f.get("patience", 10), "fit.patience"),
        "newton_steps": check_int(f.get("newton_steps", 5), "fit.newton_steps", lo=0),
    }
    if not isinstance(options["common_random_numbers"], bool):
        raise ValueError(f"fit.common_random_numbers must be true or false, got {options['common_random_numbers']!r}")
    if "covariance_events" in f:
        options["covariance_events"] = check_int(f["covariance_events"], "fit.covariance_events")
    return options


def _load_fit(f, params, process: str) -> _Fit:
    """The ``[fit]`` table: free settings, bounds, optimiser options and seed (all problems at once)."""
    if f is None:
        raise ValueError("[fit] section is required (with free = [...])")
    check_keys(f, _FIT, "[fit]")
    problems = Problems()
    free = problems.attempt(_load_free, f, params, process)
    bounds = problems.attempt(_load_bounds, f, free) if free is not None else None
    options = problems.attempt(_load_options, f)
    seed = problems.attempt(lambda: check_int(f.get("seed", 1), "fit.seed", lo=0))
    problems.raise_if_any()
    return _Fit(free, bounds, options, seed)


def _load_targets(raw_targets, base: str) -> tuple[tuple, tuple, dict]:
    """(targets, observables, labels) from the ``[[target]]`` tables."""
    if not raw_targets:
        raise ValueError("at least one [[target]] table is required")
    if not isinstance(raw_targets, list):
        raise ValueError("target must be an array of tables: write [[target]]")
    seen: set = set()
    problems = Problems()
    loaded = [problems.attempt(_load_target, i, t, base, seen) for i, t in enumerate(raw_targets)]
    problems.raise_if_any()
    targets = tuple(t for t, _ in loaded)
    labels = {t.name: raw["observable"] for t, raw in zip(targets, raw_targets)}
    return targets, tuple(o for _, o in loaded), labels


def _output_dir(out, path: str, base: str, override) -> str:
    """The output directory: ``override`` (``--out``) or ``[output] dir``, checked for writing."""
    check_keys(out, _OUTPUT, "[output]")
    out_rel = out.get("dir", os.path.splitext(os.path.basename(path))[0] + "-fit")
    if not isinstance(out_rel, str) or not out_rel:
        raise ValueError(f"output.dir must be a directory path, got {out_rel!r}")
    if override is None:
        out_dir, what = (out_rel if os.path.isabs(out_rel) else os.path.join(base, out_rel)), "output.dir"
    else:  # an override (diffgen tune --out DIR) replaces [output] dir, which is then not checked
        out_dir, what = os.fspath(override), "--out"
    check_output_dir(out_dir, what)
    return os.path.abspath(out_dir)


def load(path, out_dir=None) -> TuneConfig:
    """Read and validate a tune file (see the module docstring); ``ValueError`` naming the bad key.

    ``out_dir`` overrides the file's ``[output] dir`` (and is the directory checked for writing).
    """
    path = os.fspath(path)
    doc = read_toml(path, _TOP, "tune file")
    base = os.path.dirname(os.path.abspath(path))
    problems = Problems()  # the sections are checked independently, and every problem is reported
    g = problems.attempt(_load_generator, doc.get("generator"), base)
    f = problems.attempt(_load_fit, doc.get("fit"), None if g is None else g.params,
                         "?" if g is None else g.process)
    loaded = problems.attempt(_load_targets, doc.get("target"), base)
    out = problems.attempt(_output_dir, doc.get("output", {}), path, base, out_dir)
    problems.raise_if_any(f"tune file {path!r}")
    targets, observables, labels = loaded
    # the whole fit problem: start values inside bounds, conditions valid, binning consistent
    try:
        make_problem(g.gen, g.params, targets, observables, f.free, f.bounds, f.options["smoothing"])
    except ValueError as err:
        raise ValueError(f"fit: {err}") from None
    return TuneConfig(os.path.abspath(path), g.gen, g.params, targets, observables, f.free, f.bounds, f.options,
                      f.seed, out, g.process, g.sqrt_s, labels)
