"""diffgen: a differentiable event generator in JAX (public API re-exported here)."""

from diffgen import kinematics, numerics, params, particles  # noqa: F401
from diffgen.events import Events, Status
from diffgen.params import settings, with_settings
from diffgen.stage import Generator, Stage, chain

__version__ = "0.1.0"
