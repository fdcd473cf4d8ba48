"""Hadron decays: PDG 2024 decay tables and a fixed-shape, differentiable decay stage.

Re-exports :func:`hadron_decays` (the stage factory), :func:`is_stable`, the default stable set and the
table helpers; see :mod:`diffgen.decays.stage`, :mod:`diffgen.decays.table` and
:mod:`diffgen.decays.kinematics`.
"""

from diffgen.decays.stage import DEFAULT_CAPACITY, hadron_decays, is_stable, record_hard_process, record_partons
from diffgen.decays.table import (
    DECAYS,
    DEFAULT_STABLE,
    MIXING,
    branching_table,
    chain_depth,
    decaying_codes,
    mean_multiplicity,
)

__all__ = ["hadron_decays", "record_hard_process", "record_partons", "is_stable", "DEFAULT_CAPACITY",
           "DEFAULT_STABLE", "DECAYS", "MIXING", "branching_table", "chain_depth", "decaying_codes",
           "mean_multiplicity"]
