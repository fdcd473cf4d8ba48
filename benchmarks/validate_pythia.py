"""Validation: diffgen's e+e- -> hadrons chain against Pythia 8 (Monash, no ISR) at sqrt(s) = 91.188 GeV.

Both generators' final states are analysed with diffgen's own observable functions
(:mod:`diffgen.observables`): Pythia's particle arrays (``benchmarks/pythia_peer.py``:
:func:`pythia_peer.ee_hadrons_events`)
are put into :class:`diffgen.Events` (``Events.empty`` with p4 / pid / mask replaced and p4_in set to the
beams), padded to diffgen's slot capacity, and go through the same jitted functions in the same chunks.

1. Nominal comparison (default settings in both): weighted means, standard deviations and statistical
   errors of thrust T, C, D, sphericity S, aplanarity A, B_T, B_W, y23, charged and total multiplicity,
   n_pi+-, n_K+-, n_p+pbar, n_gamma and <x_p> of charged particles; overlaid normalised histograms with
   diffgen/Pythia ratio panels (``--img-dir``, default ``docs/img``: ``validation_event_shapes.png``,
   ``validation_multiplicities.png``).
2. Parameter response: each of ``TimeShower:alphaSvalue``, ``StringZ:aLund``, ``StringZ:bLund``,
   ``StringPT:sigma``, ``StringFlav:probStoUD`` is set to (1 +- ``--step``) x default in both generators;
   Delta = <O>(+) - <O>(-) of <n_ch>, <T>, <C>, <n_K>, <x_p> with its statistical error (delta method on
   events paired by index, valid for correlated and independent samples; diffgen's +/- samples share the
   key, so their difference is much more precise). A sign disagreement is flagged only where both
   generators' Delta are significant (|Delta| >= ``--z`` sigma).

Pythia runs in a separate (spawned) process, overlapping with diffgen's generation. Targets (issue):
<n_ch> and <T> within 10 % of Pythia's; the same direction of change for every parameter.

Usage::

    python benchmarks/validate_pythia.py                       # 2x10^4 events per configuration (~8 min, 2 cores)
    python benchmarks/validate_pythia.py --events 2000 --no-plots   # quick check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from diffgen.params import DEFAULT_SQRT_S

SQRT_S = DEFAULT_SQRT_S
TUNE = ("TimeShower:alphaSvalue", "StringZ:aLund", "StringZ:bLund", "StringPT:sigma", "StringFlav:probStoUD")
RESPONSE_OBS = ("n_ch", "T", "C", "n_K", "x_p")
TARGET_REL = 0.10
#: name -> label of the nominal table
TABLE = {
    "T": "thrust T", "C": "C parameter", "D": "D parameter", "S": "sphericity S", "A": "aplanarity A",
    "B_T": "B_T", "B_W": "B_W", "y23": "y23 (Durham)", "n_ch": "charged multiplicity", "n": "total multiplicity",
    "n_pi": "n(pi+-)", "n_K": "n(K+-)", "n_p": "n(p, pbar)", "n_gamma": "n(gamma)", "x_p": "<x_p> of charged",
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="events per configuration and generator")
    ap.add_argument("--chunk", type=int, default=4000, help="diffgen events per gen.sample call")
    ap.add_argument("--obs-chunk", type=int, default=1000, help="events per observable evaluation (y23 is O(P^3))")
    ap.add_argument("--step", type=float, default=0.10, help="relative parameter step (+- step x default)")
    ap.add_argument("--z", type=float, default=3.0, help="significance (sigmas) for a change to count")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--img-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs",
                                                      "img"))
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-response", action="store_true", help="nominal comparison only")
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = ap.parse_args(argv)
    if args.events < 1 or args.chunk < 1 or args.obs_chunk < 1:
        ap.error("--events, --chunk and --obs-chunk must be >= 1")
    if not 0.0 < args.step < 0.5:
        ap.error("--step must be in (0, 0.5)")
    return args


# --------------------------------------------------------------------------- Pythia (worker process)

def pythia_worker(n, seed, settings):
    """Pythia events as compact float32/int32 arrays plus the CPU seconds spent (runs in a spawned process)."""
    import pythia_peer as py8

    t0 = time.process_time()
    d = py8.ee_hadrons_events(SQRT_S, n, seed=seed, settings=settings)
    return {"p4": d["p4"].astype(np.float32), "pid": d["pid"], "mask": d["mask"],
            "weight": d["weight"], "cpu_s": time.process_time() - t0}


# --------------------------------------------------------------------------- observables

def make_observables(obs_chunk, capacity):
    """Jitted per-event observables on host arrays (p4, pid, mask) padded to ``capacity`` slots."""
    import jax
    import jax.numpy as jnp

    from diffgen import observables as O
    from diffgen import particles
    from diffgen.events import Events

    e = SQRT_S / 2.0
    beams = jnp.array([[e, 0.0, 0.0, e], [e, 0.0, 0.0, -e]], jnp.float32)

    def events(p4, pid, mask):
        n = p4.shape[0]
        return Events.empty(n, capacity).replace(p4=p4, pid=pid, mask=mask,
                                                 p4_in=jnp.broadcast_to(beams, (n, 2, 4)))

    def cheap(p4, pid, mask):
        ev = events(p4, pid, mask)
        charged = ev.mask & (particles.charge3(ev.pid) != 0)
        xp = O.scaled_momentum(ev)
        return {"T": O.thrust(ev), "C": O.c_parameter(ev), "n_ch": O.charged_multiplicity(ev),
                "n_K": O.n_kaons(ev), "xp_sum": jnp.sum(jnp.where(charged, xp, 0.0), -1)}

    def full(p4, pid, mask):
        ev = events(p4, pid, mask)
        charged = ev.mask & (particles.charge3(ev.pid) != 0)
        out = cheap(p4, pid, mask)
        out.update({"D": O.d_parameter(ev), "S": O.sphericity(ev), "A": O.aplanarity(ev), "B_T": O.b_total(ev),
                    "B_W": O.b_wide(ev), "y23": O.durham_y23(ev), "n": O.multiplicity(ev),
                    "n_pi": O.n_pions(ev), "n_p": O.n_protons(ev), "n_gamma": O.count(ev, (22,)),
                    "xp": O.scaled_momentum(ev), "charged": charged})
        return out

    jit = {"cheap": jax.jit(cheap), "full": jax.jit(full)}

    def run(kind, p4, pid, mask):
        n, p = mask.shape
        if p > capacity:
            raise ValueError(f"an event has {p} slots > observable capacity {capacity}")
        outs = []
        for s in range(0, n, obs_chunk):
            sl = slice(s, min(s + obs_chunk, n))
            m = sl.stop - sl.start
            a4 = np.zeros((obs_chunk, capacity, 4), np.float32)
            ai = np.zeros((obs_chunk, capacity), np.int32)
            am = np.zeros((obs_chunk, capacity), bool)
            a4[:m, :p], ai[:m, :p], am[:m, :p] = p4[sl], pid[sl], mask[sl]
            r = jax.device_get(jit[kind](a4, ai, am))
            outs.append({k: v[:m] for k, v in r.items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    return run


# --------------------------------------------------------------------------- statistics

def wstats(values, w, denom=None):
    """Weighted mean, std and error of the mean (delta method) of a per-event quantity.

    With ``denom`` (f[N]) the ratio Σ w values / Σ w denom (e.g. <x_p> per charged particle); the std is
    then not defined (NaN). Also returns the per-event residuals r_i with err = sqrt(Σ r_i²).
    """
    values = np.asarray(values, np.float64)
    w = np.asarray(w, np.float64)
    if denom is None:
        sw = w.sum()
        mean = (w * values).sum() / sw
        resid = w * (values - mean) / sw
        std = np.sqrt((w * (values - mean) ** 2).sum() / sw)
    else:
        denom = np.asarray(denom, np.float64)
        sd = (w * denom).sum()
        mean = (w * values).sum() / sd
        resid = w * (values - mean * denom) / sd
        std = float("nan")
    return {"mean": float(mean), "std": float(std), "err": float(np.sqrt((resid**2).sum())), "resid": resid}


def summarise(obs, w, keys):
    out = {}
    for k in keys:
        if k == "x_p":
            out[k] = wstats(obs["xp_sum"], w, obs["n_ch"])
        else:
            out[k] = wstats(obs[k], w)
    return out


# --------------------------------------------------------------------------- diffgen sampling

def diffgen_sample(gen, params, key, n, chunk):
    """n events in chunks of ``chunk`` (one compiled sampler): host p4/pid/mask (cut to the occupied slots),
    weights (0 for flagged events), status counts, CPU seconds."""
    import jax

    from diffgen.events import status_summary
    from diffgen.expect import event_weights

    t0 = time.process_time()
    parts, status = [], {}
    for s in range(0, n, chunk):
        ev = gen.sample(params, key, chunk, offset=s)
        m = min(chunk, n - s)
        parts.append(jax.device_get({"p4": ev.p4[:m], "pid": ev.pid[:m], "mask": ev.mask[:m],
                                     "w": event_weights(ev)[:m], "status": ev.status[:m]}))
        for k, v in status_summary(parts[-1]["status"]).items():
            status[k] = status.get(k, 0) + v
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("p4", "pid", "mask", "w")}
    mask = out["mask"]
    if np.any(mask[:, 1:] & ~mask[:, :-1]):  # compacted: occupied slots first (decays stage contract)
        raise RuntimeError("diffgen events are not compacted (occupied slots first)")
    used = int(mask.sum(1).max())
    out.update(p4=out["p4"][:, :used], pid=out["pid"][:, :used], mask=mask[:, :used], status=status,
               cpu_s=time.process_time() - t0)
    return out


def like(old, new):
    """``new`` with the type of ``old`` (jax array dtype, or a Python float), so that jit does not retrace."""
    import jax.numpy as jnp

    return jnp.asarray(new, old.dtype) if hasattr(old, "dtype") else float(new)


# --------------------------------------------------------------------------- plots

HISTS = {
    # name: (x label, bins, log-y, transform)
    "one_minus_T": ("1 − T", np.linspace(0.0, 0.4, 41), True),
    "C": ("C", np.linspace(0.0, 1.0, 41), True),
    "S": ("S", np.linspace(0.0, 1.0, 41), True),
    "A": ("A", np.linspace(0.0, 0.3, 31), True),
    "B_T": ("B_T", np.linspace(0.0, 0.35, 36), True),
    "B_W": ("B_W", np.linspace(0.0, 0.3, 31), True),
    "ln_y23": ("−ln y23", np.linspace(0.0, 12.0, 49), False),
    "D": ("D", np.linspace(0.0, 1.0, 41), True),
    "n_ch": ("n_ch", np.arange(-0.5, 61.0, 2.0), False),
    "n": ("n (all final)", np.arange(-0.5, 101.0, 3.0), False),
    "n_pi": ("n(π±)", np.arange(-0.5, 51.0, 2.0), False),
    "n_K": ("n(K±)", np.arange(-0.5, 12.0, 1.0), False),
    "n_p": ("n(p, p̄)", np.arange(-0.5, 8.0, 1.0), False),
    "n_gamma": ("n(γ)", np.arange(-0.5, 61.0, 2.0), False),
    "xp": ("x_p (charged)", np.linspace(0.0, 1.0, 51), True),
    "xi": ("ξ_p = ln(1/x_p) (charged)", np.linspace(0.0, 7.0, 36), False),
}


def hist_inputs(obs, w):
    """name -> (values, weights) for HISTS; per-particle ones flattened over charged particles."""
    xp, ch = obs["xp"], obs["charged"]
    wp = np.broadcast_to(w[:, None], xp.shape)[ch]
    xpc = xp[ch]
    y23 = np.asarray(obs["y23"], np.float64)
    out = {"one_minus_T": (1.0 - obs["T"], w), "ln_y23": (-np.log(np.where(y23 > 0, y23, 1e-30)), w),
           "xp": (xpc, wp), "xi": (-np.log(np.clip(xpc, 1e-12, None)), wp)}
    for k in ("C", "S", "A", "B_T", "B_W", "D", "n_ch", "n", "n_pi", "n_K", "n_p", "n_gamma"):
        out[k] = (obs[k], w)
    return out


def norm_hist(values, w, bins):
    """Histogram normalised to the number of entries per event (per-event w, sum over all entries)."""
    values = np.asarray(values, np.float64)
    w = np.asarray(w, np.float64)
    c, _ = np.histogram(values, bins, weights=w)
    e2, _ = np.histogram(values, bins, weights=w * w)
    return c, np.sqrt(e2)


def plot_grid(names, hd, hp, sw_d, sw_p, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        import mplhep

        plt.style.use(mplhep.style.ROOT)
        plt.rcParams.update({"font.size": 11, "axes.labelsize": 11, "legend.fontsize": 9,
                             "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.figsize": (16, 8)})
    except ImportError:
        pass
    ncol = 4
    nrow = -(-len(names) // ncol)
    fig = plt.figure(figsize=(4.2 * ncol, 4.4 * nrow))
    outer = fig.add_gridspec(nrow, ncol, hspace=0.35, wspace=0.32)
    for i, name in enumerate(names):
        label, bins, logy = HISTS[name]
        inner = outer[i // ncol, i % ncol].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
        ax, rax = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
        width = np.diff(bins)
        cd, ed = (x / sw_d / width for x in hd[name])
        cp, ep = (x / sw_p / width for x in hp[name])
        ax.stairs(cp, bins, color="k", label="Pythia 8.317 (Monash)", linewidth=1.3)
        ax.stairs(cd, bins, color="tab:red", label="diffgen", linewidth=1.3)
        mids = 0.5 * (bins[1:] + bins[:-1])
        ax.errorbar(mids, cd, ed, fmt="none", color="tab:red", linewidth=0.8)
        ax.errorbar(mids, cp, ep, fmt="none", color="k", linewidth=0.8)
        if logy:
            ax.set_yscale("log")
        ax.set_xlim(bins[0], bins[-1])
        ax.tick_params(labelbottom=False)
        ax.set_ylabel("1/N dN/dx")
        if i == 0:
            ax.legend(loc="best", frameon=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(cp > 0, cd / cp, np.nan)
            re = np.where(cp > 0, r * np.sqrt((ed / np.where(cd > 0, cd, 1)) ** 2 + (ep / cp) ** 2), np.nan)
        rax.stairs(r, bins, color="tab:red", linewidth=1.1)
        rax.errorbar(mids, r, re, fmt="none", color="tab:red", linewidth=0.8)
        rax.axhline(1.0, color="k", linewidth=0.8)
        rax.set_ylim(0.0, 2.0)
        rax.set_xlim(bins[0], bins[-1])
        rax.set_xlabel(label)
        rax.set_ylabel("diffgen / Py8")
    fig.suptitle(title, fontsize=13)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    n = args.events
    t_start = time.perf_counter()
    pool = ProcessPoolExecutor(max_workers=1, mp_context=__import__("multiprocessing").get_context("spawn"))
    configs = [("nominal", None, 0)]
    if not args.no_response:
        configs += [(name, sign, s) for name in TUNE for s, sign in ((1, +1), (-1, -1))]
    # Pythia: same seed for +/- of one parameter (paired), another for the nominal sample
    futures = {}
    import jax
    import pythia_peer as py8

    import diffgen

    defaults = py8.default_settings()
    for name, sign, _ in configs:
        settings = None if sign is None else {name: defaults[name] * (1.0 + sign * args.step)}
        seed = args.seed if sign is None else args.seed + 1 + TUNE.index(name)
        futures[(name, sign)] = pool.submit(pythia_worker, n, seed, settings)

    gen = diffgen.presets.ee_hadrons(sqrt_s=SQRT_S)
    params = gen.default_params()
    # every setting as a float32 array (as with_settings makes them), so that varied params reuse the compiled sampler
    params = diffgen.with_settings(params, diffgen.settings(params))
    base = diffgen.settings(params)
    mismatch = {k: (float(base[k]), defaults[k]) for k in TUNE if abs(float(base[k]) - defaults[k]) > 1e-6}
    if mismatch:
        print(f"  WARNING: diffgen defaults differ from Pythia's: {mismatch}")
    observers = {}

    def run_obs(kind, p4, pid, mask):  # one jitted observable set per slot capacity (occupied slots, to 32)
        cap = max(32, -(-mask.shape[1] // 32) * 32)  # y23 costs O(P^3): do not pad to diffgen's 160 slots
        if cap not in observers:
            observers[cap] = make_observables(args.obs_chunk, cap)
        return observers[cap](kind, p4, pid, mask)

    res = {"machine": {"date": datetime.date.today().isoformat(), "platform": platform.platform(),
                       "cores": os.cpu_count(), "jax": jax.__version__, "loadavg_start": os.getloadavg()},
           "args": vars(args)}
    print(f"== validate diffgen vs Pythia 8: {n:_} events per configuration, {len(configs)} configurations",
          flush=True)

    key_nom = jax.random.key(args.seed)
    key_var = jax.random.key(args.seed + 1)
    dg = {}
    for name, sign, _ in configs:
        if sign is None:
            p, key = params, key_nom
        else:
            old = base[name]
            p = diffgen.with_settings(params, {name: like(old, float(old) * (1.0 + sign * args.step))})
            key = key_var  # +/- (and all parameters) share the key: paired, correlated samples
        t0 = time.perf_counter()
        d = diffgen_sample(gen, p, key, n, args.chunk)
        kind = "full" if sign is None else "cheap"
        obs = run_obs(kind, d["p4"], d["pid"], d["mask"])
        dg[(name, sign)] = {"obs": obs, "w": d["w"], "status": d["status"], "cpu_s": d["cpu_s"]}
        print(f"  diffgen {name} {'' if sign is None else '+-'[sign < 0]}: {time.perf_counter() - t0:.0f} s "
              f"(sampling {d['cpu_s']:.0f} s cpu); flagged: "
              + (", ".join(f"{k} {v}" for k, v in d["status"].items() if v) or "none"), flush=True)

    py = {}
    for (name, sign), fut in futures.items():
        d = fut.result()
        kind = "full" if sign is None else "cheap"
        py[(name, sign)] = {"obs": run_obs(kind, d["p4"], d["pid"], d["mask"]), "w": d["weight"],
                            "cpu_s": d["cpu_s"], "max_mult": int(d["mask"].sum(1).max())}
    pool.shutdown()
    print(f"  Pythia done ({sum(v['cpu_s'] for v in py.values()):.0f} s cpu in the worker); "
          f"total so far {time.perf_counter() - t_start:.0f} s", flush=True)

    # ---------------------------------------------------------------- 1. nominal table
    keys = list(TABLE)
    sd = summarise(dg[("nominal", None)]["obs"], dg[("nominal", None)]["w"], keys)
    sp = summarise(py[("nominal", None)]["obs"], py[("nominal", None)]["w"], keys)
    print(f"\n== nominal: diffgen (defaults) vs Pythia 8 (Monash, no ISR), {n:_} events each")
    print(f"  {'observable':28s} {'diffgen mean':>20s} {'Pythia mean':>20s} {'ratio':>7s} "
          f"{'diffgen std':>11s} {'Pythia std':>11s}")
    nominal = {}
    for k in keys:
        a, b = sd[k], sp[k]
        ratio = a["mean"] / b["mean"] if b["mean"] != 0 else float("nan")
        nominal[k] = {"diffgen": {x: a[x] for x in ("mean", "std", "err")},
                      "pythia": {x: b[x] for x in ("mean", "std", "err")}, "ratio": ratio}
        prec = 5 if abs(b["mean"]) < 1 else 3
        print(f"  {TABLE[k]:28s} {a['mean']:11.{prec}f} ± {a['err']:.{prec}f} {b['mean']:11.{prec}f} ± "
              f"{b['err']:.{prec}f} {ratio:7.3f} {a['std']:11.4f} {b['std']:11.4f}")
    res["nominal"] = nominal
    res["diffgen_status"] = dg[("nominal", None)]["status"]
    res["pythia_max_multiplicity"] = py[("nominal", None)]["max_mult"]
    verdicts = {}
    for k in ("n_ch", "T"):
        rel = nominal[k]["ratio"] - 1.0
        verdicts[f"{k}_within_10pct"] = abs(rel) <= TARGET_REL
        print(f"  target: <{k}> within 10 % of Pythia: {rel:+.2%}  {'PASS' if abs(rel) <= TARGET_REL else 'MISS'}")

    # ---------------------------------------------------------------- 2. response
    if not args.no_response:
        print(f"\n== response: Delta = <O>(default x {1 + args.step:g}) - <O>(default x {1 - args.step:g}); "
              f"z = Delta/error; sign disagreement flagged only where both |z| >= {args.z:g}")
        print(f"  {'parameter':24s} {'obs':5s} {'diffgen Delta':>22s} {'z':>7s} {'Pythia Delta':>22s} {'z':>7s}"
              "  verdict")
        response = {}
        counts = {"agree (both significant)": 0, "DISAGREE (both significant)": 0,
                  "same sign, not both significant": 0, "opposite sign, not both significant": 0}
        for name in TUNE:
            response[name] = {}
            for o in RESPONSE_OBS:
                out = {}
                for gname, store in (("diffgen", dg), ("pythia", py)):
                    plus = summarise(store[(name, +1)]["obs"], store[(name, +1)]["w"], [o])[o]
                    minus = summarise(store[(name, -1)]["obs"], store[(name, -1)]["w"], [o])[o]
                    delta = plus["mean"] - minus["mean"]
                    err = float(np.sqrt(((plus["resid"] - minus["resid"]) ** 2).sum()))
                    out[gname] = {"delta": delta, "err": err, "z": delta / err if err > 0 else float("inf"),
                                  "plus": plus["mean"], "minus": minus["mean"]}
                zd, zp = out["diffgen"]["z"], out["pythia"]["z"]
                same = np.sign(zd) == np.sign(zp)
                both = abs(zd) >= args.z and abs(zp) >= args.z
                if both:
                    verdict = "agree" if same else "DISAGREE"
                    counts["agree (both significant)" if same else "DISAGREE (both significant)"] += 1
                else:
                    verdict = "same sign (n.s.)" if same else "opposite (n.s.)"
                    counts["same sign, not both significant" if same else "opposite sign, not both significant"] += 1
                out["verdict"] = verdict
                response[name][o] = out
                d_, p_ = out["diffgen"], out["pythia"]
                print(f"  {name:24s} {o:5s} {d_['delta']:+11.5f} ± {d_['err']:.5f} {zd:+7.1f} "
                      f"{p_['delta']:+11.5f} ± {p_['err']:.5f} {zp:+7.1f}  {verdict}")
        res["response"] = response
        res["response_counts"] = counts
        verdicts["no_significant_sign_disagreement"] = counts["DISAGREE (both significant)"] == 0
        print("  summary: " + "; ".join(f"{k}: {v}" for k, v in counts.items()))

    # ---------------------------------------------------------------- plots
    if not args.no_plots:
        os.makedirs(args.img_dir, exist_ok=True)
        od, wd = dg[("nominal", None)]["obs"], dg[("nominal", None)]["w"]
        op, wp = py[("nominal", None)]["obs"], py[("nominal", None)]["w"]
        hi_d, hi_p = hist_inputs(od, wd), hist_inputs(op, wp)
        hd = {k: norm_hist(*hi_d[k], HISTS[k][1]) for k in HISTS}
        hp = {k: norm_hist(*hi_p[k], HISTS[k][1]) for k in HISTS}
        sw_d, sw_p = float(np.sum(wd)), float(np.sum(wp))
        title = f"e+e− → hadrons, √s = {SQRT_S} GeV: diffgen (defaults) vs Pythia 8.317 (Monash, no ISR), "
        paths = {}
        for fname, names, what in (
                ("validation_event_shapes.png", ["one_minus_T", "C", "S", "A", "B_T", "B_W", "ln_y23", "D"],
                 "event shapes"),
                ("validation_multiplicities.png", ["n_ch", "n", "n_pi", "n_K", "n_p", "n_gamma", "xp", "xi"],
                 "multiplicities and x_p")):
            path = os.path.normpath(os.path.join(args.img_dir, fname))
            plot_grid(names, hd, hp, sw_d, sw_p, path, title + f"{n:_} events each: {what}")
            paths[fname] = path
            print(f"  wrote {path}")
        res["plots"] = paths

    res["verdicts"] = verdicts
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["wall_s"] = time.perf_counter() - t_start
    print(f"\n  total {res['wall_s']:.0f} s; load average at start {res['machine']['loadavg_start']}, "
          f"end {res['machine']['loadavg_end']}")
    if args.json:
        def clean(o):
            if isinstance(o, dict):
                return {str(k): clean(v) for k, v in o.items() if k != "resid"}
            return o

        with open(args.json, "w") as f:
            json.dump(clean(res), f, indent=2, default=float)
        print(f"  wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
