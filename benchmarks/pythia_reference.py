"""Regenerate every Pythia 8 number diffgen's tests and docs quote, into one versioned data file.

    python benchmarks/pythia_reference.py                  # 10^5 events per e+e- configuration (~15 min, 2 cores)
    python benchmarks/pythia_reference.py --events 20000   # quicker, larger errors
    python benchmarks/pythia_reference.py --only monash    # rerun some configurations, merged into the file

Needs the ``peers`` extra (``pip install ".[peers]"``: pythia8mc 8.317). Writes
``tests/data/pythia_reference.json`` (atomically), which the tests read; every entry carries the Pythia
settings, seed and event count that made it, and every mean its statistical error. No test or document
may quote a Pythia number that is not in this file or made by a script next to it.

Contents (all Pythia 8.317, Monash defaults, e+e- beams without ISR, ``PDF:lepton = off``):

* ``sigma``: σ(e+e- → γ*/Z → μ+μ-) at 60, 91.188, 130 GeV and σ(e+e- → hadrons, q = d…b) at 91.188 GeV (pb).
* ``ee_hadrons``: e+e- → hadrons at 91.188 GeV in several configurations —
  ``monash`` (defaults), ``no_baryons`` (``StringFlav:probQQtoQ = 0``), ``weak_off`` (particles with
  τ0 > 10 mm stable: Λ, K_S⁰, Σ, Ξ, Ω counted before their weak decays), ``alphas_minus`` and
  ``alphas_plus`` (``TimeShower:alphaSvalue`` = 0.97 and 1.03 × 0.1365) — each with the means, standard
  deviations and errors of the event shapes and multiplicities computed by diffgen's own observable
  functions (the same jitted code as diffgen's events go through, ``benchmarks/validate_pythia.py``), per
  species rates, and for ``monash`` the normalised histograms of n_ch, n_final, 1 − T, S, A, C, n(π±), n(K±).
* ``strings_only``: q q̄ strings without FSR, decays or baryons (``PartonLevel:FSR = off``,
  ``HadronLevel:Decay = off``, ``StringFlav:probQQtoQ = 0``) for u ū and b b̄: primary-hadron multiplicity
  and π± / K± rates.
* ``decay_gun``: mean charged multiplicity of the decay of single particles at rest (particle gun,
  ``ProcessLevel:all = off``, default decay settings).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = HERE.parent / "tests" / "data" / "pythia_reference.json"
SCHEMA = 1
SQRT_S = 91.188
ALPHA_S = 0.1365
ALPHA_S_STEP = 0.03
MUMU_ENERGIES = (60.0, 91.188, 130.0)

#: e+e- → hadrons configurations: name -> Pythia settings (applied after the Monash defaults)
CONFIGS = {
    "monash": {},
    "no_baryons": {"StringFlav:probQQtoQ": 0.0},
    "weak_off": {"ParticleDecays:limitTau0": "on", "ParticleDecays:tau0Max": 10.0},
    "alphas_minus": {"TimeShower:alphaSvalue": ALPHA_S * (1 - ALPHA_S_STEP)},
    "alphas_plus": {"TimeShower:alphaSvalue": ALPHA_S * (1 + ALPHA_S_STEP)},
}
#: q q̄ strings alone: no FSR, no decays, no baryons
STRINGS_ONLY = {"PartonLevel:FSR": "off", "HadronLevel:Decay": "off", "StringFlav:probQQtoQ": 0.0}
#: particle-gun species (decays at rest)
GUN = (421, 411, 431, 521, 511, 531, 441, 443, 15, 223, 221, 331, 333, 310, 3122, 3334)
#: species counted per event (|PDG id|, particle + antiparticle)
SPECIES = {"pi_pm": (211,), "K_pm": (321,), "p": (2212,), "n": (2112,), "gamma": (22,), "K0L": (130,),
           "K0S": (310,), "Lambda": (3122,), "Sigma": (3112, 3222, 3212), "Xi": (3312, 3322), "Omega": (3334,),
           "pi0": (111,)}
#: event-level observables computed with diffgen.observables (validate_pythia.make_observables keys)
OBS = {"n_ch": "charged multiplicity", "n": "all final-state particles", "T": "thrust",
       "one_minus_T": "1 - thrust", "S": "sphericity", "A": "aplanarity", "C": "C parameter",
       "D": "D parameter", "B_T": "total jet broadening", "B_W": "wide jet broadening"}
#: histograms of the issue's LEP comparison: name -> bin edges
HISTS = {
    "n_ch": np.arange(-0.5, 61.0, 2.0), "n": np.arange(-0.5, 101.0, 3.0),
    "one_minus_T": np.linspace(0.0, 0.4, 41), "S": np.linspace(0.0, 1.0, 41), "A": np.linspace(0.0, 0.3, 31),
    "C": np.linspace(0.0, 1.0, 41), "n_pi": np.arange(-0.5, 51.0, 2.0), "n_K": np.arange(-0.5, 12.0, 1.0),
}


# --------------------------------------------------------------------------- Pythia workers (spawned processes)

def _hadron_worker(name, settings, n, seed):
    import pythia_peer as py8

    t0 = time.process_time()
    d = py8.ee_hadrons_events(SQRT_S, n, seed=seed, settings=settings)
    return name, {"p4": d["p4"].astype(np.float32), "pid": d["pid"], "mask": d["mask"],
                  "sigma_pb": d["sigma_pb"], "error_pb": d["error_pb"], "cpu_s": time.process_time() - t0}


def _strings_worker(quark, n, seed):
    import pythia_peer as py8

    settings = {**STRINGS_ONLY, "23:onMode": "off", "23:onIfAny": quark}
    d = py8.ee_hadrons_events(SQRT_S, n, seed=seed, settings=settings)
    pid = np.abs(d["pid"])
    out = {"settings": {k: str(v) for k, v in settings.items()}, "events": n, "seed": seed}
    out["n_hadrons"] = _mean_err(d["mask"].sum(axis=1))
    for key, codes in (("pi_pm", (211,)), ("K_pm", (321,))):
        out[key] = _mean_err(np.isin(pid, codes).sum(axis=1))
    return {2: "uubar", 5: "bbbar"}[quark], out


def _gun_worker(codes, n, seed):
    import pythia_peer as py8

    py = py8._pythia(["ProcessLevel:all = off"], seed)
    out = {}
    for pid in codes:
        m = py.particleData.m0(pid)
        counts = np.zeros(n)
        for i in range(n):
            py.event.reset()
            py.event.append(pid, 1, 0, 0, 0.0, 0.0, 0.0, m, m)
            if not py.next():
                raise RuntimeError(f"Pythia failed to decay {pid}")
            counts[i] = sum(1 for p in py.event if p.isFinal() and p.isCharged())
        out[str(pid)] = _mean_err(counts)
    return out


def _sigma_worker(n, seed):
    import pythia_peer as py8

    out = {}
    for e in MUMU_ENERGIES:
        s, err = py8.ee_ffbar_sigma(e, (13,), n_events=n, seed=seed, process="ffbar2gmZ")  # exact full angle
        out[f"mumu_{e:g}"] = [s, err]
    return out


# --------------------------------------------------------------------------- diffgen's observables on Pythia events

def make_observables(capacity=160, chunk=2000):
    """Jitted diffgen observables of host arrays (p4, pid, mask) padded to ``capacity`` slots (no y23: O(P³))."""
    import jax
    import jax.numpy as jnp

    from diffgen import observables as O
    from diffgen.events import Events

    e = SQRT_S / 2.0
    beams = jnp.array([[e, 0.0, 0.0, e], [e, 0.0, 0.0, -e]], jnp.float32)

    @jax.jit
    def one(p4, pid, mask):
        ev = Events.empty(p4.shape[0], capacity).replace(p4=p4, pid=pid, mask=mask,
                                                          p4_in=jnp.broadcast_to(beams, (p4.shape[0], 2, 4)))
        return {"T": O.thrust(ev), "C": O.c_parameter(ev), "D": O.d_parameter(ev), "S": O.sphericity(ev),
                "A": O.aplanarity(ev), "B_T": O.b_total(ev), "B_W": O.b_wide(ev),
                "n_ch": O.charged_multiplicity(ev), "n": O.multiplicity(ev), "n_pi": O.n_pions(ev),
                "n_K": O.n_kaons(ev)}

    def run(p4, pid, mask):
        n, p = mask.shape
        if p > capacity:
            raise ValueError(f"an event has {p} slots > observable capacity {capacity}")
        outs = []
        for s in range(0, n, chunk):
            sl = slice(s, min(s + chunk, n))
            m = sl.stop - sl.start
            a4 = np.zeros((chunk, capacity, 4), np.float32)
            ai = np.zeros((chunk, capacity), np.int32)
            am = np.zeros((chunk, capacity), bool)
            a4[:m, :p], ai[:m, :p], am[:m, :p] = p4[sl], pid[sl], mask[sl]
            r = jax.device_get(one(a4, ai, am))
            outs.append({k: np.asarray(v[:m]) for k, v in r.items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    return run


# --------------------------------------------------------------------------- statistics

def _mean_err(values):
    v = np.asarray(values, np.float64)
    return [float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))]


def _summarise(obs, pid, mask):
    out = {}
    for k in OBS:
        v = 1.0 - obs["T"] if k == "one_minus_T" else obs[k]
        v = np.asarray(v, np.float64)
        out[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "error": float(v.std(ddof=1) / math.sqrt(len(v)))}
    apid = np.where(mask, np.abs(pid), 0)
    for k, codes in SPECIES.items():
        c = np.isin(apid, codes).sum(axis=1).astype(np.float64)
        out[f"n_{k}"] = {"mean": float(c.mean()), "std": float(c.std(ddof=1)), "error": float(c.std(ddof=1) / math.sqrt(len(c)))}
    return out


def _histograms(obs):
    vals = {"n_ch": obs["n_ch"], "n": obs["n"], "one_minus_T": 1.0 - obs["T"], "S": obs["S"], "A": obs["A"],
            "C": obs["C"], "n_pi": obs["n_pi"], "n_K": obs["n_K"]}
    out = {}
    for k, edges in HISTS.items():
        v = np.asarray(vals[k], np.float64)
        c, _ = np.histogram(np.clip(v, edges[0], edges[-1] - 1e-9), edges)
        out[k] = {"edges": edges.tolist(), "counts": c.tolist(), "events": int(len(v))}
    return out


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events per e+e- → hadrons configuration")
    ap.add_argument("--gun-events", type=int, default=20_000, help="decays per particle-gun species")
    ap.add_argument("--strings-events", type=int, default=50_000, help="events per strings-only configuration")
    ap.add_argument("--workers", type=int, default=2, help="Pythia processes")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--only", nargs="*", default=None, help="configurations to run (default: all)")
    args = ap.parse_args(argv)
    if min(args.events, args.gun_events, args.strings_events, args.workers) < 1:
        ap.error("event counts and --workers must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)

    from diffgen.io.atomic import atomic_write

    t_start = time.time()
    configs = {k: v for k, v in CONFIGS.items() if args.only is None or k in args.only}
    capacity = 160
    run_obs = make_observables(capacity)
    ref = {"schema": SCHEMA, "generator": f"pythia8mc {importlib.metadata.version('pythia8mc')}",
           "tune": "Monash 2013 (Pythia 8.3 default)", "sqrt_s": SQRT_S,
           "made_by": "benchmarks/pythia_reference.py", "date": datetime.date.today().isoformat(),
           "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
           "sigma": {}, "ee_hadrons": {}, "strings_only": {}, "decay_gun": {}}
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futs = {}
        for i, (name, settings) in enumerate(configs.items()):
            futs[pool.submit(_hadron_worker, name, settings, args.events, args.seed + i)] = "hadrons"
        if args.only is None:
            for j, q in enumerate((2, 5)):
                futs[pool.submit(_strings_worker, q, args.strings_events, args.seed + 100 + j)] = "strings"
            futs[pool.submit(_gun_worker, GUN, args.gun_events, args.seed + 200)] = "gun"
            futs[pool.submit(_sigma_worker, 20_000, args.seed + 300)] = "sigma"
        for fut, kind in futs.items():
            res = fut.result()
            if kind == "hadrons":
                name, d = res
                print(f"[{time.time() - t_start:7.1f} s] {name}: {args.events} events in {d['cpu_s']:.0f} CPU s",
                      flush=True)
                obs = run_obs(d["p4"], d["pid"], d["mask"])
                entry = {"settings": {k: str(v) for k, v in configs[name].items()}, "events": args.events,
                         "seed": args.seed + list(configs).index(name),
                         "observables": _summarise(obs, d["pid"], d["mask"])}
                if name == "monash":
                    entry["histograms"] = _histograms(obs)
                    ref["sigma"]["hadrons_91.188"] = [d["sigma_pb"], d["error_pb"]]
                ref["ee_hadrons"][name] = entry
            elif kind == "strings":
                name, d = res
                ref["strings_only"][name] = d
            elif kind == "gun":
                ref["decay_gun"] = {"events": args.gun_events, "mean_charged": res}
            else:
                ref["sigma"].update(res)
    h = ref["ee_hadrons"]
    if "alphas_minus" in h and "alphas_plus" in h:
        lo, hi = h["alphas_minus"]["observables"]["n_ch"], h["alphas_plus"]["observables"]["n_ch"]
        d_as = 2 * ALPHA_S * ALPHA_S_STEP
        ref["dnch_dalphas"] = [(hi["mean"] - lo["mean"]) / d_as, math.hypot(hi["error"], lo["error"]) / d_as]
    out = Path(args.out)
    if args.only is not None and out.exists():  # partial rerun: merge into the existing file
        old = json.loads(out.read_text())
        for k in ("ee_hadrons", "sigma"):
            old[k].update(ref[k])
        if "dnch_dalphas" in ref:
            old["dnch_dalphas"] = ref["dnch_dalphas"]
        ref = old
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as f:  # temporary name, renamed on success
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {out} in {time.time() - t_start:.0f} s")
    for name, e in h.items():
        o = e["observables"]
        print(f"{name:13s} n_ch {o['n_ch']['mean']:.3f}±{o['n_ch']['error']:.3f}  n {o['n']['mean']:.3f}  "
              f"1-T {o['one_minus_T']['mean']:.5f}  p {o['n_p']['mean']:.3f}  Lambda {o['n_Lambda']['mean']:.3f}")
    if "dnch_dalphas" in ref:
        print("d<n_ch>/d alpha_s = {:.1f} ± {:.1f}".format(*ref["dnch_dalphas"]))


if __name__ == "__main__":
    main()
