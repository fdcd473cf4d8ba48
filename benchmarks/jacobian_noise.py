"""Jacobian noise ‖δJ‖/‖J‖ of the LEP observables for the five tune parameters, per estimator (issue 17).

e+e- → hadrons at 91.2 GeV (:func:`diffgen.presets.ee_hadrons`), the six per-event histograms of
:data:`diffgen.fit.lep.LEP_OBSERVABLES`, Monash defaults, ``--events`` events (default 2·10⁴) per
estimator, 10 batches for the noise (:func:`diffgen.fit.variance_report`, bins weighted by 1/σ_sim²).
Estimators: the plain score function (self-normalised per-bin baseline, ``mean``), and ``k`` replicas
of the hadronization per showered event with the sibling baseline (``siblings``) or its cross-fitted
optimal coefficient (``siblings_cv``). Each estimator runs with ``--seeds`` independent keys; the
table prints the mean ratio and its spread over seeds, and the wall time of one report. The numbers
are in docs/gradients.md.

    PYTHONPATH=. python benchmarks/jacobian_noise.py [--events 20000] [--seeds 2] [--estimators mean:1 siblings_cv:2]
"""

import argparse
import time

import jax
import numpy as np

import diffgen
from diffgen.fit import lep
from diffgen.fit.variance import variance_report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--estimators", nargs="+", default=["mean:1", "siblings:2", "siblings_cv:2", "siblings_cv:4"])
    ap.add_argument("--string-gradient", nargs="+", default=["pathwise"], choices=["pathwise", "score"],
                    help="the strings' estimator for z and pT (presets.ee_hadrons(string_gradient=...)); "
                         "each is run with every --estimators entry")
    args = ap.parse_args()
    rows = {}
    for sgrad in args.string_gradient:
        gen = diffgen.presets.ee_hadrons(91.2, string_gradient=sgrad)
        rows.update(run(gen, args, sgrad))
    print(f"\n‖δJ‖/‖J‖ at {args.events} events (mean over {args.seeds} seeds ± its error)")
    names = lep.TUNE_PARAMETERS
    print("| strings | estimator | " + " | ".join(names) + " | s (first incl. compile) |")
    print("|---" * (len(names) + 3) + "|")
    for (sgrad, est), (m, e, sec) in rows.items():
        print(f"| {sgrad} | {est} | " + " | ".join(f"{a:.3f} ± {b:.3f}" for a, b in zip(m, e)) + f" | {sec:.0f} |")


def run(gen, args, sgrad):
    params = gen.default_params()
    names = lep.TUNE_PARAMETERS
    rows = {}
    for est in args.estimators:
        baseline, k = est.split(":")
        ratios, secs = [], []
        for s in range(args.seeds):
            t0 = time.time()
            rep = variance_report(gen, params, lep.LEP_OBSERVABLES, names, key=jax.random.key(100 + s),
                                  n_events=args.events, replicas=int(k), baseline=baseline)
            secs.append(time.time() - t0)
            ratios.append([rep.noise[n] for n in names])
            print(f"{sgrad} {est} seed {s}: " + ", ".join(f"{n.split(':')[1]} {rep.noise[n]:.3f}" for n in names)
                  + f"  ({secs[-1]:.0f} s)", flush=True)
        r = np.asarray(ratios)
        err = r.std(0, ddof=1) / np.sqrt(len(r)) if len(r) > 1 else np.zeros(len(names))
        rows[(sgrad, est)] = (r.mean(0), err, min(secs))
    return rows


if __name__ == "__main__":
    main()
