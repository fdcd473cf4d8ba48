"""Tune files, part 2: the report of a fit — ``report.md``, figures, ``tune.cmnd`` and ``fit.json``.

:func:`write_report` writes, atomically, into the output directory (see :mod:`diffgen.fit.tune_config`
for the file that describes the fit):

* ``report.md`` — fitted values ± errors, correlation matrix, χ²/ndf per target before and after;
* ``<target>.png`` — data vs. simulation before and after the fit (with a ratio panel);
* ``loss.png`` and ``params.png`` — loss history and parameter traces;
* ``tune.cmnd`` — √s, the switches, the fixed and the fitted settings as Pythia-style ``name = value``
  lines (``diffgen generate --settings tune.cmnd`` reproduces the tuned configuration);
* ``fit.json`` — values, errors, covariance and χ² in machine-readable form.
"""

from __future__ import annotations

import json
import os

import numpy as np

from diffgen.fit.transforms import resolve_bounds
from diffgen.fit.tune_config import TuneConfig
from diffgen.io.atomic import atomic_write

__all__ = ["write_report"]


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

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _target_figure(result, cfg: TuneConfig, t):
    """Data vs. simulation before and after the fit for target ``t``, with a ratio panel."""
    import matplotlib.pyplot as plt

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
    return fig


def _loss_figure(result):
    """The loss history."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(np.arange(len(result.loss_history)), result.loss_history, color="black")
    ax.set_xlabel("step")
    ax.set_ylabel("χ² (fit sample)")
    if np.all(result.loss_history > 0):
        ax.set_yscale("log")
    ax.set_title("loss history")
    fig.tight_layout()
    return fig


def _params_figure(result):
    """The optimiser's parameter traces with the result ± error."""
    import matplotlib.pyplot as plt

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
    return fig


def _cmnd_text(result, cfg) -> str:
    """tune.cmnd: the tuned configuration as a ``.cmnd`` file that reproduces it.

    First ``Beams:eCM`` (the tune file's ``generator.sqrt_s``), the switches of the generator's stages
    and every fixed setting (``[generator]`` settings and defaults) of ``cfg.params``, then the fitted
    settings, one ``name = value ! +- error`` line each. It reads back with
    :func:`diffgen.read_settings`, and ``diffgen generate --process <process> --settings tune.cmnd``
    runs the tuned configuration (targets' own conditions, e.g. another √s, are not in it).
    """
    from diffgen.cmnd import format_settings
    from diffgen.params import settings_and_switches

    everything = settings_and_switches(cfg.params)
    everything["Beams:eCM"] = cfg.sqrt_s
    fixed = {n: v for n, v in everything.items() if n not in result.free}
    header = (f"diffgen tune: process {cfg.process} (diffgen generate --process {cfg.process} --settings "
              "tune.cmnd)\nfixed: sqrt(s), every setting not fitted ([generator] settings and defaults), switches")
    head = format_settings(fixed, header=header)
    lines = format_settings({n: result.settings[n] for n in result.free},
                            header="fitted settings (errors and correlations in fit.json)").splitlines()
    width = max(len(line) for line in lines[1:])
    out = lines[:1]
    for n, line in zip(result.free, lines[1:]):
        out.append(f"{line:{width}s}  ! +- {float(result.errors[n]):.3g}")
    return head + "\n".join(out) + "\n"


def _text_files(result, cfg: TuneConfig, report: str) -> tuple:
    """(file name, text) of report.md, tune.cmnd and fit.json."""
    return (("report.md", report),
            ("tune.cmnd", _cmnd_text(result, cfg)),
            ("fit.json", json.dumps({
                "settings": result.settings, "errors": result.errors, "free": list(result.free),
                "covariance": np.asarray(result.covariance).tolist(),
                "correlation": np.asarray(result.correlation).tolist(),
                "chi2_before": result.chi2_before, "chi2_after": result.chi2_after,
                "converged": result.converged, "n_events_total": result.n_events_total,
                "covariance_method": result.covariance_method, "message": result.message,
            }, indent=2, default=float) + "\n"))


def write_report(result, cfg: TuneConfig, out_dir: str):
    """Write report.md, tune.cmnd, fit.json and the PNG figures into ``out_dir`` (atomically).

    Returns (report text, tuple of written paths).
    """
    import matplotlib

    matplotlib.use("Agg")
    # (file name, figure factory): each figure is drawn, saved and closed in turn
    figures = [(f"{_safe_name(t.name)}.png", lambda t=t: _target_figure(result, cfg, t)) for t in cfg.targets]
    figures += [("loss.png", lambda: _loss_figure(result)), ("params.png", lambda: _params_figure(result))]
    files = []
    for fname, draw in figures:
        _save(draw(), os.path.join(out_dir, fname))
        files.append(os.path.join(out_dir, fname))
    report = _markdown(result, cfg, [f for f, _ in figures])
    for fname, text in _text_files(result, cfg, report):
        p = os.path.join(out_dir, fname)
        with atomic_write(p, "w") as fh:
            fh.write(text)
        files.append(p)
    return report, tuple(files)
