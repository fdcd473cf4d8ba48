"""The `omnifold` package (0.1.36, TensorFlow) on the inputs of omnifold_vs_peer.py; run by that script in
the peer's own interpreter (TensorFlow stays out of diffgen's environment). Not part of diffgen.

    <peer python> benchmarks/omnifold_peer_run.py inputs.npz outputs.npz ITERATIONS
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from omnifold import MLP, DataLoader, MultiFold  # noqa: E402


def main():
    inp, out, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    f = np.load(inp)
    t = time.perf_counter()
    data = DataLoader(reco=f["data_reco"][:, None], normalize=True)
    mc = DataLoader(reco=f["sim_reco"][:, None], gen=f["sim_truth"][:, None], normalize=True)
    folder = os.path.dirname(out) or "."
    unfold = MultiFold("toy", MLP(1), MLP(1), data, mc, niter=iterations, weights_folder=folder, log_folder=folder,
                       verbose=False)  # the package's defaults: batch 128, lr 1e-4, 50 epochs, early stop 10
    unfold.Unfold()
    push = unfold.reweight(mc.gen, unfold.model2, batch_size=1000)
    np.savez(out, weights=push, seconds=time.perf_counter() - t)


if __name__ == "__main__":
    main()
