"""Detector simulation: the parametric fast detector (tracks, ECAL and HCAL clusters) and its learned surrogate.

See :mod:`diffgen.detector.stage` for the model, :mod:`~diffgen.detector.resolution` for the
pathwise smearing, :mod:`~diffgen.detector.efficiency` for the score-function efficiencies and
:mod:`~diffgen.detector.config` for the static acceptance edges; :mod:`~diffgen.detector.learned` and
:mod:`~diffgen.detector.learned_train` for the learned surrogate (:func:`learned`, :func:`train_learned`);
``docs/detector.md`` for all of it.

Example:
    >>> import jax, diffgen
    >>> gen = diffgen.presets.ee_hadrons(detector="aleph")
    >>> [name for name in diffgen.settings(gen.default_params()) if name.startswith("Detector:")][:2]
    ['Detector:trackEfficiency', 'Detector:trackSigmaInvPtA']
"""

from diffgen.detector.config import CONFIGS, DetectorConfig, detector_config
from diffgen.detector.efficiency import keep_with_score
from diffgen.detector.learned import LearnedDetectorModel, learned
from diffgen.detector.learned_train import load_checkpoint, save_checkpoint
from diffgen.detector.learned_train import train as train_learned
from diffgen.detector.resolution import calo_sigma_rel, smear_energy, smear_track, track_sigma_inv_pt
from diffgen.detector.stage import (
    INVISIBLE,
    NEUTRAL_HADRON,
    PHOTON,
    SETTING_NAMES,
    TRACK,
    acceptance,
    n_tracks,
    parametric,
    particle_type,
)

__all__ = ["parametric", "learned", "LearnedDetectorModel", "train_learned", "save_checkpoint", "load_checkpoint",
           "DetectorConfig", "CONFIGS", "detector_config", "SETTING_NAMES", "acceptance",
           "particle_type", "n_tracks", "TRACK", "PHOTON", "NEUTRAL_HADRON", "INVISIBLE", "keep_with_score",
           "track_sigma_inv_pt", "calo_sigma_rel", "smear_track", "smear_energy"]
