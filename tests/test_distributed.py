"""Several processes: index ranges, per-process generation, and weighted means and gradients summed
over two real ``jax.distributed`` processes (Gloo collectives on CPU) against one process.

Tolerance of the comparisons of sums: everything runs in float64. Splitting n events between
processes or chunks only changes the order of the additions; the rounding error of a sum of n
terms is at most ≈ n·ε·Σ|terms| (Higham, ε = 1.1e-16), i.e. ≤ 1.2e-13·Σ|terms| for n = 1000. The
observables below have Σ|w·O| ≲ 30·|Σ w·O| at most, so a relative tolerance of 1e-10 is ample for
the rounding, while one missing or doubled event would change them by ~1e-3.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen import distributed
from diffgen.events import Events

ROOT = Path(__file__).resolve().parents[1]
N = 1000
SEED = 7
RTOL = 1e-10
EDGES = (-1.0, -0.5, 0.0, 0.5, 1.0)


def cos_theta(ev):
    p = ev.p4[:, 0, 1:]
    axis = ev.p4_in[:, 0, 1:]
    return jnp.sum(p * axis, -1) / jnp.sqrt(jnp.sum(p * p, -1) * jnp.sum(axis * axis, -1))


def forward(ev):
    """sign(cos θ): its weighted mean is A_FB."""
    return jnp.sign(cos_theta(ev))


def bins(ev):
    """One-hot cos θ bins: the weighted means are the bin fractions."""
    c = cos_theta(ev)
    e = jnp.asarray(EDGES)
    return ((c[:, None] >= e[:-1]) & (c[:, None] < e[1:])).astype(c.dtype)


def chi2(m):
    target = jnp.array([0.2, 0.3, 0.2, 0.3])
    return jnp.sum((m - target) ** 2 / 0.01)


def leaves(ev):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(ev)]


# ------------------------------------------------------------------------------------------------
def test_process_range_partitions_contiguously():
    for n in (1, 2, 3, 10, 1001):
        for size in range(1, min(n, 7) + 1):
            ranges = [distributed.process_range(n, p, size) for p in range(size)]
            starts = [o for o, _ in ranges]
            counts = [c for _, c in ranges]
            assert starts[0] == 0 and sum(counts) == n
            assert all(o + c == o2 for (o, c), o2 in zip(ranges, starts[1:]))  # contiguous, in order
            assert max(counts) - min(counts) <= 1
    assert distributed.process_range(10, 1, 3) == (4, 3)
    assert distributed.process_range(5) == (0, 5)  # one process: everything


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 2, "process_id": 0, "num_processes": 3}, r"n must be >= num_processes = 3"),
    ({"n": 10, "process_id": 3, "num_processes": 3}, r"process_id must be in \[0, num_processes - 1\] = \[0, 2\]"),
    ({"n": 10, "process_id": -1, "num_processes": 3}, r"process_id must be in"),
    ({"n": 10, "process_id": 0, "num_processes": 0}, r"num_processes must be >= 1, got 0"),
    ({"n": 0, "process_id": 0, "num_processes": 1}, r"n must be an integer in \[1, 4294967296\]"),
    ({"n": 10, "process_id": 1.5, "num_processes": 3}, r"process_id must be an integer"),
])
def test_process_range_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.process_range(**kwargs)


def test_initialize_rejects_half_a_specification():
    with pytest.raises(ValueError, match="give both num_processes and process_id"):
        distributed.initialize("localhost:1", num_processes=2)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, num_processes - 1\] = \[0, 1\], got 2"):
        distributed.initialize("localhost:1", num_processes=2, process_id=2)


def test_import_does_not_start_the_jax_backend():
    code = ("import jax; from jax._src import xla_bridge as xb; import diffgen; "
            "assert not xb.backends_are_initialized(), 'import diffgen started the XLA backend'")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_generate_local_blocks_are_the_single_process_run():
    gen = diffgen.presets.ee_mumu()
    params, key = gen.default_params(), jax.random.key(SEED)
    ref = gen.sample(params, key, 301)
    parts = [distributed.generate_local(gen, params, key, 301, chunk=64, process_id=p, num_processes=3)
             for p in range(3)]
    assert [e.n_events for e in parts] == [101, 100, 100]
    for a, b in zip(leaves(ref), leaves(Events.concatenate(parts))):
        np.testing.assert_array_equal(a, b)
    seen = []
    assert distributed.generate_local(gen, params, key, 301, chunk=64, process_id=2, num_processes=3,
                                      on_chunk=seen.append, keep=False) is None
    assert [e.n_events for e in seen] == [64, 36]


class Reference(NamedTuple):
    gen: Any
    params: Any
    key: Any
    events: Events
    afb: Any
    afb_grad: Any


@pytest.fixture(scope="module")
def reference():
    """The one-process run (float64): all N events and A_FB = ⟨sign cos θ⟩ with its gradient."""
    with jax.enable_x64(True):
        gen = diffgen.presets.ee_mumu()
        params, key = gen.default_params(), jax.random.key(SEED)
        events = gen.sample(params, key, N)
        afb, afb_grad = jax.value_and_grad(lambda p: diffgen.expect(forward, gen, p, key, N))(params)
    return Reference(gen, params, key, events, afb, afb_grad)


@jax.enable_x64(True)
def test_combined_partial_sums_equal_expect_in_one_process(reference):
    gen, params, key, _, ref, ref_grad = reference
    parts = [distributed.local_sums(forward, gen, params, key, N, chunk=300, process_id=p, num_processes=2)
             for p in range(2)]
    total = distributed.combine(parts)
    mean = total.sum_w_obs / total.sum_w
    grad = (total.grad_sum_w_obs["hard"]["23:m0"] - mean * total.grad_sum_w["hard"]["23:m0"]) / total.sum_w
    np.testing.assert_allclose(mean, ref, rtol=RTOL)
    np.testing.assert_allclose(grad, ref_grad["hard"]["23:m0"], rtol=RTOL)
    # a block left out changes the result far beyond the tolerance (the comparison can fail)
    half = parts[0]
    assert abs(half.sum_w_obs / half.sum_w - ref) > 1e3 * RTOL * abs(ref)


@jax.enable_x64(True)
def test_value_and_grad_of_a_loss_of_binned_means_equals_autodiff():
    gen = diffgen.presets.ee_mumu()
    params, key = gen.default_params(), jax.random.key(SEED)
    ref, ref_grad = jax.value_and_grad(lambda p: chi2(diffgen.expect(bins, gen, p, key, N)))(params)
    value, grad = distributed.value_and_grad(chi2, bins, gen, params, key, N, chunk=300)
    np.testing.assert_allclose(value, ref, rtol=RTOL)
    for name in ("23:m0", "StandardModel:sin2thetaWbar"):
        np.testing.assert_allclose(grad["hard"][name], ref_grad["hard"][name], rtol=RTOL, err_msg=name)
    with pytest.raises(ValueError, match=r"loss must return a scalar, got shape \(4,\)"):
        distributed.value_and_grad(lambda m: m, bins, gen, params, key, N, chunk=300)


# ------------------------------------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import dataclasses
    import sys
    import jax
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # before importing diffgen: `import diffgen` still runs JAX code (diffgen/shower/fsr.py), which
    # starts the XLA backend, after which jax.distributed.initialize refuses to run
    jax.distributed.initialize(f"localhost:{{port}}", num_processes=2, process_id=pid, initialization_timeout=60)
    import numpy as np
    import diffgen
    from diffgen import distributed
    sys.path.insert(0, {tests!r})
    from test_distributed import N, SEED, forward

    assert (jax.process_index(), jax.process_count()) == (pid, 2)
    gen = diffgen.presets.ee_mumu()
    params, key = gen.default_params(), jax.random.key(SEED)
    ev = distributed.generate_local(gen, params, key, N, chunk=128)
    afb, afb_grad = distributed.expect_and_grad(forward, gen, params, key, N, chunk=200)
    arrays = {{f"ev_{{f.name}}": np.asarray(getattr(ev, f.name)) for f in dataclasses.fields(ev)
              if getattr(ev, f.name) is not None}}  # Events.truth is None without a detector
    np.savez(out, afb=afb, afb_grad=afb_grad["hard"]["23:m0"], **arrays)
    jax.distributed.shutdown()
""")


