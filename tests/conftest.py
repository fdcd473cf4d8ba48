import os

# Tests run on CPU; keep XLA from grabbing all threads on the 2-core CI machine.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
