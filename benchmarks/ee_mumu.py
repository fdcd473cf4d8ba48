"""Benchmark: e+e- -> gamma*/Z -> mu+ mu- throughput and gradient cost, diffgen vs Pythia 8.

Measures, in one process (so that diffgen and its peer see the same machine load):

1. diffgen events/s at ``--events`` events on the default JAX device, compilation excluded
   (a warm-up call first; its time is reported separately), ``block_until_ready`` on the
   result: ``gen.sample(params, key, n)`` in one go, and ``diffgen.generate`` in chunks of
   ``--chunk`` (which also copies every chunk to host NumPy arrays and concatenates them).
2. The cost of ``jax.grad`` of sigma = ``cross_section(...)[0]`` w.r.t. all parameters
   relative to sigma alone (both jitted, same n), of ``jax.value_and_grad``, and of one
   forward-mode ``jax.jvp`` direction (``23:m0``).
3. Memory: bytes of the Events pytree per event, XLA's compiled buffer sizes, and the
   peak-RSS increase (``resource.getrusage``) around the first ``--events`` sample.
4. If ``pythia8mc`` is importable: Pythia 8 hard-process-only events/s
   (``PartonLevel:all = off``, ``HadronLevel:all = off``, via
   :func:`pythia_peer.time_events`, ``benchmarks/pythia_peer.py``) and the ratio diffgen / Pythia.

5. What a user compares with Pythia's *unweighted* events: diffgen's events carry weights, so
   next to the weighted events/s the script reports the effective sample size per second,
   ESS/s = (Σw)²/Σw² / t, and unweighted events/s after hit-or-miss unweighting (keep an event
   if u·w_max < w, u uniform in [0, 1)) of the same sample, t = the gen.sample time plus the
   (jitted) unweighting step. w_max is the largest weight of the sample (no event is overweight;
   efficiency ⟨w⟩/max w); a second row uses the ``--wmax-quantile`` quantile of the weights and
   reports the fraction of events, and of σ, above it (those events are kept with weight w/w_max
   > 1). Each rate is divided by Pythia's unweighted events/s of the same run.

Every timing is repeated ``--repeats`` times, interleaving diffgen and Pythia so both see the
same load; the best (min time, max rate) is reported with the spread (worst) beside it.
Targets (from the issue): >= 100x Pythia's events/s, and gradient <= 3x the forward pass.

Usage::

    python benchmarks/ee_mumu.py                       # the issue's numbers (10^6 events)
    python benchmarks/ee_mumu.py --events 100000 --pythia-events 20000 --repeats 2   # quick
    python benchmarks/ee_mumu.py --profile --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time

TARGET_SPEEDUP = 100.0
TARGET_GRAD_RATIO = 3.0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="diffgen events per timed call")
    ap.add_argument("--chunk", type=int, default=250_000, help="chunk size for diffgen.generate")
    ap.add_argument("--grad-events", type=int, default=None,
                    help="events for the sigma / grad / jvp timings (default: --events)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions (best and spread reported)")
    ap.add_argument("--pythia-events", type=int, default=200_000, help="Pythia events per timed run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--one-core", action="store_true",
                    help="pin the process (diffgen and Pythia) to one CPU core before importing JAX")
    ap.add_argument("--profile", action="store_true",
                    help="also time the pieces of gen.sample (RNG, physics, writing Events) to see what dominates")
    ap.add_argument("--no-pythia", action="store_true", help="skip Pythia even if pythia8mc is importable")
    ap.add_argument("--wmax-quantile", type=float, default=0.999,
                    help="quantile of the weights used as w_max in the second unweighting row (the first uses max w)")
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = ap.parse_args(argv)
    for name in ("events", "chunk", "repeats", "pythia_events"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0.5 <= args.wmax_quantile < 1.0:
        ap.error(f"--wmax-quantile must be in [0.5, 1), got {args.wmax_quantile}")
    if args.grad_events is None:
        args.grad_events = args.events
    elif args.grad_events < 1:
        ap.error("--grad-events must be >= 1")
    return args


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def cpu_faults():
    """(user + system CPU seconds of all threads of this process, minor page faults so far)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt


def timed(fn, *args):
    """Run ``fn(*args)`` and block on its result; returns ({"wall", "cpu", "minflt"}, result).

    ``cpu`` is the process CPU time (all XLA threads, user + system): unlike the wall time it hardly
    grows when other jobs share the cores, so it is the steadier figure on a loaded machine.
    """
    import jax

    c0, f0 = cpu_faults()
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    wall = time.perf_counter() - t0
    c1, f1 = cpu_faults()
    return {"wall": wall, "cpu": c1 - c0, "minflt": f1 - f0}, out


