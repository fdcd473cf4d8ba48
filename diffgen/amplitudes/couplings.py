"""Running couplings and electroweak fermion couplings with Pythia 8.3 conventions.

* α_EM runs at first order (Pythia ``AlphaEM``, order 1). Above the b-quark
  threshold (Q² > 90 GeV²) ``1/α(Q²) = 1/α(m_Z²) − b log(Q²/M_Z²)`` with
  ``b = 0.725`` and the fixed reference ``M_Z = 91.188`` GeV used inside Pythia's
  ``AlphaEM`` (independent of the ``23:m0`` setting). Below, the same form holds
  piecewise with Pythia's thresholds and coefficients.
* α_s runs at one loop from ``α_s(m_Z)`` with n_f thresholds at m_c = 1.5,
  m_b = 4.8 and m_t = 171 GeV (Λ matched), as Pythia's ``AlphaStrong`` (order 1).
* Fermion couplings (Pythia ``CoupSM``): ``a_f = 2 T3_f = ±1``,
  ``v_f = a_f − 4 sin²θ̄_W e_f`` with the *effective* ``sin²θ̄_W``
  (``StandardModel:sin2thetaWbar``), while the Z normalisation uses
  ``1/(16 sin²θ_W cos²θ_W)`` with ``StandardModel:sin2thetaW``.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["alpha_em", "alpha_s_one_loop", "fermion_charge", "axial_coupling", "vector_coupling",
           "MZ_ALPHA_EM", "GEV2_TO_PB"]

#: ħ²c² in GeV² pb: converts GeV⁻² to pb.
GEV2_TO_PB = 0.3893793721e9
#: reference mass inside Pythia's AlphaEM (hard-coded there, not ``23:m0``).
MZ_ALPHA_EM = 91.188

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
    inv = 1.0 / alpha_em_mz - _BRUN[4] * jnp.log(jnp.maximum(q2, _Q2STEP[0]) / MZ_ALPHA_EM**2)
    # piecewise continuation below 90 GeV²
    inv_at = 1.0 / alpha_em_mz - _BRUN[4] * jnp.log(_Q2STEP[4] / MZ_ALPHA_EM**2)
    out = inv
    for i in range(3, -1, -1):
        lo, hi = _Q2STEP[i], _Q2STEP[i + 1]
        seg = inv_at - _BRUN[i] * jnp.log(jnp.clip(q2, lo, hi) / hi)
        out = jnp.where(q2 < hi, seg, out)
        inv_at = inv_at - _BRUN[i] * jnp.log(lo / hi)
    return 1.0 / out


def alpha_s_one_loop(q2, alpha_s_mz, mz: float = 91.188, mc: float = 1.5, mb: float = 4.8, mt: float = 171.0):
    """One-loop α_s(Q²) with flavour thresholds, ``1/α(Q²) = 1/α(m²_ref) + b0(n_f)/(4π) log(Q²/m²_ref)``.

    b0 = 11 − 2n_f/3; the n_f = 5 region is anchored at m_Z and the others are
    matched continuously at the quark masses (equivalent to matching Λ).
    """
    q2 = jnp.asarray(q2)

    def b(nf):
        return (33.0 - 2.0 * nf) / (12.0 * jnp.pi)

    inv_mz = 1.0 / alpha_s_mz
    inv_mb = inv_mz + b(5) * jnp.log(mb**2 / mz**2)
    inv_mc = inv_mb + b(4) * jnp.log(mc**2 / mb**2)
    inv_mt = inv_mz + b(5) * jnp.log(mt**2 / mz**2)
    lq = jnp.log(jnp.maximum(q2, 1e-6))
    inv = jnp.where(
        q2 > mt**2, inv_mt + b(6) * (lq - jnp.log(mt**2)),
        jnp.where(q2 > mb**2, inv_mz + b(5) * (lq - jnp.log(mz**2)),
                  jnp.where(q2 > mc**2, inv_mb + b(4) * (lq - jnp.log(mb**2)),
                            inv_mc + b(3) * (lq - jnp.log(mc**2)))))
    return 1.0 / inv


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
