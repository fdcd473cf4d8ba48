"""One-loop running α_s of the final-state shower, and its θ-independent overestimate.

Running (Pythia 8 ``TimeShower:alphaSorder = 1``): with b₀(n_f) = (33 − 2 n_f)/6,

    1/α_s(μ²) = 1/α_s(m_Z²) + (b₀(5)/2π) ln(μ²/m_Z²)                        μ ≥ m_b
    1/α_s(μ²) = 1/α_s(m_b²) + (b₀(4)/2π) ln(μ²/m_b²)                  m_c ≤ μ < m_b
    1/α_s(μ²) = 1/α_s(m_c²) + (b₀(3)/2π) ln(μ²/m_c²)                        μ < m_c

i.e. α_s = 2π / (b₀ ln(μ²/Λ²_{n_f})) with Λ_{n_f} matched so that α_s is continuous at the
thresholds m_c = 1.5 GeV and m_b = 4.8 GeV (Pythia's quark masses); m_Z = 91.188 GeV as in
Pythia's ``AlphaStrong``. Below the one-loop Landau pole (1/α_s ≤ 0) the coupling is infinite.

Overestimate (for the veto algorithm, DESIGN §2): :data:`ALPHA_S_HAT` is a piecewise-constant
function of the evolution p⊥ on the fixed grid :data:`PT_EDGES`; on each segment it is the
one-loop value at the segment's lower edge for α_s(m_Z) = :data:`ALPHA_S_REF`, capped at
:data:`ALPHA_S_CAP`. It does not depend on any parameter, so trial p⊥ are θ-independent. The
shower uses α_s,eff = min(α_s(p⊥²), α̂(p⊥)): for α_s(m_Z) ≤ ALPHA_S_REF this is the plain
one-loop coupling wherever it is below the cap (at the default 0.1365 and p⊥min = 0.5 GeV
α_s ≤ 1.62 < 3); above that the coupling is frozen at α̂ (near the one-loop Landau pole, where
Pythia itself would raise p⊥min to 1.1 Λ₃).

Example:
    >>> from diffgen.shower import alpha_s
    >>> round(float(alpha_s(91.188**2, 0.1365)), 4)
    0.1365
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div

__all__ = ["alpha_s", "inverse_alpha_s", "lambda_qcd", "M_Z", "M_C", "M_B", "ALPHA_S_REF", "ALPHA_S_CAP",
           "PT_EDGES", "ALPHA_S_HAT", "alpha_s_hat_numpy"]

M_Z = 91.188  #: GeV, reference scale of TimeShower:alphaSvalue (Pythia's AlphaStrong)
M_C = 1.5  #: GeV, charm threshold (Pythia 4:m0)
M_B = 4.8  #: GeV, bottom threshold (Pythia 5:m0)
ALPHA_S_REF = 0.1415  #: α_s(m_Z) whose one-loop running defines the overestimate
ALPHA_S_CAP = 3.0  #: overestimate cap (and freezing value) of the shower coupling


def _b0(nf):
    return (33.0 - 2.0 * nf) / 6.0


_TWO_PI = 2.0 * math.pi
_LN_MB2_MZ2 = 2.0 * math.log(M_B / M_Z)
_LN_MC2_MB2 = 2.0 * math.log(M_C / M_B)


def inverse_alpha_s(pT2, alpha_s_mz, xp=jnp):
    """1/α_s(p⊥²) at one loop with n_f = 3, 4, 5 (linear in ln p⊥² on each piece; ≤ 0 past the pole)."""
    ln = xp.log(pT2)
    inv_mz = 1.0 / alpha_s_mz
    inv_mb = inv_mz + _b0(5) / _TWO_PI * _LN_MB2_MZ2
    inv_mc = inv_mb + _b0(4) / _TWO_PI * _LN_MC2_MB2
    ln_mz2, ln_mb2, ln_mc2 = 2.0 * math.log(M_Z), 2.0 * math.log(M_B), 2.0 * math.log(M_C)
    inv5 = inv_mz + _b0(5) / _TWO_PI * (ln - ln_mz2)
    inv4 = inv_mb + _b0(4) / _TWO_PI * (ln - ln_mb2)
    inv3 = inv_mc + _b0(3) / _TWO_PI * (ln - ln_mc2)
    return xp.where(ln >= ln_mb2, inv5, xp.where(ln >= ln_mc2, inv4, inv3))


def alpha_s(pT2, alpha_s_mz):
    """One-loop α_s(p⊥²) (p⊥² in GeV²) for α_s(m_Z) = ``alpha_s_mz``; +inf at and below the Landau pole.

    Differentiable in both arguments (finite gradients everywhere, zero beyond the pole).
    """
    inv = inverse_alpha_s(jnp.asarray(pT2), jnp.asarray(alpha_s_mz))
    return jnp.where(inv > 0, safe_div(1.0, jnp.where(inv > 0, inv, 1.0)), jnp.inf)


def lambda_qcd(alpha_s_mz: float, nf: int) -> float:
    """Matched one-loop Λ_{n_f} in GeV (host-side helper): α_s = 2π/(b₀ ln(μ²/Λ²))."""
    ln_ref = {5: 2 * math.log(M_Z), 4: 2 * math.log(M_B), 3: 2 * math.log(M_C)}[nf]
    mu2 = math.exp(ln_ref)
    inv = float(inverse_alpha_s(np.float64(mu2), np.float64(alpha_s_mz), xp=np))
    return math.sqrt(mu2 * math.exp(-_TWO_PI * inv / _b0(nf)))


#: Segment edges of the overestimate in evolution p⊥ (GeV), decreasing; the last segment
#: extends from the last edge down to p⊥ = 0.
PT_EDGES = (60.0, 30.0, 15.0, 8.0, 4.8, 3.0, 2.2, 1.6, 1.25, 1.0, 0.85, 0.75, 0.67, 0.61, 0.56, 0.52, 0.48,
            0.42, 0.35, 0.25, 0.1)


def alpha_s_hat_numpy():
    """α̂ on each segment: one segment above the first edge, one between consecutive edges, one below.

    Returned as a float64 NumPy array of length len(PT_EDGES) + 1 (highest p⊥ first).
    """
    lower = np.array(PT_EDGES + (0.0,))
    out = []
    for lo in lower:
        if lo <= 0:
            out.append(ALPHA_S_CAP)
            continue
        inv = float(inverse_alpha_s(np.float64(lo * lo), np.float64(ALPHA_S_REF), xp=np))
        out.append(ALPHA_S_CAP if inv <= 1.0 / ALPHA_S_CAP else 1.0 / inv)
    return np.array(out)


ALPHA_S_HAT = tuple(float(a) for a in alpha_s_hat_numpy())
