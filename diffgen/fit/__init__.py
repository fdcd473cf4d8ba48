"""Tuning: fit generator settings to binned targets by gradient descent, and linearised variations.

* :mod:`~diffgen.fit.targets` — observables ``(name, fn, bins)`` and :class:`BinnedTarget`
  (from arrays, ``hist``, YODA text, or another generator's events);
* :mod:`~diffgen.fit.losses` — soft-binned χ², energy distance and MMD;
* :mod:`~diffgen.fit.transforms` — sigmoid bounds θ = lo + (hi − lo) sigmoid(φ);
* :mod:`~diffgen.fit.fitter` — :func:`fit` → :class:`FitResult` (values, Hessian errors, χ² before/after);
* :mod:`~diffgen.fit.variations` — :func:`linearized_histograms` (sim(θ0 + ε) ≈ nominal + J ε);
* :mod:`~diffgen.fit.tune_file` — the ``diffgen tune tune.toml`` backend.
"""

from diffgen.fit import losses, targets, transforms, tune_file, variations  # noqa: F401
from diffgen.fit.fitter import FitResult, fit
from diffgen.fit.losses import BinnedPrediction, binned, chi2, energy_distance, mmd, sample_distance
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
from diffgen.fit.variations import LinearizedHistograms, linearized_histograms

__all__ = [
    "fit", "FitResult", "BinnedTarget", "Observable", "from_arrays", "from_events", "from_hist", "from_yoda_text",
    "to_yoda_text", "observable_registry", "BinnedPrediction", "binned", "chi2", "energy_distance", "mmd",
    "sample_distance", "BoundedTransform", "bounded_transform", "linearized_histograms", "LinearizedHistograms",
    "TuneConfig", "load", "run", "losses", "targets", "transforms", "tune_file", "variations",
]
