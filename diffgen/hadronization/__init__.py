"""Hadronization: Lund strings and the ML cluster layer, partons → primary mesons (public names re-exported)."""

from diffgen.hadronization.flavour import is_strange_hadron, meson_pid, quark_content
from diffgen.hadronization.lund_z import sample_log_z
from diffgen.hadronization.ml import ML_SETTING_NAMES, ml_hadronization
from diffgen.hadronization.stage import DEFAULT_CAPACITY, SETTING_NAMES, string_fragmentation

__all__ = ["string_fragmentation", "ml_hadronization", "ML_SETTING_NAMES", "DEFAULT_CAPACITY", "SETTING_NAMES",
           "sample_log_z", "meson_pid", "quark_content", "is_strange_hadron"]
