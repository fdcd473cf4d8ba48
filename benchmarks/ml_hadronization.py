"""ML hadronization layer trained on diffgen's string model: classifier two-sample AUC against a fresh sample.

Steps (√s = 91.188 GeV, final state after hadron decays):

1. reference: ``--reference-events`` string-model events (``presets.ee_hadrons()``, key A);
2. train the ML layer adversarially (:func:`diffgen.hadronization.train.train`) for ``--steps`` steps;
3. three samples of ``--eval-events`` events each: a *fresh* string sample (key B), the trained ML layer
   and the untrained ML layer, on fresh parton-level events; all unweighted by accept–reject on the
   hard-process weight;
4. a small MLP classifier (flax/optax) on the per-event vector (n_ch, thrust, sphericity, ⟨x_p⟩,
   max x_p) trained on half of each pair of samples; the AUC on the other half (Mann–Whitney).
   The issue's target: AUC ≤ 0.60 for the trained layer against the fresh string sample. The
   string-vs-string AUC (two independent string samples) shows the classifier's own noise floor.

With ``--reference pythia`` (needs ``pythia8mc``) the reference is Pythia 8 Monash hadron-level events
(``pythia_peer.ee_hadrons_events``), written to ``<out>/pythia_reference.npz`` and read back through the
file route; the layer is then compared with a fresh Pythia sample *and* diffgen's string model is
compared with the same sample: χ²/ndf on n_ch, x_p and thrust histograms and on the K±/π± ratio.

Example::

    python benchmarks/ml_hadronization.py --steps 300 --out mlh_bench --json mlh_bench.json
    python benchmarks/ml_hadronization.py --reference pythia --steps 300 --out mlh_pythia --json mlh_pythia.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.hadronization.networks import MLP
from diffgen.hadronization.reference import load_reference, reference_events
from diffgen.hadronization.train import TrainConfig, Trainer, load_checkpoint, parton_generator, train


def event_vector(ev, sqrt_s):
    """f[N, 5]: n_ch, thrust, sphericity, mean and max x_p of the final-state particles."""
    from diffgen.observables import charged_multiplicity, sphericity, thrust

    n_ch, t, s = (np.asarray(x) for x in jax.jit(lambda e: (charged_multiplicity(e), thrust(e), sphericity(e)))(ev))
    mask = np.asarray(ev.mask)
    x_p = 2.0 * np.linalg.norm(np.asarray(ev.p4)[..., 1:], axis=-1) / sqrt_s
    mean = np.sum(np.where(mask, x_p, 0), 1) / np.maximum(mask.sum(1), 1)
    return np.stack([n_ch, t, s, mean, np.max(np.where(mask, x_p, 0), 1)], axis=1)


def unweight(x, w, rng):
    keep = rng.uniform(size=len(w)) < w / np.max(w)
    return x[keep]


def auc_two_sample(a, b, seed=0, steps=1500):
    """Held-out AUC of an MLP classifier separating samples ``a`` and ``b`` (f[n, F] each)."""
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    x = np.concatenate([a, b]).astype(np.float32)
    y = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)
    perm = rng.permutation(2 * n)
    x, y = x[perm], y[perm]
    half = n
    mu, sd = x[:half].mean(0), x[:half].std(0) + 1e-6
    x = (x - mu) / sd
    net = MLP(hidden=32, depth=2, out=1)
    params = net.init(jax.random.key(seed), x[:1])
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        def loss(p):
            logit = net.apply(p, xb)[:, 0]
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logit, yb))

        g = jax.grad(loss)(params)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state

    xt, yt = jnp.asarray(x[:half]), jnp.asarray(y[:half])
    for _ in range(steps):
        idx = rng.integers(0, half, 256)
        params, state = step(params, state, xt[idx], yt[idx])
    score = np.asarray(net.apply(params, jnp.asarray(x[half:]))[:, 0])
    lab = y[half:]
    ranks = np.argsort(np.argsort(score)) + 1
    n1, n0 = lab.sum(), len(lab) - lab.sum()
    return float((ranks[lab == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def summary(ev, weight, sqrt_s):
    """Per-event n_ch, thrust, n_K±, n_π± and per-particle x_p (with weights) of final-state events."""
    from diffgen.observables import charged_multiplicity, n_kaons, n_pions, thrust

    n_ch, t, nk, npi = (np.asarray(x) for x in jax.jit(
        lambda e: (charged_multiplicity(e), thrust(e), n_kaons(e), n_pions(e)))(ev))
    mask = np.asarray(ev.mask)
    x_p = 2.0 * np.linalg.norm(np.asarray(ev.p4)[..., 1:], axis=-1) / sqrt_s
    w = np.asarray(weight, float)
    return {"n_ch": (n_ch, w), "thrust": (t, w), "x_p": (x_p[mask], np.broadcast_to(w[:, None], mask.shape)[mask]),
            "nk": nk, "npi": npi, "w": w}


def compare(a, b):
    """χ²/ndf of sample ``a`` against ``b`` on n_ch, x_p, thrust and the K±/π± ratio."""
    from diffgen.hadronization.train import OBSERVABLE_BINS, histogram_chi2

    out = {}
    for obs in ("n_ch", "x_p", "thrust"):
        c, ndf = histogram_chi2(a[obs], b[obs], OBSERVABLE_BINS[obs])
        out[obs] = {"chi2": c, "ndf": ndf, "chi2_per_ndf": c / max(ndf, 1)}

    def ratio(s):  # R = Σw n_K / Σw n_π and its delta-method error
        w, k, p = s["w"], s["nk"], s["npi"]
        r = np.sum(w * k) / np.sum(w * p)
        resid = w * (k - r * p)
        return r, np.sqrt(np.sum(resid ** 2)) / np.sum(w * p)

    ra, ea = ratio(a)
    rb, eb = ratio(b)
    out["K/pi"] = {"a": ra, "b": rb, "chi2": (ra - rb) ** 2 / (ea ** 2 + eb ** 2), "ndf": 1,
                   "chi2_per_ndf": (ra - rb) ** 2 / (ea ** 2 + eb ** 2)}
    out["total_chi2_per_ndf"] = sum(v["chi2"] for v in out.values() if isinstance(v, dict)) / sum(
        v["ndf"] for v in out.values() if isinstance(v, dict))
    return out


def ml_events(trainer, state, n, seed):
    """Final-state events of the layer (host arrays) on fresh parton events, and their weights."""
    from diffgen.events import Events

    gen = parton_generator(trainer.config.sqrt_s)
    partons = gen.sample(gen.default_params(), jax.random.key(seed), n)
    parts = []
    b = trainer.config.batch
    for i in range(-(-n // b)):
        idx = np.arange(i * b, (i + 1) * b) % n
        parts.append(jax.device_get(trainer.generate(state["net"], state["settings"], jax.random.key(seed + 1000 + i),
                                                     partons[idx])))
    ev = Events.concatenate(parts)[:n]
    ok = np.asarray(ev.status) == 0
    return ev[np.nonzero(ok)[0]], np.exp(np.asarray(ev.log_weight)[ok] - 10.0)


def ml_sample(trainer, state, n, seed):
    gen = parton_generator(trainer.config.sqrt_s)
    partons = gen.sample(gen.default_params(), jax.random.key(seed), n)
    parts, ws = [], []
    b = trainer.config.batch
    for i in range(-(-n // b)):
        idx = np.arange(i * b, (i + 1) * b) % n
        ev = jax.device_get(trainer.generate(state["net"], state["settings"], jax.random.key(seed + 1000 + i),
                                             partons[idx]))
        ok = np.asarray(ev.status) == 0
        parts.append(event_vector(ev, trainer.config.sqrt_s)[ok])
        ws.append(np.exp(np.asarray(ev.log_weight)[ok] - 10.0))
    return np.concatenate(parts)[:n], np.concatenate(ws)[:n]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", choices=("string", "pythia"), default="string")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--partons", type=int, default=2048)
    ap.add_argument("--reference-events", type=int, default=4096)
    ap.add_argument("--eval-events", type=int, default=4096)
    ap.add_argument("--train-setting", action="append", default=None)
    ap.add_argument("--out", default="mlh_bench")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    t0 = time.time()
    settings = tuple(args.train_setting) if args.train_setting is not None else ()
    cfg = TrainConfig(steps=args.steps, batch=args.batch, n_partons=args.partons, n_reference=args.reference_events,
                      n_eval=min(2048, args.reference_events), train_settings=settings, checkpoint_every=100)
    if args.reference == "pythia":
        return pythia_main(args, cfg, t0)
    ref = load_reference("string", args.reference_events, jax.random.key(101), cfg.sqrt_s, progress=True)
    t_ref = time.time() - t0
    report = train(cfg, ref, args.out, progress=True)
    t_train = time.time() - t0 - t_ref
    trainer = Trainer(cfg)
    state = load_checkpoint(os.path.join(args.out, "checkpoint.msgpack"), trainer.init_state())
    rng = np.random.default_rng(5)
    fresh = load_reference("string", args.eval_events, jax.random.key(202), cfg.sqrt_s, progress=True)
    fresh_x = unweight(event_vector(reference_events(fresh.p4, fresh.pid, fresh.mask), cfg.sqrt_s), fresh.weight, rng)
    ref_x = unweight(event_vector(reference_events(ref.p4, ref.pid, ref.mask), cfg.sqrt_s), ref.weight, rng)
    trained_x = unweight(*ml_sample(trainer, state, args.eval_events, 303), rng)
    untrained_x = unweight(*ml_sample(trainer, trainer.init_state(), args.eval_events, 303), rng)
    result = {
        "auc_trained_vs_fresh_string": auc_two_sample(trained_x, fresh_x),
        "auc_untrained_vs_fresh_string": auc_two_sample(untrained_x, fresh_x),
        "auc_string_vs_string": auc_two_sample(ref_x, fresh_x),
        "n_events": {"fresh_string": len(fresh_x), "trained": len(trained_x), "untrained": len(untrained_x)},
        "means": {k: dict(zip(["n_ch", "thrust", "sphericity", "mean_x_p", "max_x_p"], v.mean(0).round(4).tolist()))
                  for k, v in (("string", fresh_x), ("trained", trained_x), ("untrained", untrained_x))},
        "chi2_report": report["chi2"], "trained_settings": report["settings"],
        "config": json.loads(cfg.to_json()), "seconds": {"reference": t_ref, "training": t_train,
                                                          "total": time.time() - t0},
        "device": str(jax.devices()[0]),
    }
    keys = ("auc_trained_vs_fresh_string", "auc_untrained_vs_fresh_string", "auc_string_vs_string", "means",
            "trained_settings", "seconds")
    print(json.dumps({k: result[k] for k in keys}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def pythia_main(args, cfg, t0):
    import pythia_peer

    os.makedirs(args.out, exist_ok=True)
    data = pythia_peer.ee_hadrons_events(cfg.sqrt_s, args.reference_events, seed=1)
    path = os.path.join(args.out, "pythia_reference.npz")
    np.savez(path, p4=data["p4"].astype(np.float32), pid=data["pid"], mask=data["mask"], weight=data["weight"])
    ref = load_reference(path, args.reference_events, sqrt_s=cfg.sqrt_s)
    t_ref = time.time() - t0
    report = train(cfg, ref, os.path.join(args.out, "run"), progress=True)
    t_train = time.time() - t0 - t_ref
    trainer = Trainer(cfg)
    state = load_checkpoint(os.path.join(args.out, "run", "checkpoint.msgpack"), trainer.init_state())
    fresh = pythia_peer.ee_hadrons_events(cfg.sqrt_s, args.eval_events, seed=2)
    pythia = summary(reference_events(fresh["p4"], fresh["pid"], fresh["mask"]), fresh["weight"], cfg.sqrt_s)
    string = load_reference("string", args.eval_events, jax.random.key(202), cfg.sqrt_s, progress=True)
    string_s = summary(reference_events(string.p4, string.pid, string.mask), string.weight, cfg.sqrt_s)
    trained_s = summary(*ml_events(trainer, state, args.eval_events, 303), cfg.sqrt_s)
    untrained_s = summary(*ml_events(trainer, trainer.init_state(), args.eval_events, 303), cfg.sqrt_s)
    result = {"vs_pythia": {"ml_trained": compare(trained_s, pythia), "ml_untrained": compare(untrained_s, pythia),
                            "string": compare(string_s, pythia)},
              "mean_n_ch": {k: float(np.average(v["n_ch"][0], weights=v["w"])) for k, v in
                            (("pythia", pythia), ("string", string_s), ("ml_trained", trained_s),
                             ("ml_untrained", untrained_s))},
              "trained_settings": report["settings"], "config": json.loads(cfg.to_json()),
              "seconds": {"reference": t_ref, "training": t_train, "total": time.time() - t0},
              "device": str(jax.devices()[0])}
    print(json.dumps({k: result[k] for k in ("vs_pythia", "mean_n_ch", "trained_settings", "seconds")}, indent=1,
                     default=float))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    return result


if __name__ == "__main__":
    main()
