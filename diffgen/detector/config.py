"""Static detector geometry: acceptances and thresholds (factory configuration, never pytree leaves).

The *edges* of a detector — the polar-angle coverage of the tracker and calorimeters, the minimum
track pT and the cluster energy thresholds — are hard cuts on the **truth** (particle-level)
kinematics. A hard cut has no pathwise derivative, and the boundary term of its derivative is not
estimated here, so an edge is static configuration of :func:`~diffgen.detector.parametric` rather
than a differentiable setting: a setting whose gradient were silently zero would mislead a fit.
Everything continuous (resolutions, efficiencies) is a named setting in :data:`diffgen.params.SETTINGS`.

A particle is accepted by a sub-detector if (all inclusive/exclusive as written)

* tracker:  |cos θ| < ``track_cos_theta_max``  and  pT > ``track_pt_min``;
* ECAL:     |cos θ| < ``ecal_cos_theta_max``   and  E > ``ecal_e_min``;
* HCAL:     |cos θ| < ``hcal_cos_theta_max``   and  E > ``hcal_e_min``.

``"aleph"``: the tracker acceptance |cos θ| < 0.95, pT > 0.2 GeV is of the kind ALEPH's charged-track
selections used at the Z pole; the calorimeter coverage (|cos θ| < 0.98) and thresholds (0.25 GeV for
photons, 0.5 GeV for neutral hadrons) are nominal round numbers, not values fitted to or quoted from
ALEPH (D. Buskulic et al., NIM A360 (1995) 481 describes the calorimeters).

Example:
    >>> from diffgen.detector import detector_config
    >>> detector_config("aleph").track_pt_min
    0.2
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["DetectorConfig", "CONFIGS", "detector_config"]


class DetectorConfig(NamedTuple):
    """Acceptance edges (|cos θ| maxima, dimensionless) and thresholds (GeV) of a detector."""

    name: str
    track_cos_theta_max: float  #: tracks need |cos θ| < this
    track_pt_min: float  #: GeV, tracks need pT > this
    ecal_cos_theta_max: float  #: photons need |cos θ| < this
    ecal_e_min: float  #: GeV, photons need E > this
    hcal_cos_theta_max: float  #: neutral hadrons need |cos θ| < this
    hcal_e_min: float  #: GeV, neutral hadrons need E > this

    def validate(self) -> DetectorConfig:
        """Return ``self`` or raise ``ValueError`` naming the bad field and its allowed range."""
        for field in ("track_cos_theta_max", "ecal_cos_theta_max", "hcal_cos_theta_max"):
            v = getattr(self, field)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v <= 1.0):
                raise ValueError(f"detector config {self.name!r}: {field} = {v!r} is outside its allowed range (0, 1]")
        for field in ("track_pt_min", "ecal_e_min", "hcal_e_min"):
            v = getattr(self, field)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0.0):
                raise ValueError(f"detector config {self.name!r}: {field} = {v!r} is outside its allowed range "
                                 "[0, inf) GeV")
        return self


#: Named detector configurations.
CONFIGS = {
    "aleph": DetectorConfig("aleph", track_cos_theta_max=0.95, track_pt_min=0.2,
                            ecal_cos_theta_max=0.98, ecal_e_min=0.25,
                            hcal_cos_theta_max=0.98, hcal_e_min=0.5),
}


def detector_config(config) -> DetectorConfig:
    """A :class:`DetectorConfig` from its name in :data:`CONFIGS`, or a given config (validated).

    Raises ``ValueError`` listing the allowed names for an unknown name.
    """
    if isinstance(config, DetectorConfig):
        return config.validate()
    if not isinstance(config, str) or config not in CONFIGS:
        raise ValueError(f"unknown detector {config!r}; allowed: {', '.join(sorted(CONFIGS))} "
                         "(or a diffgen.detector.DetectorConfig)")
    return CONFIGS[config].validate()
