"""Closure tune of e+e- -> hadrons: diffgen's gradient fit vs a Professor-style grid tune, same pseudo-data.

Truth: the five tune parameters moved by 5-15 % from the Monash defaults (``TRUTH``). ``--sets``
pseudo-datasets of ``--data-events`` events per observable (six LEP-style per-event observables of
:mod:`diffgen.fit.lep`, each from its own events) are generated at the truth. Each dataset is tuned
starting from the defaults by

(a) **gradient**: :func:`diffgen.fit.linear.fit_linearized` -- Gauss-Newton on the forward-mode
    Jacobian of one sample of ``--events`` events per iteration, the surrogate averaged over the last
    ``--pool`` (fresh) samples; all datasets share the simulation (the expansion point is the mean of
    their estimates). By default the gradient fit is bounded to the grid's box (``--gradient-bounds box``), so that
    both methods search the same range: a and b are determined by these data only to 10-20 %, and
    the box edge (11 % from the truth for a and b) is itself a constraint;
(b) **Professor-style** (Buckley et al., arXiv:0907.2973): ``--grid-runs`` generator runs of
    ``--grid-events`` events at points drawn uniformly in the box default x (1 +- ``--box``); per bin, a
    quadratic polynomial in the five parameters (21 coefficients) is fitted by least squares to the
    bin contents (and one to the MC variances); then chi2 = sum (poly - data)^2 / (sigma_data^2 +
    sigma_poly^2) is minimised in the box (scipy least_squares).

Reported per method: events generated (a: iterations x events, each with 5 forward-mode tangents;
b: runs x events, forward only), wall time, and the achieved precision: the RMS over datasets of
(fitted - truth), per parameter, with the mean reported error and the pull mean/width.
``--grid-events`` may list several sizes to show how the grid tune's precision depends on its budget.

Usage::

    python benchmarks/tune_vs_grid.py                       # ~35 min on 2 cores
    python benchmarks/tune_vs_grid.py --sets 5 --data-events 1000 --events 5000 --grid-runs 45 \\
        --grid-events 1000          # quick
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

TRUTH_FACTORS = {"TimeShower:alphaSvalue": 1.06, "StringZ:aLund": 0.90, "StringZ:bLund": 1.08,
                 "StringPT:sigma": 1.12, "StringFlav:probStoUD": 0.90}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sets", type=int, default=20, help="pseudo-datasets")
    ap.add_argument("--data-events", type=int, default=5000, help="events per observable per dataset")
    ap.add_argument("--events", type=int, nargs="+", default=[20_000],
                    help="gradient fit: events per iteration (several sizes: one fit each)")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--pool", type=int, default=4,
                    help="average the surrogate over the last POOL fresh samples (1: common random numbers)")
    ap.add_argument("--grid-runs", type=int, default=50)
    ap.add_argument("--grid-events", type=int, nargs="*", default=[2000, 20_000],
                    help="events per grid run (several sizes: one grid tune each; none: skip the grid tune)")
    ap.add_argument("--gradient-bounds", choices=["box", "lep"], default="box",
                    help="bounds of the gradient fit: the grid's box (same prior range as the grid tune) or "
                         "the wide diffgen.fit.lep.TUNE_BOUNDS")
    ap.add_argument("--box", type=float, default=0.2, help="grid box: default x (1 +- box)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jacobian-noise", choices=["ignore", "correct"], default=None,
                    help="fit_linearized(jacobian_noise=...); default: the library's")
    ap.add_argument("--json", default=None)
    return ap.parse_args(argv)


def quadratic_features(u):
    """[1, u_i, u_i u_j (i <= j)] for u f[m, k] -> f[m, 1 + k + k(k+1)/2]."""
    m, k = u.shape
    cols = [np.ones(m)] + [u[:, i] for i in range(k)]
    cols += [u[:, i] * u[:, j] for i, j in itertools.combinations_with_replacement(range(k), 2)]
    return np.stack(cols, axis=1)


def professor_fit(grid_theta, grid_c, grid_v, center, half, datasets_y, datasets_v):
    """Per-bin quadratic interpolation of a grid of runs, then chi2 minimisation per dataset."""
    from scipy.optimize import least_squares

    u = (grid_theta - center) / half
    x = quadratic_features(u)
    coef_c, *_ = np.linalg.lstsq(x, grid_c, rcond=None)          # [n_coef, B]
    coef_v, *_ = np.linalg.lstsq(x, grid_v, rcond=None)
    resid = grid_c - x @ coef_c                                    # interpolation + MC scatter
    k = grid_theta.shape[1]
    out_theta, out_err = [], []
    for y, vd in zip(datasets_y, datasets_v):
        def r(uu, y=y, vd=vd):
            f = quadratic_features(uu[None, :])
            var = vd + np.clip(f @ coef_v, 0.0, None)[0]
            return ((f @ coef_c)[0] - y) / np.sqrt(var)

        sol = least_squares(r, np.zeros(k), bounds=(-np.ones(k), np.ones(k)), method="trf")
        jac = sol.jac / half[None, :]
        cov = np.linalg.pinv(jac.T @ jac)
        out_theta.append(center + half * sol.x)
        out_err.append(np.sqrt(np.clip(np.diag(cov), 0.0, None)))
    return np.asarray(out_theta), np.asarray(out_err), float(np.sqrt(np.mean(resid ** 2 / np.mean(grid_v, 0))))


def flatten(targets):
    c = np.concatenate([t.contents for t in targets])
    e = np.concatenate([t.errors for t in targets])
    return c, e ** 2


def summary(label, theta, err, truth, names, events, wall):
    dev = theta - truth
    rms = np.sqrt(np.mean(dev ** 2, axis=0))
    pulls = dev / err
    print(f"\n[{label}] events generated {events:,}, wall {wall:.0f} s")
    print(f"  {'parameter':26s} {'truth':>8s} {'mean fit':>9s} {'RMS dev':>8s} {'rel':>7s} {'<err>':>8s} "
          f"{'pull mean':>9s} {'pull sd':>8s}")
    for j, n in enumerate(names):
        print(f"  {n:26s} {truth[j]:8.4f} {theta[:, j].mean():9.4f} {rms[j]:8.4f} {rms[j] / truth[j]:7.2%} "
              f"{err[:, j].mean():8.4f} {pulls[:, j].mean():9.2f} {pulls[:, j].std(ddof=1):8.2f}")
    return {"events": int(events), "wall_s": wall, "rms": rms.tolist(), "rel_rms": (rms / truth).tolist(),
            "mean_err": err.mean(0).tolist(), "pull_mean": pulls.mean(0).tolist(),
            "pull_sd": pulls.std(0, ddof=1).tolist()}


def main(argv=None):
    args = parse_args(argv)
    import jax

    import diffgen
    from diffgen.fit import lep
    from diffgen.fit.linear import fit_linearized
    from diffgen.fit.targets import from_events

    names = list(lep.TUNE_PARAMETERS)
    gen = diffgen.presets.ee_hadrons()
    p0 = gen.default_params()
    s0 = diffgen.settings(p0)
    default = np.array([float(s0[n]) for n in names])
    truth = default * np.array([TRUTH_FACTORS[n] for n in names])
    obs = list(lep.LEP_OBSERVABLES)
    key = jax.random.key(args.seed)
    print("truth:", dict(zip(names, truth.round(5))), flush=True)

    t0 = time.time()
    data = lep.pseudo_datasets(gen, diffgen.with_settings(p0, dict(zip(names, truth))), obs, args.data_events,
                               args.sets, jax.random.fold_in(key, 1))
    print(f"pseudo-data: {args.sets} sets x {len(obs)} observables x {args.data_events} events "
          f"({time.time() - t0:.0f} s)", flush=True)
    results = {"truth": truth.tolist(), "names": names, "args": vars(args)}

    # (a) gradient ---------------------------------------------------------------------------
    results["gradient"] = []
    box = {n: (float(d * (1 - args.box)), float(d * (1 + args.box))) for n, d in zip(names, default)}
    bounds = box if args.gradient_bounds == "box" else lep.TUNE_BOUNDS
    for n_ev in args.events:
        t0 = time.time()
        fits = fit_linearized(gen, p0, data, obs, names, bounds=bounds, n_events=n_ev,
                              key=jax.random.fold_in(key, 2), iterations=args.iterations,
                              pool=args.pool, common_random_numbers=args.pool == 1,
                              **({} if args.jacobian_noise is None else {"jacobian_noise": args.jacobian_noise}))
        wall = time.time() - t0
        th = np.array([[r.settings[n] for n in names] for r in fits])
        er = np.array([[r.errors[n] for n in names] for r in fits])
        print(fits[0].message)
        results["gradient"].append(summary(f"gradient (diffgen.fit.linear), {args.iterations} x {n_ev}, "
                                           f"{args.gradient_bounds} bounds", th, er,
                                           truth, names, fits[0].n_events_total, wall))

    # (b) Professor-style grid ---------------------------------------------------------------
    center, half = default, args.box * default
    rng = np.random.default_rng(args.seed)
    grid_theta = center + half * rng.uniform(-1.0, 1.0, size=(args.grid_runs, len(names)))
    ys = np.stack([flatten(d)[0] for d in data])
    vs = np.stack([flatten(d)[1] for d in data])
    results["grid"] = []
    for n_ev in args.grid_events:
        t0 = time.time()
        gc, gv = [], []
        for i, th_i in enumerate(grid_theta):
            ev = gen.sample(diffgen.with_settings(p0, dict(zip(names, th_i))), jax.random.fold_in(key, 1000 + i),
                            n_ev)
            c, v = flatten(from_events(ev, obs))
            gc.append(c)
            gv.append(v)
        t_gen = time.time() - t0
        tp, ep, chi_interp = professor_fit(grid_theta, np.asarray(gc), np.asarray(gv), center, half, ys, vs)
        wall = time.time() - t0
        print(f"grid of {args.grid_runs} runs x {n_ev} events: generation {t_gen:.0f} s; interpolation residual "
              f"RMS {chi_interp:.2f} MC sigma")
        results["grid"].append(summary(f"Professor-style, {args.grid_runs} runs x {n_ev}", tp, ep, truth, names,
                                       args.grid_runs * n_ev, wall))

    for g in results["gradient"]:
        for r in results["grid"]:
            ratio = np.array(r["rms"]) / np.array(g["rms"])
            print(f"\nprecision ratio grid({r['events']:,} ev) / gradient({g['events']:,} ev) per parameter: "
                  f"{np.round(ratio, 2).tolist()}; events ratio {r['events'] / g['events']:.1f}; "
                  f"wall ratio {r['wall_s'] / g['wall_s']:.1f}")
    if args.json:
        from diffgen.io.atomic import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
