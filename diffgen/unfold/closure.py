"""Particle-level histograms of an unfolding and their χ² against a reference truth (closure checks).

An unfolding (:func:`~diffgen.unfold.from_events.omnifold_events`) returns per-event weights for the
simulation's truth record; what a physicist looks at are the normalised particle-level distributions
1/σ dσ/dX that those weights give, next to the simulation's prior and, in a closure test, the truth of
the pseudo-data. This module makes those histograms and their χ², for the per-event observables of
:data:`diffgen.observables.REGISTRY` and for the charged-particle spectrum ``x_p`` = 2|p⃗|/√s.

* Per-event observables: :class:`~diffgen.plotting.Hist1D` with the plotting module's default edges and
  its delta-method errors of a normalised weighted histogram (:func:`diffgen.plotting.density`).
* ``x_p`` (charged particles, 1/σ dσ/dx_p: particles per event per unit x_p): bin b holds
  A_b = Σ_e w_e c_eb over events e with c_eb charged particles in the bin, divided by W = Σ_e w_e. Its
  error is the delta-method error of that ratio with the within-event correlation counted:
  var(A_b/W) = [Σ w² c² − 2 f_b Σ w² c + f_b² Σ w²]/W² with f_b = A_b/W (per bin width). Filling each
  particle as an independent entry would understate it by about √⟨c⟩.
* :func:`bootstrap_errors` gives each bin's spread over bootstrap replicas of the unfolded weights, the
  unfolding's whole statistical uncertainty (:func:`with_errors` puts it on the histograms).
* :func:`figure` draws them (one column per observable, ratio panels to a reference sample).
* :func:`chi2_table` compares two sets of histograms: Σ (a − b)²/(σ_a² + σ_b²) over the bins with a
  non-zero error (:func:`diffgen.plotting.chi2`). The errors are the samples' statistical errors only;
  the unfolding's own variance (classifier training noise) is not in them, and a null closure (data
  from the simulation's own parameters) measures it.

Example:
    >>> import jax, numpy as np, diffgen
    >>> gen = diffgen.presets.ee_hadrons(shower=False, decays=False)
    >>> ev = gen.sample(gen.default_params(), jax.random.key(0), 64)
    >>> h = particle_histograms(ev, np.ones(64), ("charged_multiplicity", "x_p"))
    >>> sorted(h), bool(abs(np.sum(h["x_p"].y * np.diff(h["x_p"].edges))
    ...                      - np.mean(np.asarray(diffgen.observables.charged_multiplicity(ev)))) < 1e-6)
    (['charged_multiplicity', 'x_p'], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from diffgen import particles, plotting
from diffgen.events import Events
from diffgen.observables import REGISTRY, observable_spec, scaled_momentum
from diffgen.unfold.from_events import event_features

__all__ = ["CLOSURE_OBSERVABLES", "XP_EDGES", "Histogram", "particle_histograms", "chi2_table", "observable_edges",
           "figure", "bootstrap_errors", "with_errors"]

#: the particle-level observables of the issue-14 closure (n_ch, thrust, sphericity, y23 and x_p)
CLOSURE_OBSERVABLES = ("charged_multiplicity", "thrust", "sphericity", "y23", "x_p")
#: bin edges of the charged-particle x_p spectrum (log-spaced: the spectrum falls over four decades)
XP_EDGES = np.concatenate([[0.0], np.geomspace(0.01, 1.0, 21)])
_BINS = 20


class Histogram(NamedTuple):
    """A normalised particle-level histogram: density ``y`` per unit X with its error, on ``edges``."""

    name: str
    edges: np.ndarray
    y: np.ndarray
    err: np.ndarray


def observable_edges(name: str) -> np.ndarray:
    """Bin edges of ``name`` in the observable's own variable (thrust as T, not 1 − T)."""
    if name == "x_p":
        return XP_EDGES
    spec = observable_spec(name)
    st = plotting.style(name)
    if st.transform is not None:  # plotted as 1 − T etc.: bin the registry variable on the image of the edges
        edges = np.asarray(st.transform(plotting.default_edges(name, _BINS, spec.range)), float)
        return np.sort(edges)
    return plotting.default_edges(name, _BINS, spec.range, step=2 if st.integer else None)


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    known = sorted(n for n, s in REGISTRY.items() if not s.per_particle) + ["x_p"]
    for n in names:
        if n not in known:
            raise ValueError(f"unknown closure observable {n!r}; known: {known}")
    if not names:
        raise ValueError("at least one observable is needed")
    return tuple(names)


