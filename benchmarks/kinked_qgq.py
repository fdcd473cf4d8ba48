"""Primary-hadron multiplicity of fixed q q̄ and u g ū parton configurations: Pythia 8 vs diffgen's kinked
and straight-piece strings (hadronization only: no shower, no decays, mesons only).

Pythia 8 (``pythia8mc``) hadronizes the partons given in the event record (ProcessLevel:all = off,
PartonLevel:all = off, HadronLevel:Decay = off, StringFlav:probQQtoQ = 0); diffgen runs
``string_fragmentation(kinked=...)`` on the same momenta. Printed: <n_primary> ± standard error.

Usage::

    python benchmarks/kinked_qgq.py --events 3000 --peer pythia diffgen
"""

from __future__ import annotations

import argparse

import numpy as np

SQRT_S = 91.2
CONFIGS = {"qqbar": (0.0, 0.0), "qgq 20GeV 2rad": (20.0, 2.0), "qgq 1GeV 2rad": (1.0, 2.0),
           "qgq 50MeV 2rad": (0.05, 2.0), "qgq 5MeV 2rad": (0.005, 2.0),
           "qgq 30GeV 2.5rad": (30.0, 2.5)}


def partons(e_g, theta):
    """(q, g, q̄) momenta (E, px, py, pz): q along +z, gluon (e_g, theta) in the x–z plane, q̄ balancing."""
    g = np.array([e_g, e_g * np.sin(theta), 0.0, e_g * np.cos(theta)])
    rest = SQRT_S - e_g
    e_q = (rest ** 2 - g[1] ** 2 - g[3] ** 2) / (2.0 * (rest + g[3]))
    return np.array([e_q, 0, 0, e_q]), g, np.array([rest - e_q, -g[1], 0.0, -(e_q + g[3])])


def pythia(n):
    import pythia8mc

    py = pythia8mc.Pythia("", False)
    for s in ("ProcessLevel:all = off", "PartonLevel:all = off", "HadronLevel:Decay = off", "StringFlav:probQQtoQ = 0",
              "Next:numberCount = 0", "Random:setSeed = on", "Random:seed = 5"):
        py.readString(s)
    py.init()
    for label, (e_g, th) in CONFIGS.items():
        ns = []
        for _ in range(n):
            ev = py.event
            ev.reset()
            if e_g == 0:
                ev.append(2, 23, 101, 0, 0, 0, SQRT_S / 2, SQRT_S / 2, 0.0)
                ev.append(-2, 23, 0, 101, 0, 0, -SQRT_S / 2, SQRT_S / 2, 0.0)
            else:
                q, g, qb = partons(e_g, th)
                for pid, (c, a), p in ((2, (101, 0), q), (21, (102, 101), g), (-2, (0, 102), qb)):
                    ev.append(pid, 23, c, a, p[1], p[2], p[3], p[0], 0.0)
            if py.next():
                ns.append(sum(1 for j in range(ev.size()) if ev[j].isFinal()))
        ns = np.array(ns)
        print(f"pythia   {label:18s} N={len(ns)} <n_primary>={ns.mean():.3f} +- {ns.std() / np.sqrt(len(ns)):.3f}",
              flush=True)


def diffgen(n, models=("kinked", "straight")):
    import jax
    import jax.numpy as jnp

    from diffgen import Events
    from diffgen.hadronization import string_fragmentation

    for model in models:
        st = string_fragmentation(capacity=64, kinked=model == "kinked")
        fn = jax.jit(st.diagnose)
        for label, (e_g, th) in CONFIGS.items():
            if e_g == 0:
                p4 = np.array([[SQRT_S / 2, 0, 0, SQRT_S / 2], [0, 0, 0, 0], [SQRT_S / 2, 0, 0, -SQRT_S / 2]])
                mask = np.array([True, False, True])
                col = [[101, 0], [0, 0], [0, 101]]
            else:
                p4, mask, col = np.stack(partons(e_g, th)), np.ones(3, bool), [[101, 0], [102, 101], [0, 102]]
            ev = Events.empty(n, 3).replace(
                p4=jnp.tile(jnp.asarray(p4, jnp.float32), (n, 1, 1)),
                pid=jnp.tile(jnp.array([2, 21, -2]) * mask, (n, 1)),
                mask=jnp.tile(jnp.asarray(mask), (n, 1)), colour=jnp.tile(jnp.array(col), (n, 1, 1)))
            out, info = fn(st.init(None), jax.random.key(11), ev)
            k = np.asarray(out.mask).sum(axis=1)
            print(f"{model:8s} {label:18s} N={n} <n_primary>={k.mean():.3f} +- {k.std() / np.sqrt(n):.3f} "
                  f"fallbacks/event {np.asarray(info['fallbacks']).mean():.3f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--peer", nargs="+", default=["pythia", "diffgen"])
    args = ap.parse_args()
    if "pythia" in args.peer:
        pythia(args.events)
    if "diffgen" in args.peer:
        diffgen(args.events)
