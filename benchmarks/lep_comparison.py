"""diffgen's default e+e- → hadrons at 91.188 GeV against the Pythia 8 Monash reference file: the table of
docs/validation.md ("Current state").

    python benchmarks/lep_comparison.py [--events 10000] [--seed 2024] [--json out.json]

Reads ``tests/data/pythia_reference.json`` (made by ``benchmarks/pythia_reference.py``; no Pythia needed
here), generates ``--events`` σ-weighted diffgen events at default settings and prints, in markdown, each
mean with its statistical error next to Pythia's, the relative difference with its combined error, the
issue-16 target where there is one, and χ²/ndf of the eight LEP histograms (both samples' errors;
Σχ²/Σndf also with Pythia's errors rescaled to the diffgen sample size, i.e. "N events per side").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

#: observable name in the reference file -> (label, issue-16 target on |diffgen/Pythia − 1|)
ROWS = {"n_ch": ("⟨n_ch⟩", 0.02), "n": ("⟨n_final⟩", 0.02), "n_K_pm": ("⟨n(K±)⟩", 0.05),
        "n_pi_pm": ("⟨n(π±)⟩", None), "n_p": ("⟨p + p̄⟩", 0.10), "n_n": ("⟨n + n̄⟩", None),
        "n_gamma": ("⟨n(γ)⟩", None),
        "one_minus_T": ("⟨1 − T⟩", 0.05), "S": ("⟨S⟩", 0.03), "A": ("⟨A⟩", 0.03), "C": ("⟨C⟩", 0.03),
        "B_T": ("⟨B_T⟩", None), "B_W": ("⟨B_W⟩", None)}


def values(ev):
    from diffgen import observables as obs

    apid = np.abs(np.asarray(ev.pid)) * np.asarray(ev.mask)

    def count(*codes):
        return np.isin(apid, codes).sum(axis=1).astype(np.float64)

    t = np.asarray(obs.thrust(ev), np.float64)
    return {"n_ch": np.asarray(obs.charged_multiplicity(ev), np.float64),
            "n": np.asarray(obs.multiplicity(ev), np.float64), "n_K_pm": count(321), "n_pi_pm": count(211),
            "n_p": count(2212), "n_n": count(2112), "n_Lambda": count(3122), "n_gamma": count(22),
            "one_minus_T": 1.0 - t, "S": np.asarray(obs.sphericity(ev), np.float64),
            "A": np.asarray(obs.aplanarity(ev), np.float64), "C": np.asarray(obs.c_parameter(ev), np.float64),
            "B_T": np.asarray(obs.b_total(ev), np.float64), "B_W": np.asarray(obs.b_wide(ev), np.float64),
            "n_pi": np.asarray(obs.n_pions(ev), np.float64), "n_K": np.asarray(obs.n_kaons(ev), np.float64)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    if args.events < 2:
        ap.error("--events must be >= 2")
    import jax
    import lep_reference

    import diffgen
    from diffgen.expect import event_weights

    ref = lep_reference.load()["ee_hadrons"]["monash"]
    gen = diffgen.presets.ee_hadrons(91.188)
    t0 = time.perf_counter()
    ev = gen.sample(gen.default_params(), jax.random.key(args.seed), args.events)
    secs = time.perf_counter() - t0
    w = np.asarray(event_weights(ev), np.float64)
    vals = values(ev)
    out = {"events": args.events, "seed": args.seed, "seconds": secs, "means": {}, "chi2": {}}
    print(f"diffgen {diffgen.__version__}, {args.events} events (seed {args.seed}, {secs:.0f} s); "
          f"Pythia 8.317 Monash, {ref['events']} events (tests/data/pythia_reference.json)\n")
    print("| quantity | diffgen | Pythia 8.317 | diffgen/Pythia − 1 | target |\n|---|---|---|---|---|")
    for key, (label, target) in ROWS.items():
        m, e = lep_reference.mean_and_error(vals[key], w)
        r = ref["observables"][key]
        rel = m / r["mean"] - 1.0
        rel_err = abs(m / r["mean"]) * np.hypot(e / m, r["error"] / r["mean"]) if m else float("nan")
        met = "" if target is None else (f"{target:.0%} (met)" if abs(rel) < target else f"{target:.0%}")
        cells = (label, f"{m:.4g} ± {e:.2g}", f"{r['mean']:.4g} ± {r['error']:.2g}", f"{rel:+.1%} ± {rel_err:.1%}", met)
        print("| " + " | ".join(cells) + " |")
        out["means"][key] = {"diffgen": [m, e], "pythia": [r["mean"], r["error"]], "rel": rel, "rel_err": rel_err}
    tot = [0.0, 0, 0.0]
    for key, h in ref["histograms"].items():
        c2, ndf = lep_reference.hist_chi2(vals[key], w, h)
        c2s, _ = lep_reference.hist_chi2(vals[key], w, h, ref_events=args.events)
        out["chi2"][key] = [c2, ndf, c2s]
        tot[0] += c2
        tot[1] += ndf
        tot[2] += c2s
    per = ", ".join(f"{k} {v[0] / v[1]:.2f}" for k, v in out["chi2"].items())
    print(f"\nχ²/ndf per histogram: {per}")
    print(f"Σχ²/Σndf = {tot[0] / tot[1]:.2f} (Pythia {ref['events']} events); "
          f"{tot[2] / tot[1]:.2f} with {args.events} events per side (issue-16 target ≤ 5 at 2·10⁴ per side)")
    out["sum_chi2_per_ndf"] = tot[0] / tot[1]
    out["sum_chi2_per_ndf_equal_sides"] = tot[2] / tot[1]
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
