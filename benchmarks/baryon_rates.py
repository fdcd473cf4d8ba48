"""Baryon and kaon rates of diffgen's Lund strings against Pythia 8.317 (Monash) in e+e- → hadrons at 91.188 GeV.

Prints, per event with statistical errors, for both generators in the same run:
⟨p + p̄⟩, ⟨n + n̄⟩, ⟨K±⟩, ⟨n_ch⟩ with Pythia's default decays (cτ0 > 1000 mm stable); ⟨p + p̄⟩ and ⟨Λ + Λ̄⟩
with weak decays off (cτ0 > 10 mm stable: K_S, Λ, Σ±, Ξ, Ω too); and ⟨n_ch⟩ with ``StringFlav:probQQtoQ = 0``
(mesons only). diffgen decays the same primary hadrons twice (default and weak-off stable sets).

    PYTHONPATH=. python benchmarks/baryon_rates.py --events 3000
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

import diffgen
from diffgen import particles
from diffgen.decays import DEFAULT_STABLE, hadron_decays

WEAK_OFF = DEFAULT_STABLE + (310, 3122, 3222, 3112, 3322, 3312, 3334)  #: cτ0 > 10 mm (Pythia's tau0Max = 10)
SQRT_S = 91.188


def _counts(pid, mask):
    a = np.abs(pid)
    ch = np.asarray(particles.charge3(pid)) != 0
    return {"p": np.sum(mask & (a == 2212), 1), "n": np.sum(mask & (a == 2112), 1),
            "Lambda": np.sum(mask & (a == 3122), 1), "K+-": np.sum(mask & (a == 321), 1),
            "n_ch": np.sum(mask & ch, 1)}


def _fmt(x):
    x = np.asarray(x, np.float64)
    return f"{x.mean():7.3f} ± {x.std() / np.sqrt(len(x)):.3f}"


def diffgen_rates(n_events: int, seed: int = 1) -> dict[str, np.ndarray]:
    gen = diffgen.presets.ee_hadrons(SQRT_S, decays=False)
    out = {}
    dec_default = jax.jit(hadron_decays().apply)
    dec_weak_off = jax.jit(hadron_decays(stable=WEAK_OFF).apply)
    for label, changes in (("", {}), ("mesons only ", {"StringFlav:probQQtoQ": 0.0})):
        params = diffgen.with_settings(gen.default_params(), changes)
        prim = gen.sample(params, jax.random.key(seed), n_events)
        ok = np.asarray(prim.status) == 0
        for stable, dec in (("", dec_default), ("weak off ", dec_weak_off)):
            ev = dec({}, jax.random.key(seed + 1), prim)
            ok2 = ok & (np.asarray(ev.status) == 0)
            for k, v in _counts(np.asarray(ev.pid), np.asarray(ev.mask)).items():
                out[label + stable + k] = v[ok2]
        out[label + "flagged"] = np.array([np.sum(~ok)])
    return out


def pythia_rates(n_events: int, seed: int = 1) -> dict[str, np.ndarray]:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import pythia_peer

    out = {}
    for label, extra in (("", {}), ("weak off ", {"ParticleDecays:limitTau0": "on", "ParticleDecays:tau0Max": "10"}),
                         ("mesons only ", {"StringFlav:probQQtoQ": "0"})):
        d = pythia_peer.ee_hadrons_events(SQRT_S, n_events, seed=seed, settings=extra)
        for k, v in _counts(d["pid"], d["mask"]).items():
            out[label + k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--no-pythia", action="store_true")
    args = ap.parse_args(argv)
    dg = diffgen_rates(args.events)
    py = {} if args.no_pythia else pythia_rates(args.events)
    rows = ["p", "n", "K+-", "n_ch", "weak off p", "weak off Lambda", "mesons only n_ch", "mesons only K+-"]
    print(f"{args.events} events each, √s = {SQRT_S} GeV; diffgen flagged events: {int(dg['flagged'][0])}")
    print(f"{'per event':<20}{'diffgen':>18}{'Pythia 8.317':>18}{'ratio':>9}")
    for r in rows:
        d = dg[r]
        line = f"{r:<20}{_fmt(d):>18}"
        if r in py:
            line += f"{_fmt(py[r]):>18}{d.mean() / py[r].mean():>9.3f}"
        print(line)


if __name__ == "__main__":
    main()
