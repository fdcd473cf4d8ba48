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

For a massive quark radiator (c, b) the q → q g kernel gets the quasi-collinear dead-cone term
− C_F 2 m²/(Q² − m²) = − C_F 2 m² z(1 − z)/p⊥²; for g → Q Q̄ the massive form
β (z² + (1 − z)² + 8 r z(1 − z)), r = m²/Q², β = √(1 − 4r) (Pythia's weightGluonToQuark = 2).

Overestimates (θ-independent, see :mod:`diffgen.shower.fsr`): 2C_F/(1 − z) for a quark end
(:data:`B_QUARK`), C_A/(1 − z) for a gluon end (:data:`B_GLUON`), and the flat
c = (T_R/2)·5 (:data:`C_G2QQ`) for g → q q̄ summed over five flavours (one chosen uniformly, the
forbidden ones rejected by their mass threshold). The ratios below are kernel/overestimate ∈ [0, 1].
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_div, safe_sqrt

__all__ = ["C_F", "C_A", "T_R", "NF_MAX", "B_QUARK", "B_GLUON", "C_G2QQ", "ratio_q2qg", "ratio_g2gg",
           "ratio_g2qq"]

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


def ratio_g2qq(z, omz, q2, m2q):
    """β (z² + (1 − z)² + 8 r z(1 − z)) with r = m_q²/Q²; 0 below the threshold Q² = 4 m_q²."""
    r = safe_div(m2q, q2)
    beta = safe_sqrt(1.0 - 4.0 * r)
    w = beta * (z * z + omz * omz + 8.0 * r * z * omz)
    return jnp.where(q2 > 4.0 * m2q, jnp.clip(w, 0.0, 1.0), 0.0)
