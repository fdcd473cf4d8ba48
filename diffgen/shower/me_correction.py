"""First-emission matrix-element correction to e+e- → q q̄ g (Pythia's ``TimeShower:MEcorrections``).

The O(α_s) matrix element (Ellis, Ross & Terrano) for massless quarks, with x_i = 2E_i/√s in
the q q̄ g rest frame and x₁ + x₂ + x₃ = 2, is

    (1/σ₀) dσ/dx₁dx₂ = (α_s/2π) C_F (x₁² + x₂²)/((1 − x₁)(1 − x₂)).

Each of the two dipole ends covers the whole (x₁, x₂) triangle (Q² = s(1 − x₂), z = x₁/(2 − x₂)
for the quark end), where its overestimate (α_s/2π)·2C_F dz/(1 − z) dp⊥²/p⊥² is
(α_s/2π) C_F 2/(x₃ (1 − x₂)) dx₁dx₂. Splitting the ME between the ends with the fractions
(1 − x₁)/x₃ (radiator 1) and (1 − x₂)/x₃ (radiator 2), as Pythia does, the accept ratio of the
radiator-1 end is

    R = [ME (1 − x₁)/x₃] / [2/(x₃ (1 − x₂))] = (x₁² + x₂²)/2 ≤ 1,

so the two ends together generate exactly ME·dx₁dx₂ (times the Sudakov factor).

After the first emission (Pythia's ``TimeShower:MEafterFirst = on``, the default) the primary
quark keeps its ME type and its ME partner, the primary antiquark (and vice versa): a later gluon
emission off it, whatever its dipole recoiler, is accepted with the same ratio (x₁² + x₂²)/2,
now with x₁ = 2P·p_q/P², x₂ = 2P·p_q̄/P² in the rest frame of P = p_q + p_q̄ + p_g (Pythia's
``findMEcorr`` with ``iMEpartner``). Mass effects of c and b in the ME (Pythia's ``calcMEcorr`` for
massive V → Q Q̄ g) are not included: massive primaries use the quasi-collinear dead-cone kernel.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_div

__all__ = ["ert_matrix_element", "me_correction_ratio"]


def ert_matrix_element(x1, x2):
    """(x₁² + x₂²)/((1 − x₁)(1 − x₂)); 0 outside the open triangle."""
    x3 = 2.0 - x1 - x2
    inside = (x1 < 1) & (x2 < 1) & (x3 < 1) & (x3 > 0)
    return jnp.where(inside, safe_div(x1 * x1 + x2 * x2, (1.0 - x1) * (1.0 - x2)), 0.0)


def me_correction_ratio(x1, x2):
    """Accept ratio (x₁² + x₂²)/2 of the end whose radiator has energy fraction ``x1``."""
    return jnp.clip(0.5 * (x1 * x1 + x2 * x2), 0.0, 1.0)
