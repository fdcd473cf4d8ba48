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

__all__ = ["Setting", "SETTINGS", "DEFAULT_SQRT_S", "SWITCHES", "settings", "with_settings", "check_params",
           "out_of_range", "describe", "range_text", "unknown_setting_message", "parse_settings", "split_entry",
           "parse_switch", "stage_switches", "settings_and_switches", "structure_of"]


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
    _s("24:m0", 80.385, 1.0, 1.0e4, "GeV", "W boson pole mass"),
    _s("24:mWidth", 2.085, 0.0, 100.0, "GeV", "W boson total width (fixed-width Breit–Wigner)", lo_open=True),
    _s("StandardModel:sin2thetaW", 0.2312, 0.0, 0.999, "",
       "sin²θ_W in the Z normalisation 1/(16 s² c²)", lo_open=True),
    _s("StandardModel:sin2thetaWbar", 0.2315, 0.0, 1.0, "",
       "effective sin²θ̄_W in the vector couplings v = a − 4 sin²θ̄_W Q"),
    _s("StandardModel:alphaEMmZ", 0.00781751, 0.0, 0.1, "", "α_EM(m_Z²), run at first order", lo_open=True),
    _s("SigmaProcess:alphaSvalue", 0.130, 0.06, 0.25, "",
       "α_s(m_Z) of the hard process (QCD factor 1 + α_s/π for quarks)"),
    _s("TimeShower:alphaSvalue", 0.1365, 0.06, 0.25, "",
       "α_s(m_Z) of the final-state shower, one-loop running in pT² (alphaSorder = 1, no CMW, renormMultFac = 1)"),
    _s("TimeShower:pTmin", 0.5, 0.1, 10.0, "GeV",
       "shower cut-off in evolution pT; raised to 1.1 Λ₃ when below it, as in Pythia (differentiable)"),
    _s("StringZ:aLund", 0.68, 0.0, 2.0, "", "Lund symmetric fragmentation function a"),
    _s("StringZ:bLund", 0.98, 0.2, 2.0, "GeV^-2", "Lund symmetric fragmentation function b"),
    _s("StringPT:sigma", 0.335, 0.0, 1.0, "GeV", "string-breaking transverse-momentum width"),
    _s("StringFlav:probStoUD", 0.217, 0.0, 1.0, "", "s/u quark-pair production ratio in string breaks"),
    _s("StringFlav:mesonUDvector", 0.5, 0.0, 3.0, "", "vector/pseudoscalar ratio for light mesons"),
    _s("StringFlav:mesonSvector", 0.55, 0.0, 3.0, "", "vector/pseudoscalar ratio for strange mesons"),
    # baryons (diffgen.hadronization.flavour; Pythia 8.317 defaults = Monash, read from pythia8mc)
    _s("StringFlav:probQQtoQ", 0.081, 0.0, 1.0, "",
       "diquark/quark production ratio in string breaks (baryon/meson); 0 = mesons only"),
    _s("StringFlav:probSQtoQQ", 0.915, 0.0, 1.0, "",
       "extra suppression of strange diquarks beyond probStoUD (Pythia's tunnelling weights need > 0)",
       lo_open=True),
    _s("StringFlav:probQQ1toQQ0", 0.0275, 0.0, 1.0, "",
       "spin-1/spin-0 diquark ratio, beyond the factor 3 of spin counting (needs > 0)", lo_open=True),
    _s("StringFlav:decupletSup", 1.0, 0.0, 1.0, "", "suppression of spin-3/2 decuplet baryons relative to SU(6)"),
    _s("StringZ:aExtraDiquark", 0.97, 0.0, 2.0, "", "extra Lund a for a hadron made from a diquark end"),
    _s("StringFlav:popcornRate", 0.5, 0.0, 2.0, "",
       "relative rate of B M B̄ (popcorn meson between baryon and antibaryon) to B B̄ configurations"),
    _s("StringFlav:popcornSpair", 0.9, 0.0, 1.0, "",
       "extra suppression of an s s̄ pair shared by B and B̄ in a B M B̄ configuration"),
    _s("StringFlav:popcornSmeson", 0.5, 0.0, 1.0, "", "extra suppression of a strange popcorn meson M in B M B̄"),
    # the parametric detector (diffgen.detector; docs/detector.md). ALEPH numbers from D. Buskulic et al.
    # (ALEPH), "Performance of the ALEPH detector at LEP", Nucl. Instrum. Meth. A360 (1995) 481;
    # the efficiencies and angular widths are nominal values, not taken from that paper.
    _s("Detector:trackEfficiency", 0.98, 0.0, 1.0, "",
       "probability that a charged particle inside the tracker acceptance is reconstructed (nominal)"),
    _s("Detector:trackSigmaInvPtA", 6.0e-4, 0.0, 0.1, "GeV^-1",
       "constant term a of the track resolution σ(1/pT) = a ⊕ b/pT (ALEPH, NIM A360 (1995) 481)"),
    _s("Detector:trackSigmaInvPtB", 0.005, 0.0, 0.5, "",
       "multiple-scattering term b of σ(1/pT) = a ⊕ b/pT (ALEPH, NIM A360 (1995) 481)"),
    _s("Detector:trackSigmaTheta", 1.0e-3, 0.0, 0.1, "rad", "Gaussian smearing of a track's polar angle θ (nominal)"),
    _s("Detector:trackSigmaPhi", 1.0e-3, 0.0, 0.1, "rad", "Gaussian smearing of a track's azimuth φ (nominal)"),
    _s("Detector:ecalEfficiency", 0.98, 0.0, 1.0, "",
       "probability that a photon above threshold inside the ECAL acceptance makes a cluster (nominal)"),
    _s("Detector:ecalStochastic", 0.18, 0.0, 2.0, "GeV^1/2",
       "ECAL stochastic term s of σ(E)/E = s/√E ⊕ c (ALEPH, NIM A360 (1995) 481)"),
    _s("Detector:ecalConstant", 0.009, 0.0, 0.5, "", "ECAL constant term c of σ(E)/E = s/√E ⊕ c (ALEPH)"),
    _s("Detector:hcalEfficiency", 0.95, 0.0, 1.0, "",
       "probability that a neutral hadron above threshold inside the HCAL acceptance makes a cluster (nominal)"),
    _s("Detector:hcalStochastic", 0.85, 0.0, 3.0, "GeV^1/2",
       "HCAL stochastic term of σ(E)/E = s/√E ⊕ c (ALEPH, NIM A360 (1995) 481)"),
    _s("Detector:hcalConstant", 0.0, 0.0, 0.5, "", "HCAL constant term c of σ(E)/E = s/√E ⊕ c"),
    _s("ClusterFission:maxMass", 3.35, 0.5, 20.0, "GeV",
       "ML hadronization: cluster mass scale above which clusters split (Herwig's Cluster:ClMax)"),
    _s("ClusterFission:power", 2.0, 0.5, 10.0, "",
       "ML hadronization: power p of the fission threshold (M_max^p + (m_a + m_b)^p)^(1/p) (Herwig's ClPow)"),
    _s("ClusterFission:pSplit", 1.0, 0.1, 10.0, "",
       "ML hadronization: exponent P_s of the fission children's mass fraction u^(1/P_s) (Herwig's PSplit)"),
]))


