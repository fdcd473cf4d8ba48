"""Particle-level observables of e+e- events: event shapes, Durham jet rates, counts and spectra.

Every observable is a pure, jittable function of final-state :class:`~diffgen.events.Events` acting on
the whole batch (no vmap), masked, and gradient-safe.

:data:`REGISTRY` is the one table of observables by name (``{name: ObservableSpec}``: the function,
an axis label, a default binning range, per event or per particle); the CLI, tune files and
:mod:`diffgen.fit` look names up there (:func:`observable_spec`, with an error listing the known
names). :data:`OBSERVABLES` is its ``{name: fn}`` view of the per-event particle-level observables.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.events import Events
    >>> from diffgen.observables import OBSERVABLES
    >>> ev = Events.empty(1, 2).replace(p4=jnp.array([[[1., 0., 0., 1.], [1., 0., 0., -1.]]]),
    ...                                 mask=jnp.ones((1, 2), bool))
    >>> float(OBSERVABLES["thrust"](ev)[0]), float(OBSERVABLES["c_parameter"](ev)[0])
    (1.0, 0.0)
"""

import difflib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from diffgen import kinematics
from diffgen.checks import check_int
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


class ObservableSpec(NamedTuple):
    """A named observable: ``fn(events)`` and how to histogram it by default.

    Attributes:
        name: the registry name (used by the CLI, tune files and fits).
        fn: ``fn(events) -> f[N]`` (per event) or ``(f[N, P], bool[N, P])`` (per particle).
        label: axis label for plots and printed histograms.
        range: ``(lo, hi)``, the default histogram range.
        per_particle: ``fn`` returns per-particle values with their mask.
        step: fixed bin width for integer-valued observables (the default binning ignores the
            number of bins), or None for ``bins`` equal bins in ``range``.
        level: ``"particle"`` (a function of the final-state particles, in :data:`OBSERVABLES`)
            or ``"hard"`` (of the hard-process fermion in slot 0, for e+e- → f f̄).
    """

    name: str
    fn: Callable
    label: str
    range: tuple
    per_particle: bool = False
    step: float | None = None
    level: str = "particle"

    def edges(self, bins: int = 20) -> np.ndarray:
        """Default bin edges: ``bins`` equal bins in ``range``, or width ``step`` from ``range[0]``."""
        lo, hi = self.range
        if self.step is not None:
            return np.arange(lo, hi + 0.5 * self.step, self.step)
        bins = check_int(bins, "bins")
        return np.linspace(lo, hi, bins + 1)


def fermion_cos_theta(events):
    """cos θ of the outgoing fermion (slot 0) relative to the incoming particle in slot 0 (the e-), f[N].

    With the beams along ±z (as in every e+e- event here and in LHE/HepMC files) this is
    sign(p_z,in) · :func:`diffgen.kinematics.cos_theta` of the fermion; gradient-safe (0, not NaN,
    for a zero momentum).
    """
    return jnp.sign(events.p4_in[:, 0, 3]) * kinematics.cos_theta(events.p4[:, 0])


def _spec(name, fn, label, lo, hi, **kw) -> ObservableSpec:
    return ObservableSpec(name, fn, label, (float(lo), float(hi)), **kw)


#: The one table of observables by name: ``{name: ObservableSpec}``.
REGISTRY: Mapping[str, ObservableSpec] = MappingProxyType({s.name: s for s in (
    _spec("thrust", thrust, "thrust T", 0.5, 1.0),
    _spec("thrust_major", thrust_major, "thrust major", 0.0, 0.7),
    _spec("thrust_minor", thrust_minor, "thrust minor", 0.0, 0.5),
    _spec("oblateness", oblateness, "oblateness O", 0.0, 0.5),
    _spec("sphericity", sphericity, "sphericity S", 0.0, 1.0),
    _spec("aplanarity", aplanarity, "aplanarity A", 0.0, 0.5),
    _spec("c_parameter", c_parameter, "C-parameter", 0.0, 1.0),
    _spec("d_parameter", d_parameter, "D-parameter", 0.0, 1.0),
    _spec("b_total", b_total, "total jet broadening B_T", 0.0, 0.4),
    _spec("b_wide", b_wide, "wide jet broadening B_W", 0.0, 0.3),
    _spec("heavy_jet_mass", heavy_jet_mass, "heavy jet mass rho_H", 0.0, 0.4),
    _spec("light_jet_mass", light_jet_mass, "light jet mass rho_L", 0.0, 0.2),
    _spec("y23", durham_y23, "Durham y23", 0.0, 0.5),
    _spec("multiplicity", multiplicity, "multiplicity", -0.5, 100.5, step=2.0),
    _spec("charged_multiplicity", charged_multiplicity, "charged multiplicity", -0.5, 60.5, step=2.0),
    _spec("n_pions", n_pions, "number of charged pions", -0.5, 40.5, step=1.0),
    _spec("n_kaons", n_kaons, "number of charged kaons", -0.5, 10.5, step=1.0),
    _spec("n_protons", n_protons, "number of protons", -0.5, 6.5, step=1.0),
    _spec("cos_theta", fermion_cos_theta, "cos(theta) of the outgoing fermion vs the e- beam", -1.0, 1.0,
          level="hard"),
)})

#: Per-event observables of the final-state particles, f[N] by name (the ``"particle"`` entries of
#: :data:`REGISTRY`; a read-only view).
OBSERVABLES: Mapping[str, Callable] = MappingProxyType(
    {n: s.fn for n, s in REGISTRY.items() if s.level == "particle"})


def unknown_observable_message(name, known=None) -> str:
    """The error text for an unknown observable ``name``: close matches and the allowed names."""
    known = REGISTRY if known is None else known
    close = difflib.get_close_matches(str(name), list(known), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown observable {name!r}.{hint} Known observables: {', '.join(sorted(known))}."


def observable_spec(name) -> ObservableSpec:
    """The :class:`ObservableSpec` of ``name``; ``ValueError`` listing the known names otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(unknown_observable_message(name))
    return REGISTRY[name]


__all__ = [
    "REGISTRY", "ObservableSpec", "observable_spec", "unknown_observable_message", "fermion_cos_theta",
    "OBSERVABLES", "ThrustResult", "thrust_analysis", "thrust", "thrust_axis", "thrust_major", "thrust_minor",
    "oblateness", "thrust_rapidity", "sphericity_tensor", "sphericity_eigenvalues", "sphericity", "aplanarity",
    "linearized_tensor", "c_parameter", "d_parameter", "broadenings", "b_total", "b_wide", "hemisphere_masses",
    "heavy_jet_mass", "light_jet_mass", "durham_distance", "durham_merge_scales", "durham_yn", "durham_y23",
    "multiplicity", "charged_multiplicity", "count", "n_pions", "n_kaons", "n_protons", "sqrt_s",
    "scaled_momentum", "particle_histogram",
]
