"""Multiplicities, identified-hadron counts, scaled momenta and per-particle histograms.

Counts are returned as floats (f[N], the dtype of ``p4``) so that they can be averaged with event
weights; they are piecewise constant in the momenta (zero gradient) and carry their parameter
dependence through the event weights (score-function terms in ``log_weight``).

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.events import Events
    >>> from diffgen.observables import charged_multiplicity, count, multiplicity
    >>> ev = Events.empty(1, 4).replace(pid=jnp.array([[211, -211, 111, 0]]),
    ...                                 mask=jnp.array([[True, True, True, False]]))
    >>> [float(f(ev)[0]) for f in (multiplicity, charged_multiplicity)], float(count(ev, (211,))[0])
    ([3.0, 2.0], 2.0)
"""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen import particles
from diffgen.events import Events
from diffgen.expect import Histogram, event_weights, histogram
from diffgen.numerics import safe_div

__all__ = [
    "multiplicity", "charged_multiplicity", "count", "n_pions", "n_kaons", "n_protons", "sqrt_s",
    "scaled_momentum", "particle_histogram",
]


def _float(events: Events, x):
    return x.astype(events.p4.dtype)


def multiplicity(events: Events):
    """Number of occupied slots (final-state particles), f[N]."""
    return _float(events, jnp.sum(events.mask, -1))


def charged_multiplicity(events: Events):
    """Number of charged particles (``particles.charge3(pid) != 0``), f[N]."""
    return _float(events, jnp.sum(events.mask & (particles.charge3(events.pid) != 0), -1))


def count(events: Events, pids: Iterable[int]):
    """Number of particles whose |PDG code| is in ``pids`` (static, e.g. ``(211,)`` counts π+ and π−), f[N]."""
    codes = sorted({abs(int(c)) for c in pids})
    if not codes:
        raise ValueError("count needs at least one PDG code, got an empty set")
    hit = jnp.isin(jnp.abs(events.pid), jnp.asarray(codes, jnp.int32))
    return _float(events, jnp.sum(events.mask & hit, -1))


def n_pions(events: Events):
    """Number of charged pions π± (|pid| = 211), f[N]."""
    return count(events, (211,))


def n_kaons(events: Events):
    """Number of charged kaons K± (|pid| = 321), f[N]."""
    return count(events, (321,))


def n_protons(events: Events):
    """Number of protons and antiprotons (|pid| = 2212), f[N]."""
    return count(events, (2212,))


def sqrt_s(events: Events):
    """Centre-of-mass energy √s in GeV, f[N]: the mass of p4_in[:, 0] + p4_in[:, 1] where that is
    non-zero, else the visible energy E_vis = Σ E of the occupied slots (equal to √s in the c.m.
    frame when every particle is kept)."""
    from_beams = kin.mass(jnp.sum(events.p4_in, axis=1))
    evis = jnp.sum(jnp.where(events.mask, events.p4[..., 0], 0.0), -1)
    return jnp.where(from_beams > 0, from_beams, evis)


def scaled_momentum(events: Events):
    """Scaled momentum x_p = 2|p⃗|/√s of each particle, f[N, P]; 0 in padded slots (select with ``events.mask``).

    √s from :func:`sqrt_s`. Differentiable in the momenta (and in p4_in).
    """
    p = kin.p3_abs(jnp.where(events.mask[..., None], events.p4, 0.0))
    return jnp.where(events.mask, safe_div(2.0 * p, sqrt_s(events)[:, None]), 0.0)


def particle_histogram(values, events: Events, bins, range=None, smoothing=None) -> Histogram:  # noqa: A002
    """Histogram of a per-particle quantity f[N, P] over occupied slots, each entry with its event's weight.

    Weights are :func:`diffgen.expect.event_weights` (exp(log_weight), 0 for events with a status flag)
    broadcast over the particles; ``bins``/``range``/``smoothing`` as in :func:`diffgen.expect.histogram`.
    Divide ``contents`` by Σ_events w and the bin widths for the usual (1/σ) dσ/dx per event, e.g.
    ``h.contents / jnp.sum(event_weights(ev)) / jnp.diff(h.edges)`` for the x_p spectrum.
    """
    values = jnp.asarray(values)
    if values.shape != events.mask.shape:
        raise ValueError(f"values must have the particle shape {events.mask.shape}, got {values.shape}")
    return histogram(values, bins, weights=event_weights(events)[:, None], smoothing=smoothing, range=range,
                     mask=events.mask)
