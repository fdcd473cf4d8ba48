"""The final-state shower's running α_s, and its θ-independent overestimate.

Running (Pythia 8 ``TimeShower:alphaSorder = 1``): :func:`alpha_s` is
:func:`diffgen.amplitudes.couplings.alpha_s_one_loop`, the one one-loop α_s of diffgen. With
b₀(n_f) = (33 − 2 n_f)/6,

    1/α_s(μ²) = 1/α_s(m_Z²) + (b₀(5)/2π) ln(μ²/m_Z²)                   m_b ≤ μ < m_t
    1/α_s(μ²) = 1/α_s(m_b²) + (b₀(4)/2π) ln(μ²/m_b²)                   m_c ≤ μ < m_b
    1/α_s(μ²) = 1/α_s(m_c²) + (b₀(3)/2π) ln(μ²/m_c²)                         μ < m_c

(and n_f = 6 above m_t = 171 GeV, Pythia's ``StandardModel:alphaSnfmax = 6``), i.e.
α_s = 2π / (b₀ ln(μ²/Λ²_{n_f})) with Λ_{n_f} matched so that α_s is continuous at the thresholds
m_c = 1.5 GeV and m_b = 4.8 GeV (Pythia's quark masses); m_Z = 91.188 GeV as in Pythia's
``AlphaStrong``. Below the one-loop Landau pole (1/α_s ≤ 0) the coupling is infinite.

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
    >>> round(float(alpha_s(M_Z_REF**2, 0.1365)), 4)
    0.1365
"""

from __future__ import annotations

import math

import numpy as np

from diffgen.amplitudes.couplings import M_B, M_C, M_T, M_Z_REF, inverse_alpha_s
from diffgen.amplitudes.couplings import alpha_s_one_loop as alpha_s

__all__ = ["alpha_s", "inverse_alpha_s", "lambda_qcd", "ALPHA_S_REF", "ALPHA_S_CAP",
           "PT_EDGES", "ALPHA_S_HAT", "alpha_s_hat_numpy"]

ALPHA_S_REF = 0.1415  #: α_s(m_Z) whose one-loop running defines the overestimate
ALPHA_S_CAP = 3.0  #: overestimate cap (and freezing value) of the shower coupling


def lambda_qcd(alpha_s_mz: float, nf: int) -> float:
    """Matched one-loop Λ_{n_f} in GeV (host-side helper): α_s = 2π/(b₀ ln(μ²/Λ²)), n_f = 3 … 6."""
    mu = {6: M_T, 5: M_Z_REF, 4: M_B, 3: M_C}[nf]
    inv = float(inverse_alpha_s(np.float64(mu * mu), np.float64(alpha_s_mz), xp=np))
    return mu * math.exp(-math.pi * inv / ((33.0 - 2.0 * nf) / 6.0))


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
