"""Backend of ``diffgen tune tune.toml``: a fit described in a TOML file, with a report.

The work is split in three modules, each importing only the ones before it:

* :mod:`diffgen.fit.tune_config` — :func:`load`: the TOML schema, parsed and validated into a
  :class:`TuneConfig` before any event is generated (every problem a ``ValueError`` naming the key);
* :mod:`diffgen.fit.tune_report` — :func:`write_report`: ``report.md``, figures, ``tune.cmnd``, ``fit.json``;
* :mod:`diffgen.fit.tune_run` — :func:`run`: load, fit, write (:class:`TuneOutput`).

This module re-exports their public names.
"""

from diffgen.fit.tune_config import TuneConfig, load
from diffgen.fit.tune_report import write_report
from diffgen.fit.tune_run import TuneOutput, run

__all__ = ["TuneConfig", "TuneOutput", "load", "run", "write_report"]