ONE_PROCESS = textwrap.dedent("""
    import dataclasses
    import sys
    import jax
    import numpy as np
    import diffgen
    sys.path.insert(0, {tests!r})
    from test_distributed import N, SEED

    gen = diffgen.presets.ee_mumu()
    ev = gen.sample(gen.default_params(), jax.random.key(SEED), N)
    np.savez(sys.argv[1], **{{f"ev_{{f.name}}": np.asarray(getattr(ev, f.name)) for f in dataclasses.fields(ev)
                             if getattr(ev, f.name) is not None}})
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_", "PMI_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", PYTHONPATH=str(ROOT),
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    return env


def _launch_two_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(ROOT / "tests")))
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(p), str(port), str(tmp_path / f"out{p}.npz")],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p in range(2)]
    return procs


def _one_process_events(tmp_path):
    """The one-process run in a fresh process with the workers' environment (XLA flags, x64): bit-for-bit
    equality is a property of one compiled program, and the test process's compilations may differ (in
    the full xdist run, earlier tests' state once changed the last bits, 1e-13 relative)."""
    script = tmp_path / "one.py"
    script.write_text(ONE_PROCESS.format(tests=str(ROOT / "tests")))
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "one.npz")], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return np.load(tmp_path / "one.npz")


def _collect(procs, tmp_path, timeout=120.0):
    deadline = time.monotonic() + timeout
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"two-process run did not finish in {timeout:.0f} s (a hung collective?)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for p, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"process {p} failed:\n{log[-4000:]}"
    return [np.load(tmp_path / f"out{p}.npz") for p in range(2)]


