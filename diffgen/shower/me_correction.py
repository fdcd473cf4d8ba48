"""Matrix-element corrections to e+e- → q q̄ g (Pythia's ``TimeShower:MEcorrections``, ``MEafterFirst``).

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
``findMEcorr`` with ``iMEpartner``).

Massive quarks (c, b; Pythia's ``calcMEcorr`` kind 2 with ``MEcombi = 3``): with μ = m²/P²,
β = √(1 − 4μ), a = 1 − x₁, b = 1 − x₂ (equal masses, so 2p_q·p_g = P² b and 2p_q̄·p_g = P² a), the
tree-level V → Q Q̄ g matrix elements, each normalised to its own Born (derived here from
the Dirac traces, −g_μν + q_μq_ν/P² for the vector boson, and checked against them numerically in
``tests/test_shower_alignment.py``), are

    F_V = [ab(x₁² + x₂²) − 2μ(a² + b² + 2ab(a + b)) − 4μ²(a + b)²] / (β (1 + 2μ) a² b²)
    F_A = [ab(x₁² + x₂²) − 2μ(a² + b² + 6ab − 4ab(a + b) − ab(a + b)²) + 8μ²(a + b)²] / (β³ a² b²)

(both → ERT for μ → 0), mixed as F = f F_V + (1 − f) F_A with the vector fraction of the massive
Born at the Z pole f = v²(1 + 2μ)/(v²(1 + 2μ) + a_f² β²), v = a_f − 4 e_f sin²θ̄_W (a_f = ±1).
The shower's rate for a radiator of mass m with an equal-mass recoiler is still 2/(x₃ b) in
these variables (z = x₁/(2 − x₂) and Q² − m² = P² b exactly), so the accept ratio is

    R = F (1 − x₁)(1 − x₂)/2 ≤ 1,

which is (x₁² + x₂²)/2 at μ = 0 and vanishes in the dead cone. Pythia's γ*/Z mixing
(``gammaZmix``) is replaced by the pure-Z couplings (the photon is ≈ 0.1 % of σ at the pole).
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_div, safe_sqrt

__all__ = ["ert_matrix_element", "me_correction_ratio", "massive_me_ratio", "vector_fraction_couplings"]


def ert_matrix_element(x1, x2):
    """(x₁² + x₂²)/((1 − x₁)(1 − x₂)); 0 outside the open triangle."""
    x3 = 2.0 - x1 - x2
    inside = (x1 < 1) & (x2 < 1) & (x3 < 1) & (x3 > 0)
    return jnp.where(inside, safe_div(x1 * x1 + x2 * x2, (1.0 - x1) * (1.0 - x2)), 0.0)


def me_correction_ratio(x1, x2):
    """Accept ratio (x₁² + x₂²)/2 of the end whose radiator has energy fraction ``x1``."""
    return jnp.clip(0.5 * (x1 * x1 + x2 * x2), 0.0, 1.0)


def vector_fraction_couplings(pid, sin2_theta_w_bar: float = 0.2315):
    """(v_f², a_f²) of the quark ``pid`` at the Z pole: a_f = 2T₃ = ±1, v_f = a_f − 4 e_f sin²θ̄_W."""
    up = (jnp.abs(pid) % 2) == 0
    e_f = jnp.where(up, 2.0 / 3.0, -1.0 / 3.0)
    a_f = jnp.where(up, 1.0, -1.0)
    v_f = a_f - 4.0 * e_f * sin2_theta_w_bar
    return v_f * v_f, a_f * a_f


def massive_me_ratio(x1, x2, mu, v2, a2):
    """Accept ratio F (1 − x₁)(1 − x₂)/2 of the massive V → Q Q̄ g matrix element (module docstring).

    ``x1`` (radiator), ``x2`` (ME partner): 2P·p/P²; ``mu`` = m_Q²/P²; ``v2``, ``a2``: squared vector
    and axial couplings. Equals :func:`me_correction_ratio` at μ = 0; clipped to [0, 1], 0 outside
    the open phase space.
    """
    a, b = 1.0 - x1, 1.0 - x2
    ab, apb = a * b, a + b
    sum_sq = a * a + b * b
    base = ab * (x1 * x1 + x2 * x2)
    beta2 = jnp.maximum(1.0 - 4.0 * mu, 0.0)
    beta = safe_sqrt(beta2)
    num_v = base - 2.0 * mu * (sum_sq + 2.0 * ab * apb) - 4.0 * mu * mu * apb * apb
    num_a = base - 2.0 * mu * (sum_sq + 6.0 * ab - 4.0 * ab * apb - ab * apb * apb) + 8.0 * mu * mu * apb * apb
    born_v, born_a = v2 * (1.0 + 2.0 * mu), a2 * beta2
    frac_v = safe_div(born_v, born_v + born_a, 1.0)
    # R = F ab/2 with F_V = num_v/(β(1 + 2μ) a²b²), F_A = num_a/(β³ a²b²)
    r_v = safe_div(num_v, 2.0 * beta * (1.0 + 2.0 * mu) * ab)
    r_a = safe_div(num_a, 2.0 * beta * beta2 * ab)
    r = frac_v * r_v + (1.0 - frac_v) * r_a
    inside = (a > 0) & (b > 0) & (apb < 1) & (beta2 > 0)
    return jnp.where(inside, jnp.clip(r, 0.0, 1.0), 0.0)
