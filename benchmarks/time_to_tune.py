"""Time to tune: diffgen's gradient fit vs Pythia 8 + a Professor-style grid, same five-parameter LEP tune.

The five parameters (α_s, a, b, σ_pT, s/u) are moved from Monash by the factors of
``benchmarks/tune_vs_grid.py`` (``TRUTH``); ``--sets`` pseudo-datasets of ``--data-events`` events per
observable (the six LEP observables of :mod:`diffgen.fit.lep`, each from its own events, binned the
same way for both methods) are made at the truth, and each method tunes to them from the defaults:

(i)  **diffgen**: :func:`diffgen.fit.linear.fit_linearized` (Gauss–Newton on forward-mode Jacobians,
     ``--iterations`` x ``--events`` events, surrogate pooled over the last ``--pool`` samples), bounded
     to the grid's box;
(ii) **Pythia 8 + grid**: ``--grid-runs`` Pythia 8.317 runs of ``--grid-events`` events at points drawn
     uniformly in default x (1 ± ``--box``), spread over ``--workers`` processes (both cores), each
     analysed with diffgen's LEP observables; per-bin quadratic interpolation (21 coefficients), χ²
     minimisation (``tune_vs_grid.professor_fit``).

Pseudo-data (``--data``): ``own`` (default) — each method tunes its own generator to pseudo-data that
generator made at the truth (a closure: the deviation from the truth is the method's precision, with no
model difference in it); ``pythia`` — both tune to the same Pythia pseudo-data (diffgen's deviation then
includes the diffgen–Pythia model difference, see docs/validation.md).

Reported in the same run on this machine, per method: events generated, wall time (generation,
analysis and fit; the pseudo-data not counted), RMS deviation from the truth per parameter and the mean
reported error, and the wall time diffgen would need to reach the grid's precision on *all five*
parameters, scaling its wall time by max_j (RMS_diffgen,j / RMS_grid,j)² (precision ∝ 1/√events).
Target (issue 17): ≤ 1/3 of the Pythia + grid wall time.

Usage::

    python benchmarks/time_to_tune.py                                  # ~40 min on 2 cores
    python benchmarks/time_to_tune.py --sets 3 --data-events 2000 --events 5000 --iterations 4 \\
        --grid-runs 30 --grid-events 2000                              # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_vs_grid import TRUTH_FACTORS, flatten, professor_fit, summary  # noqa: E402

SQRT_S = 91.188


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sets", type=int, default=5, help="pseudo-datasets")
    ap.add_argument("--data-events", type=int, default=5000, help="events per observable per dataset")
    ap.add_argument("--data", choices=["own", "pythia"], default="own")
    ap.add_argument("--events", type=int, default=20_000, help="diffgen: events per iteration")
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--grid-runs", type=int, default=50)
    ap.add_argument("--grid-events", type=int, default=20_000)
    ap.add_argument("--box", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2, help="Pythia processes")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--jacobian-noise", choices=["ignore", "correct"], default=None,
                    help="fit_linearized(jacobian_noise=...); default: the library's")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if min(args.sets, args.data_events, args.events, args.iterations, args.pool, args.grid_runs,
           args.grid_events, args.workers) < 1:
        ap.error("counts must be >= 1")
    if not 0.0 < args.box < 0.5:
        ap.error("--box must be in (0, 0.5)")
    return args


def _pythia_targets(names, theta, n, seed, observables):
    """Pythia 8 events at ``theta`` (a spawned worker), analysed with diffgen's LEP observables."""
    import pythia_peer as py8
    from tune_to_pythia import as_events

    from diffgen.fit.targets import from_events

    d = py8.ee_hadrons_events(SQRT_S, n, seed=seed, settings=dict(zip(names, map(float, theta))),
                              max_multiplicity=160)
    d = {"p4": d["p4"].astype(np.float32), "pid": d["pid"], "mask": d["mask"]}
    return from_events(as_events(d), observables)


