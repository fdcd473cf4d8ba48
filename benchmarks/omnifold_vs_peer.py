"""OmniFold in diffgen against the `omnifold` package (TensorFlow) on the same inputs, in the same run.

The 1-D Gaussian toy of the OmniFold paper and of the package: truth z ~ N(0, 1) in simulation and
N(0.2, 0.8) in data, smearing s = 0.5, 10^5 events each, 5 iterations (issue 14). Prints for each
implementation the wall time and the CPU time (user + system, all threads; including compilation /
graph building: the 2-core VM is shared, CPU time is the steadier figure) and the closure: unfolded
mean and width against the data's truth, with the statistical error of the truth moments.

The peer runs in its own interpreter (`--peer-python`, default $OMNIFOLD_PYTHON; version 0.1.36 needs
``tensorflow<2.16``, i.e. Keras 2: with Keras 3 its ``model.compile`` arguments fail), so TensorFlow
never enters diffgen's environment. Without it only diffgen's side runs.

    PYTHONPATH=. python benchmarks/omnifold_vs_peer.py --peer-python /path/to/venv-omnifold/bin/python
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from diffgen.unfold import TrainConfig, gaussian_toy, mlp, omnifold


def moments(z, w):
    m = np.average(z, weights=w)
    return m, np.sqrt(np.average((z - m) ** 2, weights=w))


def cpu_seconds(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def report(name, seconds, cpu, z, w, toy):
    m, s = moments(z, w)
    tm, ts = toy.data_truth.mean(), toy.data_truth.std()
    n = len(toy.data_truth)
    print(f"{name:8s} {seconds:7.1f} s wall {cpu:7.1f} s CPU   mean {m:.4f} (bias {m - tm:+.4f})   "
          f"width {s:.4f} (bias {s - ts:+.4f})   "
          f"[truth {tm:.4f} +- {ts / np.sqrt(n):.4f}, {ts:.4f} +- {ts / np.sqrt(2 * n):.4f}]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", default="64,64", help="diffgen's MLP hidden layers (the peer: 64,128,64)")
    ap.add_argument("--patience", type=int, default=TrainConfig().patience)
    ap.add_argument("--peer-python", default=os.environ.get("OMNIFOLD_PYTHON"))
    args = ap.parse_args()

    toy = gaussian_toy(jax.random.key(args.seed), args.events, args.events)
    t, c = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    net = mlp(tuple(int(h) for h in args.hidden.split(",")))
    res = omnifold(jax.random.key(args.seed + 1), toy.sim_truth, toy.sim_reco, toy.data_reco,
                   iterations=args.iterations, reco_network=net, truth_network=net,
                   config=TrainConfig(patience=args.patience), progress=False)
    ours, ours_cpu = time.perf_counter() - t, cpu_seconds(resource.RUSAGE_SELF) - c
    print(f"1-D Gaussian toy, {args.events} events, {args.iterations} iterations; diffgen MLP {args.hidden}, "
          f"patience {args.patience}")
    report("diffgen", ours, ours_cpu, toy.sim_truth, res.unfolded_weights, toy)
    for i in res.info:
        print(f"  iteration {i.iteration}: ESS {i.ess_fraction:.3f}, change {i.change:.4f}, epochs "
              f"{i.step1.epochs}/{i.step2.epochs}, clipped {i.clipped}, non-finite {i.non_finite}")
    if not args.peer_python:
        print("omnifold package: not run (give --peer-python or set OMNIFOLD_PYTHON)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, sim_truth=toy.sim_truth, sim_reco=toy.sim_reco, data_reco=toy.data_reco)
        t, c = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
        subprocess.run([args.peer_python, str(Path(__file__).with_name("omnifold_peer_run.py")), str(inp), str(out),
                        str(args.iterations)], check=True, stdout=subprocess.DEVNULL)
        total, total_cpu = time.perf_counter() - t, cpu_seconds(resource.RUSAGE_CHILDREN) - c
        peer = np.load(out)
        report("omnifold", total, total_cpu, toy.sim_truth, peer["weights"], toy)
        print(f"  (of which {float(peer['seconds']):.1f} s inside the package's Unfold and reweight)")
    print(f"speed-up: {total / ours:.1f}x wall, {total_cpu / ours_cpu:.1f}x CPU time")


if __name__ == "__main__":
    sys.exit(main())
