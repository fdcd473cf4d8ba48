"""Shower response to ``TimeShower:alphaSvalue``: diffgen against Pythia 8 at parton and hadron level.

Measures, at √s = 91.188 GeV (e⁺e⁻ → γ*/Z → q q̄, q = d…b, no ISR):

* Pythia 8 (``pythia8mc``, Monash defaults) with ``HadronLevel:all = off``: the mean number of final
  quarks and gluons after the shower, ⟨n_partons⟩, at α_s(m_Z) = 0.1365 · (1 ∓ 3 %);
* diffgen's shower (:func:`diffgen.presets.ee_hadrons` with ``hadronize=False``): ⟨n_partons⟩ at the
  same α_s values with common keys, and the autodiff derivative ∂⟨n_partons⟩/∂α_s at 0.1365;
* optionally (``--hadrons``) diffgen's charged multiplicity ⟨n_ch⟩ after hadronization and decays.

Slopes are (⟨n⟩₊ − ⟨n⟩₋)/(α₊ − α₋) with errors from the per-event differences (common keys: the
± samples of diffgen are correlated; Pythia's runs use the same seed but decorrelate quickly, so its
error is taken as that of independent samples).

Usage: ``python benchmarks/shower_alignment.py --pythia --diffgen --n 20000``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

ALPHA0 = 0.1365
ALPHAS = (0.1324, 0.1406)  # ∓ 3 %


def pythia_partons(alpha: float, n_events: int, seed: int = 1, extra=(), hadrons: bool = False) -> np.ndarray:
    """Per-event number of final quarks and gluons of Pythia at parton level (``hadrons``: the number
    of charged final particles with hadronization and decays on)."""
    import pythia_peer

    level = [] if hadrons else ["HadronLevel:all = off"]
    lines = [*pythia_peer._hadrons_lines(91.188), *level, f"TimeShower:alphaSvalue = {alpha}", *extra]
    py = pythia_peer._pythia(lines, seed)
    out = np.zeros(n_events)
    failed = [0]
    for i in range(n_events):
        pythia_peer._next(py, failed, max(100, n_events))
        if hadrons:
            out[i] = sum(1 for p in py.event if p.isFinal() and p.isCharged())
        else:
            out[i] = sum(1 for p in py.event if p.isFinal() and (p.idAbs() <= 5 or p.id() == 21))
    return out


def weighted_mean(x: np.ndarray, w: np.ndarray):
    """Σ w x/Σ w and its error √(Σ w² (x − x̄)²)/Σ w."""
    m = np.sum(w * x) / np.sum(w)
    return m, math.sqrt(np.sum(w * w * (x - m) ** 2)) / np.sum(w)


def slope(lo: np.ndarray, hi: np.ndarray, d_alpha: float, paired: bool, w: np.ndarray | None = None):
    """(mean(hi) − mean(lo))/dα and its error (paired: from the per-event differences, with the
    common event weights ``w``)."""
    if paired:
        m, e = weighted_mean(hi - lo, np.ones_like(hi) if w is None else w)
        return m / d_alpha, e / d_alpha
    err = math.sqrt(lo.var(ddof=1) / len(lo) + hi.var(ddof=1) / len(hi))
    return (hi.mean() - lo.mean()) / d_alpha, err / d_alpha


def run_pythia(n: int, extra=(), hadrons: bool = False):
    t0 = time.time()
    res = {a: pythia_partons(a, n, seed=12345, extra=extra, hadrons=hadrons) for a in (ALPHAS[0], ALPHA0, ALPHAS[1])}
    s, e = slope(res[ALPHAS[0]], res[ALPHAS[1]], ALPHAS[1] - ALPHAS[0], paired=False)
    m0 = res[ALPHA0]
    what = "n_ch" if hadrons else "n_partons"
    print(f"pythia {' '.join(extra) or 'defaults'}: <{what}>(0.1365) = {m0.mean():.4f} +- "
          f"{m0.std(ddof=1) / math.sqrt(n):.4f}; d<{what}>/d alpha_s = {s:.2f} +- {e:.2f}  "
          f"(N = {n} per point, {time.time() - t0:.0f} s)", flush=True)


def run_diffgen(n: int, hadrons: bool, chunk: int = 2000, grad: bool = True):
    import jax
    import jax.numpy as jnp

    import diffgen
    from diffgen.presets import ee_hadrons

    gen = ee_hadrons(hadronize=hadrons, decays=hadrons)
    params = gen.default_params()
    from diffgen.observables.counts import charged_multiplicity

    def count(ev):
        if not hadrons:
            pid = jnp.abs(ev.pid)
            return jnp.sum(ev.mask & ((pid <= 5) | (pid == 21)) & (pid > 0), axis=1).astype(jnp.float32)
        return charged_multiplicity(ev).astype(jnp.float32)

    @jax.jit
    def sample(alpha, key):
        p = diffgen.with_settings(params, {"TimeShower:alphaSvalue": alpha})
        ev = gen.sample_traced(p, key, chunk)
        return count(ev), ev.log_weight

    @jax.jit
    def grad_mean(alpha, key):
        def mean(a):  # the weighted mean Σ w n/Σ w (the hard process's events carry σ weights)
            n_, lw = sample(a, key)
            w = jnp.exp(lw - jax.lax.stop_gradient(jnp.max(lw)))
            return jnp.sum(w * n_) / jnp.sum(w)
        return jax.grad(mean)(alpha)

    t0 = time.time()
    res = {a: [] for a in (ALPHAS[0], ALPHA0, ALPHAS[1])}
    grads, weights = [], []
    for c in range(n // chunk):
        key = jax.random.fold_in(jax.random.key(2026), c)
        for a in res:
            n_, lw = sample(jnp.float32(a), key)
            res[a].append(np.asarray(n_, np.float64))
        weights.append(np.asarray(lw, np.float64))  # log weights: independent of the shower's α_s
        if grad:
            grads.append(float(grad_mean(jnp.float32(ALPHA0), key)))
    res = {a: np.concatenate(v) for a, v in res.items()}
    w = np.concatenate(weights)
    w = np.exp(w - w.max())
    s, e = slope(res[ALPHAS[0]], res[ALPHAS[1]], ALPHAS[1] - ALPHAS[0], paired=True, w=w)
    g = np.array(grads)
    what = "n_ch" if hadrons else "n_partons"
    m0, e0 = weighted_mean(res[ALPHA0], w)
    auto = (f"{g.mean():.2f} +- {g.std(ddof=1) / math.sqrt(len(g)):.2f} (spread of {len(g)} chunk means)"
            if len(g) > 1 else "not computed")
    print(f"diffgen: <{what}>(0.1365) = {m0:.4f} +- {e0:.4f} (weighted); "
          f"finite-difference d<{what}>/d alpha_s = {s:.2f} +- {e:.2f} (common keys); autodiff = {auto}  "
          f"(N = {len(w)} per point, {time.time() - t0:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--pythia", action="store_true")
    ap.add_argument("--pythia-noqed", action="store_true", help="also Pythia with TimeShower:QEDshowerByQ = off")
    ap.add_argument("--diffgen", action="store_true")
    ap.add_argument("--hadrons", action="store_true", help="n_ch after hadronization and decays (both generators)")
    ap.add_argument("--no-grad", action="store_true", help="diffgen: skip the autodiff derivative")
    ap.add_argument("--chunk", type=int, default=2000)
    args = ap.parse_args()
    if args.pythia:
        run_pythia(args.n, hadrons=args.hadrons)
    if args.pythia_noqed:
        run_pythia(args.n, extra=("TimeShower:QEDshowerByQ = off",))
    if args.diffgen:
        run_diffgen(args.n, args.hadrons, chunk=args.chunk, grad=not args.no_grad)


if __name__ == "__main__":
    main()