def test_two_processes_match_one_process(tmp_path, reference):
    procs = _launch_two_processes(tmp_path)
    one = _one_process_events(tmp_path)
    outs = _collect(procs, tmp_path)
    ref, afb, afb_grad = reference.events, reference.afb, reference.afb_grad

    # (a) each process generated its half; together they are the one-process run, bit for bit
    assert [int(o["ev_status"].shape[0]) for o in outs] == [N // 2, N // 2]
    for field in dataclasses.fields(ref):
        if getattr(ref, field.name) is None:  # Events.truth / record without a detector / record stage
            continue
        np.testing.assert_array_equal(np.concatenate([o[f"ev_{field.name}"] for o in outs]),
                                      one[f"ev_{field.name}"], err_msg=field.name)
        # and the test process's own run agrees to float64 rounding
        np.testing.assert_allclose(one[f"ev_{field.name}"], np.asarray(getattr(ref, field.name)), rtol=1e-12,
                                   atol=1e-12, err_msg=field.name)
    # (b) both processes hold the same summed result, equal to one process up to summation order
    for o in outs:
        np.testing.assert_allclose(o["afb"], afb, rtol=RTOL)
        np.testing.assert_allclose(o["afb_grad"], afb_grad["hard"]["23:m0"], rtol=RTOL)
    np.testing.assert_array_equal(outs[0]["afb_grad"], outs[1]["afb_grad"])
    assert abs(float(afb_grad["hard"]["23:m0"])) > 1e-3  # a gradient that is not trivially zero


def test_jackknife_errors_of_mean_and_gradient_match_independent_runs():
    """expect_and_grad(..., with_error=True): delete-one-chunk jackknife errors of A_FB and of ∂A_FB/∂m_Z
    against the scatter of 16 independent runs (its relative precision ≈ 18 %, hence the band; a
    jackknife without its (K − 1) factor, or a plain std of the blocks, is off by ≈ √10)."""
    gen = diffgen.presets.ee_mumu()
    params = gen.default_params()
    runs = [distributed.expect_and_grad(forward, gen, params, jax.random.key(500 + i), 2000, chunk=200,
                                        with_error=True) for i in range(16)]
    vals = np.array([float(r[0]) for r in runs])
    grads = np.array([float(r[1]["hard"]["23:m0"]) for r in runs])
    val_err = np.mean([float(r[2][0]) for r in runs])
    grad_err = np.mean([float(r[2][1]["hard"]["23:m0"]) for r in runs])
    print("scatter/jackknife: value", vals.std(ddof=1) / val_err, "gradient", grads.std(ddof=1) / grad_err)
    assert 0.6 < vals.std(ddof=1) / val_err < 1.5
    assert 0.6 < grads.std(ddof=1) / grad_err < 1.5
    # the estimate itself is the one without errors
    mean, grad = distributed.expect_and_grad(forward, gen, params, jax.random.key(500), 2000, chunk=200)
    assert float(mean) == pytest.approx(vals[0], rel=1e-6)
    assert float(grad["hard"]["23:m0"]) == pytest.approx(grads[0], rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 chunks"):
        distributed.expect_and_grad(forward, gen, params, jax.random.key(1), 300, chunk=300, with_error=True)
