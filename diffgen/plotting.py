"""Plots a physicist compares: 1/σ dσ/dX with physics labels, log scales, and a reference with a ratio panel.

Used by ``diffgen generate --plot`` (and ``--compare``, ``--absolute``); usable from Python on any
weighted sample. Everything here works on histograms already filled (NumPy), never on events.

* :class:`Hist1D` holds what a weighted histogram needs for both normalisations: per-bin Σw and Σw²,
  the sample's total Σw and Σw² (entries outside the edges included) and the number of events
  generated.
* :func:`density` gives the plotted values. **Normalised** (default): 1/σ dσ/dX, the fraction of the
  cross-section per unit X, f_b/Δx_b with f_b = W_b/W (W: Σw over all events, so entries outside the
  plotted range count in σ, as in the LEP papers). Its error is the delta-method error of a ratio of
  weighted sums, var f_b = [S2_b (1 − 2 f_b) + f_b² S2]/W², which includes the normalisation's own
  fluctuation (for unit weights it is the binomial f(1 − f)/N). **Absolute**: dσ/dX = W_b/(N Δx_b) in
  pb per unit X, error √S2_b/(N Δx_b).
* :data:`STYLES` says how each :data:`diffgen.observables.REGISTRY` observable is shown: the physics
  label (``1−T``, ``C``, ``N_ch``), the plotted variable (thrust is shown as 1 − T, as LEP did), a
  logarithmic y axis where the LEP plots use one (1 − T, C, y23, broadenings, jet masses,
  sphericity), a logarithmic x axis with log-spaced bins for y23 (its physics spans decades), and
  integer-aligned bins for counts. :func:`default_edges` gives each observable's default binning.
* **Log-x** (``PlotStyle.logx``, y23): edges x_k = lo·(hi/lo)^(k/B), markers at the geometric bin
  centres √(x_k x_{k+1}); the plotted value is still 1/σ dσ/dX per unit X (W_b/W divided by the
  non-uniform width Δx_b), so Σ_b value_b Δx_b is the fraction of σ in range. Values at or below
  the first edge (y23 = 0: events with fewer than three particles, which no resolution splits into
  three jets) fall into no bin and are never logged: they count in σ only, as in ALEPH's Rivet
  analysis, which skips y ≤ 0 and divides by the sum of all weights.
* Counts (multiplicities) get **integer-aligned** bins (:func:`count_edges`): edges at half-integers
  n − ½ and a whole-number width, so that every bin holds the same number of possible values.
* A reference (:class:`Hist1D` from another event file, or a YODA histogram, :func:`yoda_reference`)
  is drawn over the run with a ratio panel diffgen/reference: points with diffgen's error and a
  band for the reference's error.

Example:
    >>> import numpy as np
    >>> h = Hist1D.fill("c_parameter", np.array([0.1, 0.3, 0.35, 0.9]), np.ones(4), np.linspace(0, 1, 5))
    >>> y, err = density(h)
    >>> float(np.sum(y * np.diff(h.edges)))
    1.0
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Hist1D", "PlotStyle", "STYLES", "style", "count_edges", "log_edges", "default_edges", "density", "ratio",
           "chi2", "Panel", "panels", "yoda_reference", "match_yoda", "scaled_like", "axis_labels", "figure",
           "save_figure", "sparkline", "compact_summary"]


class PlotStyle(NamedTuple):
    """How one registry observable is plotted.

    Attributes:
        symbol: the plotted variable in matplotlib mathtext, without ``$`` (``1-T``, ``C``, ``N_\\mathrm{ch}``).
        text: the same in plain text, for terminals and file names (``1-T``, ``C``, ``N_ch``).
        alias: the name of the plotted variable when it is not the registry observable itself
            (``one_minus_thrust`` for thrust); YODA histograms may use either name.
        transform: plotted value from the registry value (``1 − T``); must be monotonic. None: the value itself.
        range: the plotted range (None: the registry's default).
        logy: logarithmic y axis (the LEP papers' choice for this observable).
        integer: a count: integer-aligned bins.
        logx: logarithmic x axis and log-spaced default bins (:func:`log_edges`); ``range`` must then be
            positive. Values ≤ ``range[0]`` (y23 = 0) fall below the first bin.
    """

    symbol: str
    text: str
    alias: str | None = None
    transform: Callable | None = None
    range: tuple | None = None
    logy: bool = False
    integer: bool = False
    logx: bool = False


def _one_minus(x):
    return 1.0 - np.asarray(x, float)


#: Plot styles by registry name. Labels and log scales follow the LEP event-shape and multiplicity
#: papers, e.g. ALEPH, Eur. Phys. J. C35 (2004) 457 (1 − T, C, B_T, B_W, ρ_H, y23 on log scales) and
#: ALEPH, Phys. Rep. 294 (1998) 1 (N_ch in bins of two).
#:
#: y23 has a log x axis: ALEPH (Rivet ALEPH_2004_S5765862) histograms −ln y23, and JADE/OPAL
#: (Eur. Phys. J. C17 (2000) 19, Rivet JADE_OPAL_2000_S4300807, /REF/.../d26-x01-y01 at 91.2 GeV)
#: give 1/σ dσ/dy23 in 32 log-spaced bins, 8 per decade, from 10^-4.5 = 3.16e-5 to 10^-0.5 = 0.316 —
#: the range used here (``--bins 32`` reproduces their edges). 1 − T and the other event shapes keep
#: a linear x axis, as in those papers (ALEPH bins T linearly at LEP 1).
STYLES: dict[str, PlotStyle] = {
    "thrust": PlotStyle("1-T", "1-T", alias="one_minus_thrust", transform=_one_minus, range=(0.0, 0.5),
                        logy=True),
    "thrust_major": PlotStyle(r"T_\mathrm{major}", "T_major", logy=True),
    "thrust_minor": PlotStyle(r"T_\mathrm{minor}", "T_minor", logy=True),
    "oblateness": PlotStyle("O", "O", logy=True),
    "sphericity": PlotStyle("S", "S", logy=True),
    "aplanarity": PlotStyle("A", "A", logy=True),
    "c_parameter": PlotStyle("C", "C", logy=True),
    "d_parameter": PlotStyle("D", "D", logy=True),
    "b_total": PlotStyle("B_T", "B_T", logy=True),
    "b_wide": PlotStyle("B_W", "B_W", logy=True),
    "heavy_jet_mass": PlotStyle(r"\rho_H", "rho_H", logy=True),
    "light_jet_mass": PlotStyle(r"\rho_L", "rho_L", logy=True),
    "y23": PlotStyle(r"y_{23}^\mathrm{D}", "y23", range=(10 ** -4.5, 10 ** -0.5), logy=True, logx=True),
    "multiplicity": PlotStyle("N", "N", integer=True),
    "charged_multiplicity": PlotStyle(r"N_\mathrm{ch}", "N_ch", integer=True),
    "n_pions": PlotStyle(r"N_{\pi^\pm}", "N_pi", integer=True),
    "n_kaons": PlotStyle(r"N_{K^\pm}", "N_K", integer=True),
    "n_protons": PlotStyle(r"N_{p}", "N_p", integer=True),
    "cos_theta": PlotStyle(r"\cos\theta", "cos(theta)"),
}


def style(name: str) -> PlotStyle:
    """The :class:`PlotStyle` of a registry observable (a plain one, labelled by its name, if none is listed)."""
    return STYLES.get(name, PlotStyle(name.replace("_", r"\_"), name))


def count_edges(lo: float, hi: float, width: int = 1) -> np.ndarray:
    """Integer-aligned edges for a count: n − ½ for n = ⌈lo⌉, ⌈lo⌉ + width, … up to the first ≥ hi + ½.

    Every bin [n − ½, n + width − ½) holds exactly ``width`` integers.

    Example:
        >>> count_edges(0, 6, 2).tolist()
        [-0.5, 1.5, 3.5, 5.5, 7.5]
    """
    if not (isinstance(width, (int, np.integer)) and width >= 1):
        raise ValueError(f"count bin width must be a positive whole number, got {width!r}")
    first = math.ceil(lo - 1e-9)
    n = max(1, math.ceil((hi - first + 1) / width))
    return first - 0.5 + width * np.arange(n + 1, dtype=float)


def log_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """``bins`` log-spaced bins from ``lo`` to ``hi`` (0 < lo < hi): edges lo·(hi/lo)^(k/bins), k = 0…bins.

    Example:
        >>> log_edges(1e-4, 1e-1, 3).round(12).tolist()
        [0.0001, 0.001, 0.01, 0.1]
    """
    if not (isinstance(bins, (int, np.integer)) and bins >= 1):
        raise ValueError(f"number of log bins must be a positive whole number, got {bins!r}")
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"log-spaced bins need 0 < lo < hi, got lo = {lo!r}, hi = {hi!r}")
    e = np.geomspace(lo, hi, bins + 1)
    e[0], e[-1] = lo, hi  # exact end points
    return e


def default_edges(name: str, bins: int, spec_range: tuple, step: float | None = None) -> np.ndarray:
    """The default edges of observable ``name`` in its plotted variable: integer-aligned for counts
    (:func:`count_edges`, width ``step``, ``bins`` ignored), ``bins`` log-spaced bins for a log-x style
    (:func:`log_edges`), else ``bins`` equal bins; over the style's range, else ``spec_range`` (the
    registry's range of the observable).

    Example:
        >>> [f"{x:.3g}" for x in default_edges("y23", 8, (0.0, 0.5))[[0, 2, -1]]]  # OPAL's range, 2 bins a decade
        ['3.16e-05', '0.000316', '0.316']
    """
    st = style(name)
    lo, hi = st.range or spec_range
    if st.integer:
        return count_edges(spec_range[0], spec_range[1] - 0.5, int(step or 1))
    if st.logx:
        return log_edges(lo, hi, bins)
    return np.linspace(lo, hi, bins + 1)


def _check_edges(edges, what: str) -> np.ndarray:
    e = np.asarray(edges, float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise ValueError(f"{what}: bin edges must be at least 2 finite, strictly increasing numbers, got {e!r}")
    return e


class Hist1D(NamedTuple):
    """A weighted 1-d histogram with what both normalisations need.

    Attributes:
        name: the registry observable.
        edges: f[B + 1] in the plotted variable.
        sumw, sumw2: Σw and Σw² per bin, f[B].
        total_w, total_w2: Σw and Σw² of the whole sample (entries outside the edges included).
        n: events generated (absolute normalisation: dσ = W_b/n for weights in pb).
        label: legend label.
    """

    name: str
    edges: np.ndarray
    sumw: np.ndarray
    sumw2: np.ndarray
    total_w: float
    total_w2: float
    n: int
    label: str = "diffgen"

    @staticmethod
    def fill(name: str, values, weights, edges, n: int | None = None, label: str = "diffgen") -> Hist1D:
        """Histogram ``values`` f[N] (already in the plotted variable) with ``weights`` f[N]."""
        edges = _check_edges(edges, name)
        x = np.asarray(values, float)
        w = np.asarray(weights, float)
        sw = np.histogram(x, edges, weights=w)[0]
        sw2 = np.histogram(x, edges, weights=w * w)[0]
        return Hist1D(name, edges, sw, sw2, float(w.sum()), float((w * w).sum()), int(n or x.size), label)


def density(h: Hist1D, absolute: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(values, errors) per unit of the plotted variable: 1/σ dσ/dX, or dσ/dX in pb with ``absolute``.

    See the module docstring for the errors. A sample without weight gives zeros.
    """
    width = np.diff(h.edges)
    if absolute:
        n = max(h.n, 1)
        return h.sumw / (n * width), np.sqrt(np.maximum(h.sumw2, 0.0)) / (n * width)
    if not h.total_w > 0:
        return np.zeros_like(width), np.zeros_like(width)
    f = h.sumw / h.total_w
    var = (h.sumw2 * (1.0 - 2.0 * f) + f * f * h.total_w2) / h.total_w ** 2
    return f / width, np.sqrt(np.maximum(var, 0.0)) / width


def ratio(num, num_err, den, den_err) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(num/den, num's relative error, den's relative error); NaN where den = 0 (not drawn)."""
    num, num_err, den, den_err = (np.asarray(a, float) for a in (num, num_err, den, den_err))
    ok = den != 0
    safe = np.where(ok, den, 1.0)
    r = np.where(ok, num / safe, np.nan)
    return r, np.where(ok, num_err / safe, np.nan), np.where(ok, den_err / safe, np.nan)


def chi2(a, a_err, b, b_err) -> tuple[float, int]:
    """Σ (a − b)²/(σ_a² + σ_b²) over the bins with a non-zero error, and their number."""
    a, a_err, b, b_err = (np.asarray(x, float) for x in (a, a_err, b, b_err))
    var = a_err ** 2 + b_err ** 2
    ok = var > 0
    return float(np.sum((a[ok] - b[ok]) ** 2 / var[ok])), int(np.count_nonzero(ok))


def _yoda_names(path: str) -> set[str]:
    return {path.rstrip("/").split("/")[-1]}


def match_yoda(yoda_paths: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """``{observable: YODA path}`` for the histograms whose last path component is an observable's
    registry name or its style's alias (``one_minus_thrust``). ``ValueError`` if none matches."""
    out: dict[str, str] = {}
    for name in names:
        wanted = {name} | ({style(name).alias} if style(name).alias else set())
        hits = [p for p in yoda_paths if _yoda_names(p) & wanted]
        if len(hits) > 1:
            raise ValueError(f"several YODA histograms match observable {name!r}: {hits}")
        if hits:
            out[name] = hits[0]
    if not out:
        raise ValueError(f"no histogram of the YODA file matches the run's observables {list(names)}: "
                         f"it has {list(yoda_paths)}; name them .../<observable>, e.g. /REF/{names[0]}")
    return out


def yoda_reference(name: str, hist, label: str) -> Hist1D:
    """A :class:`diffgen.io.yoda.YodaHistogram` as a reference :class:`Hist1D` in the plotted variable.

    A histogram named by the registry name of a transformed observable (``.../thrust``) holds the
    registry variable (T) and is mapped to the plotted one (1 − T: edges and contents reversed); one
    named by the alias (``.../one_minus_thrust``) is taken as it is. Contents are per bin, errors the
    YODA errors. The total weight is unknown, so ``total_w`` is the sum in range: :func:`scaled_like`
    then gives the reference the run's fraction in range for a normalised comparison.
    """
    edges, contents, errors = (np.asarray(a, float) for a in (hist.edges, hist.contents, hist.errors))
    st = style(name)
    if st.transform is not None and name in _yoda_names(hist.path):
        t = np.asarray(st.transform(edges), float)
        if np.all(np.diff(t) < 0):
            edges, contents, errors = t[::-1], contents[::-1], errors[::-1]
        else:
            edges = t
    edges = _check_edges(edges, f"YODA histogram {hist.path}")
    return Hist1D(name, edges, contents, errors ** 2, float(contents.sum()), float((errors ** 2).sum()), 1, label)


def scaled_like(ref: Hist1D, run: Hist1D, absolute: bool) -> tuple[np.ndarray, np.ndarray]:
    """A YODA reference's density: normalised to the run's fraction of σ in the plotted range (the
    reference's own σ outside the range is unknown), or per bin / Δx as read with ``absolute``."""
    width = np.diff(ref.edges)
    err = np.sqrt(np.maximum(ref.sumw2, 0.0))
    if absolute:
        return ref.sumw / width, err / width
    area = ref.sumw.sum()
    if not area != 0 or not run.total_w > 0:
        return np.zeros_like(width), np.zeros_like(width)
    frac = run.sumw.sum() / run.total_w
    return ref.sumw * frac / (area * width), err * frac / (abs(area) * width)


class Panel(NamedTuple):
    """What one panel shows, as numbers (so that tests and scripts can check what is drawn)."""

    name: str
    edges: np.ndarray
    y: np.ndarray
    yerr: np.ndarray
    ref: np.ndarray | None = None
    ref_err: np.ndarray | None = None
    ref_label: str | None = None

    def ratio(self):
        """(diffgen/reference, its relative error, the reference's relative error) or None."""
        return None if self.ref is None else ratio(self.y, self.yerr, self.ref, self.ref_err)

    def chi2(self) -> tuple[float, int] | None:
        """χ² and bins of diffgen against the reference, or None without one."""
        return None if self.ref is None else chi2(self.y, self.yerr, self.ref, self.ref_err)


def panels(hists: Sequence[Hist1D], refs: dict | None = None, absolute: bool = False) -> list[Panel]:
    """The numbers drawn by :func:`figure`: one :class:`Panel` per histogram, with its reference if any.

    ``refs`` is ``{name: (Hist1D, kind)}``, kind ``"events"`` (normalised like the run) or ``"yoda"``
    (:func:`scaled_like`); a reference must have the run's edges.
    """
    out = []
    for h in hists:
        y, yerr = density(h, absolute)
        ref = ref_err = label = None
        if refs and h.name in refs:
            r, kind = refs[h.name]
            if not np.allclose(r.edges, h.edges, rtol=1e-9, atol=1e-12):
                raise ValueError(f"reference {r.label!r} for {h.name!r} has other bin edges than the run")
            ref, ref_err = scaled_like(r, h, absolute) if kind == "yoda" else density(r, absolute)
            label = r.label
        out.append(Panel(h.name, h.edges, y, yerr, ref, ref_err, label))
    return out


def axis_labels(name: str, absolute: bool = False) -> tuple[str, str]:
    """(x label, y label) in mathtext: ``$1-T$`` and ``$1/\\sigma\\;d\\sigma/d(1-T)$`` (or dσ/dX [pb])."""
    sym = style(name).symbol
    d = r"\mathrm{d}"
    x = f"${sym}$"
    dx = f"{d}({sym})" if any(op in sym for op in "+-") else f"{d}{sym}"
    if absolute:
        return x, f"${d}\\sigma/{dx}$ [pb]"
    return x, f"$1/\\sigma\\;{d}\\sigma/{dx}$"


def _log_x(st: PlotStyle, edges: np.ndarray) -> bool:
    """A log x axis: the style asks for one and every edge is positive (a reference binned from 0, e.g. a
    YODA y23 histogram whose first edge is 0, falls back to a linear axis)."""
    return st.logx and bool(edges[0] > 0)


def figure(hists: Sequence[Hist1D], refs: dict | None = None, *, absolute: bool = False, title: str = "",
           run_label: str = "diffgen", extra: dict | None = None):
    """A matplotlib figure with one panel per histogram (and a ratio panel under each with a reference).

    ``extra`` is ``{name: callable(x) -> density}``, a curve drawn over the panel (e.g. the analytic
    dσ/dcos θ). Returns ``(figure, panels)``; the caller saves (:func:`save_figure`) and closes it.
    A log-x style (y23) gets a log x axis (the ratio panel too), markers at the geometric bin centres,
    unless its first edge is ≤ 0 (then the axis stays linear).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = panels(hists, refs, absolute)
    n = len(drawn)
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    with_ratio = any(p.ref is not None for p in drawn)
    fig = plt.figure(figsize=(6.4 * cols, (5.6 if with_ratio else 4.6) * rows))
    outer = fig.add_gridspec(rows, cols, hspace=0.35, wspace=0.3)
    for k, p in enumerate(drawn):
        st = style(p.name)
        xlabel, ylabel = axis_labels(p.name, absolute)
        if p.ref is not None:
            inner = outer[k // cols, k % cols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
            ax = fig.add_subplot(inner[0])
            rax = fig.add_subplot(inner[1], sharex=ax)
        else:
            ax, rax = fig.add_subplot(outer[k // cols, k % cols]), None
        logx = _log_x(st, p.edges)
        centres = np.sqrt(p.edges[1:] * p.edges[:-1]) if logx else 0.5 * (p.edges[1:] + p.edges[:-1])
        xerr = np.stack([centres - p.edges[:-1], p.edges[1:] - centres])
        if logx:
            ax.set_xscale("log")  # the ratio panel shares the x axis, and so its scale
        if p.ref is not None:
            ax.stairs(p.ref, p.edges, color="tab:blue", label=p.ref_label, baseline=None)
            ax.fill_between(p.edges, np.append(p.ref - p.ref_err, 0), np.append(p.ref + p.ref_err, 0),
                            step="post", color="tab:blue", alpha=0.25, linewidth=0)
        ax.errorbar(centres, p.y, yerr=p.yerr, xerr=xerr, fmt="o", ms=3, color="black", label=run_label,
                    elinewidth=1)
        if extra and p.name in extra:
            fine = (np.geomspace if logx else np.linspace)(p.edges[0], p.edges[-1], 200)
            ax.plot(fine, extra[p.name](fine), color="tab:red", label="analytic")
        shown = p.y if p.ref is None else np.concatenate([p.y, p.ref])
        positive = shown[shown > 0]
        if st.logy and positive.size:
            ax.set_yscale("log")
            ax.set_ylim(0.5 * positive.min(), 10 ** (math.log10(positive.max()) + 0.6))
        else:
            top = positive.max() if positive.size else 1.0
            ax.set_ylim(0, 1.35 * top)
        ax.set_ylabel(ylabel)
        ax.set_xlim(p.edges[0], p.edges[-1])
        if title:
            ax.set_title(title, fontsize=10)
        ax.legend(loc="upper right", fontsize=9, frameon=False)
        if rax is None:
            ax.set_xlabel(xlabel)
            continue
        plt.setp(ax.get_xticklabels(), visible=False)
        r, r_err, band = p.ratio()
        rax.fill_between(p.edges, np.append(1 - band, 1), np.append(1 + band, 1), step="post",
                         color="tab:blue", alpha=0.25, linewidth=0)
        rax.axhline(1.0, color="tab:blue", lw=1)
        rax.errorbar(centres, r, yerr=r_err, xerr=xerr, fmt="o", ms=3, color="black", elinewidth=1)
        finite = r[np.isfinite(r)]
        spread = float(np.max(np.abs(finite - 1))) if finite.size else 0.2
        lim = min(max(0.1, 1.2 * spread), 1.0)
        rax.set_ylim(1 - lim, 1 + lim)
        rax.set_ylabel("diffgen / ref", fontsize=9)
        rax.set_xlabel(xlabel)
    return fig, drawn


def save_figure(fig, path: str) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    from diffgen.io.atomic import atomic_write

    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    try:
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format=suffix, bbox_inches="tight")
    finally:
        plt.close(fig)


_BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values) -> str:
    """One character per bin, height ∝ value (``▁…█``; a blank for 0)."""
    v = np.asarray(values, float)
    top = v.max() if v.size and v.max() > 0 else 1.0
    return "".join(_BLOCKS[int(round(8 * max(x, 0.0) / top))] for x in v)


def compact_summary(h: Hist1D, mean: float | None = None) -> str:
    """One line for the terminal: the variable, its mean (``mean``, else from the bin centres), the
    binning, the share of σ in range and a sparkline of dσ/dX (of dσ/d ln X for log-spaced bins, the
    shape a log x axis shows: y23's dσ/dy23 falls over decades).

    Example:
        >>> h = Hist1D.fill("charged_multiplicity", [2.0, 2.0, 4.0], [1.0, 1.0, 1.0], count_edges(0, 5, 2))
        >>> compact_summary(h, mean=8 / 3)
        '      N_ch: <N_ch> = 2.667, 3 bins in [-0.5, 5.5], 100.0% of sigma in range | █▄|'
    """
    st = style(h.name)
    width = np.diff(h.edges)
    if mean is None:
        w = h.sumw.sum()
        mean = float(np.sum((h.edges[:-1] + 0.5 * width) * h.sumw) / w) if w > 0 else float("nan")
    frac = h.sumw.sum() / h.total_w if h.total_w > 0 else float("nan")
    logx = _log_x(st, h.edges)
    shape = h.sumw / (np.diff(np.log(h.edges)) if logx else width)
    return (f"{st.text:>10s}: <{st.text}> = {mean:.4g}, {len(width)}{' log-spaced' if logx else ''} bins in "
            f"[{h.edges[0]:.4g}, {h.edges[-1]:.4g}], {100 * frac:.1f}% of sigma in range |{sparkline(shape)}|")
