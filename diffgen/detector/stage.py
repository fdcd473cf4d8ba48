"""The parametric fast-detector stage: particle-level events → reconstructed (energy-flow) events.

``parametric(config="aleph")`` returns a :class:`~diffgen.stage.Stage` that acts on final-state
particles (the output of the decay stage), slot by slot, according to the particle type:

=================  =========================================  ==========================================
type               selection (hard cut on truth, static)      response (settings ``Detector:*``)
=================  =========================================  ==========================================
charged (q ≠ 0)    |cos θ| < 0.95, pT > 0.2 GeV (tracker)     efficiency ``trackEfficiency``;
                                                              σ(1/pT) = a ⊕ b/pT (``trackSigmaInvPtA``,
                                                              ``trackSigmaInvPtB``); θ, φ smeared by
                                                              ``trackSigmaTheta``, ``trackSigmaPhi``
photon (22)        |cos θ| < 0.98, E > 0.25 GeV (ECAL)        efficiency ``ecalEfficiency``;
                                                              σ(E)/E = ``ecalStochastic``/√E ⊕
                                                              ``ecalConstant``
neutrino (12/14/16) —                                         invisible
other neutral      |cos θ| < 0.98, E > 0.5 GeV (HCAL)         efficiency ``hcalEfficiency``;
(n, K_L, …)                                                   σ(E)/E = ``hcalStochastic``/√E ⊕
                                                              ``hcalConstant``
=================  =========================================  ==========================================

(the cuts shown are the ``"aleph"`` :class:`~diffgen.detector.DetectorConfig`). The maths of the
smearing is in :mod:`diffgen.detector.resolution` (pathwise), that of the efficiencies in
:mod:`diffgen.detector.efficiency` (score function). Particle identification is perfect: a
reconstructed object keeps the PDG code of its truth particle, so every observable of
:mod:`diffgen.observables` works on the reconstructed events unchanged (e.g.
``charged_multiplicity`` counts reconstructed tracks, see :func:`n_tracks`). Charged particles
outside the tracker acceptance are lost (no calorimeter fallback).

Truth ↔ reco pairing: the output has the input's capacity, and reco slot j is the measurement of
truth slot j: ``out.mask[i, j]`` is True iff truth particle j of event i was detected, and
``out.truth`` is the input (particle-level) :class:`~diffgen.events.Events` itself. Empty reco slots
hold zeros and PDG code 0.

Weights and status: ``log_weight`` gets the efficiencies' score terms (value 0); traced settings
outside their ranges set ``PARAM_OUT_OF_RANGE``, non-finite momenta or weights ``NONFINITE``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen import Events
    >>> from diffgen.detector import parametric
    >>> det = parametric("aleph")
    >>> ev = Events.empty(1, 3).replace(
    ...     p4=jnp.array([[[10.0, 6.0, 0.0, 7.99878], [5.0, 0.0, 5.0, 0.0], [1.0, 0.0, 0.0, 1.0]]]),
    ...     pid=jnp.array([[211, 22, 12]]), mask=jnp.ones((1, 3), bool))
    >>> reco = det.apply(det.init(None), jax.random.key(0), ev)
    >>> reco.mask.tolist(), reco.pid.tolist(), reco.truth is ev
    ([[True, True, False]], [[211, 22, 0]], True)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffgen import particles
from diffgen.detector.config import DetectorConfig, detector_config
from diffgen.detector.efficiency import keep_with_score
from diffgen.detector.resolution import smear_energy, smear_track
from diffgen.events import Events, Status
from diffgen.numerics import safe_div, safe_sqrt
from diffgen.params import SETTINGS, out_of_range
from diffgen.stage import Stage, event_keys, fold_keys, normals, uniforms

__all__ = ["parametric", "SETTING_NAMES", "TRACK", "PHOTON", "NEUTRAL_HADRON", "INVISIBLE", "particle_type",
           "acceptance", "n_tracks"]

SETTING_NAMES = (
    "Detector:trackEfficiency", "Detector:trackSigmaInvPtA", "Detector:trackSigmaInvPtB",
    "Detector:trackSigmaTheta", "Detector:trackSigmaPhi",
    "Detector:ecalEfficiency", "Detector:ecalStochastic", "Detector:ecalConstant",
    "Detector:hcalEfficiency", "Detector:hcalStochastic", "Detector:hcalConstant",
)

#: particle types of :func:`particle_type`
INVISIBLE, TRACK, PHOTON, NEUTRAL_HADRON = 0, 1, 2, 3
_NEUTRINOS = (12, 14, 16)


def particle_type(pid, mask):
    """Detector type per slot, i32[N, P]: :data:`TRACK` (electric charge ≠ 0), :data:`PHOTON` (22),
    :data:`INVISIBLE` (neutrinos and empty slots) or :data:`NEUTRAL_HADRON` (every other neutral code,
    including codes that :data:`diffgen.particles.TABLE` lacks)."""
    a = jnp.abs(pid)
    nu = (a == _NEUTRINOS[0]) | (a == _NEUTRINOS[1]) | (a == _NEUTRINOS[2])
    t = jnp.where(particles.is_charged(pid), TRACK,
                  jnp.where(a == 22, PHOTON, jnp.where(nu, INVISIBLE, NEUTRAL_HADRON)))
    return jnp.where(mask, t, INVISIBLE).astype(jnp.int32)


def _cos_theta_pt(p4):
    pt = safe_sqrt(p4[..., 1] ** 2 + p4[..., 2] ** 2)
    p = safe_sqrt(pt * pt + p4[..., 3] ** 2)
    return safe_div(p4[..., 3], p, 1.0), pt  # zero momentum counts as along the beam: never accepted


def acceptance(events: Events, config: DetectorConfig):
    """Eligible slots per type (hard cuts on the truth kinematics, no randomness).

    Returns ``(kind, eligible)``: i32[N, P] (:func:`particle_type`) and bool[N, P], True where the
    particle is inside its sub-detector's acceptance and above its threshold (strict inequalities, see
    :mod:`diffgen.detector.config`).
    """
    kind = particle_type(events.pid, events.mask)
    cos, pt = _cos_theta_pt(events.p4)
    energy = events.p4[..., 0]
    acos = jnp.abs(cos)
    track = (kind == TRACK) & (acos < config.track_cos_theta_max) & (pt > config.track_pt_min)
    photon = (kind == PHOTON) & (acos < config.ecal_cos_theta_max) & (energy > config.ecal_e_min)
    hadron = (kind == NEUTRAL_HADRON) & (acos < config.hcal_cos_theta_max) & (energy > config.hcal_e_min)
    return kind, track | photon | hadron


def n_tracks(events: Events):
    """Number of reconstructed charged tracks per event, f[N] (the charged multiplicity of reco events).

    Example:
        >>> import jax.numpy as jnp
        >>> from diffgen import Events
        >>> ev = Events.empty(1, 3).replace(pid=jnp.array([[211, 22, -11]]), mask=jnp.ones((1, 3), bool))
        >>> float(n_tracks(ev)[0])
        2.0
    """
    return jnp.sum(events.mask & particles.is_charged(events.pid), axis=1).astype(events.p4.dtype)


def parametric(config="aleph") -> Stage:
    """The parametric fast-detector stage (see the module docstring).

    Args:
        config: a detector name from :data:`diffgen.detector.CONFIGS` (``"aleph"``) or a
            :class:`~diffgen.detector.DetectorConfig` (static: acceptance edges and thresholds).

    Returns:
        ``Stage(init, apply)``: ``init(key)`` gives the ``Detector:*`` settings at their defaults;
        ``apply(params, keys, events) -> reco events`` (batch-level, same capacity, ``truth=events``).

    Raises:
        ValueError: an unknown detector name or a bad config (before anything runs); params that lack
            a ``Detector:*`` setting (when ``apply`` is traced).
    """
    cfg = detector_config(config)

    def init(key):
        del key
        return {name: SETTINGS[name].default for name in SETTING_NAMES}

    def apply(params, keys, events: Events) -> Events:
        missing = [n for n in SETTING_NAMES if n not in params]
        if missing:
            raise ValueError(f"detector params lack {missing}; they have {sorted(params)}")
        dtype = events.p4.dtype
        th = {n.split(":")[1]: jnp.asarray(params[n], dtype) for n in SETTING_NAMES}
        n, cap = events.pid.shape
        keys = event_keys(keys, n)
        u = uniforms(fold_keys(keys, 0), (cap,), dtype)  # efficiency choice
        z = normals(fold_keys(keys, 1), (cap, 3), dtype)  # 1/pT, θ, φ (tracks); z[..., 0] for clusters
        kind, eligible = acceptance(events, cfg)
        efficiency = jnp.where(kind == TRACK, th["trackEfficiency"],
                               jnp.where(kind == PHOTON, th["ecalEfficiency"], th["hcalEfficiency"]))
        keep = eligible & (u < efficiency)
        # one keep_with_score per type keeps each efficiency's score term separate and exact
        log_p = jnp.zeros((n,), dtype)
        for t, name in ((TRACK, "trackEfficiency"), (PHOTON, "ecalEfficiency"), (NEUTRAL_HADRON, "hcalEfficiency")):
            _, lp = keep_with_score(u, th[name], eligible & (kind == t))
            log_p = log_p + lp
        track = smear_track(events.p4, keep & (kind == TRACK), z, th["trackSigmaInvPtA"], th["trackSigmaInvPtB"],
                            th["trackSigmaTheta"], th["trackSigmaPhi"])
        ecal = smear_energy(events.p4, keep & (kind == PHOTON), z[..., 0], th["ecalStochastic"], th["ecalConstant"])
        hcal = smear_energy(events.p4, keep & (kind == NEUTRAL_HADRON), z[..., 0], th["hcalStochastic"],
                            th["hcalConstant"])
        p4 = track + ecal + hcal  # each is zero outside its own kept slots
        out = events.replace(
            p4=p4, pid=jnp.where(keep, events.pid, 0), mask=keep, colour=jnp.zeros_like(events.colour),
            log_weight=events.log_weight + log_p - jax.lax.stop_gradient(log_p), truth=events)
        bad = jnp.zeros((), bool)
        for name in SETTING_NAMES:
            bad = bad | out_of_range(name, params[name])
        out = out.with_status(bad, Status.PARAM_OUT_OF_RANGE)
        finite = jnp.all(jnp.isfinite(out.p4), axis=(1, 2)) & jnp.isfinite(out.log_weight)
        return out.with_status(~finite, Status.NONFINITE)

    return Stage(init=init, apply=apply)
