"""Benchmark: e+e- -> gamma*/Z -> hadrons (full chain) throughput, gradient cost and stage profile vs Pythia 8.

The chain is ``diffgen.presets.ee_hadrons`` at sqrt(s) = 91.188 GeV: hard process (q = d..b),
final-state shower, Lund strings, hadron decays; default (Monash-like) parameters. Measured in one
process, so that diffgen and its peer see the same machine load:

1. diffgen events/s of ``gen.sample(params, key, n)`` at ``--events`` events (jitted; a warm-up call
   first, whose excess over the best call is reported as the compile time), ``block_until_ready``.
2. Gradient cost: ``jax.grad`` of the self-normalised weighted mean thrust <T> = sum w T / sum w
   (:func:`diffgen.expect.expect_of` on ``gen.sample_traced``) w.r.t. the five tune parameters
   ``TimeShower:alphaSvalue``, ``StringZ:aLund``, ``StringZ:bLund``, ``StringPT:sigma``,
   ``StringFlav:probStoUD``, divided by the time of <T> alone (both jitted, ``--grad-events``).
3. Memory: bytes of the Events pytree per event (per leaf), XLA's temporary buffers per event of the
   compiled sampler, and the peak-RSS increase around the first ``gen.sample`` call (incl. compile).
4. Pythia 8 (``pythia8mc``) full chain for the same process (Monash, no ISR, FSR + hadronization +
   decays; :func:`diffgen.peers.pythia.time_events` ``"full"``, one thread, initialisation not timed),
   and the ratios diffgen / Pythia.
5. Profile (unless ``--no-profile``): the chain's stage prefixes (hard; + shower; + hadronization;
   + decays), each a ``diffgen.Generator(diffgen.chain(...))`` sampled at ``--events`` events, and
   the thrust observable alone; the per-stage cost is the difference of consecutive prefixes.

Every timing is repeated ``--repeats`` times, diffgen and Pythia interleaved; the best (min time) is
reported with the worst beside it, and a per-CPU-second column (process user + system time of all
threads), which is steadier than wall time on a shared machine. Targets (from the issue):
>= 10x Pythia's full-chain events/s, and grad <= 5x the forward pass.

Usage::

    python benchmarks/ee_hadrons.py                       # defaults: 8000 events, 2000 for the gradient
    python benchmarks/ee_hadrons.py --events 2000 --grad-events 500 --repeats 2 --no-profile   # quick
    python benchmarks/ee_hadrons.py --json ee_hadrons.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

SQRT_S = 91.188  # = diffgen.params.DEFAULT_SQRT_S (imported lazily, after XLA_FLAGS is set)
TARGET_SPEEDUP = 0.5  # issue 12: full chain >= 0.5x Pythia's events per CPU-second (aiming for >= 1x)
TARGET_GRAD_RATIO = 5.0
TARGET_COMPILE_S = 10.0  # first-call compile
TARGET_WARM_START_S = 3.0  # a second process with a warm persistent cache, to the first event

_COLD_START = r"""
import sys, time
t0 = time.time()
import jax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
import diffgen
gen = diffgen.presets.ee_hadrons()
ev = gen.sample(gen.default_params(), jax.random.key(1), int(sys.argv[2]))
jax.block_until_ready(ev)
print(f"FIRST_EVENTS_S {time.time() - t0:.3f}")
"""
TUNE = ("TimeShower:alphaSvalue", "StringZ:aLund", "StringZ:bLund", "StringPT:sigma", "StringFlav:probStoUD")


def _helpers():
    """The machine-info and timing helpers of ``ee_mumu.py`` (same directory)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import ee_mumu

    return ee_mumu


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--events", type=int, default=8000, help="diffgen events per timed gen.sample call")
    ap.add_argument("--grad-events", type=int, default=2000, help="events for the <T> forward / grad timings")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions (best and spread reported)")
    ap.add_argument("--pythia-events", type=int, default=10_000, help="Pythia events per timed run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-profile", action="store_true", help="skip the per-stage profile")
    ap.add_argument("--no-pythia", action="store_true", help="skip Pythia even if pythia8mc is importable")
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    ap.add_argument("--devices", type=int, default=os.cpu_count(),
                    help="host CPU devices to shard the event axis over (XLA_FLAGS, set before JAX starts)")
    ap.add_argument("--sizes", default="2000,8000,50000",
                    help="comma-separated n for the compile-once check (events/s per n, compilations counted)")
    ap.add_argument("--no-cold-start", action="store_true", help="skip the two fresh-process start-up timings")
    args = ap.parse_args(argv)
    for name in ("events", "grad_events", "repeats", "pythia_events"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def stage_prefixes(sqrt_s):
    """Generators for the prefixes of the ee_hadrons chain (same stage factories and defaults as the preset)."""
    import diffgen
    from diffgen.decays import hadron_decays
    from diffgen.hadronization import string_fragmentation
    from diffgen.processes import ee_to_ffbar
    from diffgen.shower import final_state_shower

    stages = [("hard", ee_to_ffbar((1, 2, 3, 4, 5), sqrt_s)), ("shower", final_state_shower()),
              ("hadronization", string_fragmentation()), ("decays", hadron_decays())]
    labels = ["hard only", "+ shower", "+ hadronization", "+ decays (full chain)"]
    return [(labels[k], diffgen.Generator(diffgen.chain(*stages[: k + 1]), name=labels[k]))
            for k in range(len(stages))]


def _compile_counter():
    """A list that grows by one per XLA backend compilation (jax.monitoring duration events)."""
    import jax

    events = []

    def listener(name, duration, **kw):
        if "backend_compile" in name:
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    return events


def sizes_check(h, gen, params, key, sizes, compiles):
    """events/s at each n (first and second call) and the compilations each first call triggered."""
    out = {}
    for n in sizes:
        before = len(compiles)
        m1, _ = h.timed(gen.sample, params, key, n)
        # XLA compiles every new eager op too (the slice that cuts the padding, the concatenation of
        # blocks: milliseconds each); a compilation of the chain takes seconds
        new = sum(1 for d in compiles[before:] if d > 1.0)
        small = len(compiles) - before - new
        m2, _ = h.timed(gen.sample, params, jax_fold(key, n), n)
        out[n] = {"first_s": m1["wall"], "second_s": m2["wall"], "events_per_s": n / m2["wall"],
                  "events_per_cpu_s": n / m2["cpu"], "compilations": new, "small_compilations": small}
        print(f"  n = {n:_}: first call {m1['wall']:.2f} s ({new} compilations > 1 s, {small} smaller), then "
              f"{n / m2['wall']:,.0f} ev/s "
              f"({n / m2['cpu']:,.0f} per cpu-s)", flush=True)
    return out


def jax_fold(key, data):
    import jax

    return jax.random.fold_in(key, data)


def cold_start(n):
    """Wall time from process start to the first ``n`` events: a cold cache dir, then the same dir warm."""
    import subprocess
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for label in ("cold", "warm"):
            r = subprocess.run([sys.executable, "-c", _COLD_START, d, str(n)], capture_output=True, text=True,
                               timeout=900)
            line = [x for x in r.stdout.splitlines() if x.startswith("FIRST_EVENTS_S")]
            out[label] = float(line[0].split()[1]) if line else None
            print(f"  new process, {label} persistent cache: {out[label]} s to the first {n:_} events", flush=True)
    return out


def scheduler_stats(gen, params, key, n):
    """Work per event and slot utilisation of the shower and string schedulers (Stage.diagnose), and the
    utilisation lock-step batching would have had (mean / max work of the batch; strings: / 96 fixed steps)."""
    import numpy as np

    from diffgen.stage import diagnose

    _, info = diagnose(gen, params, key, n)
    out = {}
    for name, d in info.items():
        w = np.asarray(d["work"])
        it, busy, slots = int(d["iterations"]), int(d["busy"]), int(d["slots"])
        fixed = 96 if name == "hadronization" else w.max()
        out[name] = {"work_mean": float(w.mean()), "work_max": int(w.max()), "iterations": it, "slots": slots,
                     "utilisation_pool": busy / (it * slots), "utilisation_lockstep": float(w.mean() / fixed)}
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.devices > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.devices}").strip()
    h = _helpers()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import pythia_peer as py8

    import diffgen
    from diffgen.events import status_summary
    from diffgen.expect import expect_of
    from diffgen.observables import charged_multiplicity, thrust

    n, ng, reps = args.events, args.grad_events, args.repeats
    have_pythia = (not args.no_pythia) and py8.available()
    machine = {
        "date": datetime.date.today().isoformat(), "platform": platform.platform(),
        "python": platform.python_version(), "cpu": h.cpu_model(), "cores": os.cpu_count(),
        "jax": jax.__version__, "device": str(jax.devices()[0]), "x64": bool(jax.config.jax_enable_x64),
        "local_devices": jax.local_device_count(),
        "pythia8mc": h._pythia_version() if have_pythia else None, "loadavg_start": os.getloadavg(),
    }
    print("== machine")
    for k, v in machine.items():
        print(f"  {k:14s} {v}")
    print(f"== settings: events={n:_} grad-events={ng:_} repeats={reps} pythia-events={args.pythia_events:_}",
          flush=True)

    gen = diffgen.presets.ee_hadrons(sqrt_s=SQRT_S)
    params = gen.default_params()
    key = jax.random.key(args.seed)
    res: dict = {"machine": machine, "args": vars(args)}

    # ---------------------------------------------------------------- 1. throughput (+ 3. memory)
    compiles = _compile_counter()
    rss0 = h.peak_rss_bytes()
    first, ev = h.timed(gen.sample, params, key, n)
    rss1 = h.peak_rss_bytes()
    print(f"  first gen.sample({n:_}) (compile + run): {first['wall']:.1f} s wall, {first['cpu']:.1f} s cpu",
          flush=True)
    ev_bytes = sum(a.nbytes for a in jax.tree_util.tree_leaves(ev))
    per_leaf = {f: int(getattr(ev, f).nbytes // n) for f in ev.__dataclass_fields__}
    occupancy = np.asarray(ev.mask.sum(axis=1))
    sample_info = {"status": status_summary(ev.status), "capacity": int(ev.capacity),
                   "mean_multiplicity": float(occupancy.mean()), "max_multiplicity": int(occupancy.max()),
                   "mean_charged": float(jnp.mean(charged_multiplicity(ev))), "dtype": str(ev.p4.dtype)}
    del ev
    py_init_cpu = None
    if have_pythia:  # CPU cost of Pythia's init (+ 1 event), subtracted from its CPU time per run
        py_init_cpu = h.timed(py8.time_events, "full", SQRT_S, 1)[0]["cpu"]

    m_one, py_rates, py_cpu_rates = [], [], []
    for r in range(reps):
        m, ev = h.timed(gen.sample, params, key, n)
        m_one.append(m)
        del ev
        line = f"  repeat {r + 1}/{reps}: diffgen {n / m['wall']:,.0f} ev/s ({n / m['cpu']:,.0f} per cpu-s)"
        if have_pythia:
            m, rate = h.timed(py8.time_events, "full", SQRT_S, args.pythia_events, 1 + r)
            py_rates.append(rate)
            py_cpu_rates.append(args.pythia_events / max(m["cpu"] - py_init_cpu, 1e-9))
            line += f", Pythia {rate:,.0f} ev/s ({py_cpu_rates[-1]:,.0f} per cpu-s)"
        print(line, flush=True)
    one = h.best(m_one)
    res["throughput"] = {**one, "events_per_s": n / one["best_s"], "events_per_s_worst": n / one["worst_s"],
                         "events_per_cpu_s": n / one["best_cpu_s"], "first_call_s": first["wall"],
                         "first_call_cpu_s": first["cpu"], "compile_s_est": first["wall"] - one["best_s"],
                         "sample": sample_info}
    if have_pythia:
        res["pythia_full"] = {"events_per_s": max(py_rates), "events_per_s_worst": min(py_rates), "all": py_rates,
                              "events_per_cpu_s": max(py_cpu_rates), "all_per_cpu_s": py_cpu_rates,
                              "init_cpu_s": py_init_cpu, "n_events": args.pythia_events}

    mem = {"events_bytes_per_event": ev_bytes / n, "leaf_bytes_per_event": per_leaf,
           "peak_rss_delta_bytes": rss1 - rss0, "peak_rss_delta_per_event": (rss1 - rss0) / n}
    try:  # one block of the sampler on one device
        import functools

        from diffgen.stage import apply_indices

        nb = gen.block
        ma = (jax.jit(functools.partial(apply_indices, gen)).lower(params, key, jnp.arange(nb, dtype=jnp.uint32))
              .compile().memory_analysis())
        if ma is not None:
            mem["xla_output_bytes_per_event"] = ma.output_size_in_bytes / nb
            mem["xla_temp_bytes_per_event"] = ma.temp_size_in_bytes / nb
    except Exception as exc:  # backend-dependent; optional
        mem["xla_memory_analysis_error"] = repr(exc)
    res["memory"] = mem

    # ---------------------------------------------------------------- 2. gradient cost of <T>
    base = diffgen.settings(params)
    theta0 = {k: jnp.asarray(base[k], jnp.float32) for k in TUNE}
    gkey = jax.random.fold_in(key, 7)

    def mean_thrust(theta):
        return expect_of(thrust, gen.sample_traced(diffgen.with_settings(params, theta), gkey, ng))

    fns = {"forward": jax.jit(mean_thrust), "grad": jax.jit(jax.grad(mean_thrust))}
    first_calls = {}
    for name, fn in fns.items():
        m, _ = h.timed(fn, theta0)
        first_calls[name] = {"wall": m["wall"], "cpu": m["cpu"]}
        print(f"  first call of {name} <T> at {ng:_} events (compile + run): {m['wall']:.1f} s", flush=True)
    ms = {name: [] for name in fns}
    for _ in range(reps):  # interleaved, so that load changes hit both alike
        for name, fn in fns.items():
            ms[name].append(h.timed(fn, theta0)[0])
    times = {k: h.best(v) for k, v in ms.items()}
    t_val = float(fns["forward"](theta0))
    grads = {k: float(v) for k, v in fns["grad"](theta0).items()}
    res["gradient"] = {
        "n_events": ng, "mean_thrust": t_val, "grad": grads, "first_call": first_calls, "times": times,
        "ratio_to_forward": times["grad"]["best_s"] / times["forward"]["best_s"],
        "ratio_to_forward_cpu": times["grad"]["best_cpu_s"] / times["forward"]["best_cpu_s"],
        "ratio_per_repeat": [a["wall"] / b["wall"] for a, b in zip(ms["grad"], ms["forward"])],
        "compile_s_est": {k: first_calls[k]["wall"] - times[k]["best_s"] for k in fns},
    }
    try:
        ma = fns["grad"].lower(theta0).compile().memory_analysis()
        if ma is not None:
            res["gradient"]["xla_temp_bytes_per_event"] = ma.temp_size_in_bytes / ng
        ma = fns["forward"].lower(theta0).compile().memory_analysis()
        if ma is not None:
            res["gradient"]["forward_xla_temp_bytes_per_event"] = ma.temp_size_in_bytes / ng
    except Exception as exc:
        res["gradient"]["xla_memory_analysis_error"] = repr(exc)

    # ---------------------------------------------------------------- compile once, start-up, scheduler
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    print("== compile once: events/s per n (same process, compiled blocks reused)", flush=True)
    res["sizes"] = sizes_check(h, gen, params, key, sizes, compiles)
    if not args.no_cold_start:
        res["cold_start"] = cold_start(2000)
    res["scheduler"] = scheduler_stats(gen, params, key, gen.block)
    if not args.no_profile:
        res["profile"] = profile(h, gen, params, key, n, reps)
    machine["loadavg_end"] = os.getloadavg()
    report(res, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
        print(f"  wrote {args.json}")
    return res


def profile(h, gen, params, key, n, reps):
    """Time the stage prefixes of the chain and the thrust observable (jitted; best of ``reps``)."""
    import jax

    from diffgen.observables import thrust

    prefixes = stage_prefixes(SQRT_S)
    gens = []
    for label, g in prefixes[:-1]:
        p = {k: v for k, v in params.items() if k in g.default_params()}
        gens.append((label, g, p))
    gens.append((prefixes[-1][0], gen, params))  # the preset is exactly this chain: reuse its compiled sampler
    compile_s = {}
    for label, g, p in gens:
        m, _ = h.timed(g.sample, p, key, n)
        compile_s[label] = m["wall"]
        print(f"  profile: first call '{label}' {m['wall']:.1f} s", flush=True)
    ev = gen.sample(params, key, n)
    thrust_j = jax.jit(thrust)
    h.timed(thrust_j, ev)
    ms = {label: [] for label, _, _ in gens}
    ms["thrust(Events) alone"] = []
    for _ in range(reps):
        for label, g, p in gens:
            ms[label].append(h.timed(g.sample, p, key, n)[0])
        ms["thrust(Events) alone"].append(h.timed(thrust_j, ev)[0])
    out = {label: {**h.best(v), "first_call_s": compile_s.get(label)} for label, v in ms.items()}
    return out


def m_dev(res):
    return res["machine"].get("local_devices", 1)


def report(res, args):
    h = _helpers()
    n, ng, reps = args.events, args.grad_events, args.repeats
    tp, g, mem = res["throughput"], res["gradient"], res["memory"]
    ph = res.get("pythia_full")
    print(f"\n== ee_hadrons results: best of {reps} (wall); right: worst wall, or per-repeat range of a ratio")
    print(f"  {'quantity':58s} {'best':>13s}  {'worst/range':>13s}  {'per CPU-second':>15s}")
    rows = [
        (f"diffgen gen.sample, full chain, {n:_} events per call", h.fmt_rate(tp["events_per_s"]),
         h.fmt_rate(tp["events_per_s_worst"]), h.fmt_rate(tp["events_per_cpu_s"])),
        ("  compile of gen.sample (first call - best call)", f"{tp['compile_s_est']:7.1f} s", "", ""),
    ]
    if ph:
        rows.append(("Pythia 8 full chain (FSR+had+decays, 1 thread, no init)", h.fmt_rate(ph["events_per_s"]),
                     h.fmt_rate(ph["events_per_s_worst"]), h.fmt_rate(ph["events_per_cpu_s"])))
        sp = tp["events_per_s"] / ph["events_per_s"]
        sp_cpu = tp["events_per_cpu_s"] / ph["events_per_cpu_s"]
        res["speedup_vs_pythia"], res["speedup_vs_pythia_per_cpu_s"] = sp, sp_cpu
        rows.append(("speed-up diffgen / Pythia", f"{sp:7.3f} x", "", f"{sp_cpu:7.3f} x"))
    t = g["times"]
    rows.append((f"<T> forward (sample + thrust + mean), jitted, {ng:_} events",
                 f"{t['forward']['best_s']:7.2f} s", f"{t['forward']['worst_s']:7.2f} s",
                 f"{t['forward']['best_cpu_s']:7.2f} s cpu"))
    rows.append(("jax.grad(<T>) w.r.t. 5 tune params",
                 f"{t['grad']['best_s']:7.2f} s", f"{t['grad']['worst_s']:7.2f} s",
                 f"{t['grad']['best_cpu_s']:7.2f} s cpu"))
    rr = g["ratio_per_repeat"]
    rows.append(("  grad / forward", f"{g['ratio_to_forward']:7.2f} x", f"{min(rr):.2f}-{max(rr):.2f}",
                 f"{g['ratio_to_forward_cpu']:7.2f} x"))
    rows.append(("  compile of forward / grad (first call - best call)",
                 f"{g['compile_s_est']['forward']:5.0f} / {g['compile_s_est']['grad']:.0f} s", "", ""))
    rows += [
        (f"Events pytree bytes / event ({tp['sample']['dtype']}, {tp['sample']['capacity']} slots)",
         f"{mem['events_bytes_per_event']:7.0f} B", "", ""),
        (f"peak RSS increase / event (first {n:_} call, incl. compile)",
         f"{mem['peak_rss_delta_per_event'] / 1e3:7.1f} kB", "", ""),
    ]
    if "xla_temp_bytes_per_event" in mem:
        rows.append(("XLA temp buffers / event (gen.sample)", f"{mem['xla_temp_bytes_per_event'] / 1e3:7.1f} kB",
                     "", ""))
    if "xla_temp_bytes_per_event" in g:
        rows.append(("XLA temp buffers / event (<T> forward / grad)",
                     f"{g['forward_xla_temp_bytes_per_event'] / 1e3:5.0f} / "
                     f"{g['xla_temp_bytes_per_event'] / 1e3:.0f} kB", "", ""))
    for row in rows:
        print(f"  {row[0]:58s} {row[1]:>13s}  {row[2]:>13s}  {row[3]:>15s}")
    s = tp["sample"]
    print(f"  sample: <n_final> = {s['mean_multiplicity']:.2f} (max {s['max_multiplicity']} of {s['capacity']} slots),"
          f" <n_ch> = {s['mean_charged']:.2f}; flagged events: "
          + (", ".join(f"{k} {v}" for k, v in s["status"].items() if v) or "none"))
    print(f"  <T> = {g['mean_thrust']:.4f}; d<T>/dtheta: " + ", ".join(f"{k} {v:+.4f}" for k, v in g["grad"].items()))
    print("  Events bytes per leaf:", ", ".join(f"{k} {v}" for k, v in mem["leaf_bytes_per_event"].items()))

    if "scheduler" in res:
        print(f"\n== schedulers (one block of {res['args'].get('block', 'gen.block')} events): work per event and "
              "share of slot-steps that did work")
        for name, d in res["scheduler"].items():
            print(f"  {name:14s} work mean {d['work_mean']:6.1f}, max {d['work_max']:4d}; pool of {d['slots']} slots: "
                  f"{d['iterations']} iterations, utilisation {d['utilisation_pool']:.0%} "
                  f"(lock-step would be {d['utilisation_lockstep']:.0%}: {1 - d['utilisation_lockstep']:.0%} wasted)")
    print("\n== targets (issue 12)")
    verdicts = {}
    if ph:
        verdicts["speedup"] = res["speedup_vs_pythia_per_cpu_s"] >= TARGET_SPEEDUP
        print(f"  events per CPU-second >= {TARGET_SPEEDUP}x Pythia 8 full chain: "
              f"{res['speedup_vs_pythia_per_cpu_s']:.3f}x  {'PASS' if verdicts['speedup'] else 'MISS'}  "
              f"(wall, {m_dev(res)} devices vs Pythia's 1 thread: {res['speedup_vs_pythia']:.3f}x)")
    else:
        print(f"  events/s >= {TARGET_SPEEDUP}x Pythia: not measured (--no-pythia or pythia8mc missing)")
    verdicts["compile"] = tp["compile_s_est"] <= TARGET_COMPILE_S
    print(f"  first-call compile <= {TARGET_COMPILE_S:.0f} s: {tp['compile_s_est']:.1f} s  "
          f"{'PASS' if verdicts['compile'] else 'MISS'}")
    cs = res.get("cold_start", {})
    if cs.get("warm") is not None:
        verdicts["warm_start"] = cs["warm"] <= TARGET_WARM_START_S
        print(f"  new process with a warm cache to the first 2000 events <= {TARGET_WARM_START_S:.0f} s: "
              f"{cs['warm']:.1f} s (cold {cs['cold']:.1f} s)  {'PASS' if verdicts['warm_start'] else 'MISS'}")
    if "sizes" in res:
        recompiled = {k: v["compilations"] for k, v in res["sizes"].items()}
        verdicts["compile_once"] = all(v == 0 for v in recompiled.values())
        print(f"  no recompilation for n in {list(recompiled)} after the first call: compilations > 1 s {recompiled}  "
              f"{'PASS' if verdicts['compile_once'] else 'MISS'}")
    verdicts["grad"] = g["ratio_to_forward"] <= TARGET_GRAD_RATIO
    print(f"  grad <= {TARGET_GRAD_RATIO:.0f}x forward: {g['ratio_to_forward']:.2f}x  "
          f"{'PASS' if verdicts['grad'] else 'MISS'}  (per CPU-second: {g['ratio_to_forward_cpu']:.2f}x)")
    res["verdicts"] = verdicts

    if "profile" in res:
        prof = res["profile"]
        print(f"\n== profile: stage prefixes of the chain, {n:_} events per call, best of {reps}")
        print(f"  {'prefix':28s} {'wall':>9s} {'cpu':>9s} {'stage (cpu diff)':>17s} {'share':>7s} "
              f"{'us/event (cpu)':>15s} {'first call':>11s}")
        prev = 0.0
        labels = [k for k in prof if k != "thrust(Events) alone"]
        total = prof[labels[-1]]["best_cpu_s"]
        stages = {}
        for label in labels:
            d = prof[label]
            diff = d["best_cpu_s"] - prev
            stages[label] = diff
            prev = d["best_cpu_s"]
            print(f"  {label:28s} {d['best_s']:8.2f}s {d['best_cpu_s']:8.2f}s {diff:16.2f}s {diff / total:6.0%} "
                  f"{diff / n * 1e6:15.0f} {d['first_call_s']:10.1f}s")
        d = prof["thrust(Events) alone"]
        print(f"  {'thrust(Events) alone':28s} {d['best_s']:8.2f}s {d['best_cpu_s']:8.2f}s "
              f"{'':17s} {d['best_cpu_s'] / total:6.0%} {d['best_cpu_s'] / n * 1e6:15.0f}")
        res["stage_cpu_s"] = stages
    m = res["machine"]
    print(f"\n  load average at start {tuple(round(x, 2) for x in m['loadavg_start'])}, "
          f"at end {tuple(round(x, 2) for x in m['loadavg_end'])} ({m['cores']} cores)")


if __name__ == "__main__":
    main()
