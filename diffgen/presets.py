"""Ready-made generators with physical defaults.

Example:
    >>> import jax, diffgen
    >>> gen = diffgen.presets.ee_mumu()  # √s = diffgen.params.DEFAULT_SQRT_S = 91.188 GeV
    >>> params = gen.default_params()
    >>> sigma, err = diffgen.cross_section(gen, params, jax.random.key(1), 10_000)

Pythia-style settings, switches included, build the generator and its params in one call:

    >>> gen, params = diffgen.presets.configure("ee-hadrons", ["Beams:eCM = 91.2", "HadronLevel:Decay = off",
    ...                                                        "StringZ:aLund = 0.7"])
    >>> "decays" in params, round(float(diffgen.settings(params)["StringZ:aLund"]), 3)
    (False, 0.7)
"""

from __future__ import annotations

from diffgen.params import (
    DEFAULT_SQRT_S,
    SWITCHES,
    check_value,
    parse_settings,
    structure_of,
    with_settings,
)
from diffgen.params import settings as flat_settings
from diffgen.processes import check_alpha_s_pole, ee_to_ffbar
from diffgen.stage import Generator, chain

__all__ = ["ee_mumu", "ee_qq", "ee_hadrons", "PROCESSES", "make", "configure", "hadron_threshold",
           "HADRONIZATION_MODELS"]

#: the hadronization models of :func:`ee_hadrons`: Lund strings (default) or the ML cluster layer
HADRONIZATION_MODELS = ("string", "ml")


def ee_mumu(sqrt_s: float = DEFAULT_SQRT_S) -> Generator:
    """e+e- → γ*/Z → μ+μ- at √s = ``sqrt_s`` GeV (no ISR), Pythia 8.3 electroweak conventions."""
    return Generator(chain(("hard", ee_to_ffbar((13,), sqrt_s))), name="ee-mumu",
                     info={"process": "ee-mumu", "flavours": (13,), "sqrt_s": sqrt_s})


def ee_qq(sqrt_s: float = DEFAULT_SQRT_S, flavours=(1, 2, 3, 4, 5)) -> Generator:
    """e+e- → γ*/Z → q q̄ summed over ``flavours`` (u, d, s massless; c, b with Pythia masses).

    The quark channels carry Pythia's QCD factor 3(1 + α_s/π) (``SigmaProcess:alphaSvalue``).
    ``sqrt_s`` must be above :func:`hadron_threshold`, as for :func:`ee_hadrons`: below it a q q̄
    pair cannot turn into hadrons, and the one-loop α_s(√s) reaches its Landau pole just below
    it (0.2517 GeV for the default α_s(m_Z) = 0.13, against a threshold of 0.28 GeV for u, d, s).
    """
    flavours = tuple(flavours)
    if any(abs(int(f)) > 5 or int(f) <= 0 for f in flavours):
        raise ValueError(f"ee_qq flavours must be quark PDG codes in 1..5, got {flavours}")
    check_value("Beams:eCM", sqrt_s)
    if sqrt_s <= hadron_threshold(flavours):
        raise ValueError(f"sqrt_s = {sqrt_s} GeV is below the hadron-production threshold of ee-qq (a q qbar "
                         f"pair of flavours {flavours} must be able to form two mesons; just below it alpha_s "
                         f"reaches its Landau pole): allowed sqrt_s > {hadron_threshold(flavours):.4g} GeV")
    return Generator(chain(("hard", ee_to_ffbar(flavours, sqrt_s))), name="ee-qq",
                     info={"process": "ee-qq", "flavours": flavours, "sqrt_s": sqrt_s})


def hadron_threshold(flavours=(1, 2, 3, 4, 5)) -> float:
    """GeV: the lowest √s at which a q q̄ string of one of ``flavours`` can fragment (two mesons).

    Example:
        >>> round(hadron_threshold((1, 2, 3)), 3)
        0.28
    """
    import jax

    from diffgen.hadronization.flavour import min_two_meson_mass
    from diffgen.hadronization.string import LIGHT_MARGIN

    with jax.ensure_compile_time_eval():  # a host number even when a generator is built inside a trace
        return min(float(min_two_meson_mass(int(f), int(f))) for f in flavours) + LIGHT_MARGIN


