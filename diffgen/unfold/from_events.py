"""OmniFold on :class:`~diffgen.events.Events`: features from the observable registry or particle sets.

Truth ↔ reco pairing is by row: event i of ``sim_reco`` is the reconstruction of event i of
``sim_truth`` (as a detector stage produces them). An event passes reconstruction (or truth
acceptance) when its status is 0 and it has at least one occupied slot; the generator weights
w⁰ = exp(log_weight) are taken from the truth record (shifted by their maximum, which OmniFold's
normalised weights do not see).

* :func:`event_features` — f[N, F] from per-event observables of :data:`diffgen.observables.REGISTRY`;
* :func:`particle_features` — a :class:`~diffgen.unfold.inputs.ParticleSet` of (log E, cos θ, cos φ, sin φ,
  charge) per occupied slot;
* :func:`omnifold_events` — :func:`~diffgen.unfold.omnifold.omnifold` on (truth, reco) event pairs.

Example:
    >>> import jax, diffgen
    >>> gen = diffgen.presets.ee_mumu()
    >>> ev = gen.sample(gen.default_params(), jax.random.key(0), 4)
    >>> event_features(ev, ["thrust", "sphericity"]).shape, particle_features(ev).values.shape
    ((4, 2), (4, 2, 5))
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from diffgen import kinematics, particles
from diffgen.events import Events
from diffgen.observables import REGISTRY, observable_spec
from diffgen.unfold.inputs import ParticleSet
from diffgen.unfold.omnifold import OmniFoldResult, omnifold

__all__ = ["event_features", "particle_features", "passes", "omnifold_events"]

DEFAULT_OBSERVABLES = ("charged_multiplicity", "thrust", "sphericity", "c_parameter", "y23")


def event_features(events: Events, observables: Sequence[str] = DEFAULT_OBSERVABLES) -> np.ndarray:
    """Per-event observables by registry name, stacked: f[N, len(observables)]."""
    if isinstance(observables, str):
        observables = (observables,)
    if not observables:
        raise ValueError("observables must name at least one per-event observable")
    cols = []
    for name in observables:
        spec = observable_spec(name)
        if spec.per_particle:
            raise ValueError(f"observable {name!r} is per particle; event features need per-event observables "
                             f"(use particle_features for particle sets); per-event: "
                             f"{sorted(n for n, s in REGISTRY.items() if not s.per_particle)}")
        cols.append(np.asarray(spec.fn(events), np.float64))
    return np.stack(cols, axis=1)


def particle_features(events: Events) -> ParticleSet:
    """(log E/GeV, cos θ, cos φ, sin φ, electric charge) of every slot, with the slot mask: a ParticleSet."""
    p4 = events.p4
    e = jnp.maximum(p4[..., 0], 1e-6)
    phi = kinematics.phi(p4)
    values = jnp.stack([jnp.log(e), kinematics.cos_theta(p4), jnp.cos(phi), jnp.sin(phi),
                        jnp.asarray(particles.charge(events.pid), e.dtype)], axis=-1)
    mask = np.asarray(events.mask)
    return ParticleSet(np.where(mask[..., None], np.asarray(values, np.float32), 0.0), mask)


def passes(events: Events) -> np.ndarray:
    """bool[N]: status 0 and at least one occupied slot."""
    return (np.asarray(events.status) == 0) & np.asarray(events.mask).any(axis=1)


def omnifold_events(key, sim_truth: Events, sim_reco: Events, data_reco: Events, *,
                    observables: Sequence[str] | None = DEFAULT_OBSERVABLES, particle_level: bool = False,
                    **kwargs) -> OmniFoldResult:
    """:func:`~diffgen.unfold.omnifold.omnifold` on event records (see the module docstring).

    ``observables`` (registry names) are the classifier inputs of both steps; with
    ``particle_level=True`` the inputs are :func:`particle_features` and the classifiers Particle
    Flow Networks. Data events that fail reconstruction are dropped; data weights are their
    normalised generator weights. ``kwargs`` go to :func:`~diffgen.unfold.omnifold.omnifold`.
    """
    if sim_truth.n_events != sim_reco.n_events:
        raise ValueError(f"sim_truth has {sim_truth.n_events} events but sim_reco has {sim_reco.n_events}; "
                         f"row i of each must be the same event")
    features = particle_features if particle_level else (lambda ev: event_features(ev, observables))
    pass_truth, pass_reco = passes(sim_truth), passes(sim_reco)
    keep = passes(data_reco)
    if not keep.any():
        raise ValueError("no data event passes reconstruction (status 0 with at least one particle)")
    lw = np.asarray(sim_truth.log_weight, np.float64)
    good = np.isfinite(lw) & (pass_truth | pass_reco)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    sim_weights = np.where(good, np.exp(lw - np.max(lw[np.isfinite(lw)])), 0.0)
    dlw = np.asarray(data_reco.log_weight, np.float64)[keep]
    data_weights = np.exp(dlw - np.max(dlw))
    data = data_reco[np.flatnonzero(keep)]
    return omnifold(key, features(sim_truth), features(sim_reco), features(data), sim_weights=sim_weights,
                    data_weights=data_weights, pass_truth=pass_truth, pass_reco=pass_reco, **kwargs)
