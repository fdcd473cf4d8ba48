"""diffgen: a differentiable event generator in JAX.

Public API (re-exported here): :class:`Events`, :class:`Status`, :class:`Stage`,
:func:`chain`, :class:`Generator`, :func:`settings`, :func:`with_settings`,
:func:`read_settings`, :func:`write_settings` (Pythia ``.cmnd`` files),
:func:`expect`, :func:`cross_section`, :func:`histogram`, :func:`linearize`,
:func:`generate`, :func:`forward_backward_asymmetry`, :mod:`diffgen.presets`, and the
subpackages ``phasespace``, ``amplitudes``, ``processes``, ``shower``, ``hadronization``,
``decays``, ``detector``, ``observables`` and ``fit``.
"""

from diffgen import (  # noqa: F401
    amplitudes,
    decays,
    detector,
    fit,
    hadronization,
    kinematics,
    numerics,
    observables,
    params,
    particles,
    phasespace,
    presets,
    processes,
    shower,
)
from diffgen._version import __version__ as __version__
from diffgen.cmnd import read_settings, write_settings
from diffgen.events import Events, Status
from diffgen.expect import (
    Histogram,
    cross_section,
    expect,
    forward_backward_asymmetry,
    histogram,
    linearize,
    linearize_with_error,
)
from diffgen.generate import generate, generate_chunks
from diffgen.params import settings, with_settings
from diffgen.stage import Generator, Stage, chain

__all__ = [
    "Events", "Status", "Stage", "chain", "Generator", "settings", "with_settings", "read_settings",
    "write_settings", "expect",
    "cross_section", "histogram", "Histogram", "linearize", "linearize_with_error", "generate", "generate_chunks",
    "forward_backward_asymmetry", "presets", "fit", "kinematics", "numerics", "params", "particles",
    "phasespace", "amplitudes", "processes", "shower", "hadronization", "decays", "detector", "observables",
]
