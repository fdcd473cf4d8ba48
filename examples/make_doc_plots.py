"""Make the plots of docs/from_pythia.md with the CLI (``diffgen generate --plot/--compare``).

* ``docs/img/cli_ee_mumu.png``: ``diffgen generate --process ee-mumu --events 20000 --plot ...``,
  1/σ dσ/dcos θ with the analytic curve;
* ``docs/img/cli_compare_pythia.png``: ``diffgen generate --process ee-hadrons --compare
  pythia.npz --plot ...``, diffgen (Monash defaults) against Pythia 8 (``pythia8mc``, Monash, no ISR:
  ``benchmarks/pythia_peer.py``) with ratio panels; the Pythia events are written to an ``.npz``
  by this script (weight σ_Pythia in pb each, so ``--absolute`` works too).

Run from the repository root (a few minutes on a CPU; needs ``pythia8mc``)::

    python examples/make_doc_plots.py [--events 4000] [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from diffgen.cli import main as diffgen_main
from diffgen.cli import parse_count
from diffgen.events import Events
from diffgen.io import write_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQRT_S = 91.188


def pythia_events(path: str, n_events: int, seed: int = 1) -> None:
    """``n_events`` Pythia 8 e+e- → hadrons events at √s = 91.188 GeV as a diffgen ``.npz``."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import pythia_peer

    d = pythia_peer.ee_hadrons_events(SQRT_S, n_events, seed=seed)
    n, cap = d["pid"].shape
    beams = np.zeros((n, 2, 4))
    beams[:, 0] = [SQRT_S / 2, 0, 0, SQRT_S / 2]  # e- along +z, as in diffgen
    beams[:, 1] = [SQRT_S / 2, 0, 0, -SQRT_S / 2]
    ev = Events(p4=d["p4"], pid=d["pid"], mask=d["mask"], colour=np.zeros((n, cap, 2), np.int32),
                log_weight=np.full(n, np.log(d["sigma_pb"])), status=np.zeros(n, np.int32), p4_in=beams,
                pid_in=np.tile(np.array([11, -11], np.int32), (n, 1)))
    write_events(path, ev, generator="Pythia 8.3 (pythia8mc), Monash, PDF:lepton = off", sqrt_s=SQRT_S, seed=seed,
                 n_generated=n, sigma_pb=d["sigma_pb"], error_pb=d["error_pb"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "img"), help="output directory")
    parser.add_argument("--events", default="4000", help="e+e- -> hadrons events of each generator")
    args = parser.parse_args(argv)
    n = parse_count(args.events)
    rc = diffgen_main(["generate", "--process", "ee-mumu", "--events", "20000", "--seed", "1", "--quiet",
                       "--plot", os.path.join(args.out, "cli_ee_mumu.png"), "--force"])
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "pythia.npz")
        pythia_events(ref, n)
        rc = rc or diffgen_main(["generate", "--process", "ee-hadrons", "--events", str(n), "--seed", "1", "--quiet",
                                 "--compare", ref, "--plot", os.path.join(args.out, "cli_compare_pythia.png"),
                                 "--force"])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
