"""Processes on the unit cube (Z line shape, e+e- → q q̄ g, e+e- → W+W- → 4 fermions), sampled flat or by a flow."""

from diffgen.unit_processes.base import UnitProcess, as_stage, integrand
from diffgen.unit_processes.ee_qqg import ee_qqg, three_jet_rate
from diffgen.unit_processes.ee_ww import ee_ww
from diffgen.unit_processes.z_line_shape import z_line_shape

__all__ = ["UnitProcess", "as_stage", "integrand", "z_line_shape", "ee_qqg", "three_jet_rate", "ee_ww"]