def _xp_histogram(events: Events, w: np.ndarray, edges: np.ndarray) -> Histogram:
    xp = np.asarray(scaled_momentum(events), np.float64)
    charged = np.asarray(events.mask) & (np.asarray(particles.charge(events.pid)) != 0)
    nb = len(edges) - 1
    b = np.clip(np.searchsorted(edges, xp, side="right") - 1, 0, nb - 1)
    inside = charged & (xp >= edges[0]) & (xp < edges[-1])
    rows = np.broadcast_to(np.arange(xp.shape[0])[:, None], xp.shape)
    c = np.zeros((xp.shape[0], nb))
    np.add.at(c, (rows[inside], b[inside]), 1.0)
    W, W2 = float(w.sum()), float((w * w).sum())
    width = np.diff(edges)
    if not W > 0:
        return Histogram("x_p", edges, np.zeros(nb), np.zeros(nb))
    A = w @ c
    f = A / W
    var = ((w * w) @ (c * c) - 2.0 * f * ((w * w) @ c) + f * f * W2) / W ** 2
    return Histogram("x_p", edges, f / width, np.sqrt(np.maximum(var, 0.0)) / width)


def particle_histograms(events: Events, weights, names: Sequence[str] = CLOSURE_OBSERVABLES,
                        edges: dict | None = None, values: dict | None = None) -> dict[str, Histogram]:
    """Normalised histograms of ``names`` for the particle-level ``events`` with per-event ``weights`` f[N].

    ``edges`` overrides :func:`observable_edges` per name. Events with weight 0 do not count. Per-event
    observables are computed with :func:`~diffgen.unfold.from_events.event_features` unless ``values``
    holds them already (``{name: f[N]}``, e.g. the columns of an unfolding's truth features).
    """
    names = _check_names(names)
    w = np.asarray(weights, np.float64)
    if w.shape != (events.n_events,):
        raise ValueError(f"weights have shape {w.shape}, expected ({events.n_events},) (one per event)")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    out = {}
    for name in names:
        e = np.asarray((edges or {}).get(name, observable_edges(name)), float)
        if name == "x_p":
            out[name] = _xp_histogram(events, w, e)
            continue
        x = (values or {}).get(name)
        x = event_features(events, (name,))[:, 0] if x is None else np.asarray(x, np.float64)
        if x.shape != w.shape:
            raise ValueError(f"values of {name!r} have shape {x.shape}, expected {w.shape}")
        y, err = plotting.density(plotting.Hist1D.fill(name, x, w, e))
        out[name] = Histogram(name, e, y, err)
    return out


def bootstrap_errors(events: Events, replica_weights, names: Sequence[str] = CLOSURE_OBSERVABLES,
                     edges: dict | None = None, values: dict | None = None) -> dict[str, np.ndarray]:
    """``{name: σ}``: the standard deviation, bin by bin, of the normalised histograms of ``events`` with
    each row of ``replica_weights`` f[R, N] (e.g. :func:`~diffgen.unfold.from_events.omnifold_bootstrap`)."""
    rw = np.asarray(replica_weights, np.float64)
    if rw.ndim != 2 or rw.shape[1] != events.n_events or rw.shape[0] < 2:
        raise ValueError(f"replica_weights must have shape (R >= 2, {events.n_events}), got {rw.shape}")
    names = _check_names(names)
    vals = dict(values or {})
    for name in names:  # compute each per-event observable once for all replicas
        if name != "x_p" and name not in vals:
            vals[name] = event_features(events, (name,))[:, 0]
    reps = [particle_histograms(events, w, names, edges, vals) for w in rw]
    return {name: np.std([h[name].y for h in reps], axis=0, ddof=1) for name in names}


