"""``diffgen unfold config.toml``: OmniFold of a detector-level event file with a simulated (truth, reco) file.

:func:`load` reads and validates the whole file before any work (unknown sections or keys, missing or
malformed event files, a simulation without its truth record, unknown observables, bad numbers), and
reports every problem at once in one ``ValueError``; :func:`run` unfolds and writes, atomically, into the
output directory:

* ``weights.npz`` — the per-event OmniFold weights of the simulation (:func:`~diffgen.unfold.save_weights`;
  reload with :func:`~diffgen.unfold.load_weights` and apply to the simulation's truth events, row i ↔ event i);
* ``report.md`` — inputs, per-iteration diagnostics (ESS, weight quantiles, clipping, change), the means of
  the report observables (prior, unfolded and, when the data file has a truth record, the data's truth)
  and, with a data truth, χ²/ndf of the prior and of the unfolded distributions against it (a closure);
* ``unfolded.png`` — the particle-level distributions (:func:`diffgen.unfold.closure.figure`);
* ``bootstrap.npz`` (with ``bootstrap = K``) — ``replica_weights`` f[K, N], the unfolded weights of each
  bootstrap replica (:func:`~diffgen.unfold.from_events.omnifold_bootstrap`), whose spread gives the errors
  of the unfolded histograms in the report and the figure.

Paths in the file are relative to the file's directory. Schema (only ``inputs.sim`` and ``inputs.data``
are required)::

    [inputs]
    sim = "sim.npz"          # simulated events with their truth record: diffgen generate --detector aleph --out
    data = "data.npz"        # detector-level events (a truth record in it is used only for the closure table)

    [omnifold]
    features = ["charged_multiplicity", "thrust", "sphericity", "c_parameter", "y23"]  # per-event observables
    particle_level = false   # true: Particle Flow Networks on the particle sets instead of the features
    iterations = 4
    seed = 0
    clip = 100.0             # likelihood ratios clipped to [1/clip, clip]
    missing_reco = "classifier"   # or "prior"
    epochs = 50
    batch_size = 2048
    learning_rate = 0.005
    patience = 8
    bootstrap = 0            # K >= 2: K Poisson-bootstrap replicas (data and simulation weights resampled,
                             # classifiers retrained) give the unfolded histograms' errors; bootstrap.npz

    [report]
    observables = ["charged_multiplicity", "thrust", "sphericity", "y23", "x_p"]

    [output]
    dir = "unfold-out"       # default: "<file stem>-unfold" next to the file

Example:
    >>> import os, tempfile
    >>> from diffgen.unfold import job
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "u.toml")
    >>> _ = open(p, "w").write('[inputs]\\nsim = "sim.npz"\\ndata = "data.npz"\\n[omnifold]\\niterations = 0\\n')
    >>> try:
    ...     job.load(p)
    ... except ValueError as err:
    ...     print(str(err).splitlines()[0])
    unfold file '.../u.toml' has 3 problems:
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import numpy as np

from diffgen.checks import check_int
from diffgen.expect import event_weights
from diffgen.observables import REGISTRY
from diffgen.tomlfile import Problems, check_keys, check_output_dir, positive_float, read_toml, resolve_file
from diffgen.unfold.classifier import TrainConfig
from diffgen.unfold.closure import (
    CLOSURE_OBSERVABLES,
    bootstrap_errors,
    chi2_table,
    figure,
    particle_histograms,
    with_errors,
)
from diffgen.unfold.from_events import DEFAULT_OBSERVABLES, omnifold_bootstrap, omnifold_prepared, passes, prepare_sim

__all__ = ["UnfoldJob", "UnfoldOutput", "load", "run", "REPORT", "WEIGHTS", "FIGURE", "BOOTSTRAP"]

REPORT, WEIGHTS, FIGURE, BOOTSTRAP = "report.md", "weights.npz", "unfolded.png", "bootstrap.npz"
_TOP = {"inputs", "omnifold", "report", "output"}
_INPUTS = {"sim", "data"}
_OMNIFOLD = {"features", "particle_level", "iterations", "seed", "clip", "missing_reco", "epochs", "batch_size",
             "learning_rate", "patience", "bootstrap"}
_REPORT = {"observables"}
_OUTPUT = {"dir"}


class UnfoldJob(NamedTuple):
    """A validated unfold file: the events, the OmniFold options and where to write."""

    path: str
    sim: Any  #: simulated reco Events with ``.truth``
    data: Any  #: data reco Events (``.truth`` optional)
    sim_path: str
    data_path: str
    features: tuple | None  #: None with particle_level
    iterations: int
    seed: int
    clip: float
    missing_reco: str
    train: TrainConfig
    observables: tuple
    out_dir: str
    bootstrap: int = 0  #: Poisson-bootstrap replicas for the unfolded errors (0: none)


class UnfoldOutput(NamedTuple):
    """What :func:`run` made: the OmniFold result, the histograms, the χ² table (or None) and the files."""

    result: Any
    histograms: dict
    chi2: dict | None
    files: tuple


def _per_event_names(values, where: str, allow_xp: bool) -> tuple:
    if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
        raise ValueError(f"{where} must be a non-empty list of observable names, got {values!r}")
    known = sorted(n for n, s in REGISTRY.items() if not s.per_particle) + (["x_p"] if allow_xp else [])
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"{where}: unknown or per-particle observable(s) {bad}; known: {known}")
    return tuple(values)


def _read(path: str, where: str, need_truth: bool):
    from diffgen.io.dispatch import read_events

    try:
        events, _ = read_events(path)
    except (OSError, KeyError) as err:
        raise ValueError(f"{where}: cannot read {path!r}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if events.n_events == 0:
        raise ValueError(f"{where}: {path!r} holds no events")
    if need_truth and events.truth is None:
        raise ValueError(f"{where}: {path!r} has no truth record; write the simulation with a detector stage "
                         f"to .npz (e.g. diffgen generate --process ee-hadrons --detector aleph --out sim.npz)")
    if not passes(events).any():
        raise ValueError(f"{where}: no event of {path!r} passes reconstruction (status 0, at least one particle)")
    return events


def _load_inputs(t, base: str):
    check_keys(t, _INPUTS, "[inputs]")
    probs = Problems()
    for k in ("sim", "data"):
        if k not in t:
            probs.messages.append(f"inputs.{k} is required (an event file)")
    sim_path = probs.attempt(resolve_file, base, t["sim"], "inputs.sim") if "sim" in t else None
    data_path = probs.attempt(resolve_file, base, t["data"], "inputs.data") if "data" in t else None
    probs.raise_if_any()
    return sim_path, data_path


def _load_omnifold(t) -> dict:
    check_keys(t, _OMNIFOLD, "[omnifold]")
    probs = Problems()
    particle = t.get("particle_level", False)
    if not isinstance(particle, bool):
        probs.messages.append(f"omnifold.particle_level must be true or false, got {particle!r}")
    features = None if particle is True else probs.attempt(
        _per_event_names, t.get("features", list(DEFAULT_OBSERVABLES)), "omnifold.features", False)
    out = {
        "features": features,
        "iterations": probs.attempt(check_int, t.get("iterations", 4), "omnifold.iterations"),
        "seed": probs.attempt(check_int, t.get("seed", 0), "omnifold.seed", 0),
        "clip": probs.attempt(positive_float, t.get("clip", 100.0), "omnifold.clip"),
        "missing_reco": t.get("missing_reco", "classifier"),
        "bootstrap": probs.attempt(check_int, t.get("bootstrap", 0), "omnifold.bootstrap", 0),
    }
    if out["bootstrap"] == 1:
        probs.messages.append("omnifold.bootstrap must be 0 (no bootstrap) or at least 2 replicas, got 1")
    if out["clip"] is not None and out["clip"] <= 1.0:
        probs.messages.append(f"omnifold.clip must be > 1, got {out['clip']!r}")
    if out["missing_reco"] not in ("classifier", "prior"):
        probs.messages.append(f"omnifold.missing_reco must be 'classifier' or 'prior', got {out['missing_reco']!r}")
    d = TrainConfig()
    train = {"epochs": probs.attempt(check_int, t.get("epochs", d.epochs), "omnifold.epochs"),
             "batch_size": probs.attempt(check_int, t.get("batch_size", d.batch_size), "omnifold.batch_size"),
             "learning_rate": probs.attempt(positive_float, t.get("learning_rate", d.learning_rate),
                                            "omnifold.learning_rate"),
             "patience": probs.attempt(check_int, t.get("patience", d.patience), "omnifold.patience")}
    probs.raise_if_any()
    out["train"] = TrainConfig(**train).checked()
    return out


def _load_report(t) -> tuple:
    check_keys(t, _REPORT, "[report]")
    return _per_event_names(t.get("observables", list(CLOSURE_OBSERVABLES)), "report.observables", True)


def _load_output(t, path: str, base: str, override) -> str:
    check_keys(t, _OUTPUT, "[output]")
    if override is not None:
        out = os.fspath(override)
    elif "dir" in t:
        if not isinstance(t["dir"], str) or not t["dir"]:
            raise ValueError(f"output.dir must be a directory path, got {t['dir']!r}")
        out = t["dir"] if os.path.isabs(t["dir"]) else os.path.join(base, t["dir"])
    else:
        out = os.path.join(base, os.path.splitext(os.path.basename(path))[0] + "-unfold")
    check_output_dir(out, "output.dir")
    return out


def load(path, out_dir=None) -> UnfoldJob:
    """Read and validate an unfold file (module docstring); one ``ValueError`` listing every problem.

    ``out_dir`` overrides the file's ``[output] dir``.
    """
    path = os.path.abspath(os.fspath(path))
    doc = read_toml(path, _TOP, "unfold file")
    base = os.path.dirname(path)
    probs = Problems(f"unfold file {path!r}")
    if "inputs" not in doc:
        probs.messages.append("[inputs] with sim and data event files is required")
    paths = probs.attempt(_load_inputs, doc.get("inputs", {}), base) if "inputs" in doc else None
    opts = probs.attempt(_load_omnifold, doc.get("omnifold", {}))
    observables = probs.attempt(_load_report, doc.get("report", {}))
    out = probs.attempt(_load_output, doc.get("output", {}), path, base, out_dir)
    probs.raise_if_any()
    sim_path, data_path = paths
    sim = probs.attempt(_read, sim_path, "inputs.sim", True)
    data = probs.attempt(_read, data_path, "inputs.data", False)
    probs.raise_if_any()
    if data.capacity != sim.capacity and opts["features"] is None:
        data = data.resize(sim.capacity)  # particle sets: one capacity for both
    return UnfoldJob(path, sim, data, sim_path, data_path, opts["features"], opts["iterations"], opts["seed"],
                     opts["clip"], opts["missing_reco"], opts["train"], observables, out, opts["bootstrap"])


def _report_text(job: UnfoldJob, result, hists: dict, chi2: dict | None, seconds: float) -> str:
    inputs = "particle sets (Particle Flow Networks)" if job.features is None else ", ".join(job.features)
    lines = [f"# OmniFold unfolding: {os.path.basename(job.path)}", "",
             f"* simulation: `{job.sim_path}` ({job.sim.n_events} events, {int(result.pass_truth.sum())} with truth, "
             f"{int(result.pass_reco.sum())} reconstructed)",
             f"* data: `{job.data_path}` ({job.data.n_events} events, {int(passes(job.data).sum())} reconstructed)",
             f"* classifier inputs: {inputs}",
             f"* {job.iterations} iterations, seed {job.seed}, clip {job.clip:g}, missing reco: {job.missing_reco}, "
             f"{job.bootstrap or 'no'} bootstrap replicas; "
             f"{seconds:.0f} s", "",
             "## Iterations", "", "| iteration | ESS fraction | ν min | ν 1 % | ν median | ν 99 % | ν max | clipped | "
             "non-finite | change |", "|---|---|---|---|---|---|---|---|---|---|"]
    for it in result.info:
        q = " | ".join(f"{float(v):.3f}" for v in it.quantiles)
        lines.append(f"| {it.iteration} | {it.ess_fraction:.3f} | {q} | {it.clipped} | {it.non_finite} | "
                     f"{it.change:.4f} |")
    lines += ["", "## Particle-level means", "", "| observable | " + " | ".join(hists) + " |",
              "|---|" + "---|" * len(hists)]
    for name in job.observables:
        row = []
        for h in hists.values():
            c = 0.5 * (h[name].edges[1:] + h[name].edges[:-1])
            area = np.sum(h[name].y * np.diff(h[name].edges))
            row.append(f"{np.sum(c * h[name].y * np.diff(h[name].edges)) / area:.4g}" if area > 0 else "—")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += ["", "(means of the binned distributions, bin centres; x_p: of the charged-particle spectrum)"]
    if chi2 is not None:
        lines += ["", "## Closure against the data's truth record", "",
                  "χ² of each normalised distribution against the data's truth: "
                  + (f"the unfolded histograms' errors are the spread of {job.bootstrap} bootstrap replicas (data "
                     "and simulation statistics and classifier training), the others statistical."
                     if job.bootstrap else "statistical errors of both histograms only (the unfolding's own "
                     "variance is not in them; set omnifold.bootstrap for it)."), "",
                  "| observable | prior χ²/ndf | unfolded χ²/ndf |", "|---|---|---|"]
        tot = [0.0, 0.0, 0]
        for name, ((cb, nb), (ca, na)) in chi2.items():
            lines.append(f"| {name} | {cb:.1f}/{nb} = {cb / max(nb, 1):.2f} | {ca:.1f}/{na} = {ca / max(na, 1):.2f} |")
            tot = [tot[0] + cb, tot[1] + ca, tot[2] + nb]
        lines.append(f"| **total** | {tot[0]:.1f}/{tot[2]} = {tot[0] / max(tot[2], 1):.2f} | "
                     f"{tot[1]:.1f}/{tot[2]} = {tot[1] / max(tot[2], 1):.2f} |")
    lines += ["", f"Weights: `{WEIGHTS}` (row i is event i of the simulation file; apply "
                  "`load_weights(path).unfolded_weights` to its truth record). Figure: "
                  f"![unfolded]({FIGURE})", ""]
    return "\n".join(lines)


def run(path_or_job, out_dir=None, progress: bool | None = None) -> UnfoldOutput:
    """Unfold as the file says and write ``weights.npz``, ``report.md`` and ``unfolded.png``.

    ``progress``: a bar per iteration on stderr (None: only when stderr is a terminal)."""
    import jax
    import matplotlib.pyplot as plt

    from diffgen.io.atomic import atomic_write
    from diffgen.unfold.omnifold import save_weights

    job = path_or_job if isinstance(path_or_job, UnfoldJob) else load(path_or_job, out_dir)
    t0 = time.perf_counter()
    sim = prepare_sim(job.sim.truth, job.sim, observables=job.features, particle_level=job.features is None)
    result = omnifold_prepared(jax.random.key(job.seed), sim, job.data, iterations=job.iterations, clip=job.clip,
                               missing_reco=job.missing_reco, config=job.train,
                               progress=progress)
    known = {} if job.features is None else {n: sim.truth[:, k] for k, n in enumerate(job.features)}
    hists = {"prior": particle_histograms(job.sim.truth, sim.weights * sim.pass_truth, job.observables, values=known),
             "unfolded": particle_histograms(job.sim.truth, result.unfolded_weights, job.observables, values=known)}
    replicas = None
    if job.bootstrap:
        replicas = omnifold_bootstrap(jax.random.fold_in(jax.random.key(job.seed), 1), sim, job.data, job.bootstrap,
                                      iterations=job.iterations, clip=job.clip, missing_reco=job.missing_reco,
                                      config=job.train)
        hists["unfolded"] = with_errors(hists["unfolded"], bootstrap_errors(job.sim.truth, replicas, job.observables,
                                                                            values=known))
    seconds = time.perf_counter() - t0
    chi2 = None
    if job.data.truth is not None:
        w_truth = np.asarray(event_weights(job.data.truth, normalise=True), np.float64)
        hists["data truth"] = particle_histograms(job.data.truth, w_truth, job.observables)
        before = chi2_table(hists["prior"], hists["data truth"])
        after = chi2_table(hists["unfolded"], hists["data truth"])
        chi2 = {n: (before[n], after[n]) for n in before}
    os.makedirs(job.out_dir, exist_ok=True)
    files = []
    wpath = os.path.join(job.out_dir, WEIGHTS)
    save_weights(wpath, result)
    files.append(wpath)
    if replicas is not None:
        bpath = os.path.join(job.out_dir, BOOTSTRAP)
        with atomic_write(bpath, "wb") as f:
            np.savez(f, replica_weights=replicas)
        files.append(bpath)
    fig = figure(hists, reference="data truth" if chi2 is not None else None,
                 title=f"OmniFold: {os.path.basename(job.data_path)} unfolded with {os.path.basename(job.sim_path)}")
    fpath = os.path.join(job.out_dir, FIGURE)
    with atomic_write(fpath, "wb") as f:
        fig.savefig(f, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    files.append(fpath)
    rpath = os.path.join(job.out_dir, REPORT)
    with atomic_write(rpath, "w") as f:
        f.write(_report_text(job, result, hists, chi2, seconds))
    files.append(rpath)
    return UnfoldOutput(result, hists, chi2, tuple(files))
