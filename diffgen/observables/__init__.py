"""Particle-level observables of e+e- events: event shapes, Durham jet rates, counts and spectra.

Every observable is a pure, jittable function of final-state :class:`~diffgen.events.Events` acting on
the whole batch (no vmap), masked, and gradient-safe. :data:`OBSERVABLES` maps names to the per-event
observables f[N] used by the CLI and fits.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.events import Events
    >>> from diffgen.observables import OBSERVABLES
    >>> ev = Events.empty(1, 2).replace(p4=jnp.array([[[1., 0., 0., 1.], [1., 0., 0., -1.]]]),
    ...                                 mask=jnp.ones((1, 2), bool))
    >>> float(OBSERVABLES["thrust"](ev)[0]), float(OBSERVABLES["c_parameter"](ev)[0])
    (1.0, 0.0)
"""

from diffgen.observables.counts import (
    charged_multiplicity,
    count,
    multiplicity,
    n_kaons,
    n_pions,
    n_protons,
    particle_histogram,
    scaled_momentum,
    sqrt_s,
)
from diffgen.observables.event_shapes import (
    ThrustResult,
    aplanarity,
    b_total,
    b_wide,
    broadenings,
    c_parameter,
    d_parameter,
    heavy_jet_mass,
    hemisphere_masses,
    light_jet_mass,
    linearized_tensor,
    oblateness,
    sphericity,
    sphericity_eigenvalues,
    sphericity_tensor,
    thrust,
    thrust_analysis,
    thrust_axis,
    thrust_major,
    thrust_minor,
    thrust_rapidity,
)
from diffgen.observables.jets import durham_distance, durham_merge_scales, durham_y23, durham_yn

#: Per-event observables f[N] by name (for the CLI and fits).
OBSERVABLES = {
    "thrust": thrust,
    "thrust_major": thrust_major,
    "thrust_minor": thrust_minor,
    "oblateness": oblateness,
    "sphericity": sphericity,
    "aplanarity": aplanarity,
    "c_parameter": c_parameter,
    "d_parameter": d_parameter,
    "b_total": b_total,
    "b_wide": b_wide,
    "heavy_jet_mass": heavy_jet_mass,
    "light_jet_mass": light_jet_mass,
    "y23": durham_y23,
    "multiplicity": multiplicity,
    "charged_multiplicity": charged_multiplicity,
    "n_pions": n_pions,
    "n_kaons": n_kaons,
    "n_protons": n_protons,
}

__all__ = [
    "OBSERVABLES", "ThrustResult", "thrust_analysis", "thrust", "thrust_axis", "thrust_major", "thrust_minor",
    "oblateness", "thrust_rapidity", "sphericity_tensor", "sphericity_eigenvalues", "sphericity", "aplanarity",
    "linearized_tensor", "c_parameter", "d_parameter", "broadenings", "b_total", "b_wide", "hemisphere_masses",
    "heavy_jet_mass", "light_jet_mass", "durham_distance", "durham_merge_scales", "durham_yn", "durham_y23",
    "multiplicity", "charged_multiplicity", "count", "n_pions", "n_kaons", "n_protons", "sqrt_s",
    "scaled_momentum", "particle_histogram",
]
