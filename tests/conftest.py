import os
import sys
from pathlib import Path

# The Pythia 8 peer (benchmarks/pythia_peer.py) is not part of the installed package; the tests import it
# as `import pythia_peer`, as the benchmark scripts do.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

# Tests run on CPU; keep XLA from grabbing all threads on the 2-core CI machine.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI's persistent compilation cache stays off in tests run in this process (tests that want it set
# DIFFGEN_CACHE_DIR themselves), so no test writes to ~/.cache.
os.environ.setdefault("DIFFGEN_CACHE_DIR", "")

# One persistent XLA compilation cache for the whole test session, shared by the xdist workers and by the
# interpreters that tests start (documentation code, notebooks' kernels, CLI runs): the controller makes the
# directory before it starts the workers, and everything inherits the variables. Many tests compile the same
# programs (the full e+e- -> hadrons chain at its fixed block size costs 1-2 minutes of compilation on the CI
# machine), and a fresh generator object, or a fresh process, retraces to the same HLO, which then loads from the
# cache in seconds. The CLI's own cache (DIFFGEN_CACHE_DIR, off above) overrides it where a test turns that on.
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="diffgen-test-xla-cache-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]
else:
    _OWN_CACHE = None

import jax  # noqa: E402


def pytest_unconfigure(config):
    """The controller removes the session's compilation cache when the run ends."""
    if _OWN_CACHE:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# The tests use `jax.enable_x64` (context manager / decorator), public in recent JAX (0.10 here); the
# JAX that pip picks for Python 3.10 (0.6.x) has the same context manager as `jax.experimental.enable_x64`.
if not hasattr(jax, "enable_x64"):  # pragma: no cover - depends on the installed JAX
    from jax.experimental import enable_x64 as _enable_x64

    jax.enable_x64 = _enable_x64


# The heaviest test files first (longest-processing-time-first scheduling): with `--dist loadfile` the xdist
# workers take whole files in collection order, and a heavy file started last leaves the other worker idle
# at the end of the run. Ordered by their measured time on the 2-core CI-like VM (2026-12-08, most compile
# the full e+e- -> hadrons chain); every other file keeps its place after them.
HEAVY_FIRST = ("test_ee_hadrons.py", "test_kinked_strings.py", "test_shower.py", "test_notebooks.py", "test_record.py",
               "test_hadronization.py", "test_ml_hadronization.py", "test_fit.py", "test_shower_alignment.py",
               "test_decays.py", "test_learned_detector.py", "test_distributed.py", "test_cli.py",
               "test_flows_training.py", "test_core.py", "test_unfold.py", "test_unfold_score.py", "test_flows.py",
               "test_ee_ww.py", "test_score_continuous.py", "test_variance_reduction.py", "test_ee_ffbar.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept
