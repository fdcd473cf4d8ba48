"""A learned detector surrogate: per-particle conditional densities p(reco | truth) and a learned efficiency.

``learned(model_or_checkpoint)`` returns a :class:`~diffgen.stage.Stage` that is a drop-in for
:func:`diffgen.detector.parametric`: same input (final-state particles), same output (reco
:class:`~diffgen.events.Events` of the same capacity, reco slot j measuring truth slot j,
``truth=`` the input). Its response is not a formula but three small networks, one per particle type
of :func:`diffgen.detector.particle_type`, trained by maximum likelihood on the parametric stage
(:mod:`diffgen.detector.learned_train`).

The model, per type t ∈ {track, photon, neutral hadron}
------------------------------------------------------
Truth features c (dimensionless, from the truth four-momentum):

* tracks:       c = ((ln pT − ln 3)/2, cos θ)      (pT in GeV)
* calorimeters: c = ((ln E − ln 3)/2,  cos θ)       (E in GeV)

Residuals r (what the detector does to the particle):

* tracks (D = 3):       r = (pT·(1/pT′ − 1/pT),  θ′ − θ,  φ′ − φ)
* calorimeters (D = 1): r = ln(E′/E)   (the direction is the truth direction)

An MLP f_t (Flax, ``hidden`` units, tanh) maps c to 2D + 1 numbers (m, s, ℓ) and

    r = scale_t ⊙ (m(c) + exp(s(c)) ⊙ z),   z ~ N(0, 1_D),
    p(detected | c, in acceptance) = sigmoid(ℓ(c)),

where ``scale_t`` (f[D]) is the residual r.m.s. of the training sample, fixed at training time. This
is a one-layer conditional affine normalizing flow — equivalently a conditional diagonal Gaussian —
with log density ln p(r | c) = Σ_d [−½ u_d² − s_d − ln scale_d − ½ ln 2π], u = (r/scale − m)/exp(s).
It is exact for the parametric target (whose residuals in these coordinates are Gaussian with
widths depending on pT or E only) and it is reparameterised: r is a smooth function of the truth
momenta, the weights and the noise z, so gradients are pathwise.

The efficiency is a Bernoulli choice (kept if u < sigmoid(ℓ), u uniform) with the score term of
:mod:`diffgen.detector.efficiency`, Σ [k ln p + (1 − k) ln(1 − p)] − stop_gradient(same), added to
``log_weight`` (value 0), here with ln p = log_sigmoid(ℓ), ln(1 − p) = log_sigmoid(−ℓ), so the
gradient with respect to the classifier's weights (and the truth momenta it sees) reaches
:func:`diffgen.expect`. The acceptance *edges* are not learned: they are the exact truth cuts of the
:class:`~diffgen.detector.DetectorConfig` the model was trained with (stored in the checkpoint),
because a classifier can only blur a hard edge and the edge is known geometry, not a response.

Reconstruction from the residuals: tracks pT′ = 1/max(1/pT + r₁/pT, 10⁻⁴), θ′ = clip(θ + r₂),
φ′ = φ + r₃, E′ = √(|p′|² + m²) with the truth mass (as in :func:`diffgen.detector.smear_track`);
clusters p′ = p · exp(r).

Example:
    >>> import jax
    >>> from diffgen.detector.learned import init_model, learned
    >>> model = init_model(jax.random.key(0), hidden=(8,))      # untrained, for shapes only
    >>> det = learned(model)
    >>> sorted(det.init(None)["weights"])
    ['neutral_hadron', 'photon', 'track']
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffgen.detector.config import DetectorConfig, detector_config
from diffgen.detector.resolution import INV_PT_FLOOR
from diffgen.detector.stage import NEUTRAL_HADRON, PHOTON, TRACK, acceptance
from diffgen.events import Events, Status
from diffgen.numerics import safe_arctan2, safe_sqrt
from diffgen.stage import Stage, event_keys, fold_keys, normals, uniforms

__all__ = ["LearnedDetectorModel", "TYPES", "check_hidden", "RESIDUAL_DIMS", "init_model", "learned", "truth_features",
           "conditional", "track_residuals", "calo_residuals", "track_from_residuals", "calo_from_residuals"]

#: the three learned particle types, their detector type code and residual dimension D
TYPES = ("track", "photon", "neutral_hadron")
TYPE_CODES = {"track": TRACK, "photon": PHOTON, "neutral_hadron": NEUTRAL_HADRON}
RESIDUAL_DIMS = {"track": 3, "photon": 1, "neutral_hadron": 1}
_LOG_REF = math.log(3.0)  # GeV: the feature (ln x − ln 3)/2 is O(1) over 0.2 … 45 GeV
_THETA_EPS = 1.0e-6


class LearnedDetectorModel(NamedTuple):
    """A trained (or freshly initialised) surrogate.

    ``weights``: ``{type: {"net": flax params, "scale": f[D]}}`` for the types in :data:`TYPES`;
    ``hidden``: the MLP widths (static); ``config``: the acceptance edges it was trained with.
    """

    weights: dict
    hidden: tuple
    config: DetectorConfig


class _MLP(nn.Module):
    hidden: tuple
    out: int

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = jnp.tanh(nn.Dense(width)(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.zeros)(x)  # starts at m = s = 0, p = ½


def check_hidden(hidden) -> tuple:
    hidden = tuple(hidden)
    if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 4096 for h in hidden):
        raise ValueError(f"hidden = {hidden!r}: need a non-empty tuple of layer widths, integers in [1, 4096]")
    return hidden


def init_model(key, hidden=(32, 32), config="aleph") -> LearnedDetectorModel:
    """Untrained networks (output layer zero: r = scale·z, efficiency ½) with unit ``scale``."""
    hidden = check_hidden(hidden)
    weights = {}
    for i, t in enumerate(TYPES):
        d = RESIDUAL_DIMS[t]
        net = _MLP(hidden, 2 * d + 1).init(jax.random.fold_in(key, i), jnp.zeros((1, 2)))["params"]
        weights[t] = {"net": net, "scale": jnp.ones((d,), jnp.float32)}
    return LearnedDetectorModel(weights, hidden, detector_config(config))


def conditional(hidden, type_weights, features):
    """Network outputs for one type: ``(m, s, logit)`` = f[..., D], f[..., D], f[...] from features f[..., 2].

    The residual distribution is N(scale·m, (scale·exp(s))²) per dimension; p(detected) = sigmoid(logit).
    """
    d = type_weights["scale"].shape[0]
    out = _MLP(tuple(hidden), 2 * d + 1).apply({"params": type_weights["net"]}, features)
    s = jnp.clip(out[..., d:2 * d], -12.0, 6.0)  # keeps exp(s) finite for any input
    return out[..., :d], s, out[..., 2 * d]


def _angles(p4, ok):
    """(pT, p, θ, φ) with safe placeholders (pT = 1, θ = π/2, φ = 0) outside ``ok``."""
    px, py, pz = p4[..., 1], p4[..., 2], p4[..., 3]
    pt_true = safe_sqrt(px * px + py * py)
    ok = ok & (pt_true > 0)
    pt = jnp.where(ok, pt_true, 1.0)
    pz = jnp.where(ok, pz, 0.0)
    theta = safe_arctan2(pt, pz)
    phi = safe_arctan2(jnp.where(ok, py, 0.0), jnp.where(ok, px, 1.0))
    return pt, safe_sqrt(pt * pt + pz * pz), theta, phi, ok


def truth_features(p4, ok, kind: str):
    """Truth features c, f[..., 2] (module docstring); placeholders (finite) outside ``ok``.

    ``kind``: ``"track"`` uses ln pT, the calorimeter types ln E.
    """
    pt, p, theta, _, ok = _angles(p4, ok)
    x = pt if kind == "track" else jnp.where(ok & (p4[..., 0] > 0), p4[..., 0], 1.0)
    return jnp.stack([(jnp.log(x) - _LOG_REF) / 2.0, jnp.cos(theta)], axis=-1)


def track_residuals(truth_p4, reco_p4, ok):
    """Track residuals r f[..., 3] = (pT/pT′ − 1, θ′ − θ, φ′ − φ wrapped to (−π, π]); 0 outside ``ok``."""
    pt, _, theta, phi, ok_t = _angles(truth_p4, ok)
    pt_r, _, theta_r, phi_r, ok_r = _angles(reco_p4, ok)
    ok = ok_t & ok_r
    dphi = jnp.mod(phi_r - phi + jnp.pi, 2.0 * jnp.pi) - jnp.pi
    r = jnp.stack([pt / pt_r - 1.0, theta_r - theta, dphi], axis=-1)
    return jnp.where(ok[..., None], r, 0.0)


def calo_residuals(truth_p4, reco_p4, ok):
    """Cluster residual r f[...] = ln(E′/E); 0 outside ``ok`` or where either energy is ≤ 0."""
    ok = ok & (truth_p4[..., 0] > 0) & (reco_p4[..., 0] > 0)
    return jnp.where(ok, jnp.log(jnp.where(ok, reco_p4[..., 0], 1.0) / jnp.where(ok, truth_p4[..., 0], 1.0)), 0.0)


def track_from_residuals(p4, ok, r):
    """Reco track four-momenta f[..., 4] from truth ``p4`` f[..., 4] and residuals ``r`` f[..., 3] (0 outside ok)."""
    pt, _, theta, phi, ok = _angles(p4, ok)
    pt_r = 1.0 / jnp.maximum((1.0 + r[..., 0]) / pt, INV_PT_FLOOR)
    theta_r = jnp.clip(theta + r[..., 1], _THETA_EPS, jnp.pi - _THETA_EPS)
    phi_r = phi + r[..., 2]
    pz_r = pt_r * jnp.cos(theta_r) / jnp.sin(theta_r)
    px, py, pz = p4[..., 1], p4[..., 2], p4[..., 3]
    m2 = jnp.maximum(p4[..., 0] ** 2 - px * px - py * py - pz * pz, 0.0)
    e_r = safe_sqrt(pt_r * pt_r + pz_r * pz_r + jnp.where(ok, m2, 0.0))
    out = jnp.stack([e_r, pt_r * jnp.cos(phi_r), pt_r * jnp.sin(phi_r), pz_r], axis=-1)
    return jnp.where(ok[..., None], out, 0.0)


def calo_from_residuals(p4, ok, r):
    """Reco cluster four-momenta p4·exp(r), f[..., 4] (zeros outside ``ok``); ``r`` f[...]."""
    ok = ok & (p4[..., 0] > 0)
    return jnp.where(ok[..., None], p4 * jnp.exp(jnp.where(ok, r, 0.0))[..., None], 0.0)


def _load(model_or_checkpoint) -> LearnedDetectorModel:
    if isinstance(model_or_checkpoint, LearnedDetectorModel):
        check_hidden(model_or_checkpoint.hidden)
        detector_config(model_or_checkpoint.config)
        return model_or_checkpoint
    from diffgen.detector.learned_train import load_checkpoint  # the file format lives with training

    return load_checkpoint(model_or_checkpoint)


def learned(model_or_checkpoint) -> Stage:
    """The learned detector stage, a drop-in for :func:`diffgen.detector.parametric`.

    Args:
        model_or_checkpoint: a :class:`LearnedDetectorModel` (e.g. from
            :func:`diffgen.detector.learned_train.train`) or the path of a checkpoint written by
            :func:`~diffgen.detector.learned_train.save_checkpoint`.

    Returns:
        ``Stage(init, apply)``: ``init(key)`` gives ``{"weights": model.weights}`` (differentiable network
        weights; no ``Detector:*`` settings); ``apply(params, keys[N], events) -> reco events`` with the
        input's capacity, ``truth=events``, score terms of the efficiency choice in ``log_weight``
        and ``Status.NONFINITE`` for non-finite momenta or weights.

    Raises:
        ValueError: a malformed or unreadable checkpoint (before anything runs).
    """
    model = _load(model_or_checkpoint)
    hidden, cfg = model.hidden, model.config

    def init(key):
        del key
        return {"weights": model.weights}

    def apply(params, keys, events: Events) -> Events:
        weights = params["weights"]
        dtype = events.p4.dtype
        n, cap = events.pid.shape
        keys = event_keys(keys, n)
        u = uniforms(fold_keys(keys, 0), (cap,), dtype)
        z = normals(fold_keys(keys, 1), (cap, 3), dtype)
        kind, eligible = acceptance(events, cfg)
        p4 = jnp.zeros_like(events.p4)
        keep = jnp.zeros_like(eligible)
        log_p = jnp.zeros((n,), dtype)
        for t in TYPES:
            w = weights[t]
            d = RESIDUAL_DIMS[t]
            ok = eligible & (kind == TYPE_CODES[t])
            m, s, logit = conditional(hidden, w, truth_features(events.p4, ok, t))
            k = ok & (u < jax.nn.sigmoid(logit))
            lp = jnp.where(k, jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit))
            log_p = log_p + jnp.sum(jnp.where(ok, lp, 0.0), axis=-1)
            r = (w["scale"] * (m + jnp.exp(s) * z[..., :d])).astype(dtype)
            if t == "track":
                p4 = p4 + track_from_residuals(events.p4, k, r)
            else:
                p4 = p4 + calo_from_residuals(events.p4, k, r[..., 0])
            keep = keep | k
        out = events.replace(
            p4=p4, pid=jnp.where(keep, events.pid, 0), mask=keep, colour=jnp.zeros_like(events.colour),
            log_weight=events.log_weight + log_p - jax.lax.stop_gradient(log_p), truth=events)
        finite = jnp.all(jnp.isfinite(out.p4), axis=(1, 2)) & jnp.isfinite(out.log_weight)
        return out.with_status(~finite, Status.NONFINITE)

    return Stage(init=init, apply=apply)
