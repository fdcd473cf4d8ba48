"""Phase space from reparameterised uniforms: RAMBO, sequential two-body decays, Breit–Wigner mappings, volumes.

Convention: dΦ_n = (2π)^4 δ⁴(P − Σp) Π d³p_i/((2π)³ 2E_i); see :mod:`diffgen.phasespace.volume`.
"""

from diffgen.phasespace import breit_wigner, rambo, two_body, volume  # noqa: F401

__all__ = ["rambo", "two_body", "breit_wigner", "volume"]
