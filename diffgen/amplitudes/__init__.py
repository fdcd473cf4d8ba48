"""Matrix elements and analytic cross sections."""

from diffgen.amplitudes import couplings, ee_ffbar  # noqa: F401
