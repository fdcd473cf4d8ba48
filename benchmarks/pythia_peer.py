"""Pythia 8 (the ``pythia8mc`` wheel) as the reference peer for validation and benchmarks.

This module is not part of the installed ``diffgen`` package: it lives next to the benchmarks
(``benchmarks/pythia_peer.py``), which import it as ``import pythia_peer`` (a script's own folder
is on ``sys.path``); ``tests/conftest.py`` puts ``benchmarks/`` on ``sys.path`` for the tests.

Everything runs e⁺e⁻ collisions at a fixed √s with point-like beams
(``PDF:lepton = off``: no ISR, no beamstrahlung, no beam spread), electron
(``Beams:idA = 11``) along +z. ``pythia8mc`` is imported lazily, so importing
this module never needs it; every entry point raises
``ImportError("pythia8mc is not installed: pip install 'diffgen[peers]'")`` when it
is missing, and :func:`available` tells beforehand.

Processes (as in Pythia 8.317):

* ``"ffbar2ffbar"`` — ``WeakSingleBoson:ffbar2ffbar(s:gmZ)``, the 2 → 2 process
  e⁺e⁻ → γ*/Z → f f̄ (``Sigma2ffbar2ffbarsgmZ``). The outgoing flavours are the
  *open Z decay channels* (``23:onMode = off`` + ``23:onIfAny = …``), restricted to
  d…b, e…ν_τ. The matrix element uses massless kinematics, so Pythia imposes its
  divergence cut ``pT̂ > PhaseSpace:pTHatMinDiverge`` (default 1 GeV, lowest
  allowed 0.5 GeV): the σ it reports is the full-angle σ times
  :func:`pt_hat_acceptance` (−0.083 % at √s = 60 GeV, −0.036 % at 91.188,
  −0.018 % at 130). σ is a Monte-Carlo estimate (≈0.2 % at 10⁵ events).
* ``"ffbar2gmZ"`` — ``WeakSingleBoson:ffbar2gmZ``, the 2 → 1 process with the
  γ*/Z decay done by the resonance machinery. At fixed √s its σ is exact (no
  angular cut, MC error ~1e-8 relative) and equal to the full-angle integral of
  the 2 → 2 formula; this is also what :func:`ee_hadrons_events` runs
  (Pythia's LEP setup, main06).

Both share one normalisation (``SigmaEW.cc``). With s = E_cm², c = cos θ̂ and
massless kinematics (t̂ = −s(1−c)/2), per outgoing flavour f::

    dσ/dt̂ = π α²/s² · [ T (1+c²) + L (1−c²) + 2 A c ]
    T = C β [ e_e² e_f² + e_e v_e e_f v_f · 2κ s (s−m_Z²)/D + (v_e²+a_e²)(v_f² + a_f² β²) · κ² s²/D ]
    A = C β [ e_e a_e e_f a_f · 2κ s (s−m_Z²)/D + 4 v_e a_e v_f a_f · κ² s²/D ]
    L = 4m_f²/s · (T with a_f → 0)
    D = (s − m_Z²)² + (s Γ_Z/m_Z)²   (s-dependent width),  κ = 1/(16 sin²θ_W cos²θ_W),
    v_f = a_f − 4 e_f sin²θ̄_W,  a_f = ±1 (= 2T₃),  β = √(1 − 4m_f²/s),
    C = 3 (1 + α_s(s)/π) for quarks, 1 for leptons,

so the massless full-angle σ = 4πα²/(3s) · T/β. α = α_EM(s) of :func:`alpha_em` and
α_s(s) first-order from ``SigmaProcess:alphaSvalue`` (the renormalisation scale of an
s-channel process is ŝ); 1 GeV⁻² = 0.389380 mb. Γ_Z is the width Pythia
*recomputes* at init (2.50419 GeV with the defaults, not the 2.4952 GeV of its
particle table); see :func:`default_settings`.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from diffgen.checks import check_int, check_optional_int
from diffgen.params import DEFAULT_SQRT_S

__all__ = [
    "MIRRORED_SETTINGS", "available", "ee_ffbar_sigma", "ee_ffbar_events", "ee_hadrons_events",
    "time_events", "default_settings", "alpha_em", "alpha_s", "pt_hat_acceptance",
]

_INSTALL_HINT = "pythia8mc is not installed: pip install 'diffgen[peers]'"
MB_TO_PB = 1.0e9
_MAX_SEED = 900_000_000
_FFBAR_FLAVOURS = (1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 16)  # what Sigma2ffbar2ffbarsgmZ can produce
_PROCESSES = {
    "ffbar2ffbar": "WeakSingleBoson:ffbar2ffbar(s:gmZ) = on",
    "ffbar2gmZ": "WeakSingleBoson:ffbar2gmZ = on",
}

#: The Pythia settings diffgen mirrors (names as in :data:`diffgen.params.SETTINGS`).
MIRRORED_SETTINGS = (
    "23:m0", "23:mWidth",
    "StandardModel:sin2thetaW", "StandardModel:sin2thetaWbar", "StandardModel:alphaEMmZ",
    "SigmaProcess:alphaSvalue", "TimeShower:alphaSvalue", "TimeShower:pTmin",
    "StringZ:aLund", "StringZ:bLund", "StringPT:sigma",
    "StringFlav:probStoUD", "StringFlav:mesonUDvector", "StringFlav:mesonSvector",
)

Settings = Mapping[str, Any] | Iterable[str] | str | None


def available() -> bool:
    """True if ``pythia8mc`` can be imported."""
    try:
        _module()
    except ImportError:
        return False
    return True


def _module():
    try:
        import pythia8mc
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return pythia8mc


# --------------------------------------------------------------------------- settings plumbing

def _format(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "on" if value else "off"
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), ".17g")
    if isinstance(value, Iterable):
        return " ".join(_format(v) for v in value)
    return str(value)


def _lines(settings: Settings) -> list[str]:
    """User settings as ``"Name = value"`` lines: a mapping, one string, or an iterable of strings."""
    if settings is None:
        return []
    if isinstance(settings, str):
        return [settings]
    if isinstance(settings, Mapping):
        return [f"{k} = {_format(v)}" for k, v in settings.items()]
    return [str(s) for s in settings]


def _seed(seed: int) -> int:
    return check_int(seed, "seed", lo=1, hi=_MAX_SEED, what="Pythia's Random:seed")


def _beams(sqrt_s: float) -> list[str]:
    sqrt_s = float(sqrt_s)
    if not (math.isfinite(sqrt_s) and sqrt_s > 0.0):
        raise ValueError(f"sqrt_s must be a positive finite energy in GeV, got {sqrt_s!r}")
    return ["Beams:idA = 11", "Beams:idB = -11", f"Beams:eCM = {_format(sqrt_s)}", "PDF:lepton = off"]


def _flavours(flavours: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted({abs(int(f)) for f in ([flavours] if isinstance(flavours, numbers.Integral) else flavours)}))
    bad = [f for f in out if f not in _FFBAR_FLAVOURS]
    if not out or bad:
        raise ValueError(f"flavours must be a non-empty subset of {_FFBAR_FLAVOURS} (|PDG id|), got {flavours!r}")
    return out


def _process(process: str) -> str:
    if process not in _PROCESSES:
        raise ValueError(f"process must be one of {sorted(_PROCESSES)}, got {process!r}")
    return _PROCESSES[process]


def _ffbar_lines(sqrt_s, flavours, process) -> list[str]:
    return [
        *_beams(sqrt_s), _process(process),
        "23:onMode = off", f"23:onIfAny = {_format(_flavours(flavours))}",
        "PartonLevel:all = off", "HadronLevel:all = off",
    ]


def _hadrons_lines(sqrt_s, flavours: Iterable[int] = (1, 2, 3, 4, 5)) -> list[str]:
    # Monash (the 8.3 default tune); FSR, hadronization and decays at their defaults. The γ*/Z mass window
    # (23:mMin, PhaseSpace:mHatMin: 10 and 4 GeV by default) is opened below 20 GeV.
    low = ["23:mMin = 1.0", "PhaseSpace:mHatMin = 1.0"] if sqrt_s < 20.0 else []
    return [*_beams(sqrt_s), _PROCESSES["ffbar2gmZ"], "23:onMode = off",
            "23:onIfAny = " + " ".join(str(f) for f in _flavours(flavours)), *low]


def _pythia(lines: list[str], seed: int = 1, settings: Settings = None):
    """A quiet, initialised ``pythia8mc.Pythia``; user ``settings`` are applied last (they win)."""
    p8 = _module()
    py = p8.Pythia("", False)
    all_lines = ["Print:quiet = on", *lines, "Random:setSeed = on", f"Random:seed = {_seed(seed)}",
                 *_lines(settings)]
    for line in all_lines:
        if not py.readString(line):
            raise ValueError(f"Pythia rejected the setting {line!r}")
    if not py.init():
        raise RuntimeError(f"Pythia failed to initialise with settings {all_lines}")
    return py


def _next(py, n_failed: list[int], limit: int) -> None:
    while not py.next():
        n_failed[0] += 1
        if n_failed[0] > limit:
            raise RuntimeError(f"Pythia failed to generate {n_failed[0]} events")


def _sigma(py) -> tuple[float, float]:
    info = py.infoPython()
    return info.sigmaGen() * MB_TO_PB, info.sigmaErr() * MB_TO_PB


def _count(n_events) -> int:
    return check_int(n_events, "n_events", lo=1)


def _p4(p) -> tuple[float, float, float, float]:
    return p.e(), p.px(), p.py(), p.pz()


# --------------------------------------------------------------------------- public API

def ee_ffbar_sigma(sqrt_s: float, flavours: Iterable[int] = (13,), n_events: int = 20000, seed: int = 1,
                   settings: Settings = None, process: str = "ffbar2ffbar") -> tuple[float, float]:
    """Pythia's σ(e⁺e⁻ → γ*/Z → f f̄) in pb and its error, without ISR.

    ``flavours`` are the |PDG ids| of the outgoing fermions (summed). With
    ``process="ffbar2ffbar"`` (the 2 → 2 process) σ is a Monte-Carlo estimate over
    ``n_events`` events and includes Pythia's cut pT̂ > ``PhaseSpace:pTHatMinDiverge``
    (1 GeV; see :func:`pt_hat_acceptance`); with ``process="ffbar2gmZ"`` it is the
    exact full-angle σ. ``settings`` (``{"Name": value}`` or ``"Name = value"``
    strings) override anything, e.g. ``{"23:mWidth": 2.4952, "23:doForceWidth": True}``.
    """
    n = _count(n_events)
    py = _pythia(_ffbar_lines(sqrt_s, flavours, process), seed, settings)
    failed = [0]
    for _ in range(n):
        _next(py, failed, max(100, n))
    return _sigma(py)


def ee_ffbar_events(sqrt_s: float, n_events: int, flavours: Iterable[int] = (13,), seed: int = 1,
                    settings: Settings = None, process: str = "ffbar2ffbar") -> dict[str, Any]:
    """``n_events`` hard-process events e⁺e⁻ → γ*/Z → f f̄ (no ISR, no shower).

    Returns numpy arrays, four-vectors as ``(E, px, py, pz)`` in GeV like diffgen's
    :class:`~diffgen.events.Events`:

    * ``p_f``, ``p_fbar``: f[N, 4] the outgoing fermion / antifermion,
    * ``pid``: i[N] |PDG id| of the fermion,
    * ``cos_theta``: f[N] polar angle of the *fermion* w.r.t. the e⁻ beam (+z)
      (A_FB = ⟨sign cos θ⟩ with the usual sign convention),
    * ``weight``: f[N] Pythia's event weights (1 for these unweighted events),
    * ``sigma_pb``, ``error_pb``: Pythia's σ estimate from the same run.
    """
    n = _count(n_events)
    py = _pythia(_ffbar_lines(sqrt_s, flavours, process), seed, settings)
    p_f = np.zeros((n, 4))
    p_fbar = np.zeros((n, 4))
    pid = np.zeros(n, dtype=np.int32)
    weight = np.zeros(n)
    info = py.infoPython()
    failed = [0]
    for i in range(n):
        _next(py, failed, max(100, n))
        f, fbar = _hard_pair(py.process)
        p_f[i], p_fbar[i], pid[i] = _p4(f), _p4(fbar), f.id()
        weight[i] = info.weight()
    pabs = np.linalg.norm(p_f[:, 1:], axis=1)
    cos_theta = np.divide(p_f[:, 3], pabs, out=np.zeros(n), where=pabs > 0)
    sigma, error = _sigma(py)
    return {"p_f": p_f, "p_fbar": p_fbar, "pid": pid, "cos_theta": cos_theta, "weight": weight,
            "sigma_pb": sigma, "error_pb": error}


def _hard_pair(process_record):
    """The outgoing f and f̄ of the hard process (status 23 in Pythia's process record)."""
    f = fbar = None
    for j in range(process_record.size()):
        p = process_record[j]
        if p.status() == 23:
            if p.id() > 0:
                f = p
            else:
                fbar = p
    if f is None or fbar is None:
        raise RuntimeError("no outgoing f fbar pair (status 23) in Pythia's process record")
    return f, fbar


def ee_hadrons_events(sqrt_s: float, n_events: int, seed: int = 1, settings: Settings = None,
                      max_multiplicity: int | None = None, flavours: Iterable[int] = (1, 2, 3, 4, 5)
                      ) -> dict[str, Any]:
    """Full e⁺e⁻ → γ*/Z → q q̄ (q = d…b) → hadrons events, Monash defaults, no ISR.

    Process ``WeakSingleBoson:ffbar2gmZ`` with ``23:onIfAny = 1 2 3 4 5`` (``flavours``); FSR,
    hadronization and particle decays on at Pythia's defaults. Final-state
    particles are padded to ``max_multiplicity`` (default: the largest one seen;
    ``ValueError`` if an event has more). Returns numpy arrays:

    * ``p4``: f[N, P, 4] ``(E, px, py, pz)`` in GeV, zero in padded slots,
    * ``pid``: i[N, P] signed PDG ids, 0 in padded slots; ``mask``: bool[N, P],
    * ``n``: i[N] multiplicities; ``quark``: i[N] |id| of the primary quark,
    * ``weight``: f[N]; ``sigma_pb``, ``error_pb``: Pythia's σ (exact for this 2 → 1 process).
    """
    n = _count(n_events)
    max_multiplicity = check_optional_int(max_multiplicity, "max_multiplicity", lo=1)
    py = _pythia(_hadrons_lines(sqrt_s, flavours), seed, settings)
    info = py.infoPython()
    rows: list[list[tuple[float, float, float, float, int]]] = []
    quark = np.zeros(n, dtype=np.int32)
    weight = np.zeros(n)
    failed = [0]
    for i in range(n):
        _next(py, failed, max(100, n))
        rows.append([(*_p4(p), p.id()) for p in py.event if p.isFinal()])
        quark[i] = _hard_pair(py.process)[0].idAbs()
        weight[i] = info.weight()
    mult = np.array([len(r) for r in rows], dtype=np.int32)
    width = int(mult.max()) if max_multiplicity is None else max_multiplicity
    if mult.max() > width:
        raise ValueError(f"an event has {int(mult.max())} final-state particles > max_multiplicity={width}")
    p4 = np.zeros((n, width, 4))
    pid = np.zeros((n, width), dtype=np.int32)
    for i, r in enumerate(rows):
        if r:
            a = np.asarray(r)
            p4[i, : len(r)] = a[:, :4]
            pid[i, : len(r)] = a[:, 4].astype(np.int32)
    sigma, error = _sigma(py)
    return {"p4": p4, "pid": pid, "mask": pid != 0, "n": mult, "quark": quark, "weight": weight,
            "sigma_pb": sigma, "error_pb": error}


def time_events(config_kind: str, sqrt_s: float = DEFAULT_SQRT_S, n_events: int = 2000, seed: int = 1,
                settings: Settings = None) -> float:
    """Pythia's generation rate in events per second (initialisation not timed).

    ``"hard"``: e⁺e⁻ → γ*/Z → μ⁺μ⁻ hard process only (2 → 2, ``PartonLevel:all`` and
    ``HadronLevel:all`` off); ``"full"``: the :func:`ee_hadrons_events` chain
    (γ*/Z → hadrons with FSR, hadronization and decays). Single-threaded.
    """
    if config_kind == "hard":
        lines = _ffbar_lines(sqrt_s, (13,), "ffbar2ffbar")
    elif config_kind == "full":
        lines = _hadrons_lines(sqrt_s)
    else:
        raise ValueError(f"config_kind must be 'hard' or 'full', got {config_kind!r}")
    n = _count(n_events)
    py = _pythia(lines, seed, settings)
    failed = [0]
    start = time.perf_counter()
    for _ in range(n):
        _next(py, failed, max(100, n))
    return n / (time.perf_counter() - start)


@functools.lru_cache(maxsize=8)
def _default_settings(lines: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    py = _pythia(_hadrons_lines(DEFAULT_SQRT_S), 1, list(lines))
    out = {"23:m0": py.particleData.m0(23), "23:mWidth": py.particleData.mWidth(23)}
    out.update({k: py.settings.parm(k) for k in MIRRORED_SETTINGS if k not in out})
    return tuple(out.items())


def default_settings(settings: Settings = None) -> dict[str, float]:
    """The values of :data:`MIRRORED_SETTINGS` as Pythia uses them after ``init()``.

    ``23:mWidth`` is the width Pythia recomputes from its couplings at init
    (``ResonanceGmZ``: Γ_Z = Σ_f α_EM(m_Z²) m_Z/(48 s²_W c²_W) β (v_f²(1+2m_f²/m_Z²) + a_f²β²)
    × 3(1+α_s(m_Z²)/π) for quarks = 2.50419 GeV by default, not the table's 2.4952 GeV).
    In Pythia 8.317 a user ``23:mWidth`` is overwritten even with
    ``23:doForceWidth = on``: Γ_Z can only be moved through ``23:m0`` and the couplings.
    ``settings`` are applied before init.
    """
    return dict(_default_settings(tuple(_lines(settings))))


def _couplings(settings: Settings):
    return _pythia(_ffbar_lines(DEFAULT_SQRT_S, (13,), "ffbar2gmZ"), 1, settings).coupSM


def alpha_em(q2, settings: Settings = None) -> np.ndarray:
    """Pythia's running α_EM(Q²) as used in hard processes (``SigmaProcess:alphaEMorder = 1``).

    First-order running with effective thresholds Q² = (0.26e-6, 0.011, 0.25, 3.5, 90) GeV²,
    coefficients b = (0.1061, 0.2122, fitted, 0.700, 0.725) and the normalisation
    α(91.188²) = ``StandardModel:alphaEMmZ`` (91.188 is hard-coded, not ``23:m0``).
    """
    c = _couplings(settings)
    q2 = np.asarray(q2, dtype=float)
    return np.vectorize(lambda x: c.alphaEM(float(x)), otypes=[float])(q2)


def alpha_s(q2, settings: Settings = None) -> np.ndarray:
    """Pythia's α_s(Q²) of hard processes (``SigmaProcess:alphaSvalue``, first-order running)."""
    c = _couplings(settings)
    q2 = np.asarray(q2, dtype=float)
    return np.vectorize(lambda x: c.alphaS(float(x)), otypes=[float])(q2)


def pt_hat_acceptance(sqrt_s: float, pt_hat_min: float = 1.0) -> float:
    """Fraction of the massless 2 → 2 σ kept by Pythia's cut pT̂ > ``pt_hat_min``.

    The cut is |cos θ| < c₀ = √(1 − 4 pT̂²/s); the forward-backward term cancels, so
    the fraction is (3c₀ + c₀³)/4 for any γ*/Z mixture. Multiply a full-angle σ by
    this to compare with :func:`ee_ffbar_sigma` (``process="ffbar2ffbar"``).
    """
    c0 = math.sqrt(max(0.0, 1.0 - 4.0 * pt_hat_min**2 / float(sqrt_s) ** 2))
    return (3.0 * c0 + c0**3) / 4.0
