"""OmniFold on :class:`~diffgen.events.Events`: features from the observable registry or particle sets.

Truth ↔ reco pairing is by row: event i of ``sim_reco`` is the reconstruction of event i of
``sim_truth`` (as a detector stage produces them). An event passes reconstruction (or truth
acceptance) when its status is 0 and it has at least one occupied slot; the generator weights
w⁰ = exp(log_weight) are taken from the truth record (shifted by their maximum, which OmniFold's
normalised weights do not see).

* :func:`event_features` — f[N, F] from per-event observables of :data:`diffgen.observables.REGISTRY`;
* :func:`particle_features` — a :class:`~diffgen.unfold.inputs.ParticleSet` of (log E, cos θ, cos φ, sin φ,
  charge) per occupied slot;
* :func:`omnifold_events` — :func:`~diffgen.unfold.omnifold.omnifold` on (truth, reco) event pairs;
  :func:`prepare_sim` and :func:`omnifold_prepared` split it, to unfold several data sets with one
  simulation without recomputing its features; :func:`omnifold_bootstrap` gives Poisson-bootstrap
  replicas of the unfolded weights for errors.

Example:
    >>> import jax, diffgen
    >>> gen = diffgen.presets.ee_mumu()
    >>> ev = gen.sample(gen.default_params(), jax.random.key(0), 4)
    >>> event_features(ev, ["thrust", "sphericity"]).shape, particle_features(ev).values.shape
    ((4, 2), (4, 2, 5))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics, particles
from diffgen.events import Events
from diffgen.observables import REGISTRY, observable_spec
from diffgen.unfold.inputs import ParticleSet
from diffgen.unfold.omnifold import OmniFoldResult, bootstrap, omnifold

__all__ = ["event_features", "packed_events", "particle_features", "passes", "SimInputs", "prepare_sim",
           "omnifold_prepared", "omnifold_bootstrap", "omnifold_events"]

DEFAULT_OBSERVABLES = ("charged_multiplicity", "thrust", "sphericity", "c_parameter", "y23")


def event_features(events: Events, observables: Sequence[str] = DEFAULT_OBSERVABLES) -> np.ndarray:
    """Per-event observables by registry name, stacked: f[N, len(observables)] (float64, host).

    Each observable runs jitted on :func:`packed_events` (occupied slots first, the particle axis cut to
    the largest occupancy), so a detector-level record of 160 slots with ~30 objects clusters quickly.
    """
    if isinstance(observables, str):
        observables = (observables,)
    if not observables:
        raise ValueError("observables must name at least one per-event observable")
    cols = []
    packed = packed_events(events)
    for name in observables:
        spec = observable_spec(name)
        if spec.per_particle:
            raise ValueError(f"observable {name!r} is per particle; event features need per-event observables "
                             f"(use particle_features for particle sets); per-event: "
                             f"{sorted(n for n, s in REGISTRY.items() if not s.per_particle)}")
        cols.append(_in_chunks(_jitted(name), packed))
    return np.stack(cols, axis=1)


#: events per jitted feature call: the Durham table of a chunk ([chunk, P, P] floats) stays a few hundred MB
FEATURE_CHUNK = 4096


def _in_chunks(fn, events: Events) -> np.ndarray:
    """``fn(events)`` f[N] in chunks of :data:`FEATURE_CHUNK` events (the last one padded by repeating its
    first event, so that one compiled shape serves every chunk)."""
    n = events.n_events
    if n <= FEATURE_CHUNK:
        return np.asarray(fn(events), np.float64)
    out = []
    for lo in range(0, n, FEATURE_CHUNK):
        idx = np.arange(lo, lo + FEATURE_CHUNK)
        idx = np.where(idx < n, idx, lo)
        out.append(np.asarray(fn(events[idx]), np.float64)[:min(FEATURE_CHUNK, n - lo)])
    return np.concatenate(out)


@functools.cache
def _jitted(name: str):
    return jax.jit(observable_spec(name).fn)


def packed_events(events: Events, multiple: int = 8) -> Events:
    """The same events with their occupied slots moved to the front (order kept) and the particle axis cut
    to the largest occupancy, rounded up to ``multiple`` (host-side; no truth record). Per-event
    observables are unchanged (up to the order of floating-point sums); the ones whose cost grows with
    the capacity (Durham clustering: O(P²) per merge) run on the detector's 160 slots several times faster."""
    mask = np.asarray(events.mask)
    count = mask.sum(axis=1)
    cap = max(int(-(-max(int(count.max(initial=0)), 1) // multiple) * multiple), 1)
    if cap >= mask.shape[1]:
        return events.replace(truth=None)
    order = np.argsort(~mask, axis=1, kind="stable")[:, :cap]

    def take(a):
        a = np.asarray(a)
        idx = order.reshape(order.shape + (1,) * (a.ndim - 2))
        return np.take_along_axis(a, idx, axis=1)

    return events.replace(p4=take(events.p4), pid=take(events.pid), mask=take(mask), colour=take(events.colour),
                          truth=None)


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


class SimInputs(NamedTuple):
    """The simulation side of an unfolding, prepared once (:func:`prepare_sim`) and reusable for any data.

    Attributes:
        truth, reco: classifier inputs f[N, F] (or :class:`~diffgen.unfold.inputs.ParticleSet`) of the
            truth and reco records, row i ↔ row i.
        weights: generator weights w⁰ f[N] (normalised to their maximum; 0 for events without a usable
            weight or that pass neither level).
        pass_truth, pass_reco: bool[N].
        observables: the registry names of the feature columns (None for particle sets).
    """

    truth: Any
    reco: Any
    weights: np.ndarray
    pass_truth: np.ndarray
    pass_reco: np.ndarray
    observables: tuple | None


def _features(events: Events, observables, particle_level: bool):
    return particle_features(events) if particle_level else event_features(events, observables)


def prepare_sim(sim_truth: Events, sim_reco: Events, *, observables: Sequence[str] | None = DEFAULT_OBSERVABLES,
                particle_level: bool = False) -> SimInputs:
    """Features, weights and flags of the simulated (truth, reco) pairs (see the module docstring)."""
    if sim_truth.n_events != sim_reco.n_events:
        raise ValueError(f"sim_truth has {sim_truth.n_events} events but sim_reco has {sim_reco.n_events}; "
                         f"row i of each must be the same event")
    pass_truth, pass_reco = passes(sim_truth), passes(sim_reco)
    lw = np.asarray(sim_truth.log_weight, np.float64)
    finite = np.isfinite(lw)
    if not finite.any():
        raise ValueError("no simulated event has a finite log_weight")
    good = finite & (pass_truth | pass_reco)
    weights = np.where(good, np.exp(np.where(finite, lw, 0.0) - np.max(lw[finite])), 0.0)
    names = None if particle_level else tuple((observables,) if isinstance(observables, str) else observables)
    return SimInputs(_features(sim_truth, names, particle_level), _features(sim_reco, names, particle_level),
                     weights, pass_truth, pass_reco, names)


def _data_inputs(sim: SimInputs, data_reco: Events):
    keep = passes(data_reco)
    if not keep.any():
        raise ValueError("no data event passes reconstruction (status 0 with at least one particle)")
    dlw = np.asarray(data_reco.log_weight, np.float64)[keep]
    if not np.all(np.isfinite(dlw)):
        raise ValueError(f"{int(np.sum(~np.isfinite(dlw)))} reconstructed data events have a non-finite log_weight")
    data = data_reco[np.flatnonzero(keep)]
    return _features(data, sim.observables, sim.observables is None), np.exp(dlw - np.max(dlw))


def omnifold_prepared(key, sim: SimInputs, data_reco: Events, **kwargs) -> OmniFoldResult:
    """:func:`~diffgen.unfold.omnifold.omnifold` of ``data_reco`` with a prepared simulation (the same
    features as ``sim``). Data events that fail reconstruction are dropped; data weights are their
    normalised generator weights. ``kwargs`` go to :func:`~diffgen.unfold.omnifold.omnifold`."""
    x_data, data_weights = _data_inputs(sim, data_reco)
    return omnifold(key, sim.truth, sim.reco, x_data, sim_weights=sim.weights, data_weights=data_weights,
                    pass_truth=sim.pass_truth, pass_reco=sim.pass_reco, **kwargs)


def omnifold_bootstrap(key, sim: SimInputs, data_reco: Events, replicas: int, *, resample_sim: bool = True,
                       **kwargs) -> np.ndarray:
    """:func:`~diffgen.unfold.omnifold.bootstrap` (Poisson-bootstrap replicas of the unfolded weights,
    f[replicas, N]) with a prepared simulation and detector-level data events."""
    x_data, data_weights = _data_inputs(sim, data_reco)
    return bootstrap(key, sim.truth, sim.reco, x_data, replicas, sim_weights=sim.weights, data_weights=data_weights,
                     pass_truth=sim.pass_truth, pass_reco=sim.pass_reco, resample_sim=resample_sim, **kwargs)


def omnifold_events(key, sim_truth: Events, sim_reco: Events, data_reco: Events, *,
                    observables: Sequence[str] | None = DEFAULT_OBSERVABLES, particle_level: bool = False,
                    **kwargs) -> OmniFoldResult:
    """:func:`~diffgen.unfold.omnifold.omnifold` on event records (see the module docstring).

    ``observables`` (registry names) are the classifier inputs of both steps; with
    ``particle_level=True`` the inputs are :func:`particle_features` and the classifiers Particle
    Flow Networks. Data events that fail reconstruction are dropped; data weights are their
    normalised generator weights. ``kwargs`` go to :func:`~diffgen.unfold.omnifold.omnifold`.
    To unfold several data sets with one simulation, :func:`prepare_sim` once and call
    :func:`omnifold_prepared` for each.
    """
    sim = prepare_sim(sim_truth, sim_reco, observables=observables, particle_level=particle_level)
    return omnifold_prepared(key, sim, data_reco, **kwargs)
