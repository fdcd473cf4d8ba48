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

import jax  # noqa: E402

# The tests use `jax.enable_x64` (context manager / decorator), public in recent JAX (0.10 here); the
# JAX that pip picks for Python 3.10 (0.6.x) has the same context manager as `jax.experimental.enable_x64`.
if not hasattr(jax, "enable_x64"):  # pragma: no cover - depends on the installed JAX
    from jax.experimental import enable_x64 as _enable_x64

    jax.enable_x64 = _enable_x64