def ee_hadrons(sqrt_s: float = DEFAULT_SQRT_S, flavours=(1, 2, 3, 4, 5), shower: bool = True, decays: bool = True,
               me_correction: bool = True, hadronize: bool = True, shower_capacity: int | None = None,
               hadron_capacity: int | None = None, final_capacity: int | None = None,
               detector=None, hadronization: str = "string", record: bool = False,
               string_gradient: str = "score") -> Generator:
    """e+e- → γ*/Z → q q̄ → parton shower → Lund strings (or the ML cluster layer) → hadron decays, no ISR.

    Stages (params keyed by these names): ``hard`` (:func:`diffgen.processes.ee_to_ffbar`),
    ``shower`` (:func:`diffgen.shower.final_state_shower`, first emission matched to the
    O(α_s) matrix element), ``hadronization`` (:func:`diffgen.hadronization.string_fragmentation`)
    and ``decays`` (:func:`diffgen.decays.hadron_decays`). The tune parameters
    ``TimeShower:alphaSvalue``, ``TimeShower:pTmin``, ``StringZ:aLund``, ``StringZ:bLund``,
    ``StringPT:sigma``, ``StringFlav:probStoUD`` (and the vector-meson fractions) have Pythia 8.3
    Monash defaults and are differentiable (pathwise, score-function and implicit gradients).
    ``shower=False`` hadronizes the bare q q̄ pair; ``decays=False`` keeps the primary hadrons;
    ``hadronize=False`` stops at the partons (and has no decays stage: there is nothing to decay).
    These are Pythia's ``PartonLevel:FSR``, ``HadronLevel:Decay`` and ``HadronLevel:Hadronize`` (see
    :func:`configure`). With hadronization, ``sqrt_s`` must be above :func:`hadron_threshold`.

    ``detector``: ``None`` (default) ends at particle level; a name from
    :data:`diffgen.detector.CONFIGS` (``"aleph"``) or a :class:`~diffgen.detector.DetectorConfig`
    appends the stage ``detector`` (:func:`diffgen.detector.parametric`), whose events are the
    reconstructed particles with the particle-level record paired in ``events.truth``; a trained
    :class:`~diffgen.detector.LearnedDetectorModel` (e.g. ``diffgen.detector.load_checkpoint(path)``)
    appends the learned surrogate :func:`diffgen.detector.learned` as ``detector`` instead.
    ``hadronization="ml"`` replaces the strings by the ML cluster layer
    (:func:`diffgen.hadronization.ml_hadronization`, untrained weights unless you put trained ones in
    ``params["hadronization"]["net"]``, see :mod:`diffgen.hadronization.train`).

    ``string_gradient``: the strings' estimator for z and pT, ``"score"`` (default) or ``"pathwise"``
    (``string_fragmentation(continuous=...)``: the same events; the score estimator's gradients in a, b and σ
    have far lower variance, docs/gradients.md). It applies to the Lund strings only.

    ``record=True`` (the CLI's ``--record full``) also keeps the full event record in ``events.record``
    (:class:`~diffgen.events.Record`): the hard process (γ*/Z, status 22, and its q q̄, 23; stage
    ``record_hard``), the partons after the shower (71; stage ``record``), the primary hadrons, every decay
    with its mother link, HepMC status codes; the HepMC3 writer then writes it as a vertex graph. The
    final state (``p4``/``pid``/``mask``) is the same either way.
    """
    from diffgen.decays import hadron_decays, record_hard_process, record_partons
    from diffgen.detector import LearnedDetectorModel, learned, parametric
    from diffgen.hadronization import string_fragmentation
    from diffgen.shower import final_state_shower

    if hadronization not in HADRONIZATION_MODELS:
        raise ValueError(f"unknown hadronization model {hadronization!r}; allowed: {', '.join(HADRONIZATION_MODELS)}")
    flavours = tuple(flavours)
    if any(abs(int(f)) > 5 or int(f) <= 0 for f in flavours):
        raise ValueError(f"ee_hadrons flavours must be quark PDG codes in 1..5, got {flavours}")
    for name, flag in (("shower", shower), ("decays", decays), ("hadronize", hadronize),
                       ("me_correction", me_correction), ("record", record)):
        if not isinstance(flag, bool):
            raise ValueError(f"ee_hadrons {name} must be True or False, got {flag!r}")
    if hadronize and sqrt_s <= hadron_threshold(flavours):
        raise ValueError(f"sqrt_s = {sqrt_s} GeV is below the hadron-production threshold of ee-hadrons "
                         f"(two mesons from a q qbar string of flavours {flavours}): allowed sqrt_s > "
                         f"{hadron_threshold(flavours):.4g} GeV")
    if string_gradient not in ("pathwise", "score"):
        raise ValueError(f"ee_hadrons string_gradient must be 'pathwise' or 'score', got {string_gradient!r}")
    if detector is None:
        det = None
    elif isinstance(detector, LearnedDetectorModel):
        det = learned(detector)
    else:
        det = parametric(detector)  # ValueError for an unknown name, before building
    if det is not None and not hadronize:
        raise ValueError("a detector needs hadrons: detector is set but hadronize=False (HadronLevel:Hadronize = off)")
    stages = [("hard", ee_to_ffbar(flavours, sqrt_s))]
    if shower:
        kw = {} if shower_capacity is None else {"capacity": shower_capacity}
        stages.append(("shower", final_state_shower(me_correction=me_correction, **kw)))
    hadron_kw = {} if hadron_capacity is None else {"capacity": hadron_capacity}
    if hadronize and hadronization == "ml":
        from diffgen.hadronization.ml import ml_hadronization

        stages.append(("hadronization", ml_hadronization(**hadron_kw)))
    elif hadronize:
        stages.append(("hadronization", string_fragmentation(continuous=string_gradient, **hadron_kw)))
    if record and det is not None:
        raise ValueError("record=True keeps the particle-level history; it cannot be combined with a detector "
                         "(the events would be reconstructed particles with a particle-level record)")
    if record and not hadronize:
        raise ValueError("record=True keeps the hadron-level history: it needs hadronize=True "
                         "(HadronLevel:Hadronize = on)")
    if record:  # the hard process enters the record before the shower, the partons before the strings
        stages.insert(1, ("record_hard", record_hard_process()))
        stages.insert(len(stages) - 1, ("record", record_partons()))
    final_kw = {} if final_capacity is None else {"capacity": final_capacity}
    if hadronize and (decays or record):  # without decays the record still lists the primary hadrons
        stages.append(("decays", hadron_decays(**final_kw, record=record, enabled=decays)))
    info = {"process": "ee-hadrons", "flavours": flavours, "sqrt_s": sqrt_s, "final_state": hadronize,
            "hadronization": hadronization}
    if det is not None:
        stages.append(("detector", det))
        info["detector"] = (detector if isinstance(detector, str) else
                            f"learned:{detector.config.name}" if isinstance(detector, LearnedDetectorModel)
                            else detector.name)
    return Generator(chain(*stages), name="ee-hadrons", info=info)


