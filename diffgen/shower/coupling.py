"""The final-state shower's running α_s, its Landau-pole cut-off and the veto algorithm's overestimate.

Running (Pythia 8 ``TimeShower:alphaSorder = 1``, ``alphaSuseCMW = off``, ``renormMultFac = 1``:
the scale is the evolution p⊥²): :func:`alpha_s` is
:func:`diffgen.amplitudes.couplings.alpha_s_one_loop`, the one one-loop α_s of diffgen. With
b₀(n_f) = (33 − 2 n_f)/6,

    α_s(p⊥²) = 2π / (b₀(n_f) ln(p⊥²/Λ²_{n_f})),   n_f = 3 (p⊥ < m_c), 4 (m_c ≤ p⊥ < m_b), 5, 6 (p⊥ ≥ m_t),

Λ₅ = m_Z exp(−2π/(b₀(5) α_s(m_Z))) and Λ₄, Λ₃, Λ₆ matched so that α_s is continuous at
m_c = 1.5, m_b = 4.8, m_t = 171 GeV (Pythia's ``AlphaStrong::init`` at order 1, m_Z = 91.188 GeV).

Cut-off (Pythia's ``SimpleTimeShower::init``): the evolution stops at

    p⊥,cut = max(TimeShower:pTmin, 1.1 Λ₃),

so α_s ≤ 2π/(b₀(3) ln 1.21) ≈ 7.3 is finite wherever the shower evaluates it. Where the matched Λ₄
or Λ₅ exceeds Λ₃ (only for α_s(m_Z) ≳ 0.2, where Λ₄ > m_c and Pythia's own evolution leaves its
range of validity) diffgen uses 1.1 max(Λ₃, Λ₄, Λ₅, Λ₆): :func:`log_pt2_cut`.

Overestimate (veto algorithm, :mod:`diffgen.shower.veto`): the trial coupling is
:data:`HEADROOM` · α_s(p⊥²; α₀) with α₀ = stop_gradient(α_s(m_Z)), sampled exactly like Pythia does
(one 1/ln(p⊥²/Λ²) piece per n_f region). It bounds the true coupling for every allowed
``TimeShower:alphaSvalue`` (no cap, no freezing), and the accept probability of the coupling,
α_s(p⊥²; α)/(HEADROOM α_s(p⊥²; α₀)), is 1/HEADROOM at α = α₀ and differentiable in α: the score
weights of the accept/reject decisions give ∂/∂α with the trials held fixed (their density does
not need to be differentiated, since any overestimate gives the same distribution).

Example:
    >>> from diffgen.shower import alpha_s
    >>> round(float(alpha_s(M_Z_REF**2, 0.1365)), 4)
    0.1365
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from diffgen.amplitudes.couplings import M_B, M_C, M_T, M_Z_REF, inverse_alpha_s
from diffgen.amplitudes.couplings import alpha_s_one_loop as alpha_s

__all__ = ["alpha_s", "inverse_alpha_s", "lambda_qcd", "log_lambda2", "log_pt2_cut", "HEADROOM",
           "LAMBDA3_MARGIN", "B0", "LN_THRESHOLDS"]

HEADROOM = 1.25  #: trial coupling over the true one at α = α₀ (accept probability of the coupling 0.8)
LAMBDA3_MARGIN = 1.1  #: p⊥,cut ≥ 1.1 Λ₃ (Pythia's ``LAMBDA3MARGIN``)
#: One-loop b₀ = (33 − 2n_f)/6 for n_f = 3, 4, 5, 6 (index n_f − 3).
B0 = tuple((33.0 - 2.0 * nf) / 6.0 for nf in (3, 4, 5, 6))
#: ln m² (GeV²) of the n_f thresholds m_c, m_b, m_t (ascending).
LN_THRESHOLDS = tuple(2.0 * math.log(m) for m in (M_C, M_B, M_T))


def lambda_qcd(alpha_s_mz: float, nf: int) -> float:
    """Matched one-loop Λ_{n_f} in GeV (host-side helper): α_s = 2π/(b₀ ln(μ²/Λ²)), n_f = 3 … 6."""
    mu = {6: M_T, 5: M_Z_REF, 4: M_B, 3: M_C}[nf]
    inv = float(inverse_alpha_s(np.float64(mu * mu), np.float64(alpha_s_mz), xp=np))
    return mu * math.exp(-math.pi * inv / ((33.0 - 2.0 * nf) / 6.0))


def log_lambda2(alpha_s_mz):
    """ln Λ²_{n_f} (GeV²) for n_f = 3, 4, 5, 6 as a [4] array (traceable): ln μ² − 2π/(b₀ α_s(μ²)) at a
    scale μ inside each n_f region (m_c, m_b, m_Z, m_t), i.e. the matched one-loop Λ's."""
    alpha_s_mz = jnp.asarray(alpha_s_mz)
    mus = (M_C, M_B, M_Z_REF, M_T)
    out = [2.0 * math.log(mu) - 2.0 * math.pi * inverse_alpha_s(jnp.asarray(mu * mu, alpha_s_mz.dtype), alpha_s_mz) / b0
           for mu, b0 in zip(mus, B0)]
    return jnp.stack(out)


def log_pt2_cut(pt_min, alpha_s_mz):
    """ln p⊥²,cut = ln max(pTmin², (1.1 Λ_max)²) with Λ_max = max(Λ₃, Λ₄, Λ₅, Λ₆) (= Λ₃ for α_s(m_Z) ≲ 0.2).

    Differentiable in both arguments (the gradient follows whichever term is larger).
    """
    log_lam = jnp.max(log_lambda2(alpha_s_mz))
    return jnp.maximum(2.0 * jnp.log(pt_min), log_lam + 2.0 * math.log(LAMBDA3_MARGIN))
