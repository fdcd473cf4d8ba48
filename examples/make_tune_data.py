"""Make the PSEUDO-DATA files of the tune-file example (examples/tune/tune.toml, docs/tuning.md).

They are not measurements: diffgen's own e+e- → hadrons events at √s = 91.188 GeV, generated at a
known truth (:data:`TRUTH`, the Monash values elsewhere), so that a tune from the Monash values
should move towards it:

* ``examples/tune/data/thrust.yoda``: the thrust distribution of ``--events`` events (seed 7) as a
  YODA ``HISTO1D`` ``/DIFFGEN_PSEUDODATA/thrust``, 15 bins in [0.7, 1.0], contents Σw per bin (pb)
  and errors √Σw²;
* ``examples/tune/data/reference_91.npz``: ``--events`` further events (seed 8, independent of the
  thrust sample) in diffgen's exact ``.npz`` format, whose metadata record the truth and say
  ``"pseudo_data": true``.

Run from the repository root (about a minute on a CPU, most of it compilation)::

    python examples/make_tune_data.py            # writes examples/tune/data/
    diffgen tune examples/tune/tune.toml         # the documented example

The files in the repository were made with the defaults (2000 events each; the .npz is 1.3 MB).
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

import diffgen
from diffgen.cli import parse_count
from diffgen.io import write_events
from diffgen.io.yoda import histo1d_text
from diffgen.observables import REGISTRY

#: The settings the pseudo-data were generated at (everything else at its default).
TRUTH = {"StringZ:aLund": 0.8, "StringZ:bLund": 0.9, "StringFlav:probStoUD": 0.25}
SQRT_S = 91.188
THRUST_EDGES = np.linspace(0.7, 1.0, 16)
HERE = os.path.dirname(os.path.abspath(__file__))


def make(out_dir: str, n_events: int = 2000) -> tuple[str, str]:
    """Write ``thrust.yoda`` and ``reference_91.npz`` into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    gen = diffgen.presets.ee_hadrons(SQRT_S)
    truth = diffgen.with_settings(gen.default_params(), TRUTH)
    truth_text = ", ".join(f"{k} = {v}" for k, v in TRUTH.items())

    ev = gen.sample(truth, jax.random.key(7), n_events)
    w = np.where(np.asarray(ev.status) == 0, np.exp(np.asarray(ev.log_weight, float)), 0.0)
    t = np.asarray(REGISTRY["thrust"].fn(ev), float)
    sumw = np.histogram(t, THRUST_EDGES, weights=w)[0]
    sumw2 = np.histogram(t, THRUST_EDGES, weights=w * w)[0]
    yoda = os.path.join(out_dir, "thrust.yoda")
    with open(yoda, "w", encoding="utf-8") as fh:
        fh.write(f"# PSEUDO-DATA, not a measurement: diffgen {diffgen.__version__} e+e- -> hadrons at "
                 f"sqrt(s) = {SQRT_S} GeV, {n_events} events, seed 7, truth {truth_text}\n"
                 "# made by examples/make_tune_data.py\n")
        fh.write(histo1d_text(sumw, np.sqrt(sumw2), THRUST_EDGES, "/DIFFGEN_PSEUDODATA/thrust",
                              title="thrust T (pseudo-data)"))

    ref = gen.sample(truth, jax.random.key(8), n_events)
    npz = os.path.join(out_dir, "reference_91.npz")
    settings = {k: float(v) for k, v in diffgen.settings(truth).items()}
    write_events(npz, ref, generator="diffgen", pseudo_data=True, process="ee-hadrons", sqrt_s=SQRT_S, seed=8,
                 n_generated=n_events, truth=TRUTH, settings=settings,
                 description="PSEUDO-DATA made by examples/make_tune_data.py, not a measurement")
    return yoda, npz


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "tune", "data"), help="output directory")
    parser.add_argument("--events", default="2000", help="events per file")
    args = parser.parse_args(argv)
    for path in make(args.out, parse_count(args.events)):
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
