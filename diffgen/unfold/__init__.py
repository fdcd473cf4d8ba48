"""Unfolding and inference with classifiers: OmniFold, DCTR, and the per-event joint score.

Modules (one concept each; this file only re-exports):

* :mod:`~diffgen.unfold.inputs` — feature arrays, :class:`ParticleSet`, weight and flag checks;
* :mod:`~diffgen.unfold.networks` — :func:`mlp`, :func:`particle_flow` (Deep Sets), standardisation;
* :mod:`~diffgen.unfold.classifier` — weighted classifier/regressor training (optax, jitted epochs,
  early stopping): :func:`fit_classifier`, :func:`fit_regressor`;
* :mod:`~diffgen.unfold.omnifold` — :func:`omnifold` (arXiv:1911.09107) with per-iteration diagnostics;
* :mod:`~diffgen.unfold.toys` — :func:`gaussian_toy` with smearing, inefficiency and fakes;
* :mod:`~diffgen.unfold.score` — per-event joint score and joint likelihood ratio (MadMiner's "gold"),
  Fisher information, SALLY;
* :mod:`~diffgen.unfold.dctr` — DCTR (arXiv:1907.08209): :func:`fit_dctr` and the fit :func:`dctr_fit`;
* :mod:`~diffgen.unfold.from_events` — :func:`omnifold_events` on (truth, reco) :class:`~diffgen.events.Events` pairs.
"""

from diffgen.unfold.classifier import (
    Classifier,
    TrainConfig,
    TrainInfo,
    fit_classifier,
    fit_regressor,
    make_trainer,
)
from diffgen.unfold.inputs import ParticleSet
from diffgen.unfold.networks import Network, mlp, particle_flow
from diffgen.unfold.omnifold import (
    IterationInfo,
    OmniFoldResult,
    bootstrap,
    kish_ess,
    load_weights,
    omnifold,
    save_weights,
)
from diffgen.unfold.toys import GaussianToy, gaussian_toy

__all__ = [
    "ParticleSet", "Network", "mlp", "particle_flow", "TrainConfig", "TrainInfo", "Classifier", "fit_classifier",
    "fit_regressor", "make_trainer", "omnifold", "bootstrap", "OmniFoldResult", "IterationInfo", "kish_ess",
    "save_weights", "load_weights", "gaussian_toy", "GaussianToy",
]
from diffgen.unfold.score import (  # noqa: E402
    JointRatio,
    JointScore,
    SallyResult,
    captured_information,
    fisher_information,
    joint_likelihood_ratio,
    joint_score,
    reparameterised_score,
    sally,
)

__all__ += ["joint_score", "JointScore", "joint_likelihood_ratio", "JointRatio", "fisher_information",
            "captured_information", "reparameterised_score", "sally", "SallyResult"]
from diffgen.unfold.dctr import DCTR, DCTRFit, dctr_fit, fit_dctr  # noqa: E402

__all__ += ["DCTR", "DCTRFit", "fit_dctr", "dctr_fit"]
from diffgen.unfold.from_events import event_features, omnifold_events, particle_features  # noqa: E402

__all__ += ["event_features", "particle_features", "omnifold_events"]
