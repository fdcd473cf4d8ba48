"""A surrogate |M|² for e+e- → W+W- → μ ν u d (8D, CC03 helicity amplitudes): accuracy, speed and exactness.

1. Train the Flax surrogate (``diffgen.flows.surrogate``, on the map's coordinates) on log f(x) at ``--train``
   points from the process's own map (W Breit–Wigners, t-channel pole), ``--steps`` Adam steps.
2. Accuracy: the distribution of f̂/f − 1 on ``--test`` held-out points (median |·|, 68 % and 95 % quantiles).
3. Speed: the exact weight (``integrand(ee_ww)``) and the surrogate's (``integrand(surrogate_process(...))``, same
   kinematics) on the same 10⁵ points, jitted, best of 3.
4. σ from ``--events`` mapped points: the surrogate alone (biased by its error) against the two-stage unweighting
   with the exact correction (unbiased, exact ME only on the kept points), both against the closed-form σ
   (``unit_processes.ee_ww.reference_sigma``); and the cost of unweighted events: exact ME calls per unweighted
   event, standard unweighting (1/ε) against two-stage (1/ε₂), and the estimated time per unweighted event.

Usage: ``python benchmarks/surrogate_me.py [--train 200000 --steps 3000 --events 400000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.flows.surrogate import corrected_weights, relative_errors, surrogate, surrogate_process, train_surrogate
from diffgen.io.atomic import atomic_write
from diffgen.unit_processes import ee_ww, integrand
from diffgen.unit_processes.ee_ww import reference_sigma


def best_time(fn, *args, repeats=3):
    jax.block_until_ready(fn(*args))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sqrt-s", type=float, default=200.0)
    ap.add_argument("--train", type=int, default=200_000)
    ap.add_argument("--test", type=int, default=50_000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                       "load_avg": os.getloadavg()}, "args": vars(args)}

    exact = ee_ww(args.sqrt_s)
    params = exact.init(None)
    f = jax.jit(integrand(exact, params))
    to_x = jax.jit(exact.mapping(params).forward)
    key = jax.random.key(args.seed)
    k_train, k_test, k_fit, k_ev, k_unw = jax.random.split(key, 5)

    def points(k, n):
        xs, lds, fs = [], [], []
        for i in range(0, n, 50_000):
            x, ld = to_x(jax.random.uniform(jax.random.fold_in(k, i), (min(50_000, n - i), 8)))
            xs.append(x)
            lds.append(ld)
            fs.append(f(x))
        return jnp.concatenate(xs), jnp.concatenate(lds), jnp.concatenate(fs)

    x_tr, _, f_tr = points(k_train, args.train)
    x_te, _, f_te = points(k_test, args.test)
    sur = surrogate(8, channel_map=exact.mapping(params))  # the network sees the mapped coordinates
    t0 = time.perf_counter()
    sp, hist = train_surrogate(k_fit, sur, x_tr, jnp.log(f_tr), steps=args.steps, batch=args.batch, progress=True)
    t_train = time.perf_counter() - t0
    rel = relative_errors(sur, sp, x_te, f_te)
    acc = {"median_abs": float(np.median(np.abs(rel))), "q68_abs": float(np.quantile(np.abs(rel), 0.68)),
           "q95_abs": float(np.quantile(np.abs(rel), 0.95)), "mean": float(rel.mean())}
    print(f"training: {args.train} points, {args.steps} steps, {t_train:.0f} s (final loss {hist['loss'][-1]:.2e})")
    print(f"|f_hat/f - 1| on {rel.size} held-out points: median {acc['median_abs']:.4f}, 68% {acc['q68_abs']:.4f}, "
          f"95% {acc['q95_abs']:.4f}; mean f_hat/f - 1 = {acc['mean']:+.4f}")

    proc_s = surrogate_process(ee_ww(args.sqrt_s, matrix_element=False), sur, sp)
    f_s = jax.jit(integrand(proc_s, params))
    x_bench = x_te[: min(100_000, x_te.shape[0])]
    t_exact = best_time(f, x_bench) / x_bench.shape[0]
    t_sur = best_time(f_s, x_bench) / x_bench.shape[0]
    print(f"per point: exact {t_exact * 1e6:.2f} us, surrogate {t_sur * 1e6:.2f} us: speed-up {t_exact / t_sur:.1f}x")

    x_ev, ld_ev, f_ev = points(k_ev, args.events)
    f_ev = np.asarray(f_ev, np.float64)
    log_fhat = np.asarray(jax.jit(sur.log_f)(sp, x_ev), np.float64)
    q_inv = np.exp(np.asarray(ld_ev, np.float64))
    w_exact = f_ev * q_inv
    w_hat = np.exp(log_fhat) * q_inv * (f_ev > 0)  # closed phase space: the kinematics say 0 without the ME
    ref = reference_sigma(args.sqrt_s)
    n = w_exact.size
    s_exact, e_exact = w_exact.mean(), w_exact.std() / math.sqrt(n)
    s_hat, e_hat = w_hat.mean(), w_hat.std() / math.sqrt(n)
    w_max = float(w_hat.max())
    kept, w_corr = corrected_weights(k_unw, w_hat, w_max, lambda idx: f_ev[idx] / np.exp(log_fhat[idx]))
    full = np.zeros(n)
    full[kept] = w_corr
    s_corr, e_corr = full.mean(), full.std() / math.sqrt(n)
    eps_exact = w_exact.mean() / w_exact.max()
    eps1 = kept.size / n
    eps2 = w_corr.mean() / w_corr.max()
    cost_std = t_exact / eps_exact
    cost_two = t_sur / (eps1 * eps2) + t_exact / eps2
    print(f"sigma: reference {ref:.5f} pb; exact weights {s_exact:.5f} +- {e_exact:.5f} "
          f"({(s_exact - ref) / e_exact:+.2f} sd);"
          f" surrogate only {s_hat:.5f} +- {e_hat:.5f} (bias {s_hat / ref - 1:+.4f}, {(s_hat - ref) / e_hat:+.1f} sd);"
          f" two-stage corrected {s_corr:.5f} +- {e_corr:.5f} ({(s_corr - ref) / e_corr:+.2f} sd)")
    print(f"unweighting: standard eff {eps_exact:.4f} (exact ME calls per unweighted event {1 / eps_exact:.1f}); "
          f"two-stage eff1 {eps1:.4f} x eff2 {eps2:.3f} (exact ME calls per unweighted event {1 / eps2:.2f}): "
          f"{eps2 / eps_exact:.1f}x fewer exact calls; time per unweighted event {cost_std * 1e6:.1f} us -> "
          f"{cost_two * 1e6:.1f} us ({cost_std / cost_two:.1f}x)")
    out.update({"train_seconds": t_train, "accuracy": acc, "t_exact_us": t_exact * 1e6, "t_surrogate_us": t_sur * 1e6,
                "sigma": {"reference": ref, "exact": [s_exact, e_exact], "surrogate": [s_hat, e_hat],
                          "corrected": [s_corr, e_corr]},
                "unweighting": {"eps_exact": eps_exact, "eps1": eps1, "eps2": eps2, "cost_std_us": cost_std * 1e6,
                                "cost_two_stage_us": cost_two * 1e6}})
    out["machine"]["load_avg_end"] = os.getloadavg()
    if args.json:
        with atomic_write(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return out


if __name__ == "__main__":
    main()
