"""Tune diffgen's five e+e- -> hadrons parameters to Pythia 8 (Monash, no ISR) at sqrt(s) = 91.188 GeV.

Pythia 8 generates ``--pythia-events`` events (in this run, when ``pythia8mc`` is installed; or read
from ``--pythia-file``, an ``.npz`` written by an earlier run with ``--save-pythia``, or any event file
diffgen reads, e.g. HepMC3 from Pythia, Herwig or Sherpa). Its final state
goes through diffgen's own observable functions and binning (:func:`diffgen.fit.targets.from_events`):
the six LEP-style observables of :mod:`diffgen.fit.lep` (1-T, B_W, C, n_ch, n_K+-, x_p of the leading
charged particle) are the targets. diffgen's
``TimeShower:alphaSvalue``, ``StringZ:aLund``, ``StringZ:bLund``, ``StringPT:sigma`` and
``StringFlav:probStoUD`` start at Pythia's Monash values and are fitted by
:func:`diffgen.fit.linear.fit_linearized` (Gauss-Newton on the forward-mode Jacobian; the surrogate
averaged over the last ``--pool`` fresh samples, or common random numbers with ``--pool 1``). Then
diffgen is *re-simulated* at the fitted values with new random numbers, and chi2/ndf per observable
is reported before (Monash values) and after (fitted), both from full simulations.

All observables come from the same Pythia events, so the targets are correlated and the diagonal chi2
overstates the information (as in any tune to several analyses of one data set): the fitted errors
are optimistic by a factor of order sqrt(number of observables) and are quoted for orientation only.

Usage::

    python benchmarks/tune_to_pythia.py                        # 10^5 Pythia events, 2x10^4 per diffgen step
    python benchmarks/tune_to_pythia.py --pythia-events 20000 --events 5000 --iterations 3   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from diffgen.params import DEFAULT_SQRT_S

SQRT_S = DEFAULT_SQRT_S
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pythia-events", type=int, default=100_000)
    ap.add_argument("--pythia-file", default=None,
                    help="read the target events from this file instead of running Pythia: an .npz written by "
                         "--save-pythia, or any event file diffgen reads (.hepmc3/.hepmc[.gz] from Pythia, Herwig, "
                         "Sherpa, ...; .lhe, .parquet)")
    ap.add_argument("--save-pythia", default=None, help="write Pythia's events to this .npz")
    ap.add_argument("--events", type=int, default=20_000, help="diffgen events per linearisation")
    ap.add_argument("--check-events", type=int, default=50_000, help="diffgen events for the chi2 before/after")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--pool", type=int, default=4,
                    help="average the surrogate over the last POOL fresh samples (1: common random numbers)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--img", default=os.path.join(HERE, "..", "docs", "img", "tune_to_pythia.png"))
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--json", default=None)
    return ap.parse_args(argv)


def pythia_events(args):
    if args.pythia_file:
        from diffgen.io import SUFFIXES, read_events

        name = args.pythia_file.lower()
        if name.endswith(tuple(s for s in SUFFIXES if s != ".npz")):
            ev, _ = read_events(args.pythia_file)  # final-state particles of any generator
            d = {"p4": np.asarray(ev.p4, np.float32), "pid": np.asarray(ev.pid), "mask": np.asarray(ev.mask)}
            return d, float("nan")
        d = dict(np.load(args.pythia_file))
        return d, float(d.get("cpu_s", np.nan))
    import pythia_peer as py8

    if not py8.available():
        sys.exit("pythia8mc is not installed (pip install 'diffgen[peers]'); or pass --pythia-file")
    t0 = time.process_time()
    d = py8.ee_hadrons_events(SQRT_S, args.pythia_events, seed=args.seed)
    cpu = time.process_time() - t0
    out = {"p4": d["p4"].astype(np.float32), "pid": d["pid"], "mask": d["mask"], "cpu_s": cpu}
    if args.save_pythia:
        from diffgen.io.atomic import atomic_write

        with atomic_write(args.save_pythia) as fh:
            np.savez_compressed(fh, **out)
    return out, cpu


def as_events(d):
    import jax.numpy as jnp

    from diffgen.events import Events

    n, cap = d["pid"].shape
    e = SQRT_S / 2.0
    beams = jnp.array([[e, 0.0, 0.0, e], [e, 0.0, 0.0, -e]], jnp.float32)
    return Events.empty(n, cap).replace(p4=jnp.asarray(d["p4"], jnp.float32), pid=jnp.asarray(d["pid"], jnp.int32),
                                        mask=jnp.asarray(d["mask"], bool), p4_in=jnp.broadcast_to(beams, (n, 2, 4)))


def simulated_chi2(gen, params, targets, observables, key, n, chunk=10_000):
    """Full simulation (hard bins) at ``params``: {name: (chi2, ndf)} and the histograms."""
    import jax

    from diffgen.fit.targets import from_events

    parts = []
    for c in range(-(-n // chunk)):
        parts.append(gen.sample(params, jax.random.fold_in(key, c), min(chunk, n - c * chunk)))
    ev = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)
    sims = from_events(ev, observables)
    out, hists = {}, {}
    for t, s in zip(targets, sims):
        ok = t.errors > 0
        var = t.errors[ok] ** 2 + s.errors[ok] ** 2
        out[t.name] = (float(np.sum((s.contents[ok] - t.contents[ok]) ** 2 / var)), t.ndf)
        hists[t.name] = (s.contents, s.errors)
    return out, hists


def main(argv=None):
    args = parse_args(argv)
    import jax

    import diffgen
    from diffgen.fit import lep
    from diffgen.fit.linear import fit_linearized
    from diffgen.fit.targets import from_events

    t_start = time.time()
    d, py_cpu = pythia_events(args)
    n_py = int(d["pid"].shape[0])
    print(f"Pythia 8: {n_py} events ({py_cpu:.0f} s CPU)", flush=True)
    obs = list(lep.LEP_OBSERVABLES)
    targets = from_events(as_events(d), obs)

    gen = diffgen.presets.ee_hadrons(SQRT_S)
    p0 = gen.default_params()
    key = jax.random.key(args.seed)
    t0 = time.time()
    before, h_before = simulated_chi2(gen, p0, targets, obs, jax.random.fold_in(key, 1), args.check_events)
    t_check = time.time() - t0
    t0 = time.time()
    res = fit_linearized(gen, p0, targets, obs, list(lep.TUNE_PARAMETERS), bounds=lep.TUNE_BOUNDS,
                         n_events=args.events, key=jax.random.fold_in(key, 2), iterations=args.iterations,
                          pool=args.pool, common_random_numbers=args.pool == 1)
    t_fit = time.time() - t0
    p_fit = diffgen.with_settings(p0, res.settings)
    after, h_after = simulated_chi2(gen, p_fit, targets, obs, jax.random.fold_in(key, 3), args.check_events)

    print(f"\n{res.message}\nfit wall time {t_fit:.0f} s; diffgen events in the fit: {res.n_events_total}")
    print("expansion points (α_s, a, b, σ_pT, s/u) and the chi2 of their sample (simulation errors included):")
    for th, c2 in zip(np.asarray(res.param_history), np.asarray(res.loss_history)):
        print("   " + " ".join(f"{v:.4f}" for v in th) + f"   chi2 {float(c2):.1f}")
    print(f"\n{'parameter':26s} {'Monash':>8s} {'fitted':>9s} {'+-':>7s}")
    for n in res.free:
        print(f"{n:26s} {res.start[n]:8.4f} {res.settings[n]:9.4f} {res.errors[n]:7.4f}")
    print("\ncorrelation:\n" + np.array2string(res.correlation, precision=2, suppress_small=True))
    print(f"\n{'observable':18s} {'chi2/ndf before':>16s} {'after':>10s} {'(linear pred.)':>15s}")
    for t in targets:
        b, a, lp = before[t.name], after[t.name], res.chi2_after[t.name]
        print(f"{t.name:18s} {b[0]:9.1f}/{b[1]:<6d} {a[0]:7.1f}/{a[1]:<3d} {lp[0]:11.1f}")
    tb, ta = sum(v[0] for v in before.values()), sum(v[0] for v in after.values())
    ndf = sum(v[1] for v in after.values())
    print(f"{'total':18s} {tb:9.1f}/{ndf:<6d} {ta:7.1f}/{ndf - len(res.free):<3d}")
    print(f"(chi2 'after' has ndf minus {len(res.free)} fitted parameters)  wall {time.time() - t_start:.0f} s "
          f"(one {args.check_events}-event check {t_check:.0f} s)")

    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mplhep

        plt.style.use(mplhep.style.ROOT)
        fig, axes = plt.subplots(2, 4, figsize=(24, 10))
        for ax, t in zip(axes.flat, targets):
            edges = np.asarray(t.edges)
            x, w = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
            ax.errorbar(x, t.contents / w, t.errors / w, fmt="ko", ms=4, label="Pythia 8 (Monash)")
            ax.stairs(h_before[t.name][0] / w, edges, color="tab:blue", label=f"diffgen Monash values, "
                      f"$\\chi^2$={before[t.name][0]:.0f}/{t.ndf}")
            ax.stairs(h_after[t.name][0] / w, edges, color="tab:red", label=f"diffgen tuned, "
                      f"$\\chi^2$={after[t.name][0]:.0f}/{t.ndf}")
            ax.set_xlabel(t.name)
            ax.set_ylabel("1/N dN/dx")
            ax.legend(fontsize=10)
            if t.name in ("one_minus_thrust", "b_wide", "c_parameter", "n_charged", "n_kaons"):
                ax.set_yscale("log")
        for ax in axes.flat[len(targets):]:
            ax.axis("off")
        ax = axes.flat[len(targets)]
        lines = ["fitted (Monash)"] + [f"{n.split(':')[1]}: {res.settings[n]:.4f} ± {res.errors[n]:.4f} "
                                       f"({res.start[n]:.4f})" for n in res.free]
        ax.text(0.0, 0.9, "\n".join(lines), va="top", fontsize=13, family="monospace")
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.img)), exist_ok=True)
        from diffgen.io.atomic import atomic_write

        with atomic_write(args.img) as fh:
            fig.savefig(fh, format="png", dpi=80)
        print(f"figure: {args.img}")

    if args.json:
        out = {"pythia_events": n_py, "diffgen_events_fit": res.n_events_total, "fit_wall_s": t_fit,
               "settings": res.settings, "errors": res.errors, "start": res.start,
               "chi2_before": before, "chi2_after": after, "chi2_after_linear": res.chi2_after,
               "correlation": res.correlation.tolist(), "message": res.message, "converged": res.converged,
               "param_history": np.asarray(res.param_history).tolist(),
               "loss_history": np.asarray(res.loss_history).tolist(),
               "jacobian_noise": res.jacobian_noise}
        from diffgen.io.atomic import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
