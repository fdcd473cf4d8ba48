"""diffgen's flows against VEGAS (the ``vegas`` package) at equal integrand calls, in the same run.

For each integrand on the unit cube — e+e- → q q̄ g (y_cut = 0.01, 6D), the Z line shape (√s 60–130 GeV, 3D),
e+e- → W+W- → μ ν u d at 200 GeV (8D, CC03, exact closed-form σ) and the 8-dimensional camel (∫ = 1 exactly)
— both methods get the same budget of integrand calls:

* flow: ``steps × batch`` calls of training (variance loss, online + buffered steps), then ``n_eval`` calls
  sampling the trained flow (camel: a two-channel mixture with a tan mapping at each peak, 0.1 wide);
* VEGAS: ``nitn`` adaptive iterations using the same training calls, then ``n_eval`` calls of the adapted map.

Cases named ``+map`` put the process's own fixed map (``UnitProcess.mapping``: Breit–Wigners for the Z and the
W's, the 1/y poles of q q̄ g) after the flow, and give VEGAS the same map (it adapts to f(M(z)) |∂M/∂z|), so
both start from the same physics knowledge.

Reported from the final ``n_eval`` weights of each (same definitions for both): σ, its relative MC error
std(w)/(√N ⟨w⟩), the unweighting efficiency ⟨w⟩/max w (uncapped) and with overweights carrying 10⁻³ of σ
(its bias is then ≤ 10⁻³), ESS/N, and wall time (training + sampling; compilation included for the flow).
Usage: ``python benchmarks/flows_vs_vegas.py [--steps 300 --batch 1024 --n-eval 100000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.flows import flow_sampler, multichannel, peak_map, spline_flow, train
from diffgen.flows.integrands import camel
from diffgen.flows.unweight import check_weights, unweighting_efficiency
from diffgen.io.atomic import atomic_write
from diffgen.unit_processes import ee_qqg, ee_ww, integrand, z_line_shape
from diffgen.unit_processes.ee_ww import reference_sigma


def references(qqg, zls):
    """Exact σ: q q̄ g from σ₀ × the analytic three-jet rate; the line shape by adaptive quadrature of σ(√s)."""
    from scipy.integrate import quad

    from diffgen.amplitudes import ee_ffbar
    from diffgen.amplitudes.couplings import alpha_s_one_loop
    from diffgen.unit_processes.ee_qqg import born_sigma, three_jet_rate

    with jax.enable_x64(True):
        p = qqg.init(None)
        s = p["Beams:eCM"] ** 2
        a_s = float(alpha_s_one_loop(s, p["SigmaProcess:alphaSvalue"]))
        ref_qqg = float(jnp.sum(born_sigma(p, (1, 2, 3, 4, 5), s))) * three_jet_rate(0.01, a_s)
        pz = zls.init(None)
        ref_z = quad(lambda e: float(ee_ffbar.sigma_total(pz, 13, 0.1056584, s=e * e)), 60.0, 130.0,
                     points=[91.1876], limit=200, epsrel=1e-10)[0] / 70.0
    return ref_qqg, ref_z


def mapped(f, cmap):
    """The integrand seen through a fixed channel map M: g(z) = f(M(z)) |det ∂M/∂z| (∫g = ∫f); what VEGAS
    adapts to when it is given the same map as the flow."""

    def g(z):
        x, log_det = cmap.forward(z)
        return f(x) * jnp.exp(log_det)

    return g


def cases():
    """name -> (dim, f, make_sampler, exact σ, channel map or None). ``+map`` cases put the process's own fixed
    map (``UnitProcess.mapping``: the Z Breit–Wigner, the q q̄ g soft/collinear poles) after the flow, and
    give VEGAS the same map."""
    qqg = ee_qqg(y_cut=0.01)
    zls = z_line_shape(60.0, 130.0)
    ref_qqg, ref_z = references(qqg, zls)
    d = 8
    camel_sampler = lambda: multichannel([(peak_map([1 / 3] * d, 0.1), spline_flow(d, bins=16)),  # noqa: E731
                                          (peak_map([2 / 3] * d, 0.1), spline_flow(d, bins=16))])
    ww = ee_ww(200.0)
    p_ww = ww.init(None)
    m_ww, f_ww = ww.mapping(p_ww), integrand(ww, p_ww)
    p_qqg, p_z = qqg.init(None), zls.init(None)
    m_qqg, m_z = qqg.mapping(p_qqg), zls.mapping(p_z)
    f_qqg, f_z = integrand(qqg, p_qqg), integrand(zls, p_z)
    return {
        "ee-qqg": (6, f_qqg, lambda: flow_sampler(spline_flow(6, bins=16)), ref_qqg, None),
        "ee-qqg+map": (6, f_qqg, lambda: flow_sampler(spline_flow(6, bins=16), m_qqg), ref_qqg, m_qqg),
        "z-line-shape": (3, f_z, lambda: flow_sampler(spline_flow(3, bins=32)), ref_z, None),
        "z-line-shape+map": (3, f_z, lambda: flow_sampler(spline_flow(3, bins=32), m_z), ref_z, m_z),
        "ee-ww+map": (8, f_ww, lambda: flow_sampler(spline_flow(8, bins=16), m_ww), reference_sigma(200.0), m_ww),
        "camel-8d": (d, camel(d), camel_sampler, 1.0, None),
    }


def summarise(w, seconds, calls):
    w = np.asarray(w, np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diag = check_weights(w)
    mean = w.mean()
    return {"sigma": mean, "rel_error": w.std() / math.sqrt(w.size) / mean,
            "eff": unweighting_efficiency(w).efficiency, "eff_cap1e-3": unweighting_efficiency(w, cap=1e-3).efficiency,
            "ess_fraction": diag.ess_fraction, "warned": bool(caught), "seconds": seconds, "calls": calls}


def run_flow(dim, f, make_sampler, steps, batch, n_eval, seed):
    sampler = make_sampler()
    t0 = time.perf_counter()
    state, hist = train(jax.random.key(seed), sampler, f, steps=steps, batch=batch, buffered_steps=2,
                        learning_rate=3e-3, progress=False)
    sample = jax.jit(lambda p, u: (lambda x, lq: f(x) * jnp.exp(-lq))(*sampler.sample(p, u)))
    ws = []
    for i in range(0, n_eval, 50_000):
        u = jax.random.uniform(jax.random.key(seed + 1000 + i), (min(50_000, n_eval - i), sampler.n_uniforms))
        ws.append(np.asarray(sample(state.params, u)))
    return summarise(np.concatenate(ws), time.perf_counter() - t0, int(hist["calls"][-1]) + n_eval)


def run_vegas(dim, f, train_calls, n_eval, nitn, seed):
    import vegas

    np.random.seed(seed)
    fj = jax.jit(f)

    @vegas.batchintegrand
    def fb(x):
        return np.asarray(fj(jnp.asarray(x, jnp.float32)), np.float64)

    t0 = time.perf_counter()
    integ = vegas.Integrator(dim * [[0.0, 1.0]])
    integ(fb, nitn=nitn, neval=train_calls // nitn)
    integ.set(neval=n_eval)  # the final sample: n_eval points of the adapted map
    ws = []
    for x, wgt in integ.random_batch(yield_hcube=False):
        ws.append(fb(x) * wgt)
    w = np.concatenate(ws)
    w = w * (w.size)  # random_batch weights sum to the volume (1): w_i = f jac / N
    return summarise(w, time.perf_counter() - t0, train_calls + w.size), integ


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n-eval", type=int, default=100_000)
    ap.add_argument("--nitn", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-raw-vegas", action="store_true", help="in +map cases, skip VEGAS on the unmapped cube")
    args = ap.parse_args(argv)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                       "load_avg": os.getloadavg()}, "args": vars(args), "cases": {}}
    for name, (dim, f, make_sampler, exact, cmap) in cases().items():
        if args.only and name not in args.only.split(","):
            continue
        fl = run_flow(dim, f, make_sampler, args.steps, args.batch, args.n_eval, args.seed)
        train_calls = fl["calls"] - args.n_eval

        vg, _ = run_vegas(dim, f if cmap is None else mapped(f, cmap), train_calls, args.n_eval, args.nitn, args.seed)
        results = {"flow": fl, "vegas": vg}
        if cmap is not None and not args.no_raw_vegas:  # VEGAS as a user would run it, on the raw cube
            results["vegas-raw"] = run_vegas(dim, f, train_calls, args.n_eval, args.nitn, args.seed)[0]
        out["cases"][name] = {**results, "exact": exact}
        for who, r in results.items():
            print(f"{name:16s} {who:9s} calls {r['calls']:>8d}  sigma {r['sigma']:.6g} +- {r['rel_error']:.2e} (rel)  "
                  f"eff {r['eff']:.3f}  eff(cap 1e-3) {r['eff_cap1e-3']:.3f}  ESS/N {r['ess_fraction']:.3f}  "
                  f"{'WARNED ' if r['warned'] else ''}time {r['seconds']:.1f} s", flush=True)
        if exact is not None:
            pulls = ", ".join(f"{who} {(r['sigma'] - exact) / (r['rel_error'] * r['sigma']):+.2f}"
                              for who, r in results.items())
            print(f"{name:16s} exact sigma = {exact:.6g}; pulls: {pulls}", flush=True)
    out["machine"]["load_avg_end"] = os.getloadavg()
    if args.json:
        with atomic_write(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return out


if __name__ == "__main__":
    main()
