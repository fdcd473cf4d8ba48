"""Benchmark: the learned detector surrogate against the parametric detector it was trained on.

1. Train :func:`diffgen.detector.train_learned` on the particle gun through ``parametric("aleph")``
   (``--steps`` Adam steps of ``--batch`` particles), timed.
2. Generate ``--events`` particle-level e+e- → hadrons events at the Z pole
   (``diffgen.presets.ee_hadrons()``), and pass the *same* truth events through both detectors
   (independent keys). Per event, the detector-level observables: n_tracks, thrust, sphericity,
   visible energy Σ E′, mean and maximum charged x_p = 2|p′|/√s.
3. Two-sample classifier test: a Flax MLP (2 × 32, ReLU, Adam, full batch) learns to tell learned
   from parametric events on the standardised observables, trained on the first half of the truth
   events and evaluated (ROC AUC) on the second half, so no truth event is in both. The same test of
   parametric vs parametric (two keys) gives the null reference; the AUC's standard error under the
   null is √((n₀ + n₁ + 1)/(12 n₀ n₁)) (Hanley–McNeil). Target of the issue: AUC ≤ 0.55.
4. Speed: events/s of each stage's jitted ``apply`` on the same truth batch (best of ``--repeats``,
   after a compile call), in the same process.

Usage::

    python benchmarks/learned_detector.py                      # 600 steps, 6000 events
    python benchmarks/learned_detector.py --steps 200 --events 2000 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time


def observables(reco):
    import jax.numpy as jnp

    from diffgen.detector import n_tracks
    from diffgen.observables import scaled_momentum, sphericity, thrust
    from diffgen.particles import is_charged

    charged = reco.mask & is_charged(reco.pid)
    xp = jnp.where(charged, scaled_momentum(reco), 0.0)
    nch = jnp.maximum(jnp.sum(charged, axis=1), 1)
    return jnp.stack([n_tracks(reco), thrust(reco), sphericity(reco),
                      jnp.sum(jnp.where(reco.mask, reco.p4[..., 0], 0.0), axis=1),
                      jnp.sum(xp, axis=1) / nch, jnp.max(xp, axis=1)], axis=1)


OBSERVABLE_NAMES = ["n_tracks", "thrust", "sphericity", "E_vis", "mean charged x_p", "max charged x_p"]


def roc_auc(score0, score1):
    """P(score of a class-1 event > score of a class-0 event) (ties count ½), by ranks."""
    import numpy as np
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([score0, score1]))
    n0, n1 = len(score0), len(score1)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def classifier_auc(x0, x1, seed: int, steps: int = 600):
    """Train on the first half of both samples, return the held-out AUC and its null standard error."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    half = len(x0) // 2
    tr = np.concatenate([x0[:half], x1[:half]])
    mu, sd = tr.mean(0), tr.std(0) + 1e-9
    xtr = jnp.asarray((tr - mu) / sd)
    ytr = jnp.concatenate([jnp.zeros(half), jnp.ones(half)])

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(32)(x))
            x = nn.relu(nn.Dense(32)(x))
            return nn.Dense(1)(x)[..., 0]

    net = MLP()
    params = net.init(jax.random.key(seed), xtr[:1])
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        def loss(p):
            return jnp.mean(optax.sigmoid_binary_cross_entropy(net.apply(p, xtr), ytr))
        g = jax.grad(loss)(params)
        u, state = opt.update(g, state, params)
        return optax.apply_updates(params, u), state

    for _ in range(steps):
        params, state = step(params, state)
    s0 = np.asarray(net.apply(params, jnp.asarray((x0[half:] - mu) / sd)))
    s1 = np.asarray(net.apply(params, jnp.asarray((x1[half:] - mu) / sd)))
    n0, n1 = len(s0), len(s1)
    return roc_auc(s0, s1), float(np.sqrt((n0 + n1 + 1) / (12 * n0 * n1)))


def best_time(fn, repeats):
    import jax

    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times), max(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint", default=None, help="use this trained checkpoint instead of training")
    ap.add_argument("--save", default=None, help="write the trained checkpoint here")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    import diffgen
    from diffgen.detector import learned, load_checkpoint, parametric, save_checkpoint, train_learned

    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                      f"load average {os.getloadavg()[0]:.1f}", "jax": jax.__version__, "args": vars(args)}
    t0 = time.perf_counter()
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        out["train_s"] = None
    else:
        model, losses = train_learned(jax.random.key(0), steps=args.steps, batch=args.batch, progress=True)
        out["train_s"] = time.perf_counter() - t0
        out["final_loss"] = float(np.mean(losses[-20:]))
        if args.save:
            save_checkpoint(args.save, model)

    gen = diffgen.presets.ee_hadrons()
    t0 = time.perf_counter()
    truth = gen.sample(gen.default_params(), jax.random.key(11), args.events)
    jax.block_until_ready(truth)
    out["truth_s"] = time.perf_counter() - t0
    ok = np.asarray(truth.status) == 0
    out["truth_events_ok"] = int(ok.sum())

    par, lea = parametric("aleph"), learned(model)
    par_apply, lea_apply = jax.jit(par.apply), jax.jit(lea.apply)
    pp, lp = par.init(None), lea.init(None)
    obs = jax.jit(observables)
    k1, k2, k3 = jax.random.split(jax.random.key(12), 3)
    x_par = np.asarray(obs(par_apply(pp, k1, truth)))[ok]
    x_par2 = np.asarray(obs(par_apply(pp, k2, truth)))[ok]
    x_lea = np.asarray(obs(lea_apply(lp, k3, truth)))[ok]
    out["means"] = {name: {"parametric": float(x_par[:, i].mean()), "learned": float(x_lea[:, i].mean())}
                    for i, name in enumerate(OBSERVABLE_NAMES)}
    auc, err = classifier_auc(x_par, x_lea, seed=0)
    auc_null, _ = classifier_auc(x_par, x_par2, seed=0)
    out["auc_learned_vs_parametric"], out["auc_null_sd"] = auc, err
    out["auc_parametric_vs_parametric"] = auc_null

    n = truth.n_events
    tp = best_time(lambda: par_apply(pp, k1, truth), args.repeats)
    tl = best_time(lambda: lea_apply(lp, k3, truth), args.repeats)
    out["events_per_s"] = {"parametric": n / tp[0], "learned": n / tl[0],
                           "worst_parametric": n / tp[1], "worst_learned": n / tl[1]}
    out["speed_ratio_learned_over_parametric"] = tp[0] / tl[0]
    out["capacity"] = truth.capacity
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
