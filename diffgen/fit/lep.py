"""LEP-style observables and pseudo-data for tuning :func:`diffgen.presets.ee_hadrons`.

:data:`LEP_OBSERVABLES` is a ready set of per-event observables ``(name, fn, edges)`` at the Z
pole, chosen so that together they constrain the five tune parameters of the issue tracker:

* ``one_minus_thrust`` (1 − T), ``b_wide`` (wide-jet broadening) and ``c_parameter`` — the
  shower's α_s (and, in the 2-jet region, σ_pT);
* ``n_charged`` — the overall fragmentation (α_s, a, b, σ_pT all move it);
* ``x_lead``, the scaled momentum x_p = 2|p|/√s of the hardest charged particle — the hard end
  of the fragmentation function, which breaks the a–b degeneracy of ``n_charged``;
* ``n_kaons`` (K± per event) — s/u (``StringFlav:probStoUD``).

Every observable is *per event* (each event falls in exactly one bin), so a histogram's bins are
multinomial and their errors are the diagonal covariance that χ² fits assume. Histograms of
different observables from the *same* events are correlated; :func:`pseudo_datasets` therefore
gives each observable its own independent sample (as different LEP analyses on different data
would), so that a diagonal χ² over all targets is correct and the fit's errors can be checked by
pulls.

:data:`TUNE_PARAMETERS` names the five tune parameters with default fit bounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import particles
from diffgen.checks import check_int
from diffgen.fit.targets import as_observables, from_events
from diffgen.observables import REGISTRY, scaled_momentum

__all__ = ["LEP_OBSERVABLES", "TUNE_PARAMETERS", "TUNE_BOUNDS", "x_lead", "one_minus_thrust", "pseudo_datasets"]


def one_minus_thrust(events):
    """1 − T, f[N]."""
    return 1.0 - REGISTRY["thrust"].fn(events)


def x_lead(events):
    """x_p = 2|p|/√s of the hardest charged particle, f[N] (0 for an event without charged particles)."""
    charged = events.mask & (particles.charge3(events.pid) != 0)
    return jnp.max(jnp.where(charged, scaled_momentum(events), 0.0), axis=-1)


#: ``(name, fn, edges)`` per-event observables at √s = 91.2 GeV, functions from
#: :data:`diffgen.observables.REGISTRY` (see the module docstring).
LEP_OBSERVABLES = (
    ("one_minus_thrust", one_minus_thrust, np.array([0, .02, .04, .06, .08, .10, .13, .17, .22, .5])),
    ("n_charged", REGISTRY["charged_multiplicity"].fn,
     np.array([0, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 33, 36, 80.])),
    ("n_kaons", REGISTRY["n_kaons"].fn, np.array([-.5, .5, 1.5, 2.5, 3.5, 4.5, 30.])),
    ("x_lead", x_lead, np.array([0, .15, .2, .25, .3, .35, .4, .5, .6, .7, 1.01])),
    ("b_wide", REGISTRY["b_wide"].fn, np.array([0, .02, .03, .04, .05, .06, .08, .1, .13, .3])),
    ("c_parameter", REGISTRY["c_parameter"].fn, np.array([0, .05, .1, .15, .2, .25, .3, .4, .5, .6, .75, 1.0])),
)

#: The five tune parameters of :func:`diffgen.presets.ee_hadrons`.
TUNE_PARAMETERS = ("TimeShower:alphaSvalue", "StringZ:aLund", "StringZ:bLund", "StringPT:sigma",
                   "StringFlav:probStoUD")

#: Default fit bounds (inside the physical ranges, wide around the Monash values).
TUNE_BOUNDS = {
    "TimeShower:alphaSvalue": (0.10, 0.18),
    "StringZ:aLund": (0.2, 1.5),
    "StringZ:bLund": (0.4, 1.8),
    "StringPT:sigma": (0.15, 0.6),
    "StringFlav:probStoUD": (0.08, 0.4),
}


def pseudo_datasets(gen, params, observables, n_events: int, n_sets: int, key, *, chunk: int = 10000,
                    independent: bool = True) -> list[list]:
    """``n_sets`` pseudo-datasets of ``n_events`` events each, as lists of targets (one per observable).

    With ``independent=True`` every observable of every dataset is histogrammed from its own
    events (``n_events`` per observable: uncorrelated targets, see the module docstring);
    otherwise all observables of a dataset share its events. Events are generated ``chunk`` at a
    time (one compilation) with keys derived from ``key``.
    """
    obs = list(as_observables(observables).values())
    n_events, n_sets, chunk = (check_int(v, label) for label, v in
                               (("n_events", n_events), ("n_sets", n_sets), ("chunk", chunk)))
    per = max(1, chunk // n_events)
    size = per * n_events
    streams = obs if independent else [None]
    sets: list[list] = [[] for _ in range(n_sets)]
    for j, o in enumerate(streams):
        for c in range(-(-n_sets // per)):
            ev = gen.sample(params, jax.random.fold_in(jax.random.fold_in(key, j), c), size)
            for s in range(per):
                d = c * per + s
                if d >= n_sets:
                    break
                part = jax.tree.map(lambda x, s=s: x[s * n_events:(s + 1) * n_events], ev)
                sets[d] += from_events(part, [o] if o is not None else obs)
    return sets