def main(argv=None):
    args = parse_args(argv)
    import jax

    import diffgen
    from diffgen.fit import lep
    from diffgen.fit.linear import fit_linearized

    names = list(lep.TUNE_PARAMETERS)
    gen = diffgen.presets.ee_hadrons(SQRT_S)
    p0 = gen.default_params()
    s0 = diffgen.settings(p0)
    default = np.array([float(s0[n]) for n in names])
    truth = default * np.array([TRUTH_FACTORS[n] for n in names])
    obs = list(lep.LEP_OBSERVABLES)
    key = jax.random.key(args.seed)
    ctx = multiprocessing.get_context("spawn")
    print(f"truth: {dict(zip(names, truth.round(5)))}; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores", flush=True)
    results = {"truth": truth.tolist(), "names": names, "args": vars(args)}

    # pseudo-data ----------------------------------------------------------------------------------
    t0 = time.time()
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        futs = [[pool.submit(_pythia_targets, names, truth, args.data_events, 10_000 + 10 * s + j, [o])
                 for j, o in enumerate(obs)] for s in range(args.sets)]
        data_pythia = [[t for f in row for t in f.result()] for row in futs]
    print(f"Pythia pseudo-data: {args.sets} sets x {len(obs)} obs x {args.data_events} ev ({time.time() - t0:.0f} s)",
          flush=True)
    if args.data == "own":
        t0 = time.time()
        data_diffgen = lep.pseudo_datasets(gen, diffgen.with_settings(p0, dict(zip(names, truth))), obs,
                                           args.data_events, args.sets, jax.random.fold_in(key, 1))
        print(f"diffgen pseudo-data ({time.time() - t0:.0f} s)", flush=True)
    else:
        data_diffgen = data_pythia

    # (i) diffgen gradient fit ---------------------------------------------------------------------
    box = {n: (float(d * (1 - args.box)), float(d * (1 + args.box))) for n, d in zip(names, default)}
    t0 = time.time()
    fits = fit_linearized(gen, p0, data_diffgen, obs, names, bounds=box, n_events=args.events,
                          key=jax.random.fold_in(key, 2), iterations=args.iterations, pool=args.pool,
                          common_random_numbers=args.pool == 1,
                          **({} if args.jacobian_noise is None else {"jacobian_noise": args.jacobian_noise}))
    wall_d = time.time() - t0
    th = np.array([[r.settings[n] for n in names] for r in fits])
    er = np.array([[r.errors[n] for n in names] for r in fits])
    res_d = summary(f"diffgen gradient fit, {args.iterations} x {args.events} events", th, er, truth, names,
                    fits[0].n_events_total, wall_d)
    res_d["jacobian_noise"] = dict(fits[0].jacobian_noise) if getattr(fits[0], "jacobian_noise", None) else None

    # (ii) Pythia 8 + Professor-style grid ---------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    center, half = default, args.box * default
    grid_theta = center + half * rng.uniform(-1.0, 1.0, size=(args.grid_runs, len(names)))
    t0 = time.time()
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        futs = [pool.submit(_pythia_targets, names, th_i, args.grid_events, 1 + i, obs)
                for i, th_i in enumerate(grid_theta)]
        grid = [flatten(f.result()) for f in futs]
    t_gen = time.time() - t0
    ys = np.stack([flatten(d)[0] for d in data_pythia])
    vs = np.stack([flatten(d)[1] for d in data_pythia])
    tp, ep, chi_interp = professor_fit(grid_theta, np.stack([g[0] for g in grid]), np.stack([g[1] for g in grid]),
                                       center, half, ys, vs)
    wall_g = time.time() - t0
    print(f"grid: {args.grid_runs} Pythia runs x {args.grid_events} events in {t_gen:.0f} s "
          f"({args.workers} processes); interpolation residual RMS {chi_interp:.2f} MC σ")
    res_g = summary(f"Pythia 8 + Professor-style grid, {args.grid_runs} x {args.grid_events}", tp, ep, truth, names,
                    args.grid_runs * args.grid_events, wall_g)

    ratio = np.array(res_d["rms"]) / np.array(res_g["rms"])
    needed = wall_d * float(np.max(ratio)) ** 2
    worst = names[int(np.argmax(ratio))]
    print(f"\nprecision ratio diffgen/grid per parameter: {dict(zip(names, ratio.round(2)))}")
    print(f"events: diffgen {res_d['events']:,} vs grid {res_g['events']:,} "
          f"(ratio {res_d['events'] / res_g['events']:.2f})")
    print(f"wall: diffgen {wall_d:.0f} s vs Pythia + grid {wall_g:.0f} s (ratio {wall_d / wall_g:.2f})")
    print(f"diffgen wall time to reach the grid's precision on all five (limited by {worst}): {needed:.0f} s = "
          f"{needed / wall_g:.2f} x Pythia + grid (target <= 0.33)")
    results.update({"diffgen": res_d, "grid": res_g, "precision_ratio": ratio.tolist(),
                    "wall_to_grid_precision_s": needed, "wall_ratio_at_grid_precision": needed / wall_g,
                    "limited_by": worst})
    if args.json:
        from diffgen.io.atomic import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