def best(ms):
    """Summary of repeated measurements: best (min) and worst wall and CPU seconds, all values."""
    walls, cpus = [m["wall"] for m in ms], [m["cpu"] for m in ms]
    return {"best_s": min(walls), "worst_s": max(walls), "median_s": statistics.median(walls),
            "best_cpu_s": min(cpus), "worst_cpu_s": max(cpus), "minflt_min": min(m["minflt"] for m in ms),
            "all_s": walls, "all_cpu_s": cpus}


def fmt_rate(x):
    return f"{x / 1e6:9.3f} M/s" if x >= 1e5 else f"{x / 1e3:9.1f} k/s"


def main(argv=None):
    args = parse_args(argv)
    if args.one_core:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    import jax
    import numpy as np
    import pythia_peer as py8

    import diffgen
    from diffgen.expect import tangent_from_settings
    from diffgen.params import DEFAULT_SQRT_S as SQRT_S  # imported here: JAX only after --one-core

    n, ng, reps = args.events, args.grad_events, args.repeats
    have_pythia = (not args.no_pythia) and py8.available()
    machine = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "x64": bool(jax.config.jax_enable_x64),
        "pythia8mc": _pythia_version() if have_pythia else None,
        "loadavg_start": os.getloadavg(),
    }
    print("== machine")
    for k, v in machine.items():
        print(f"  {k:14s} {v}")
    print(f"== settings: events={n:_} chunk={args.chunk:_} grad-events={ng:_} repeats={reps} "
          f"pythia-events={args.pythia_events:_} one-core={args.one_core}", flush=True)

    gen = diffgen.presets.ee_mumu(sqrt_s=SQRT_S)
    params = gen.default_params()
    key = jax.random.key(args.seed)
    res: dict = {"machine": machine, "args": vars(args)}

    # ---------------------------------------------------------------- 1. throughput (+ 3. memory)
    rss0 = peak_rss_bytes()
    first, ev = timed(gen.sample, params, key, n)
    rss1 = peak_rss_bytes()
    ev_bytes = sum(a.nbytes for a in jax.tree_util.tree_leaves(ev))
    per_leaf = {f: int(getattr(ev, f).nbytes // n) for f in ev.__dataclass_fields__}
    dtype = str(ev.p4.dtype)
    sample_for_weights = ev  # the same events every repeat (same key): their weights give ESS and unweighting
    chunked = lambda: diffgen.generate(gen, params, key, n, chunk=args.chunk, progress=False)  # noqa: E731
    first_chunk, _ = timed(lambda: diffgen.generate(gen, params, key, min(args.chunk, n), chunk=args.chunk,
                                                    progress=False))
    py_init_cpu = None
    if have_pythia:  # CPU cost of Pythia's init (+ 1 event), to subtract from its CPU time per run
        py_init_cpu = timed(py8.time_events, "hard", SQRT_S, 1)[0]["cpu"]

    m_one, m_chunked, py_rates, py_cpu_rates = [], [], [], []
    for r in range(reps):
        m, ev = timed(gen.sample, params, key, n)
        m_one.append(m)
        del ev
        m, ev = timed(chunked)
        m_chunked.append(m)
        del ev
        line = f"  repeat {r + 1}/{reps}: sample {n / m_one[-1]['wall']:,.0f} ev/s, generate {n / m['wall']:,.0f} ev/s"
        if have_pythia:
            m, rate = timed(py8.time_events, "hard", SQRT_S, args.pythia_events, 1 + r)
            py_rates.append(rate)
            py_cpu_rates.append(args.pythia_events / max(m["cpu"] - py_init_cpu, 1e-9))
            line += f", Pythia {rate:,.0f} ev/s"
        print(line, flush=True)

    one, chk = best(m_one), best(m_chunked)
    res["throughput"] = {
        "sample": {**one, "events_per_s": n / one["best_s"], "events_per_s_worst": n / one["worst_s"],
                   "events_per_cpu_s": n / one["best_cpu_s"], "first_call_s": first["wall"],
                   "compile_s_est": first["wall"] - one["best_s"]},
        "generate_chunked": {**chk, "chunk": args.chunk, "events_per_s": n / chk["best_s"],
                             "events_per_s_worst": n / chk["worst_s"], "events_per_cpu_s": n / chk["best_cpu_s"],
                             "first_call_s": first_chunk["wall"]},
    }
    if have_pythia:
        res["pythia_hard"] = {"events_per_s": max(py_rates), "events_per_s_worst": min(py_rates), "all": py_rates,
                              "events_per_cpu_s": max(py_cpu_rates), "all_per_cpu_s": py_cpu_rates,
                              "init_cpu_s": py_init_cpu, "n_events": args.pythia_events}

    res["unweighting"] = unweighting(sample_for_weights, jax.random.fold_in(key, 12345), reps,
                                     args.wmax_quantile)
    del sample_for_weights

    mem = {"dtype": dtype, "events_bytes_per_event": ev_bytes / n, "leaf_bytes_per_event": per_leaf,
           "peak_rss_delta_bytes": rss1 - rss0, "peak_rss_delta_per_event": (rss1 - rss0) / n,
           "minor_page_faults_per_sample_call": one["minflt_min"]}
    try:
        import functools

        from diffgen.stage import apply_indices

        nb = gen.block  # one compiled block of gen.sample, on one device
        ma = (jax.jit(functools.partial(apply_indices, gen)).lower(params, key, np.arange(nb, dtype=np.uint32))
              .compile().memory_analysis())
        if ma is not None:
            mem["xla_output_bytes_per_event"] = ma.output_size_in_bytes / nb
            mem["xla_temp_bytes_per_event"] = ma.temp_size_in_bytes / nb
    except Exception as exc:  # memory_analysis is backend-dependent; the figure is optional
        mem["xla_memory_analysis_error"] = repr(exc)
    res["memory"] = mem

    # ---------------------------------------------------------------- 2. gradient cost
    def sigma(p):
        return diffgen.cross_section(gen, p, key, ng)[0]

    tangent = tangent_from_settings(params, {"23:m0": 1.0})
    fns = {"forward": (jax.jit(sigma), (params,)),
           "grad": (jax.jit(jax.grad(sigma)), (params,)),
           "value_and_grad": (jax.jit(jax.value_and_grad(sigma)), (params,)),
           "jvp": (jax.jit(lambda p, t: jax.jvp(sigma, (p,), (t,))), (params, tangent))}
    first_calls = {name: timed(fn, *a)[0]["wall"] for name, (fn, a) in fns.items()}
    ms = {name: [] for name in fns}
    for _ in range(reps):  # interleaved, so that load changes hit all four alike
        for name, (fn, a) in fns.items():
            ms[name].append(timed(fn, *a)[0])
    times = {k: best(v) for k, v in ms.items()}
    sig_val = fns["forward"][0](params)
    _, dsig_dmz = fns["jvp"][0](params, tangent)
    grads = diffgen.settings(fns["grad"][0](params))
    others = [k for k in fns if k != "forward"]
    ratio = {k: times[k]["best_s"] / times["forward"]["best_s"] for k in others}
    ratio_cpu = {k: times[k]["best_cpu_s"] / times["forward"]["best_cpu_s"] for k in others}
    ratio_rep = {k: [a["wall"] / b["wall"] for a, b in zip(ms[k], ms["forward"])] for k in others}
    res["gradient"] = {
        "n_events": ng, "sigma_pb": float(sig_val), "dsigma_dmZ_pb_per_GeV": float(dsig_dmz),
        "grad": {k: float(v) for k, v in grads.items()}, "first_call_s": first_calls, "times": times,
        "ratio_to_forward": ratio, "ratio_to_forward_cpu": ratio_cpu, "ratio_to_forward_per_repeat": ratio_rep,
    }

    if args.profile:
        res["profile"] = profile(gen, params, key, n, reps, per_event_bytes=ev_bytes / n)
    machine["loadavg_end"] = os.getloadavg()
    report(res, args)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
        print(f"  wrote {args.json}")
    return res


def unweighting(ev, key, reps, quantile):
    """ESS fraction and hit-or-miss unweighting of one sample (see the module docstring, item 5).

    Returns the weight summary, the ESS fraction (Σw)²/(N Σw²), and per choice of w_max ("max" and
    "quantile") the accepted events, the overweight fractions and the best time of the jitted
    unweighting step (uniforms + comparison + count, blocked on).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffgen.expect import event_weights

    w = event_weights(ev)
    wn = np.asarray(w, np.float64)
    n = wn.size
    ess = wn.sum() ** 2 / np.sum(wn * wn)

    @jax.jit
    def hit_or_miss(w, key, w_max):
        keep = jax.random.uniform(key, w.shape, w.dtype) * w_max < w
        return jnp.sum(keep)

    out = {"n_events": n, "weight_mean_pb": float(wn.mean()), "weight_max_pb": float(wn.max()),
           "weight_min_pb": float(wn.min()), "ess": float(ess), "ess_fraction": float(ess / n), "w_max": {}}
    for name, w_max in (("max", wn.max()), ("quantile", np.quantile(wn, quantile))):
        wm = jnp.asarray(w_max, w.dtype)
        timed(hit_or_miss, w, key, wm)  # compile
        ms = [timed(hit_or_miss, w, key, wm) for _ in range(reps)]
        kept = int(ms[0][1])
        over = wn > w_max
        out["w_max"][name] = {
            "w_max_pb": float(w_max), "quantile": None if name == "max" else quantile,
            "accepted": kept, "efficiency": kept / n, "expected_efficiency": float(np.minimum(wn / w_max, 1).mean()),
            "overweight_event_fraction": float(over.mean()),
            "overweight_sigma_fraction": float(np.sum(np.maximum(wn - w_max, 0.0)) / wn.sum()),
            "time": best([m for m, _ in ms]),
        }
    return out


def rates_vs_pythia(res, ph):
    """Rows (label, events/s, per CPU-second, ratio to Pythia, ratio per CPU-second) for the ratio table."""
    one, uw = res["throughput"]["sample"], res["unweighting"]
    t, c = one["best_s"], one["best_cpu_s"]
    rows = [("weighted events (gen.sample)", uw["n_events"] / t, uw["n_events"] / c),
            ("effective sample size (Σw)²/Σw²", uw["ess"] / t, uw["ess"] / c)]
    for name, d in uw["w_max"].items():
        label = ("unweighted, hit-or-miss, w_max = max w" if name == "max"
                 else f"unweighted, w_max = {d['quantile']:g} quantile of w")
        rows.append((label, d["accepted"] / (t + d["time"]["best_s"]), d["accepted"] / (c + d["time"]["best_cpu_s"])))
    out = []
    for label, rate, rate_cpu in rows:
        out.append({"label": label, "events_per_s": rate, "events_per_cpu_s": rate_cpu,
                    "ratio_to_pythia": rate / ph["events_per_s"] if ph else None,
                    "ratio_to_pythia_per_cpu_s": rate_cpu / ph["events_per_cpu_s"] if ph else None})
    return out


def report(res, args):
    n, ng, reps = args.events, args.grad_events, args.repeats
    tp, g, mem = res["throughput"], res["gradient"], res["memory"]
    ph = res.get("pythia_hard")
    print(f"\n== ee_mumu results: best of {reps} (wall); right: worst wall, or the per-repeat range of a ratio")
    print(f"  {'quantity':56s} {'best':>13s}  {'worst/range':>13s}  {'per CPU-second':>15s}")
    rows = [
        (f"diffgen gen.sample, {n:_} events in one go", fmt_rate(tp["sample"]["events_per_s"]),
         fmt_rate(tp["sample"]["events_per_s_worst"]), fmt_rate(tp["sample"]["events_per_cpu_s"])),
        (f"diffgen generate, chunk {args.chunk:_} (-> host numpy)", fmt_rate(tp["generate_chunked"]["events_per_s"]),
         fmt_rate(tp["generate_chunked"]["events_per_s_worst"]), fmt_rate(tp["generate_chunked"]["events_per_cpu_s"])),
        ("  compile of gen.sample (first call - best call)", f"{tp['sample']['compile_s_est']:7.2f} s", "", ""),
    ]
    if ph:
        rows.append(("Pythia 8 hard process only (1 thread, init excluded)", fmt_rate(ph["events_per_s"]),
                     fmt_rate(ph["events_per_s_worst"]), fmt_rate(ph["events_per_cpu_s"])))
        sp = {k: tp[k]["events_per_s"] / ph["events_per_s"] for k in ("sample", "generate_chunked")}
        sp_cpu = {k: tp[k]["events_per_cpu_s"] / ph["events_per_cpu_s"] for k in ("sample", "generate_chunked")}
        res["speedup_vs_pythia"] = sp
        res["speedup_vs_pythia_per_cpu_s"] = sp_cpu
        rows.append(("speed-up diffgen gen.sample / Pythia", f"{sp['sample']:7.1f} x", "",
                     f"{sp_cpu['sample']:7.1f} x"))
        rows.append(("speed-up diffgen generate / Pythia", f"{sp['generate_chunked']:7.1f} x", "",
                     f"{sp_cpu['generate_chunked']:7.1f} x"))
    t = g["times"]
    rows.append((f"sigma forward, jitted, {ng:_} events", f"{t['forward']['best_s'] * 1e3:7.1f} ms",
                 f"{t['forward']['worst_s'] * 1e3:7.1f} ms", f"{t['forward']['best_cpu_s'] * 1e3:7.1f} ms cpu"))
    labels = {"grad": "jax.grad(sigma) w.r.t. all params / forward",
              "value_and_grad": "jax.value_and_grad(sigma) / forward",
              "jvp": "jax.jvp(sigma), one direction (23:m0) / forward"}
    for k, label in labels.items():
        rr = g["ratio_to_forward_per_repeat"][k]
        rows.append((label, f"{g['ratio_to_forward'][k]:7.2f} x", f"{min(rr):.2f}-{max(rr):.2f}",
                     f"{g['ratio_to_forward_cpu'][k]:7.2f} x"))
    rows += [
        (f"Events pytree bytes / event ({mem['dtype']})", f"{mem['events_bytes_per_event']:7.1f} B", "", ""),
        (f"peak RSS increase / event (first {n:_} sample)", f"{mem['peak_rss_delta_per_event']:7.1f} B", "", ""),
    ]
    if "xla_temp_bytes_per_event" in mem:
        rows.append(("XLA temp buffers / event (gen.sample)", f"{mem['xla_temp_bytes_per_event']:7.1f} B", "", ""))
    rows.append(("minor page faults per gen.sample call (best)", f"{mem['minor_page_faults_per_sample_call']:9d}", "",
                 ""))
    for row in rows:
        print(f"  {row[0]:56s} {row[1]:>13s}  {row[2]:>13s}  {row[3]:>15s}")
    print(f"  sigma = {g['sigma_pb']:.2f} pb; dsigma/dm_Z = {g['dsigma_dmZ_pb_per_GeV']:.2f} pb/GeV (jvp)")
    print("  Events bytes per leaf:", ", ".join(f"{k} {v}" for k, v in mem["leaf_bytes_per_event"].items()))

    print("\n== targets (issue): wall-clock events/s, gradient cost")
    verdicts = {}
    if ph:
        s = res["speedup_vs_pythia"]["sample"]
        verdicts["speedup"] = s >= TARGET_SPEEDUP
        print(f"  events/s >= {TARGET_SPEEDUP:.0f}x Pythia 8 (hard process only): {s:.1f}x  "
              f"{'PASS' if verdicts['speedup'] else 'MISS'}  (per CPU-second: "
              f"{res['speedup_vs_pythia_per_cpu_s']['sample']:.1f}x)")
    else:
        print("  events/s >= 100x Pythia: not measured "
              "(--no-pythia, or pythia8mc not importable: pip install -e '.[peers]')")
    r = g["ratio_to_forward"]["grad"]
    verdicts["grad"] = r <= TARGET_GRAD_RATIO
    print(f"  grad <= {TARGET_GRAD_RATIO:.0f}x forward: {r:.2f}x  {'PASS' if verdicts['grad'] else 'MISS'}  "
          f"(per CPU-second: {g['ratio_to_forward_cpu']['grad']:.2f}x)")
    res["verdicts"] = verdicts
    if "profile" in res:
        print(f"\n== profile: pieces of gen.sample, {n:_} events in all, best of {reps}")
        print(f"  {'':66s} {'wall':>8s} {'cpu':>8s} {'faults':>8s}")
        for name, d in res["profile"].items():
            print(f"  {name:66s} {d['best_s'] * 1e3:5.1f} ms {d['best_cpu_s'] * 1e3:5.1f} ms {d['minflt_min']:8d}")
    uw = res["unweighting"]
    table = rates_vs_pythia(res, ph)
    res["rates_vs_pythia"] = table
    print(f"\n== what to compare with Pythia's unweighted events: {n:_} diffgen events, "
          f"ESS fraction (Σw)²/(NΣw²) = {uw['ess_fraction']:.4f}")
    for name, d in uw["w_max"].items():
        how = "max w" if name == "max" else f"{d['quantile']:g} quantile"
        print(f"  w_max = {d['w_max_pb']:.5g} pb ({how}; "
              f"<w> = {uw['weight_mean_pb']:.5g} pb): efficiency {d['efficiency']:.4f} "
              f"(expected {d['expected_efficiency']:.4f}), overweight {d['overweight_event_fraction']:.2e} of events, "
              f"{d['overweight_sigma_fraction']:.2e} of σ; unweighting step {d['time']['best_s'] * 1e3:.1f} ms")
    pyl = "Pythia 8 unweighted" if ph else "Pythia 8 (not measured)"
    print(f"  {'diffgen rate':42s} {'events/s':>13s} {'per CPU-s':>13s}  {'/ ' + pyl:>26s} {'per CPU-s':>10s}")
    for row in table:
        r1 = f"{row['ratio_to_pythia']:8.1f} x" if ph else "       -"
        r2 = f"{row['ratio_to_pythia_per_cpu_s']:8.1f} x" if ph else "       -"
        print(f"  {row['label']:42s} {fmt_rate(row['events_per_s']):>13s} {fmt_rate(row['events_per_cpu_s']):>13s}  "
              f"{r1:>26s} {r2:>10s}")
    if ph:
        print(f"  {'Pythia 8 hard process (unweighted events)':42s} {fmt_rate(ph['events_per_s']):>13s} "
              f"{fmt_rate(ph['events_per_cpu_s']):>13s}  {'1.0 x':>26s} {'1.0 x':>10s}")

    m = res["machine"]
    print(f"\n  load average at start {tuple(round(x, 2) for x in m['loadavg_start'])}, "
          f"at end {tuple(round(x, 2) for x in m['loadavg_end'])} ({m['cores']} cores)")


def profile(gen, params, key, n, reps, per_event_bytes):
    """Time the pieces of ``gen.sample`` to see what dominates (each jitted; best of ``reps``).

    Every piece covers ``n`` events; "k x m" rows make them in k calls of m events each, so that
    the buffers are small enough to be reused by the allocator instead of page-faulted in anew.
    """
    import jax
    import jax.numpy as jnp

    from diffgen.stage import stable_id

    hard_id = stable_id("hard")
    m = max(1, n // 10)
    k_calls = n // m

    def keys_uniforms(k, idx):
        # the randomness of gen.sample: fold_in(key, i), the chain's fold_in(., id("hard")), 3 uniforms
        return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(jax.random.fold_in(k, i), hard_id),
                                                     (1, 3)))(idx)

    ku = jax.jit(keys_uniforms)
    lw = jax.jit(lambda p, k, off: gen.sample_traced(p, k, m, off).log_weight)
    sig = jax.jit(lambda p, k, off: jnp.mean(jnp.exp(gen.sample_traced(p, k, m, off).log_weight)))
    one_key = jax.jit(lambda k: jax.random.uniform(k, (m, 3)))
    words = max(1, int(round(per_event_bytes / 4)))
    fill = jax.jit(lambda x: jnp.full((m, words), x, jnp.float32))
    fill_all = jax.jit(lambda x: jnp.full((n, words), x, jnp.float32))
    idx = jnp.arange(m, dtype=jnp.uint32)
    rbg = jax.random.key(1, impl="unsafe_rbg")

    def calls(fn):
        return lambda: [fn(i) for i in range(k_calls)]

    pieces = {
        f"gen.sample, 1 x {n:_} (full Events)": lambda: gen.sample(params, key, n),
        f"gen.sample, {k_calls} x {m:_} (full Events)": calls(lambda i: gen.sample(params, key, m, offset=i * m)),
        f"  the same -> log_weight only (Events not written), {k_calls} x {m:_}":
            calls(lambda i: lw(params, key, i * m)),
        f"  the same -> mean weight (sigma-like reduction), {k_calls} x {m:_}":
            calls(lambda i: sig(params, key, i * m)),
        f"  per-event keys (2 fold_in) + 3 uniforms only, {k_calls} x {m:_}": calls(lambda i: ku(key, idx + i * m)),
        f"  one key, uniform(m, 3), no per-event fold_in, {k_calls} x {m:_}":
            calls(lambda i: one_key(jax.random.fold_in(key, i))),
        f"  fill a fresh buffer of the Events' size, {k_calls} x {m:_}": calls(lambda i: fill(float(i))),
        f"  fill a fresh buffer of the Events' size, 1 x {n:_}":
            lambda: fill_all(1.0),
        f"gen.sample with key impl unsafe_rbg, {k_calls} x {m:_}":
            calls(lambda i: gen.sample(params, rbg, m, offset=i * m)),
    }
    out = {}
    for name, fn in pieces.items():
        timed(fn)
        out[name] = best([timed(fn)[0] for _ in range(reps)])
    return out


def _pythia_version():
    try:
        from importlib.metadata import version

        return version("pythia8mc")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    main()
