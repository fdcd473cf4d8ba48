"""Tuning: fit generator settings to binned targets by gradient descent, and linearised variations.

Modules, each importing only from those above it (and from outside ``diffgen.fit``):

* :mod:`~diffgen.fit.binning` — :func:`binned`: normalised, soft-binned histograms with MC variances;
* :mod:`~diffgen.fit.transforms` — sigmoid bounds θ = lo + (hi − lo) sigmoid(φ);
* :mod:`~diffgen.fit.util` — covariance → correlation, a safe inverse, the progress bar;
* :mod:`~diffgen.fit.targets` — observables ``(name, fn, bins)`` and :class:`BinnedTarget`
  (from arrays, ``hist``, YODA text via :mod:`diffgen.io.yoda`, or another generator's events);
* :mod:`~diffgen.fit.losses` — χ², pulls, energy distance and MMD;
* :mod:`~diffgen.fit.result` — :class:`FitResult`;
* :mod:`~diffgen.fit.problem` — :func:`~diffgen.fit.problem.make_problem` (validation) and the prediction;
* :mod:`~diffgen.fit.fitter` — :func:`fit` (values, Hessian errors, χ² before/after);
* :mod:`~diffgen.fit.linear` — :func:`~diffgen.fit.linear.fit_linearized` (Gauss–Newton on the linearisation);
* :mod:`~diffgen.fit.variations` — :func:`linearized_histograms` (sim(θ0 + ε) ≈ nominal + J ε);
* :mod:`~diffgen.fit.variance` — :func:`variance_report`: the Jacobian's noise ‖δJ‖/‖J‖ per parameter and the
  events a tune needs;
* :mod:`~diffgen.fit.lep` — LEP-style observables and pseudo-data for e+e- → hadrons tunes;
* :mod:`~diffgen.fit.tune_config` → :mod:`~diffgen.fit.tune_report` → :mod:`~diffgen.fit.tune_run` — the
  ``diffgen tune tune.toml`` backend (parse and validate; write the report; fit), re-exported by
  :mod:`~diffgen.fit.tune_file`.
"""

from diffgen.fit import binning, losses, targets, transforms, tune_file, variations  # noqa: F401
from diffgen.fit.binning import BinnedPrediction, binned
from diffgen.fit.fitter import fit
from diffgen.fit.losses import chi2, energy_distance, mmd, sample_distance
from diffgen.fit.result import FitResult
from diffgen.fit.targets import (
    BinnedTarget,
    Observable,
    from_arrays,
    from_events,
    from_hist,
    from_yoda_text,
    observable_registry,
    to_yoda_text,
)
from diffgen.fit.transforms import BoundedTransform, bounded_transform
from diffgen.fit.tune_file import TuneConfig, load, run
from diffgen.fit.variance import VarianceReport, variance_report
from diffgen.fit.variations import LinearizedHistograms, linearized_histograms

__all__ = [
    "fit", "FitResult", "BinnedTarget", "Observable", "from_arrays", "from_events", "from_hist", "from_yoda_text",
    "to_yoda_text", "observable_registry", "BinnedPrediction", "binned", "chi2", "energy_distance", "mmd",
    "sample_distance", "BoundedTransform", "bounded_transform", "linearized_histograms", "LinearizedHistograms",
    "TuneConfig", "load", "run", "variance_report", "VarianceReport", "binning", "losses", "targets", "transforms",
    "tune_file", "variations",
]
