"""Hadron-level response d⟨n_ch⟩/dα_s of diffgen's default e+e- → hadrons chain at ±3 % around 0.1365,
against Pythia 8's from tests/data/pythia_reference.json (benchmarks/pythia_reference.py).

    python benchmarks/alphas_response.py [--events 6000] [--seed 77]

Both α_s points use the same keys (common random numbers), so the error of the difference is from
per-event paired differences (delta method for the self-normalised means).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STEP = 0.03
ALPHA_S = 0.1365


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=77)
    args = ap.parse_args(argv)
    if args.events < 2:
        ap.error("--events must be >= 2")
    import jax

    import diffgen
    from diffgen import observables as obs
    from diffgen.expect import event_weights

    gen = diffgen.presets.ee_hadrons(91.188)
    p0 = gen.default_params()
    out = []
    for f in (1 - STEP, 1 + STEP):
        ev = gen.sample(diffgen.with_settings(p0, {"TimeShower:alphaSvalue": ALPHA_S * f}),
                        jax.random.key(args.seed), args.events)
        w = np.asarray(event_weights(ev), np.float64)
        v = np.asarray(obs.charged_multiplicity(ev), np.float64)
        m = (w * v).sum() / w.sum()
        out.append((m, w * (v - m) / w.mean()))
    d_as = 2 * STEP * ALPHA_S
    slope = (out[1][0] - out[0][0]) / d_as
    err = np.std(out[1][1] - out[0][1], ddof=1) / np.sqrt(args.events) / d_as
    ref = json.loads((Path(__file__).resolve().parent.parent / "tests" / "data" / "pythia_reference.json").read_text())
    py, py_err = ref["dnch_dalphas"]
    print(f"diffgen: <n_ch> {out[0][0]:.3f} -> {out[1][0]:.3f}, d<n_ch>/d alpha_s = {slope:.1f} +- {err:.1f} "
          f"({args.events} events, common keys)")
    print(f"Pythia 8.317 (reference file): {py:.1f} +- {py_err:.1f}; ratio {slope / py:.2f}")


if __name__ == "__main__":
    main()