PROCESSES = {"ee-mumu": ee_mumu, "ee-qq": ee_qq, "ee-hadrons": ee_hadrons}


#: The stages each preset has with every switch on: the switches can only remove stages.
_STAGES = {"ee-mumu": {"shower": False, "hadronize": False, "decays": False},
           "ee-qq": {"shower": False, "hadronize": False, "decays": False},
           "ee-hadrons": {"shower": True, "hadronize": True, "decays": True}}


def _structure_kwargs(process: str, switches) -> dict:
    """The preset keyword arguments the :data:`~diffgen.params.SWITCHES` select (``ValueError`` if impossible)."""
    full = _STAGES[process]
    base = {"PartonLevel:FSR": full["shower"], "HadronLevel:Hadronize": full["hadronize"],
            "HadronLevel:Decay": full["decays"]}
    want = structure_of(switches, base)
    extra = [k for k, v in want.items() if v and not full[k]]
    if extra:
        on = ", ".join(f"{k} = on" for k in switches if switches[k])
        raise ValueError(f"process {process!r} has no {' or '.join(extra)} stage, so {on} cannot apply; "
                         "use --process ee-hadrons (diffgen.presets.ee_hadrons) for showers and hadrons")
    return {k: v for k, v in want.items() if full[k]}  # only the keywords the preset has


