"""Observables and binned targets for fits.

**Observable.** ``Observable(name, fn, bins)``: ``fn(events)`` returns per-event values f[N], or
per-particle values with their mask ``(f[N, P], bool[N, P])``; ``bins`` are the bin edges (f[B+1],
strictly increasing). Plain ``(name, fn, bins)`` tuples are accepted everywhere.

**Target.** :class:`BinnedTarget` holds measured (or another generator's) bin contents, their errors
and edges, the name of the observable it is compared with, the *conditions* under which it was taken
(settings such as ``{"Beams:eCM": 94.0}`` applied to the generator for this target only) and its
*normalisation*, one of

============  ==================================================================================
``events``    c_b = Σ_{entries in b} w / Σ_events w: the fraction of events in bin b (per-event
              observables), or the mean number of entries per event in bin b (per-particle
              observables). This is (1/σ) dσ/dx · Δx_b, Rivet's usual "normalised to 1/N".
              Entries outside the edges still count in the denominator. Default.
``unit``      contents normalised to Σ_b c_b = 1 over the histogram's bins (pure shape).
``sigma``     c_b = Σ_{entries in b} w / N in pb per bin (absolute; σ enters the fit).
============  ==================================================================================

Contents are always *per bin* (integrated over the bin), never densities; the constructors take a
``density=True`` flag where the input is per unit x. The simulation is normalised exactly like its
target (see :func:`diffgen.fit.losses.binned`).

Constructors (all validate and raise ``ValueError`` naming the problem): :func:`from_arrays`,
:func:`from_hist` (a 1-d ``hist.Hist``), :func:`from_yoda_text` (YODA ``HISTO1D`` V1/V2/V3 and
``SCATTER2D``), :func:`from_events` (another generator's events, as ``diffgen.Events``, an event
file read with :func:`diffgen.io.read_events`: ``.npz``, ``.parquet``, ``.lhe`` or HepMC3);
:func:`to_yoda_text` writes the format back.

Example:
    >>> import numpy as np
    >>> from diffgen.fit import targets
    >>> t = targets.from_arrays("cos_theta", [1., 3.], [1., 1.], [-1., 0., 1.], normalisation="unit")
    >>> t.contents.tolist(), t.errors.tolist()
    ([0.25, 0.75], [0.25, 0.25])
    >>> targets.from_yoda_text(targets.to_yoda_text(t)).contents.tolist()
    [0.25, 0.75]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.events import Events
from diffgen.expect import event_weights
from diffgen.fit.binning import NORMALISATIONS, BinnedPrediction, binned, check_normalisation
from diffgen.io.yoda import histo1d_text, read_histogram
from diffgen.observables import REGISTRY, fermion_cos_theta, unknown_observable_message
from diffgen.params import SETTINGS, SWITCHES, check_value, parse_settings, unknown_setting_message

__all__ = [
    "Observable", "as_observable", "as_observables", "evaluate", "cos_theta", "BUILTIN_OBSERVABLES",
    "observable_registry", "NORMALISATIONS", "BinnedTarget", "from_arrays", "from_hist", "from_yoda_text",
    "to_yoda_text", "from_events", "check_binning", "unknown_observable_message",
]

_EMPTY: Mapping[str, float] = MappingProxyType({})


# ---------------------------------------------------------------------------------------------
# observables
# ---------------------------------------------------------------------------------------------
class Observable(NamedTuple):
    """``fn(events) -> f[N]`` or ``(f[N, P], mask)``, histogrammed in ``bins`` (edges)."""

    name: str
    fn: Callable[[Events], Any]
    bins: np.ndarray


def _check_edges(edges, what: str) -> np.ndarray:
    try:
        e = np.asarray(edges, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: bin edges must be numbers, got {edges!r}") from None
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"{what}: bin edges must be a 1-d list of at least 2 numbers, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{what}: bin edges must be finite, got {e.tolist()}")
    if not np.all(np.diff(e) > 0):
        raise ValueError(f"{what}: bin edges must be strictly increasing, got {e.tolist()}")
    return e


def as_observable(obj) -> Observable:
    """An :class:`Observable` from one, or from a ``(name, fn, bins)`` tuple (``ValueError`` otherwise)."""
    if isinstance(obj, Observable):
        name, fn, bins = obj
    elif isinstance(obj, (tuple, list)) and len(obj) == 3:
        name, fn, bins = obj
    else:
        raise ValueError(f"an observable must be (name, fn, bins), got {obj!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"observable name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"observable {name!r}: fn must be callable Events -> f[N], got {fn!r}")
    return Observable(name, fn, _check_edges(bins, f"observable {name!r}"))


def as_observables(observables) -> dict[str, Observable]:
    """``{name: Observable}`` from a list of observables/tuples or a dict ``{name: (fn, bins)}``."""
    if isinstance(observables, Mapping):
        items = [as_observable(v if isinstance(v, Observable) else (k, *v)) for k, v in observables.items()]
    else:
        items = [as_observable(o) for o in observables]
    out: dict[str, Observable] = {}
    for o in items:
        if o.name in out:
            raise ValueError(f"observable names must be unique; {o.name!r} appears twice")
        out[o.name] = o
    if not out:
        raise ValueError("at least one observable is needed")
    return out


def evaluate(observable: Observable, events: Events):
    """``(values, mask)`` of ``observable`` on ``events``: f[N] or f[N, P] and a matching bool mask."""
    out = observable.fn(events)
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError(f"observable {observable.name!r} must return f[N] or (values, mask), "
                             f"got a tuple of {len(out)}")
        values, mask = jnp.asarray(out[0]), jnp.asarray(out[1], bool)
    else:
        values, mask = jnp.asarray(out), None
    n = events.log_weight.shape[0]
    if values.ndim not in (1, 2) or values.shape[0] != n:
        raise ValueError(f"observable {observable.name!r} must return f[N] or f[N, P] with N = {n}, "
                         f"got shape {values.shape}")
    if mask is None:
        mask = jnp.ones(values.shape, bool)
    elif mask.shape != values.shape:
        raise ValueError(f"observable {observable.name!r}: mask shape {mask.shape} != values shape {values.shape}")
    return values, mask


#: cos θ of the outgoing fermion vs the e- beam, f[N] (:func:`diffgen.observables.fermion_cos_theta`).
cos_theta = fermion_cos_theta

#: Observables of the hard process by name (the ``"hard"`` entries of :data:`diffgen.observables.REGISTRY`).
BUILTIN_OBSERVABLES: Mapping[str, Callable] = MappingProxyType(
    {n: s.fn for n, s in REGISTRY.items() if s.level == "hard"})


def observable_registry() -> dict[str, Callable]:
    """``{name: fn}`` of every observable in :data:`diffgen.observables.REGISTRY` (tune-file names)."""
    return {n: s.fn for n, s in REGISTRY.items()}


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------
class BinnedTarget(NamedTuple):
    """A normalised binned distribution to fit (see the module docstring for ``normalisation``).

    Attributes:
        name: unique label (e.g. ``"cos_theta@94"``).
        contents: f[B] per-bin contents; errors: f[B] their 1σ errors (bins with error 0 are
            left out of χ²); edges: f[B+1].
        observable: name of the :class:`Observable` it is compared with (default: ``name``).
        conditions: settings applied to the generator for this target only (e.g. ``Beams:eCM``).
        normalisation: ``"events"``, ``"unit"`` or ``"sigma"``.
    """

    name: str
    contents: np.ndarray
    errors: np.ndarray
    edges: np.ndarray
    observable: str | None = None
    conditions: Mapping[str, float] = _EMPTY
    normalisation: str = "events"

    @property
    def observable_name(self) -> str:
        return self.observable or self.name

    @property
    def n_bins(self) -> int:
        return int(self.contents.shape[0])

    @property
    def ndf(self) -> int:
        """Bins entering χ² (error > 0), minus one for ``unit`` normalisation (Σ c_b = 1 is fixed)."""
        return int(np.count_nonzero(self.errors > 0)) - (1 if self.normalisation == "unit" else 0)

    def __reduce__(self):
        # picklable (process pools, saved fits): the read-only conditions travel as a plain dict
        fields = self._replace(conditions=dict(self.conditions))
        return (_rebuild_target, tuple(fields))


def _rebuild_target(*fields) -> BinnedTarget:
    t = BinnedTarget(*fields)
    return t._replace(conditions=MappingProxyType(dict(t.conditions)) if t.conditions else _EMPTY)


def _check_conditions(conditions, what: str) -> Mapping[str, float]:
    if conditions is None:
        return _EMPTY
    if not isinstance(conditions, (Mapping, str, list, tuple)):
        raise ValueError(f"{what}: conditions must be a mapping of setting names to values or 'Group:name = "
                         f"value' strings, got {conditions!r}")
    # "Beams:eCM = 94" and ["Beams:eCM = 94"] as wherever a mapping of settings is taken
    parsed = parse_settings(conditions, where=f"{what}: conditions")
    out = {}
    for k, v in parsed.items():
        if k in SWITCHES:
            raise ValueError(f"{what}: conditions: {k} is an on/off switch; a target's conditions are numeric "
                             f"settings such as Beams:eCM (switches belong to the generator)")
        if k not in SETTINGS:
            raise ValueError(f"{what}: conditions: {unknown_setting_message(k, SETTINGS)}")
        try:
            check_value(k, v)
        except ValueError as err:
            raise ValueError(f"{what}: conditions: {err}") from None
        out[k] = float(v)
    return MappingProxyType(out)


def from_arrays(name: str, contents, errors, edges, *, normalisation: str = "events", observable: str | None = None,
                conditions: Mapping[str, float] | None = None, density: bool = False) -> BinnedTarget:
    """A :class:`BinnedTarget` from per-bin ``contents``, ``errors`` and ``edges``.

    With ``normalisation="unit"`` contents and errors are divided by Σ contents. With
    ``density=True`` the inputs are per unit x and are multiplied by the bin widths first.
    ``ValueError`` for inconsistent lengths, non-finite or negative errors, bad edges, an unknown
    normalisation or conditions outside the physical range.
    """
    what = f"target {name!r}"
    if not isinstance(name, str) or not name:
        raise ValueError(f"target name must be a non-empty string, got {name!r}")
    check_normalisation(normalisation, what)
    e = _check_edges(edges, what)
    try:
        c = np.asarray(contents, dtype=float)
        s = np.asarray(errors, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: contents and errors must be numbers") from None
    nb = e.shape[0] - 1
    if c.shape != (nb,) or s.shape != (nb,):
        raise ValueError(f"{what}: {nb} bins from the edges but contents have shape {c.shape} and errors {s.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s))):
        raise ValueError(f"{what}: contents and errors must be finite")
    if np.any(s < 0):
        raise ValueError(f"{what}: errors must be >= 0, got {s.tolist()}")
    if density:
        c, s = c * np.diff(e), s * np.diff(e)
    if normalisation == "unit":
        total = c.sum()
        if not total > 0:
            raise ValueError(f"{what}: normalisation 'unit' needs a positive sum of contents, got {total}")
        c, s = c / total, s / total
    if not np.any(s > 0):
        raise ValueError(f"{what}: all errors are zero; at least one bin needs an error > 0 to enter chi2")
    if observable is not None and (not isinstance(observable, str) or not observable):
        raise ValueError(f"{what}: observable must be a non-empty string, got {observable!r}")
    return BinnedTarget(name, c, s, e, observable, _check_conditions(conditions, what), normalisation)


def from_hist(h, name: str | None = None, **kwargs) -> BinnedTarget:
    """A target from a 1-d ``hist.Hist`` (contents ``values()``, errors √``variances()``, or √values
    when the storage has no variances). Keyword arguments as :func:`from_arrays`."""
    axes = getattr(h, "axes", None)
    if axes is None or len(axes) != 1:
        raise ValueError(f"from_hist needs a 1-d hist.Hist, got {type(h).__name__}")
    values = np.asarray(h.values(), float)
    var = h.variances()
    var = np.abs(values) if var is None else np.asarray(var, float)
    name = name or getattr(h, "name", None) or axes[0].name or "hist"
    return from_arrays(name, values, np.sqrt(var), np.asarray(axes[0].edges, float), **kwargs)


def from_yoda_text(path_or_text, name: str | None = None, *, histogram: str | None = None,
                   normalisation: str = "unit", scatter_density: bool = True, **kwargs) -> BinnedTarget:
    """A target from YODA text (a file path or the text itself).

    Supported blocks: ``YODA_HISTO1D`` (V1/V2: ``Total``/``Underflow``/``Overflow`` lines then rows
    ``xlow xhigh sumw sumw2 sumwx sumwx2 numEntries``; V3: ``Edges(A1): [...]`` then rows
    ``sumw sumw2 sumwx sumwx2 numEntries`` including under- and overflow) with contents = sumw and
    errors = √sumw2, and ``YODA_SCATTER2D`` (rows ``x x− x+ y y− y+``; errors the mean of y− and y+;
    with ``scatter_density`` y is per unit x, as in Rivet reference data, and is multiplied by the
    widths). ``histogram`` selects a block by its path when there are several.

    ``normalisation`` defaults to ``"unit"`` (a shape: YODA files rarely say how they were
    normalised); pass ``"events"`` or ``"sigma"`` to take the contents as given. Other keyword
    arguments as :func:`from_arrays`. ``ValueError`` (with a line number) on malformed text.
    """
    h = read_histogram(path_or_text, histogram, scatter_density=scatter_density)
    label = name or h.path.rstrip("/").split("/")[-1] or "yoda"
    return from_arrays(label, h.contents, h.errors, h.edges, normalisation=normalisation, **kwargs)


def to_yoda_text(target: BinnedTarget, path: str | None = None) -> str:
    """YODA ``HISTO1D_V2`` text of ``target`` (sumw = contents, sumw2 = errors²; moments set to 0)."""
    return histo1d_text(target.contents, target.errors, target.edges, path or f"/DIFFGEN/{target.name}",
                        title=target.name)


def check_binning(target: BinnedTarget, observable: Observable) -> None:
    """``ValueError`` unless ``target`` and ``observable`` have the same bin edges (relative 1e-6)."""
    te, oe = np.asarray(target.edges, float), np.asarray(observable.bins, float)
    scale = max(float(np.max(np.abs(oe))), 1e-12)
    if te.shape != oe.shape or not np.allclose(te, oe, rtol=1e-6, atol=1e-9 * scale):
        raise ValueError(f"mismatched binning: target {target.name!r} has {te.size - 1} bins with edges "
                         f"{np.round(te, 6).tolist()}, observable {observable.name!r} has {oe.size - 1} bins "
                         f"with edges {np.round(oe, 6).tolist()}")


# ---------------------------------------------------------------------------------------------
# targets from events
# ---------------------------------------------------------------------------------------------
def _load_events(source) -> Events:
    if isinstance(source, Events):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ValueError(f"event file {path!r} does not exist")
        from diffgen.io import read_events

        return read_events(path)[0]
    raise ValueError(f"from_events expects Events or an event-file path, got {type(source).__name__}")


def from_events(events, observables, *, normalisation: str = "events", conditions: Mapping[str, float] | None = None,
                names: Sequence[str] | None = None, smoothing: float | None = None) -> list[BinnedTarget]:
    """Targets from another generator's (or diffgen's) events, one per observable.

    ``events``: :class:`~diffgen.events.Events`, an event file for :func:`diffgen.io.read_events`
    (``.npz``, ``.parquet``, ``.lhe``, or HepMC3 ``.hepmc3``/``.hepmc`` e.g. from Pythia). The observables are
    computed by the same functions and binned by the same code (:func:`diffgen.fit.losses.binned`)
    as the simulation in a fit, so both sides are treated identically; errors are the statistical
    errors of the weighted sample. ``names`` labels the targets (default: the observable names);
    the target's ``observable`` is the observable's name. ``smoothing`` is normally left ``None``
    (hard bins, what data has).
    """
    obs = list(as_observables(observables).values())
    if names is not None and len(names) != len(obs):
        raise ValueError(f"from_events: {len(obs)} observables but {len(names)} names")
    check_normalisation(normalisation, "from_events")
    ev = _load_events(events)
    ev = Events(*(jnp.asarray(getattr(ev, f)) for f in ("p4", "pid", "mask", "colour", "log_weight", "status",
                                                          "p4_in", "pid_in")))
    w = event_weights(ev, normalise=normalisation != "sigma")
    if not float(jnp.sum(w)) > 0:
        raise ValueError("from_events: the events have no positive weight (all failed or zero)")
    out = []
    for k, o in enumerate(obs):
        try:
            run = _jitted_binner(o.fn, tuple(float(x) for x in np.asarray(o.bins)), normalisation, smoothing)
        except TypeError:  # an unhashable observable: evaluate op by op
            run = None
        if run is not None:
            pred = BinnedPrediction(*run(ev, w))
        else:
            values, mask = evaluate(o, ev)
            pred = binned(values, w, o.bins, mask=mask, normalisation=normalisation, smoothing=smoothing)
        label = names[k] if names is not None else o.name
        out.append(from_arrays(label, np.asarray(pred.contents, float), np.sqrt(np.asarray(pred.variances, float)),
                               o.bins, normalisation=normalisation, observable=o.name, conditions=conditions))
    return out


@functools.lru_cache(maxsize=64)
def _jitted_binner(fn, edges: tuple, normalisation: str, smoothing):
    """A jitted (events, weights) ↦ (contents, variances) for one observable (compiled once per shape)."""
    obs = Observable("_", fn, np.asarray(edges))

    @jax.jit
    def run(ev, w):
        values, mask = evaluate(obs, ev)
        pred = binned(values, w, np.asarray(edges), mask=mask, normalisation=normalisation, smoothing=smoothing)
        return pred.contents, pred.variances

    return run
