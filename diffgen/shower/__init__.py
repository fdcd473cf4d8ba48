"""Final-state parton shower (p⊥-ordered dipole shower, Pythia 8 style) for e+e- → q q̄.

Public API:

* :func:`final_state_shower` — the :class:`~diffgen.stage.Stage` factory;
* :func:`alpha_s` — the shower's one-loop running coupling α_s(p⊥², α_s(m_Z)).

See :mod:`diffgen.shower.fsr` for the algorithm, the overestimate and the score weights.
"""

from diffgen.shower.coupling import alpha_s
from diffgen.shower.fsr import DEFAULT_CAPACITY, SHOWER_SETTINGS, final_state_shower, shower_mass

__all__ = ["final_state_shower", "alpha_s", "DEFAULT_CAPACITY", "SHOWER_SETTINGS", "shower_mass"]
