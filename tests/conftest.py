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

# One persistent XLA compilation cache for the whole test session, shared by the xdist workers (the controller
# makes the directory before it starts them, and they inherit the variable): many test files compile the same
# programs (the full e+e- -> hadrons chain at its fixed block size costs 1-2 minutes of compilation on the CI
# machine), and a fresh generator object retraces to the same HLO, which then loads from the cache in seconds.
# Set through jax.config, not JAX_COMPILATION_CACHE_DIR, so the CLI subprocesses that tests start keep their own.
if "PYTEST_XDIST_WORKER" not in os.environ and "DIFFGEN_TEST_JAX_CACHE" not in os.environ:
    import tempfile

    os.environ["DIFFGEN_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="diffgen-test-xla-cache-")
    _OWN_CACHE = True
else:
    _OWN_CACHE = False

import jax  # noqa: E402

if os.environ.get("DIFFGEN_TEST_JAX_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["DIFFGEN_TEST_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    """The controller removes the session's compilation cache when the run ends."""
    if _OWN_CACHE:
        import shutil

        shutil.rmtree(os.environ["DIFFGEN_TEST_JAX_CACHE"], ignore_errors=True)


# The tests use `jax.enable_x64` (context manager / decorator), public in recent JAX (0.10 here); the
# JAX that pip picks for Python 3.10 (0.6.x) has the same context manager as `jax.experimental.enable_x64`.
if not hasattr(jax, "enable_x64"):  # pragma: no cover - depends on the installed JAX
    from jax.experimental import enable_x64 as _enable_x64

    jax.enable_x64 = _enable_x64
