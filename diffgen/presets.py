"""Ready-made generators with physical defaults.

Example:
    >>> import jax, diffgen
    >>> gen = diffgen.presets.ee_mumu()  # √s = diffgen.params.DEFAULT_SQRT_S = 91.188 GeV
    >>> params = gen.default_params()
    >>> sigma, err = diffgen.cross_section(gen, params, jax.random.key(1), 10_000)
"""

from __future__ import annotations

from diffgen.params import DEFAULT_SQRT_S
from diffgen.processes import ee_to_ffbar
from diffgen.stage import Generator, chain

__all__ = ["ee_mumu", "ee_qq", "ee_hadrons", "PROCESSES", "make"]


def ee_mumu(sqrt_s: float = DEFAULT_SQRT_S) -> Generator:
    """e+e- → γ*/Z → μ+μ- at √s = ``sqrt_s`` GeV (no ISR), Pythia 8.3 electroweak conventions."""
    return Generator(chain(("hard", ee_to_ffbar((13,), sqrt_s))), name="ee-mumu",
                     info={"process": "ee-mumu", "flavours": (13,), "sqrt_s": sqrt_s})


def ee_qq(sqrt_s: float = DEFAULT_SQRT_S, flavours=(1, 2, 3, 4, 5)) -> Generator:
    """e+e- → γ*/Z → q q̄ summed over ``flavours`` (u, d, s massless; c, b with Pythia masses).

    The quark channels carry Pythia's QCD factor 3(1 + α_s/π) (``SigmaProcess:alphaSvalue``).
    """
    flavours = tuple(flavours)
    if any(abs(int(f)) > 5 or int(f) <= 0 for f in flavours):
        raise ValueError(f"ee_qq flavours must be quark PDG codes in 1..5, got {flavours}")
    return Generator(chain(("hard", ee_to_ffbar(flavours, sqrt_s))), name="ee-qq",
                     info={"process": "ee-qq", "flavours": flavours, "sqrt_s": sqrt_s})


def ee_hadrons(sqrt_s: float = DEFAULT_SQRT_S, flavours=(1, 2, 3, 4, 5), shower: bool = True, decays: bool = True,
               me_correction: bool = True, shower_capacity: int | None = None,
               hadron_capacity: int | None = None, final_capacity: int | None = None,
               detector=None) -> Generator:
    """e+e- → γ*/Z → q q̄ → parton shower → Lund strings → hadron decays, no ISR.

    Stages (params keyed by these names): ``hard`` (:func:`diffgen.processes.ee_to_ffbar`),
    ``shower`` (:func:`diffgen.shower.final_state_shower`, first emission matched to the
    O(α_s) matrix element), ``hadronization`` (:func:`diffgen.hadronization.string_fragmentation`)
    and ``decays`` (:func:`diffgen.decays.hadron_decays`). The tune parameters
    ``TimeShower:alphaSvalue``, ``TimeShower:pTmin``, ``StringZ:aLund``, ``StringZ:bLund``,
    ``StringPT:sigma``, ``StringFlav:probStoUD`` (and the vector-meson fractions) have Pythia 8.3
    Monash defaults and are differentiable (pathwise, score-function and implicit gradients).
    ``shower=False`` hadronizes the bare q q̄ pair; ``decays=False`` keeps the primary hadrons.

    ``detector``: ``None`` (default) ends at particle level; a name from
    :data:`diffgen.detector.CONFIGS` (``"aleph"``) or a :class:`~diffgen.detector.DetectorConfig`
    appends the stage ``detector`` (:func:`diffgen.detector.parametric`), whose events are the
    reconstructed particles with the particle-level record paired in ``events.truth``; a trained
    :class:`~diffgen.detector.LearnedDetectorModel` (e.g. ``diffgen.detector.load_checkpoint(path)``)
    appends the learned surrogate :func:`diffgen.detector.learned` as ``detector`` instead.
    """
    from diffgen.decays import hadron_decays
    from diffgen.detector import LearnedDetectorModel, learned, parametric
    from diffgen.hadronization import string_fragmentation
    from diffgen.shower import final_state_shower

    flavours = tuple(flavours)
    if any(abs(int(f)) > 5 or int(f) <= 0 for f in flavours):
        raise ValueError(f"ee_hadrons flavours must be quark PDG codes in 1..5, got {flavours}")
    if detector is None:
        det = None
    elif isinstance(detector, LearnedDetectorModel):
        det = learned(detector)
    else:
        det = parametric(detector)  # ValueError for an unknown name, before building
    stages = [("hard", ee_to_ffbar(flavours, sqrt_s))]
    if shower:
        kw = {} if shower_capacity is None else {"capacity": shower_capacity}
        stages.append(("shower", final_state_shower(me_correction=me_correction, **kw)))
    stages.append(("hadronization", string_fragmentation(
        **({} if hadron_capacity is None else {"capacity": hadron_capacity}))))
    if decays:
        stages.append(("decays", hadron_decays(**({} if final_capacity is None else {"capacity": final_capacity}))))
    info = {"process": "ee-hadrons", "flavours": flavours, "sqrt_s": sqrt_s, "final_state": True}
    if det is not None:
        stages.append(("detector", det))
        info["detector"] = (detector if isinstance(detector, str) else
                            f"learned:{detector.config.name}" if isinstance(detector, LearnedDetectorModel)
                            else detector.name)
    return Generator(chain(*stages), name="ee-hadrons", info=info)


PROCESSES = {"ee-mumu": ee_mumu, "ee-qq": ee_qq, "ee-hadrons": ee_hadrons}


def make(process: str, sqrt_s: float = DEFAULT_SQRT_S, detector: str | None = None) -> Generator:
    """Build a preset by its CLI name (``ValueError`` listing the known names otherwise).

    ``detector`` (a name from :data:`diffgen.detector.CONFIGS`) appends the detector stage; only the
    ``ee-hadrons`` process has a final state to detect (``ValueError`` for the others).
    """
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; allowed: {', '.join(sorted(PROCESSES))}")
    if detector is None:
        return PROCESSES[process](sqrt_s=sqrt_s)
    if process != "ee-hadrons":
        raise ValueError(f"a detector needs a hadronic final state: process 'ee-hadrons', got {process!r}")
    return ee_hadrons(sqrt_s=sqrt_s, detector=detector)
