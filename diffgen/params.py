"""Physical parameters addressed by Pythia-style names.

Parameters live in a nested dict keyed by stage name, whose leaves are keyed by
their *setting name* (``"23:m0"``, ``"StringZ:aLund"``, …). :func:`settings`
flattens that tree, :func:`with_settings` returns a new tree with some values
replaced. Every known name has a :class:`Setting` spec in :data:`SETTINGS`
(default, physical range, unit). Defaults follow Pythia 8.3 (Monash) where Pythia
has the same parameter.

Range checks: on concrete values :func:`with_settings` and :func:`check_params`
raise ``ValueError`` naming the value and the allowed range; on traced values
(inside ``jit``/``grad``) nothing can be raised, and stages instead call
:func:`out_of_range` to set :attr:`~diffgen.events.Status.PARAM_OUT_OF_RANGE`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Setting", "SETTINGS", "DEFAULT_SQRT_S", "settings", "with_settings", "check_params", "out_of_range",
           "describe", "range_text", "unknown_setting_message"]


class Setting(NamedTuple):
    """Spec of one named parameter: default value, allowed range and unit."""

    name: str
    default: float
    lo: float
    hi: float
    unit: str = ""
    doc: str = ""
    lo_open: bool = False  #: True if the lower bound itself is excluded
    integer: bool = False


def _s(*a, **k):
    s = Setting(*a, **k)
    return s.name, s


#: GeV: the default centre-of-mass energy √s (the Z pole as Pythia's LEP examples run it), the one
#: place this number is written; presets, processes, the CLI and the I/O defaults use it.
DEFAULT_SQRT_S = 91.188

# One immutable table for the whole package (a constant, not mutable state).
SETTINGS: Mapping[str, Setting] = MappingProxyType(dict([
    _s("Beams:eCM", DEFAULT_SQRT_S, 0.0, 1.0e5, "GeV", "centre-of-mass energy √s", lo_open=True),
    _s("23:m0", 91.1876, 1.0, 1.0e4, "GeV", "Z boson pole mass"),
    _s("23:mWidth", 2.50419, 0.0, 100.0, "GeV",
       "Z boson total width (Pythia 8.3 recomputes 2.50419 GeV at init for m_Z = 91.1876)", lo_open=True),
    _s("StandardModel:sin2thetaW", 0.2312, 0.0, 0.999, "",
       "sin²θ_W in the Z normalisation 1/(16 s² c²)", lo_open=True),
    _s("StandardModel:sin2thetaWbar", 0.2315, 0.0, 1.0, "",
       "effective sin²θ̄_W in the vector couplings v = a − 4 sin²θ̄_W Q"),
    _s("StandardModel:alphaEMmZ", 0.00781751, 0.0, 0.1, "", "α_EM(m_Z²), run at first order", lo_open=True),
    _s("SigmaProcess:alphaSvalue", 0.130, 0.06, 0.25, "",
       "α_s(m_Z) of the hard process (QCD factor 1 + α_s/π for quarks)"),
    _s("TimeShower:alphaSvalue", 0.1365, 0.06, 0.25, "", "α_s(m_Z) of the final-state shower, one-loop running"),
    _s("TimeShower:pTmin", 0.5, 0.1, 10.0, "GeV", "shower cut-off in evolution pT"),
    _s("StringZ:aLund", 0.68, 0.0, 2.0, "", "Lund symmetric fragmentation function a"),
    _s("StringZ:bLund", 0.98, 0.2, 2.0, "GeV^-2", "Lund symmetric fragmentation function b"),
    _s("StringPT:sigma", 0.335, 0.0, 1.0, "GeV", "string-breaking transverse-momentum width"),
    _s("StringFlav:probStoUD", 0.217, 0.0, 1.0, "", "s/u quark-pair production ratio in string breaks"),
    _s("StringFlav:mesonUDvector", 0.5, 0.0, 3.0, "", "vector/pseudoscalar ratio for light mesons"),
    _s("StringFlav:mesonSvector", 0.55, 0.0, 3.0, "", "vector/pseudoscalar ratio for strange mesons"),
    _s("ClusterFission:maxMass", 3.35, 0.5, 20.0, "GeV",
       "ML hadronization: cluster mass scale above which clusters split (Herwig's Cluster:ClMax)"),
    _s("ClusterFission:power", 2.0, 0.5, 10.0, "",
       "ML hadronization: power p of the fission threshold (M_max^p + (m_a + m_b)^p)^(1/p) (Herwig's ClPow)"),
    _s("ClusterFission:pSplit", 1.0, 0.1, 10.0, "",
       "ML hadronization: exponent P_s of the fission children's mass fraction u^(1/P_s) (Herwig's PSplit)"),
]))


def describe(name: str) -> Setting:
    """The :class:`Setting` spec of ``name`` (``ValueError`` if unknown)."""
    if name not in SETTINGS:
        raise ValueError(unknown_setting_message(name, SETTINGS.keys()))
    return SETTINGS[name]


def unknown_setting_message(name, known=None) -> str:
    """The error text for an unknown setting ``name``: close matches among ``known`` (default: all)."""
    known = SETTINGS if known is None else known
    close = difflib.get_close_matches(str(name), list(known), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown setting name {name!r}.{hint} Known names: {', '.join(sorted(known))}."


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def range_text(spec: Setting) -> str:
    """The allowed range of a setting as text, e.g. ``[0, 2] GeV`` (``(`` for an open lower end)."""
    lb = "(" if spec.lo_open else "["
    return f"{lb}{spec.lo:g}, {spec.hi:g}]" + (f" {spec.unit}" if spec.unit else "")


def check_value(name: str, value) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is outside the range of ``name``."""
    spec = describe(name)
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" and arr.dtype.kind != "b":
        raise ValueError(f"setting {name!r} must be a real number, got {value!r} of type {type(value).__name__}")
    if arr.shape != ():
        raise ValueError(f"setting {name!r} must be a scalar, got shape {arr.shape}")
    v = float(arr)
    bad = (not math.isfinite(v)) or v > spec.hi or v < spec.lo or (spec.lo_open and v == spec.lo)
    if bad:
        raise ValueError(f"setting {name!r} = {v!r} is outside its allowed range {range_text(spec)}")


def _leaves(tree, prefix=()):
    """Yield (path, name, value) for every setting leaf of a params tree."""
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if isinstance(v, Mapping):
                yield from _leaves(v, prefix + (k,))
            elif isinstance(k, str) and ":" in k:
                yield prefix, k, v


def settings(params) -> dict[str, Any]:
    """Flat ``{setting name: value}`` view of a params tree.

    If the same name appears under several stages, they must hold the same value
    (they normally do: :func:`with_settings` sets all of them).
    """
    out: dict[str, Any] = {}
    for _, name, value in _leaves(params):
        out.setdefault(name, value)
    return out


def _set(tree, name, value):
    if not isinstance(tree, Mapping):
        return tree, 0
    new, hits = {}, 0
    for k, v in tree.items():
        if isinstance(v, Mapping):
            new[k], h = _set(v, name, value)
            hits += h
        elif k == name:
            new[k] = jnp.asarray(value, dtype=jnp.result_type(float))
            hits += 1
        else:
            new[k] = v
    return new, hits


def with_settings(params, changes: Mapping[str, Any]):
    """Return ``params`` with the named settings replaced.

    Raises ``ValueError`` for unknown names, names this generator does not use,
    and concrete values outside the physical range. Traced values pass through
    (stages flag out-of-range traced values in ``Events.status``).

    Example:
        >>> import diffgen
        >>> gen = diffgen.presets.ee_mumu()
        >>> p = diffgen.with_settings(gen.default_params(), {"23:m0": 91.2})
        >>> round(float(diffgen.settings(p)["23:m0"]), 4)
        91.2
    """
    if not isinstance(changes, Mapping):
        raise ValueError(f"with_settings expects a mapping of setting names to values, got {type(changes).__name__}")
    present = set(settings(params))
    for name, value in changes.items():
        if name not in SETTINGS:
            raise ValueError(unknown_setting_message(name, SETTINGS.keys()))
        if name not in present:
            raise ValueError(
                f"setting {name!r} is not used by this generator; its settings are: {', '.join(sorted(present))}")
        check_value(name, value)
    out = params
    for name, value in changes.items():
        out, _ = _set(out, name, value)
    return out


def check_params(params) -> None:
    """Validate every concrete setting in ``params`` (``ValueError`` on the first bad one)."""
    for _, name, value in _leaves(params):
        if name in SETTINGS:
            check_value(name, value)


def out_of_range(name: str, value):
    """Traced-safe boolean: is ``value`` outside the allowed range of ``name``?"""
    spec = SETTINGS[name]
    v = jnp.asarray(value)
    lo_bad = (v <= spec.lo) if spec.lo_open else (v < spec.lo)
    return lo_bad | (v > spec.hi) | ~jnp.isfinite(v)