#: Pythia's on/off switches that select which stages a generator has (its structure), with Pythia's
#: defaults. They are not parameters (no leaf in the params tree): :func:`diffgen.presets.make` turns
#: them into the preset's keyword arguments, and :func:`with_settings` accepts them only when they
#: agree with the stages the params tree already has.
SWITCHES: Mapping[str, str] = MappingProxyType({
    "PartonLevel:FSR": "final-state parton shower (stage 'shower')",
    "HadronLevel:all": "hadron level as a whole: hadronization and decays",
    "HadronLevel:Hadronize": "string fragmentation (stage 'hadronization')",
    "HadronLevel:Decay": "hadron decays (stage 'decays'; only after hadronization)",
})

_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


def parse_switch(name: str, value) -> bool:
    """A switch value as a bool: Pythia's ``on``/``off``, ``true``/``false``, ``yes``/``no``, ``1``/``0``.

    Example:
        >>> parse_switch("HadronLevel:Decay", "Off"), parse_switch("PartonLevel:FSR", 1)
        (False, True)
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"switch {name!r} = {value!r}: allowed values are on/off, true/false, yes/no, 1/0")


def _canonical_names() -> dict[str, str]:
    return {n.lower(): n for n in (*SETTINGS, *SWITCHES)}


def _strip_comment(line: str) -> str:
    for mark in ("!", "#"):
        if mark in line:
            line = line[:line.index(mark)]
    return line.strip()


def split_entry(entry: str, where: str) -> tuple[str, str]:
    """``'Group:name = value'`` (or Pythia's ``'Group:name value'``) as (name, value text); ``ValueError``
    naming ``where`` for a malformed entry. The one parser of a setting line (``.cmnd``, strings, ``--set``)."""
    if "=" in entry:
        name, _, value = entry.partition("=")
    else:
        name, _, value = entry.partition(" ")
    name, value = name.strip(), value.strip()
    if not name or ":" not in name or not value or " " in name:
        raise ValueError(f"{where}: malformed setting {entry!r}; expected 'Group:name = value', "
                         "e.g. 'StringZ:aLund = 0.7'")
    return name, value


def _number(name: str, text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{where}: setting {name!r} = {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: setting {name!r} = {text!r} must be finite")
    return v


def parse_settings(source, *, ignore_unknown: bool = False, where: str = "settings") -> dict[str, Any]:
    """Settings from Pythia-style text: ``{name: float}`` for parameters, ``{name: bool}`` for :data:`SWITCHES`.

    ``source`` is a multi-line string or an iterable of strings, each ``Group:name = value`` (the
    ``=`` may be left out, as Pythia allows). As in Pythia's ``readString``: names are matched
    without regard to case (and returned in their canonical spelling), blank lines and anything
    after ``!`` or ``#`` are comments, and a later line overrides an earlier one. A mapping is
    returned as a dict with canonical names (its values are kept as they are, traced ones included).

    Names diffgen does not know (most of Pythia's, e.g. ``Main:numberOfEvents``) raise one
    ``ValueError`` that lists all of them; with ``ignore_unknown=True`` they are dropped and the
    caller may report them (see :func:`diffgen.cmnd.read_settings`). Values are parsed here, not
    range-checked: :func:`with_settings` does that.

    Example:
        >>> parse_settings("StringZ:aLund = 0.7   ! Lund a\\nhadronlevel:decay = off")
        {'StringZ:aLund': 0.7, 'HadronLevel:Decay': False}
    """
    canonical = _canonical_names()
    if isinstance(source, Mapping):
        entries = [(str(k), v, f"{where}[{k!r}]") for k, v in source.items()]
    else:
        if isinstance(source, str):
            lines = source.splitlines()
        else:
            try:
                lines = list(source)
            except TypeError:
                raise ValueError(f"{where}: expected a mapping, a string or a list of strings, "
                                 f"got {type(source).__name__}") from None
        entries = []
        for i, line in enumerate(lines, 1):
            if not isinstance(line, str):
                raise ValueError(f"{where}: expected a mapping or 'Group:name = value' strings; entry {i} is "
                                 f"{type(line).__name__} {line!r}")
            text = _strip_comment(line)
            if text:
                name, value = split_entry(text, f"{where}, line {i}")
                entries.append((name, value, f"{where}, line {i}"))
    out: dict[str, Any] = {}
    unknown = []
    for name, value, loc in entries:
        key = canonical.get(name.lower())
        if key is None:
            unknown.append(name)
            continue
        if key in SWITCHES:
            try:
                out[key] = parse_switch(key, value)
            except ValueError as err:
                raise ValueError(f"{loc}: {err}") from None
        elif isinstance(value, str):
            out[key] = _number(key, value, loc)
        else:
            out[key] = value
    if unknown and not ignore_unknown:
        names = list(dict.fromkeys(unknown))
        known = list(canonical.values())
        hints = [f"{n!r} -> {', '.join(repr(c) for c in difflib.get_close_matches(n, known, n=2))}?"
                 for n in names if difflib.get_close_matches(n, known, n=2)]
        hint = f"Did you mean: {'; '.join(hints)} " if hints else ""
        raise ValueError(f"{where}: unknown setting name(s) {', '.join(repr(n) for n in names)}. {hint}"
                         f"diffgen knows: {', '.join(sorted((*SETTINGS, *SWITCHES)))} "
                         "(ignore_unknown=True, or --ignore-unknown, skips the others)")
    return out


def stage_switches(params) -> dict[str, bool]:
    """The :data:`SWITCHES` a params tree implies, from the stages it has (its top-level keys).

    Example:
        >>> stage_switches({"hard": {}, "shower": {}})["PartonLevel:FSR"]
        True
    """
    keys = set(params) if isinstance(params, Mapping) else set()
    return {"PartonLevel:FSR": "shower" in keys, "HadronLevel:all": bool({"hadronization", "decays"} & keys),
            "HadronLevel:Hadronize": "hadronization" in keys, "HadronLevel:Decay": "decays" in keys}


def settings_and_switches(settings_or_params: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: value}`` with the :data:`SWITCHES` a params tree implies, or a flat mapping as given.

    A params tree (stage name → mapping of settings) gives :func:`settings` followed by
    :func:`stage_switches`: all that is needed to rebuild the generator's stages and its values
    (what Pythia's ``writeFile`` writes). A flat ``{setting name: value}`` mapping is returned as a dict.

    Example:
        >>> settings_and_switches({"hard": {"Beams:eCM": 91.188}})["PartonLevel:FSR"]
        False
    """
    if any(isinstance(v, Mapping) for v in settings_or_params.values()):
        return {**settings(settings_or_params), **stage_switches(settings_or_params)}
    return dict(settings_or_params)


def structure_of(switches: Mapping[str, bool], base: Mapping[str, bool] | None = None) -> dict[str, bool]:
    """Which stages the :data:`SWITCHES` select, with Pythia's logic: ``{shower, hadronize, decays}``.

    ``base`` gives the switches not in ``switches`` (default: Pythia's, all on). Hadronization runs
    if ``HadronLevel:all`` and ``HadronLevel:Hadronize`` are on; decays if ``HadronLevel:all`` and
    ``HadronLevel:Decay`` are on and there are hadrons to decay.

    Example:
        >>> structure_of({"HadronLevel:Decay": False})
        {'shower': True, 'hadronize': True, 'decays': False}
    """
    s = {name: True for name in SWITCHES}
    s.update(base or {})
    s.update(switches)
    hadronize = s["HadronLevel:all"] and s["HadronLevel:Hadronize"]
    return {"shower": s["PartonLevel:FSR"], "hadronize": hadronize,
            "decays": hadronize and s["HadronLevel:all"] and s["HadronLevel:Decay"]}


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


def _like(old, value):
    """``value`` in the form of the leaf it replaces, so that a jitted generator sees the same signature
    (shape, dtype, weak type) and does not recompile: a Python number stays a Python float, an array keeps
    its dtype. Traced values pass through as arrays."""
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(old, (int, float)) and not isinstance(old, bool) and np.ndim(value) == 0:
        return float(np.asarray(value))
    return jnp.asarray(value, dtype=getattr(old, "dtype", None) or jnp.result_type(float))


def _set(tree, name, value):
    if not isinstance(tree, Mapping):
        return tree, 0
    new, hits = {}, 0
    for k, v in tree.items():
        if isinstance(v, Mapping):
            new[k], h = _set(v, name, value)
            hits += h
        elif k == name:
            new[k] = _like(v, value)
            hits += 1
        else:
            new[k] = v
    return new, hits


def with_settings(params, changes: Mapping[str, Any]):
    """Return ``params`` with the named settings replaced.

    ``changes`` is a mapping ``{name: value}``, or Pythia-style text: a multi-line string or a list
    of ``"Group:name = value"`` strings (see :func:`parse_settings`). The :data:`SWITCHES`
    (``HadronLevel:Decay = off``, …) select stages, which a params tree cannot change: they are
    accepted when they agree with the stages ``params`` has, and otherwise raise ``ValueError``
    pointing to ``diffgen.presets.make(process, settings=...)``.

    Raises ``ValueError`` for unknown names, names this generator does not use,
    and concrete values outside the physical range. Traced values pass through
    (stages flag out-of-range traced values in ``Events.status``).

    Example:
        >>> import diffgen
        >>> gen = diffgen.presets.ee_mumu()
        >>> p = diffgen.with_settings(gen.default_params(), {"23:m0": 91.2})
        >>> round(float(diffgen.settings(p)["23:m0"]), 4)
        91.2
        >>> p = diffgen.with_settings(p, ["23:m0 = 91.1", "23:mWidth = 2.5  ! a comment"])
        >>> round(float(diffgen.settings(p)["23:mWidth"]), 4)
        2.5
    """
    if not isinstance(changes, Mapping):
        if isinstance(changes, (bytes, int, float)) or changes is None:
            raise ValueError("with_settings expects a mapping of setting names to values or 'Group:name = value' "
                             f"strings, got {type(changes).__name__}")
        changes = parse_settings(changes, where="with_settings")
    changes = dict(changes)
    switches = {k: parse_switch(k, changes.pop(k)) for k in list(changes) if k in SWITCHES}
    if switches:
        have = stage_switches(params)
        want = structure_of(switches, have)
        now = structure_of(have)
        if want != now:
            diff = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in switches.items())
            raise ValueError(f"switches {diff} change the generator's stages ({now} -> {want}), which a params tree "
                             "cannot do; build the generator with them instead: "
                             "diffgen.presets.make(process, settings={...})")
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