def make(process: str, sqrt_s: float | None = None, settings=None, *, ignore_unknown: bool = False,
         detector: str | None = None, record: bool = False) -> Generator:
    """Build a preset by its CLI name (``ValueError`` listing the known names otherwise).

    ``settings`` (a mapping or Pythia-style ``"Group:name = value"`` text, see
    :func:`diffgen.params.parse_settings`) may give ``Beams:eCM`` (used as ``sqrt_s``) and the
    :data:`~diffgen.params.SWITCHES`, which become the preset's keyword arguments
    (``PartonLevel:FSR = off`` is ``shower=False``, ``HadronLevel:Decay = off`` is ``decays=False``,
    ``HadronLevel:Hadronize = off`` or ``HadronLevel:all = off`` is ``hadronize=False``); the other
    settings are ignored here (:func:`configure` applies them too). ``detector`` (a name from
    :data:`diffgen.detector.CONFIGS`) appends the detector stage; only ``ee-hadrons`` has a final
    state to detect (``ValueError`` for the others). ``record=True`` keeps the full event record
    (``ee-hadrons`` only, see :func:`ee_hadrons`).
    """
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; allowed: {', '.join(sorted(PROCESSES))}")
    changes = {} if settings is None else parse_settings(settings, ignore_unknown=ignore_unknown)
    if "Beams:eCM" in changes:
        e_cm = float(changes["Beams:eCM"])
        if sqrt_s is not None and float(sqrt_s) != e_cm:
            raise ValueError(f"two collision energies: sqrt_s = {sqrt_s:g} GeV and Beams:eCM = {e_cm:g} GeV; "
                             "give one of them")
        sqrt_s = e_cm
    sqrt_s = DEFAULT_SQRT_S if sqrt_s is None else sqrt_s
    kwargs = _structure_kwargs(process, {k: v for k, v in changes.items() if k in SWITCHES})
    if detector is not None:
        if process != "ee-hadrons":
            raise ValueError(f"a detector needs a hadronic final state: process 'ee-hadrons', got {process!r}")
        kwargs["detector"] = detector
    if record:
        if process != "ee-hadrons":
            raise ValueError(f"the full event record (record=True, --record full) is kept for ee-hadrons "
                             f"(partons, hadrons, decays); {process!r} has only its final state")
        kwargs["record"] = True
    return PROCESSES[process](sqrt_s=sqrt_s, **kwargs)


def configure(process: str, settings=None, sqrt_s: float | None = None, *,
              ignore_unknown: bool = False, detector: str | None = None,
              record: bool = False) -> tuple[Generator, dict]:
    """``(generator, params)`` for a preset with Pythia-style ``settings`` applied, as a ``.cmnd`` file would.

    The switches and ``Beams:eCM`` build the generator (:func:`make`); every other setting is set
    in its default params with :func:`diffgen.with_settings` (range-checked). Everything is checked
    before anything runs: unknown names (all listed at once, unless ``ignore_unknown``), values
    outside their ranges, √s below the process's threshold or, for quarks, at or below the Landau
    pole of α_s with the given ``SigmaProcess:alphaSvalue``
    (:func:`diffgen.processes.check_alpha_s_pole`).
    """
    changes = {} if settings is None else parse_settings(settings, ignore_unknown=ignore_unknown)
    gen = make(process, sqrt_s, {k: v for k, v in changes.items() if k in SWITCHES or k == "Beams:eCM"},
               detector=detector, record=record)
    rest = {k: v for k, v in changes.items() if k not in SWITCHES and k != "Beams:eCM"}
    params = gen.default_params()
    params = with_settings(params, rest) if rest else params
    flat = flat_settings(params)
    if "SigmaProcess:alphaSvalue" in flat:  # the QCD factor's α_s must be finite at √s
        check_alpha_s_pole(float(flat["Beams:eCM"]), float(flat["SigmaProcess:alphaSvalue"]))
    return gen, params
