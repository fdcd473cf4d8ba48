"""Tune files, part 3: load a tune file, fit, and write the report (the ``diffgen tune`` command).

:func:`run` = :func:`diffgen.fit.tune_config.load` (validates everything before any event is
generated) → :func:`diffgen.fit.fit` → :func:`diffgen.fit.tune_report.write_report`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import optax

from diffgen.fit.fitter import fit
from diffgen.fit.tune_config import TuneConfig, load
from diffgen.fit.tune_report import write_report
from diffgen.io.atomic import check_writable

__all__ = ["TuneOutput", "run"]


class TuneOutput(NamedTuple):
    """Result of :func:`run`: the fit result, the config and the written files."""

    result: Any
    config: TuneConfig
    report: str
    files: tuple


def run(path, out_dir: str | None = None, progress: bool | None = None) -> TuneOutput:
    """Load (validating everything first), fit, and write the report and figures (module docstring)."""
    cfg = load(path, out_dir=out_dir)
    os.makedirs(cfg.out_dir, exist_ok=True)
    check_writable(os.path.join(cfg.out_dir, "report.md"))
    opts = dict(cfg.fit_options)
    lr = opts.pop("learning_rate")
    result = fit(cfg.gen, cfg.params, cfg.targets, cfg.observables, cfg.free, bounds=cfg.bounds,
                 optimizer=optax.adam(lr), key=jax.random.key(cfg.seed), progress=progress, **opts)
    report, files = write_report(result, cfg, cfg.out_dir)
    return TuneOutput(result, cfg, report, files)
