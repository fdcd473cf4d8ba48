"""QCD splitting kernels per dipole end, their overestimates and the accept ratios.

A parton radiates from each of its colour-connected *dipole ends* (a quark or antiquark has one,
a gluon two). With z the energy fraction kept by the radiator in the dipole rest frame and the
evolution variable p⊥²_evol = z(1 − z)(Q² − m²_rad), one dipole end branches with

    dP = (α_s(p⊥²)/2π) (dp⊥²/p⊥²) dz P(z)

and the kernels, as in Pythia 8 (Sjöstrand & Skands, Eur.Phys.J. C39 (2005) 129), are

    q → q g   P = C_F (1 + z²)/(1 − z)                       (one end per quark)
    g → g g   P = (C_A/2) (1 + z³)/(1 − z)                   (per end; summed over the gluon's two
                                                              ends and symmetrised in z ↔ 1 − z this
                                                              is C_A (1 − z(1 − z))²/(z(1 − z)))
    g → q q̄   P = (T_R/2) (z² + (1 − z)²) per flavour       (per end; T_R n_f (z² + (1 − z)²) per gluon)

For a massive quark radiator (c, b) without matrix-element correction the q → q g kernel gets
the quasi-collinear dead-cone term − C_F 2 m²/(Q² − m²) = − C_F 2 m² z(1 − z)/p⊥². For g → q q̄
diffgen uses Pythia 8.3's default ``TimeShower:weightGluonToQuark = 4``: with r = m_q²/Q²,
β = √(1 − 4r), m̂ = Q²/M̂² (M̂² = (M_dip − m_rec)², Pythia's ``m2DipCorr``) and the decay-angle
variable z_c = ((1 + m̂) z − m̂)/(1 − m̂),

    P/((T_R/2) per flavour) = β (z_c² + (1 − z_c)² + 8 r z_c (1 − z_c)) (1 + m̂)(1 − m̂)²,

i.e. option 2 (β(z² + (1 − z)² + 8rz(1 − z))) with z replaced by the quark's polar-angle variable in
the g rest frame and the phase-space factor (1 + m̂)/(1 − m̂) of the dipole (1 → 3 kinematics)
suppressed by (1 − m̂)³ ("option 4", SimpleTimeShower::pT2nextQCD). The g → g g kernel is
multiplied by Pythia's ``recoilDeadCone`` factor when the recoiler is massive
(:func:`recoil_dead_cone`).

Overestimates (θ-independent, see :mod:`diffgen.shower.fsr`): 2C_F/(1 − z) for a quark end
(:data:`B_QUARK`), C_A/(1 − z) for a gluon end (:data:`B_GLUON`), and the flat
c = (T_R/2)·5 (:data:`C_G2QQ`) for g → q q̄ summed over five flavours (one chosen uniformly, the
forbidden ones rejected by their mass threshold). The ratios below are kernel/overestimate ∈ [0, 1].
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_div, safe_sqrt

__all__ = ["C_F", "C_A", "T_R", "NF_MAX", "B_QUARK", "B_GLUON", "C_G2QQ", "ratio_q2qg", "ratio_g2gg",
           "ratio_g2qq", "recoil_dead_cone"]

C_F = 4.0 / 3.0
C_A = 3.0
T_R = 0.5
NF_MAX = 5  #: flavours tried in g → q q̄ (u, d, s massless; c, b with Pythia masses)
B_QUARK = 2.0 * C_F  #: soft overestimate coefficient of a quark end: 2 C_F/(1 − z)
B_GLUON = C_A  #: soft overestimate coefficient of a gluon end: C_A/(1 − z)
C_G2QQ = 0.5 * T_R * NF_MAX  #: flat g → q q̄ overestimate per gluon end (all flavours)


def ratio_q2qg(z, omz, pT2, m2):
    """[(1 + z²) − 2 m² z (1 − z)²/p⊥²] / 2, clipped to [0, 1]: C_F kernel over 2 C_F/(1 − z).

    ``omz`` = 1 − z (passed separately for precision near z → 1); ``m2`` the radiator mass².
    """
    dead_cone = 2.0 * m2 * z * omz * omz * safe_div(1.0, pT2)
    return jnp.clip(0.5 * (1.0 + z * z - dead_cone), 0.0, 1.0)


def ratio_g2gg(z):
    """(1 + z³)/2 ∈ [1/2, 1]: (C_A/2)(1 + z³)/(1 − z) over C_A/(1 − z)."""
    return 0.5 * (1.0 + z * z * z)


def ratio_g2qq(z, omz, q2, m2q, m2_dip_corr):
    """g → q q̄ ratio of ``weightGluonToQuark = 4`` (module docstring); 0 below Q² = 4 m_q², clipped to [0, 1].

    ``q2`` = Q² of the pair, ``m2q`` = m_q², ``m2_dip_corr`` = (M_dip − m_rec)² (GeV²).
    """
    r = safe_div(m2q, q2)
    beta = safe_sqrt(1.0 - 4.0 * r)
    m_rat = jnp.clip(safe_div(q2, m2_dip_corr), 0.0, 1.0)
    zc = safe_div((1.0 + m_rat) * z - m_rat, 1.0 - m_rat)
    w = beta * (zc * zc + (1.0 - zc) ** 2 + 8.0 * r * zc * (1.0 - zc)) * (1.0 + m_rat) * (1.0 - m_rat) ** 2
    return jnp.where((q2 > 4.0 * m2q) & (m_rat < 1.0), jnp.clip(w, 0.0, 1.0), 0.0)


def recoil_dead_cone(z, q2, m2_dip, m2_rec):
    """Pythia's ``TimeShower:recoilDeadCone`` factor of g → g g for a recoiler of mass² ``m2_rec``:

    1 − (r/(x₁ + x₂ − 1 − r)) (1 + r − x₂)/(1 − r − x₁),  r = m²_rec/M², x₁ = (1 − r + Q²/M²) z,
    x₂ = 1 + r − Q²/M² (the eikonal dead cone of the massive recoiler in the q Q g final state);
    exactly 1 for a massless recoiler, clipped to [0, 1].
    """
    eps = 1e-12
    r = safe_div(m2_rec, m2_dip)
    qq = safe_div(q2, m2_dip)
    x1 = (1.0 - r + qq) * z
    x2 = 1.0 + r - qq
    w = 1.0 - (r / jnp.maximum(eps, x1 + x2 - 1.0 - r)) * (jnp.maximum(eps, 1.0 + r - x2)
                                                          / jnp.maximum(eps, 1.0 - r - x1))
    return jnp.where(m2_rec > 0, jnp.clip(w, 0.0, 1.0), 1.0)