def with_errors(hists: dict[str, Histogram], errors: dict[str, np.ndarray]) -> dict[str, Histogram]:
    """The histograms with their errors replaced by ``errors`` (e.g. :func:`bootstrap_errors`)."""
    return {name: h._replace(err=np.asarray(errors[name], float)) for name, h in hists.items()}


def chi2_table(a: dict[str, Histogram], b: dict[str, Histogram]) -> dict[str, tuple[float, int]]:
    """``{name: (χ², bins)}`` of the histograms of ``a`` against those of ``b`` (same names and edges)."""
    out = {}
    for name, ha in a.items():
        hb = b[name]
        if not np.allclose(ha.edges, hb.edges):
            raise ValueError(f"histograms of {name!r} have different edges")
        out[name] = plotting.chi2(ha.y, ha.err, hb.y, hb.err)
    return out


def _axis_label(name: str) -> str:
    """The plotting style's text (N_ch, S, …) where the histogram is in the registry variable itself; the
    registry name where the style plots a transform of it (thrust is binned here as T, not 1 − T)."""
    if name not in REGISTRY or plotting.style(name).transform is not None:
        return name
    return plotting.style(name).text


def figure(samples: dict[str, dict[str, Histogram]], reference: str | None = None, title: str = ""):
    """One column per observable: the histograms of every sample (``{label: {name: Histogram}}``) and,
    with a ``reference`` label, a ratio panel to it (its error as a grey band). Returns the matplotlib
    figure; the caller saves and closes it. x_p and y23 get a log x axis, every density a log y axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(samples.values())))
    rows = 2 if reference else 1
    fig, axes = plt.subplots(rows, len(names), figsize=(4.2 * len(names), 6.5 if reference else 4.2),
                             sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": (3, 1.2) if reference else (1,), "hspace": 0.05})
    colours = iter(("tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple"))
    styles = {label: ("k" if label == reference else next(colours)) for label in samples}
    for k, name in enumerate(names):
        ax = axes[0, k]
        ref = samples[reference][name] if reference else None
        for label, hists in samples.items():
            h = hists[name]
            if label == reference:
                ax.stairs(h.y, h.edges, color="k", label=label)
                continue
            c = 0.5 * (h.edges[1:] + h.edges[:-1])
            ax.errorbar(c, h.y, h.err, fmt="o", ms=3, color=styles[label], label=label)
            if ref is not None:
                ok = ref.y > 0
                axes[1, k].errorbar(c[ok], h.y[ok] / ref.y[ok], h.err[ok] / ref.y[ok], fmt="o", ms=3,
                                    color=styles[label])
        edges = next(iter(samples.values()))[name].edges
        if name in ("y23", "x_p"):
            ax.set_xscale("log")
            ax.set_xlim(edges[1] if edges[0] <= 0 else edges[0], edges[-1])
        ax.set_yscale("log")
        if ref is not None:
            rax = axes[1, k]
            rel = np.where(ref.y > 0, ref.err / np.where(ref.y > 0, ref.y, 1.0), 0.0)
            rax.fill_between(ref.edges, np.append(1 - rel, 1), np.append(1 + rel, 1), step="post", color="grey",
                             alpha=0.3)
            rax.axhline(1.0, color="k", lw=0.8)
            rax.set_ylim(0.8, 1.2)
            rax.set_xlabel(_axis_label(name))
            if k == 0:
                rax.set_ylabel(f"/ {reference}")
        else:
            ax.set_xlabel(_axis_label(name))
        if k == 0:
            ax.set_ylabel("1/σ dσ/dX")
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
