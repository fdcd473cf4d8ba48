"""Running couplings and electroweak fermion couplings with Pythia 8.3 conventions.

* α_EM runs at first order (Pythia ``AlphaEM``, order 1). Above the b-quark
  threshold (Q² > 90 GeV²) ``1/α(Q²) = 1/α(m_Z²) − b log(Q²/M_Z²)`` with
  ``b = 0.725`` and the fixed reference :data:`M_Z_REF` (91.188 GeV) used inside Pythia's
  ``AlphaEM`` (independent of the ``23:m0`` setting). Below, the same form holds
  piecewise with Pythia's thresholds and coefficients.
* α_s runs at one loop from ``α_s(m_Z)`` with n_f thresholds at m_c = 1.5,
  m_b = 4.8 and m_t = 171 GeV (Λ matched), as Pythia's ``AlphaStrong`` (order 1):
  :func:`alpha_s_one_loop`, the one α_s of diffgen (the shower's :func:`diffgen.shower.alpha_s`
  is the same function).
* Fermion couplings (Pythia ``CoupSM``): ``a_f = 2 T3_f = ±1``,
  ``v_f = a_f − 4 sin²θ̄_W e_f`` with the *effective* ``sin²θ̄_W``
  (``StandardModel:sin2thetaWbar``), while the Z normalisation uses
  ``1/(16 sin²θ_W cos²θ_W)`` with ``StandardModel:sin2thetaW``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div

__all__ = ["alpha_em", "alpha_s_one_loop", "inverse_alpha_s", "alpha_s_landau_pole", "fermion_charge", "axial_coupling",
           "vector_coupling", "M_Z_REF", "M_C", "M_B", "M_T", "GEV2_TO_PB"]

#: ħ²c² in GeV² pb: converts GeV⁻² to pb.
GEV2_TO_PB = 0.3893793721e9
#: GeV: the m_Z that Pythia hard-codes as the reference scale of ``AlphaEM`` and ``AlphaStrong``
#: (α_EM(m_Z²) = ``StandardModel:alphaEMmZ``, α_s(m_Z²) = ``*:alphaSvalue``); not ``23:m0``.
M_Z_REF = 91.188
M_C = 1.5  #: GeV, charm threshold of α_s (Pythia's ``AlphaStrong``; also ``4:m0``)
M_B = 4.8  #: GeV, bottom threshold of α_s (Pythia's ``AlphaStrong``; also ``5:m0``)
M_T = 171.0  #: GeV, top threshold of α_s (Pythia's ``AlphaStrong``)

# Pythia 8.3 AlphaEM thresholds (GeV²) and first-order coefficients b_i: 1/α
# decreases by b_i per unit of log Q² above Q2STEP[i].
_Q2STEP = (0.26e-6, 0.011, 0.25, 3.5, 90.0)
_BRUN = (0.1061, 0.2122, 0.670957, 0.700, 0.725)  # b_2 is fitted inside Pythia (value read off 8.317)


def alpha_em(q2, alpha_em_mz):
    """First-order running α_EM(Q²) anchored at α_EM(M_Z²) (Pythia ``AlphaEM``, order 1).

    ``1/α(Q²) = 1/α(M_Z²) − b₄ log(Q²/M_Z²)`` for Q² > 90 GeV², and below each
    threshold Q²_i the coefficient changes to b_i (continuous in Q²).
    """
    q2 = jnp.asarray(q2)
    inv = 1.0 / alpha_em_mz - _BRUN[4] * jnp.log(jnp.maximum(q2, _Q2STEP[0]) / M_Z_REF**2)
    # piecewise continuation below 90 GeV²
    inv_at = 1.0 / alpha_em_mz - _BRUN[4] * jnp.log(_Q2STEP[4] / M_Z_REF**2)
    out = inv
    for i in range(3, -1, -1):
        lo, hi = _Q2STEP[i], _Q2STEP[i + 1]
        seg = inv_at - _BRUN[i] * jnp.log(jnp.clip(q2, lo, hi) / hi)
        out = jnp.where(q2 < hi, seg, out)
        inv_at = inv_at - _BRUN[i] * jnp.log(lo / hi)
    return 1.0 / out


def _b0(nf: int) -> float:
    """One-loop β₀ in the normalisation 1/α_s(μ²) = 1/α_s(μ₀²) + β₀/(2π) ln(μ²/μ₀²): (33 − 2n_f)/6."""
    return (33.0 - 2.0 * nf) / 6.0


# ln m² of the reference scale and the thresholds, and 1/α_s − 1/α_s(m_Z²) at each threshold
_LN_MZ2, _LN_MC2, _LN_MB2, _LN_MT2 = (2.0 * math.log(m) for m in (M_Z_REF, M_C, M_B, M_T))
_SHIFT_MB = _b0(5) / (2.0 * math.pi) * (_LN_MB2 - _LN_MZ2)
_SHIFT_MC = _SHIFT_MB + _b0(4) / (2.0 * math.pi) * (_LN_MC2 - _LN_MB2)
_SHIFT_MT = _b0(5) / (2.0 * math.pi) * (_LN_MT2 - _LN_MZ2)
_Q2_FLOOR = 1e-6  # GeV²; far below the Landau pole, keeps ln finite at Q² = 0


def inverse_alpha_s(q2, alpha_s_mz, xp=jnp):
    """1/α_s(Q²) at one loop (Q² in GeV²), linear in ln Q² on each n_f piece; ≤ 0 at and past the Landau pole.

    1/α_s(Q²) = 1/α_s(m²) + β₀(n_f)/(2π) ln(Q²/m²) with β₀ = (33 − 2n_f)/6, n_f = 5 anchored at
    m = :data:`M_Z_REF` and n_f = 3, 4, 6 matched continuously at :data:`M_C`, :data:`M_B`,
    :data:`M_T` (Pythia's ``AlphaStrong`` at order 1, ``StandardModel:alphaSnfmax = 6``).
    ``xp`` is ``jax.numpy`` (default) or ``numpy`` for host-side constants.
    """
    ln = xp.log(xp.maximum(q2, _Q2_FLOOR))
    inv_mz = 1.0 / alpha_s_mz
    inv6 = inv_mz + _SHIFT_MT + _b0(6) / (2.0 * math.pi) * (ln - _LN_MT2)
    inv5 = inv_mz + _b0(5) / (2.0 * math.pi) * (ln - _LN_MZ2)
    inv4 = inv_mz + _SHIFT_MB + _b0(4) / (2.0 * math.pi) * (ln - _LN_MB2)
    inv3 = inv_mz + _SHIFT_MC + _b0(3) / (2.0 * math.pi) * (ln - _LN_MC2)
    return xp.where(ln >= _LN_MT2, inv6, xp.where(ln >= _LN_MB2, inv5, xp.where(ln >= _LN_MC2, inv4, inv3)))


def alpha_s_one_loop(q2, alpha_s_mz):
    """One-loop α_s(Q²) (Q² in GeV²) for α_s(m_Z) = ``alpha_s_mz``, with the thresholds of :func:`inverse_alpha_s`.

    The one running α_s of diffgen: the hard process (``SigmaProcess:alphaSvalue``) and the shower
    (``TimeShower:alphaSvalue``, as :func:`diffgen.shower.alpha_s`) both use it. +inf at and below
    the Landau pole; differentiable in both arguments (finite gradients, zero past the pole).

    Example:
        >>> round(float(alpha_s_one_loop(M_Z_REF**2, 0.13)), 6)
        0.13
    """
    inv = inverse_alpha_s(jnp.asarray(q2), jnp.asarray(alpha_s_mz))
    return jnp.where(inv > 0, safe_div(1.0, jnp.where(inv > 0, inv, 1.0)), jnp.inf)


def alpha_s_landau_pole(alpha_s_mz: float) -> float:
    """GeV: the scale Q_pole at which :func:`alpha_s_one_loop` diverges (+inf at and below it); host-side.

    1/α_s is linear in ln Q² on each n_f piece of :func:`inverse_alpha_s` and increases with Q², so the
    pole is ln Q²_pole = ln m² − 2π (1/α_s(m²))/β₀(n_f) on the piece whose lower end m (m_c, m_b, m_t)
    still has 1/α_s(m²) > 0, or the n_f = 3 piece below m_c. Past the ``ln Q²`` floor (1e-6 GeV²) α_s
    stays finite, so for small α_s(m_Z) the value returned is below 1e-3 GeV and never reached.

    Example:
        >>> round(alpha_s_landau_pole(0.13), 4)  # SigmaProcess:alphaSvalue's default
        0.2517
    """
    inv = {m: float(inverse_alpha_s(m * m, float(alpha_s_mz), xp=np)) for m in (M_C, M_B, M_T)}
    ln_pole = _LN_MC2 - 2.0 * math.pi * inv[M_C] / _b0(3)
    for m, ln_m2, nf in ((M_C, _LN_MC2, 4), (M_B, _LN_MB2, 5), (M_T, _LN_MT2, 6)):
        if inv[m] <= 0:
            ln_pole = ln_m2 - 2.0 * math.pi * inv[m] / _b0(nf)
    return math.exp(0.5 * ln_pole)


def fermion_charge(pid: int) -> float:
    """Electric charge e_f of a fermion (particle, not antiparticle)."""
    a = abs(int(pid))
    table = {1: -1 / 3, 2: 2 / 3, 3: -1 / 3, 4: 2 / 3, 5: -1 / 3, 6: 2 / 3,
             11: -1.0, 13: -1.0, 15: -1.0, 12: 0.0, 14: 0.0, 16: 0.0}
    if a not in table:
        raise ValueError(f"no electroweak couplings for PDG code {pid}; allowed: 1-6, 11-16")
    return table[a]


def axial_coupling(pid: int) -> float:
    """a_f = 2 T3_f: +1 for up-type quarks and neutrinos, −1 for down-type quarks and charged leptons."""
    a = abs(int(pid))
    return 1.0 if a in (2, 4, 6, 12, 14, 16) else -1.0


def vector_coupling(pid: int, sin2thetaw_bar):
    """v_f = a_f − 4 sin²θ̄_W e_f."""
    return axial_coupling(pid) - 4.0 * sin2thetaw_bar * fermion_charge(pid)
