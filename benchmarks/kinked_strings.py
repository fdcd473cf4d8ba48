"""Kinked vs straight-piece Lund strings in the full e+e- -> hadrons chain at 91.2 GeV.

Prints <n_ch>, <n_final> (with standard errors), the fraction of events with status bits, and the
full-chain throughput (events/s, best of ``--repeats`` jitted calls, same process) for the chosen
string model(s). Pythia 8 Monash meson-only (StringFlav:probQQtoQ = 0) gives <n_ch> = 21.70.

Usage::

    python benchmarks/kinked_strings.py --events 2000 --models kinked straight
"""

from __future__ import annotations

import argparse
import time


def build(kinked: bool):
    """The ``ee_hadrons`` chain (hard, shower, strings, decays) with the chosen string model."""
    import diffgen
    from diffgen.decays import hadron_decays
    from diffgen.hadronization import string_fragmentation
    from diffgen.params import DEFAULT_SQRT_S
    from diffgen.processes import ee_to_ffbar
    from diffgen.shower import final_state_shower

    kw = {} if kinked is None else {"kinked": kinked}
    return diffgen.Generator(diffgen.chain(
        ("hard", ee_to_ffbar((1, 2, 3, 4, 5), DEFAULT_SQRT_S)), ("shower", final_state_shower()),
        ("hadronization", string_fragmentation(**kw)), ("decays", hadron_decays())), name="ee-hadrons")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["kinked", "straight"])
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    import jax
    import numpy as np

    from diffgen import observables as obs

    for model in args.models:
        gen = build({"kinked": True, "straight": False, "default": None}[model])
        params = gen.default_params()
        fn = jax.jit(lambda p, k, g=gen: g.sample(p, k, args.events))
        t0 = time.time()
        ev = jax.block_until_ready(fn(params, jax.random.key(args.seed)))
        t_first = time.time() - t0
        best = np.inf
        for r in range(args.repeats):
            t0 = time.time()
            ev = jax.block_until_ready(fn(params, jax.random.key(args.seed + 1 + r)))
            best = min(best, time.time() - t0)
        nch = np.asarray(obs.charged_multiplicity(ev))
        nfin = np.asarray(obs.multiplicity(ev))
        status = np.asarray(ev.status)
        n = len(nch)
        print(f"{model:9s} N={n} <n_ch>={nch.mean():.3f}+-{nch.std() / np.sqrt(n):.3f} "
              f"<n_final>={nfin.mean():.3f}+-{nfin.std() / np.sqrt(n):.3f} status!=0: {np.mean(status != 0):.4f} "
              f"first call {t_first:.1f}s, best {best:.2f}s = {args.events / best:.0f} events/s", flush=True)


if __name__ == "__main__":
    main()
