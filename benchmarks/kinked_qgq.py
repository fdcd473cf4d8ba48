"""Primary-hadron multiplicity of fixed q q̄, u g ū and u g g ū parton configurations: Pythia 8 vs diffgen's
kinked and straight-piece strings (hadronization only: no shower, no decays, mesons only).

Pythia 8 (``pythia8mc``) hadronizes the partons given in the event record (ProcessLevel:all = off,
PartonLevel:all = off, HadronLevel:Decay = off, StringFlav:probQQtoQ = 0); diffgen runs
``string_fragmentation(kinked=...)`` on the same momenta. Printed: <n_primary> ± standard error and the
event-to-event standard deviation of n_primary (± its error, sd/√(2N)). The last configuration, a gluon
collinear with each quark ("qggq collinear"), has boosted end regions: the width of its multiplicity
distribution is what the per-region transverse bases of :mod:`diffgen.hadronization.kinked` fixed.

Usage::

    python benchmarks/kinked_qgq.py --events 3000 --peer pythia diffgen
"""

from __future__ import annotations

import argparse

import numpy as np

SQRT_S = 91.2
CONFIGS = {"qqbar": (0.0, 0.0), "qgq 20GeV 2rad": (20.0, 2.0), "qgq 1GeV 2rad": (1.0, 2.0),
           "qgq 50MeV 2rad": (0.05, 2.0), "qgq 5MeV 2rad": (0.005, 2.0),
           "qgq 30GeV 2.5rad": (30.0, 2.5),
           # gluons given as (E, θ, φ), the quarks back to back in the rest frame of what the gluons leave
           "qggq collinear": ((5.0, 0.15, 0.0), (10.0, np.pi - 0.15, 0.0))}


def partons(e_g, theta):
    """(q, g, q̄) momenta (E, px, py, pz): q along +z, gluon (e_g, theta) in the x–z plane, q̄ balancing."""
    g = np.array([e_g, e_g * np.sin(theta), 0.0, e_g * np.cos(theta)])
    rest = SQRT_S - e_g
    e_q = (rest ** 2 - g[1] ** 2 - g[3] ** 2) / (2.0 * (rest + g[3]))
    return np.array([e_q, 0, 0, e_q]), g, np.array([rest - e_q, -g[1], 0.0, -(e_q + g[3])])


def _boost(p, beta):
    b2 = float(beta @ beta)
    if b2 < 1e-15:
        return p
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = float(beta @ p[1:])
    return np.concatenate([[gamma * (p[0] + bp)], p[1:] + ((gamma - 1.0) * bp / b2 + gamma * p[0]) * beta])


def chain(config):
    """The partons of a configuration in colour order (q, g…, q̄), massless, total momentum (√s, 0)."""
    if isinstance(config[0], tuple):
        gluons = [np.array([e, e * np.sin(t) * np.cos(f), e * np.sin(t) * np.sin(f), e * np.cos(t)])
                  for e, t, f in config]
        rest = np.array([SQRT_S, 0.0, 0.0, 0.0]) - np.sum(gluons, axis=0)
        m = np.sqrt(rest[0] ** 2 - rest[1:] @ rest[1:])
        beta = rest[1:] / rest[0]
        q = _boost(np.array([m / 2, 0.0, 0.0, m / 2]), beta)
        qb = _boost(np.array([m / 2, 0.0, 0.0, -m / 2]), beta)
        return np.stack([q, *gluons, qb])
    e_g, th = config
    if e_g == 0:
        return np.array([[SQRT_S / 2, 0, 0, SQRT_S / 2], [SQRT_S / 2, 0, 0, -SQRT_S / 2]])
    return np.stack(partons(e_g, th))


def _colours(n):
    return [(101, 0)] + [(102 + k, 101 + k) for k in range(n - 2)] + [(0, 99 + n)]


def _summary(who, label, k):
    n = len(k)
    return (f"{who:8s} {label:18s} N={n} <n_primary>={k.mean():.3f} +- {k.std() / np.sqrt(n):.3f} "
            f"sd={k.std():.3f} +- {k.std() / np.sqrt(2 * n):.3f}")


def pythia(n):
    import pythia8mc

    py = pythia8mc.Pythia("", False)
    for s in ("ProcessLevel:all = off", "PartonLevel:all = off", "HadronLevel:Decay = off", "StringFlav:probQQtoQ = 0",
              "Next:numberCount = 0", "Random:setSeed = on", "Random:seed = 5"):
        py.readString(s)
    py.init()
    for label, config in CONFIGS.items():
        p4 = chain(config)
        pid = [2] + [21] * (len(p4) - 2) + [-2]
        ns = []
        for _ in range(n):
            ev = py.event
            ev.reset()
            for q, (c, a), p in zip(pid, _colours(len(p4)), p4):
                ev.append(q, 23, c, a, p[1], p[2], p[3], p[0], 0.0)
            if py.next():
                ns.append(sum(1 for j in range(ev.size()) if ev[j].isFinal()))
        print(_summary("pythia", label, np.array(ns)), flush=True)


def diffgen(n, models=("kinked", "straight")):
    import jax
    import jax.numpy as jnp

    from diffgen import Events
    from diffgen.hadronization import string_fragmentation

    for model in models:
        st = string_fragmentation(capacity=64, kinked=model == "kinked")
        fn = jax.jit(st.diagnose)
        for label, config in CONFIGS.items():
            chain_p4 = chain(config)
            k = len(chain_p4)
            p4, pid, col = np.zeros((4, 4)), np.zeros(4, np.int32), np.zeros((4, 2), np.int32)
            p4[:k], pid[:k], col[:k] = chain_p4, [2] + [21] * (k - 2) + [-2], _colours(k)
            ev = Events.empty(n, 4).replace(
                p4=jnp.tile(jnp.asarray(p4, jnp.float32), (n, 1, 1)), pid=jnp.tile(jnp.asarray(pid), (n, 1)),
                mask=jnp.tile(jnp.asarray(pid != 0), (n, 1)), colour=jnp.tile(jnp.asarray(col), (n, 1, 1)))
            params = st.init(None)
            params["StringFlav:probQQtoQ"] = jnp.float32(0.0)
            out, info = fn(params, jax.random.key(11), ev)
            print(_summary(model, label, np.asarray(out.mask).sum(axis=1).astype(float))
                  + f" fallbacks/event {np.asarray(info['fallbacks']).mean():.3f}", flush=True)

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--peer", nargs="+", default=["pythia", "diffgen"])
    args = ap.parse_args()
    if "pythia" in args.peer:
        pythia(args.events)
    if "diffgen" in args.peer:
        diffgen(args.events)
