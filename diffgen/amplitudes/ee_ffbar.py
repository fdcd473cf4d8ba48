"""e+e- → γ*/Z → f f̄ at tree level with full γ/Z interference (Pythia 8.3 conventions).

With c = cos θ the angle between the outgoing fermion f and the incoming e-,
β = √(1 − 4m_f²/s) and the Z propagator with an s-dependent width,

    χ(s) = κ s / (s − m_Z² + i s Γ_Z/m_Z),     κ = 1/(16 sin²θ_W cos²θ_W),

    dσ/dc = (π α²(s) / (2s)) N_f β [ C_VV (2 − β² + β² c²) + C_AA β² (1 + c²) + 2 β c C_asym ]

    C_VV   = e_e² e_f² + 2 e_e e_f v_e v_f Re χ + (v_e² + a_e²) v_f² |χ|²
    C_AA   = (v_e² + a_e²) a_f² |χ|²
    C_asym = 2 e_e e_f a_e a_f Re χ + 4 v_e a_e v_f a_f |χ|²

with couplings from :mod:`diffgen.amplitudes.couplings`, α = α_EM(s) and
N_f = 1 for leptons, 3(1 + α_s(s)/π) for quarks (α_s from
``SigmaProcess:alphaSvalue`` at one loop). For massless f,
σ = (4πα²/3s) N_f (C_VV + C_AA) and A_FB = (3/4) C_asym/(C_VV + C_AA).
This is the structure of Pythia 8's ``Sigma2ffbar2ffbarsgmZ``. Results in pb.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.amplitudes.couplings import (
    GEV2_TO_PB,
    alpha_em,
    alpha_s_one_loop,
    axial_coupling,
    fermion_charge,
    vector_coupling,
)
from diffgen.numerics import safe_sqrt

__all__ = ["coupling_combinations", "dsigma_dcos", "sigma_total", "afb", "colour_factor", "z_width"]

_E_E, _A_E = -1.0, -1.0


def _chi(params, s):
    s2w = params["StandardModel:sin2thetaW"]
    kappa = 1.0 / (16.0 * s2w * (1.0 - s2w))
    m = params["23:m0"]
    g = params["23:mWidth"]
    den = (s - m * m) ** 2 + (s * g / m) ** 2
    re = kappa * s * (s - m * m) / den
    abs2 = kappa * kappa * s * s / den
    return re, abs2


def coupling_combinations(params, pid: int, s):
    """(C_VV, C_AA, C_asym) of the module docstring for outgoing fermion ``pid``."""
    s2wb = params["StandardModel:sin2thetaWbar"]
    v_e = vector_coupling(11, s2wb)
    e_f, a_f = fermion_charge(pid), axial_coupling(pid)
    v_f = vector_coupling(pid, s2wb)
    re, abs2 = _chi(params, s)
    c_vv = _E_E**2 * e_f**2 + 2 * _E_E * e_f * v_e * v_f * re + (v_e**2 + _A_E**2) * v_f**2 * abs2
    c_aa = (v_e**2 + _A_E**2) * a_f**2 * abs2
    c_as = 2 * _E_E * e_f * _A_E * a_f * re + 4 * v_e * _A_E * v_f * a_f * abs2
    return c_vv, c_aa, c_as


def colour_factor(params, pid: int, s):
    """1 for leptons; 3(1 + α_s(s)/π) for quarks (Pythia's first-order QCD correction)."""
    if abs(int(pid)) <= 6:
        a_s = alpha_s_one_loop(s, params.get("SigmaProcess:alphaSvalue", 0.130))
        return 3.0 * (1.0 + a_s / jnp.pi)
    return 1.0


def _beta(s, m_f):
    return safe_sqrt(1.0 - 4.0 * m_f * m_f / s)


def dsigma_dcos(params, pid: int, m_f: float, cos_theta, s=None):
    """dσ/dcos θ in pb for e+e- → f f̄ (f = ``pid`` > 0, mass ``m_f`` GeV)."""
    s = params["Beams:eCM"] ** 2 if s is None else s
    a = alpha_em(s, params["StandardModel:alphaEMmZ"])
    c_vv, c_aa, c_as = coupling_combinations(params, pid, s)
    b = _beta(s, m_f)
    c = cos_theta
    bracket = c_vv * (2.0 - b * b + b * b * c * c) + c_aa * b * b * (1.0 + c * c) + 2.0 * b * c * c_as
    return GEV2_TO_PB * jnp.pi * a * a / (2.0 * s) * colour_factor(params, pid, s) * b * bracket


def sigma_total(params, pid: int, m_f: float = 0.0, s=None):
    """σ(e+e- → f f̄) in pb: ∫ dσ/dc over c ∈ [−1, 1] (exact, closed form)."""
    s = params["Beams:eCM"] ** 2 if s is None else s
    a = alpha_em(s, params["StandardModel:alphaEMmZ"])
    c_vv, c_aa, _ = coupling_combinations(params, pid, s)
    b = _beta(s, m_f)
    # ∫(2 − β² + β² c²) dc = 4 − 2β² + 2β²/3 ;  ∫β²(1 + c²) dc = 8β²/3
    integral = c_vv * (4.0 - 2.0 * b * b + 2.0 * b * b / 3.0) + c_aa * 8.0 * b * b / 3.0
    return GEV2_TO_PB * jnp.pi * a * a / (2.0 * s) * colour_factor(params, pid, s) * b * integral


def afb(params, pid: int, m_f: float = 0.0, s=None):
    """Forward–backward asymmetry A_FB = (σ_F − σ_B)/(σ_F + σ_B) of the fermion f."""
    s = params["Beams:eCM"] ** 2 if s is None else s
    c_vv, c_aa, c_as = coupling_combinations(params, pid, s)
    b = _beta(s, m_f)
    num = 2.0 * b * c_as  # ∫_0^1 2βc C_asym dc × 2 (F − B)
    den = c_vv * (4.0 - 2.0 * b * b + 2.0 * b * b / 3.0) + c_aa * 8.0 * b * b / 3.0
    return num / den


# Masses Pythia 8.3 uses in its Z partial widths (quark constituent masses, lepton PDG masses).
_WIDTH_MASSES = {1: 0.33, 2: 0.33, 3: 0.5, 4: 1.5, 5: 4.8, 11: 0.000510999, 13: 0.1056584, 15: 1.77686,
                 12: 0.0, 14: 0.0, 16: 0.0}


def z_width(params):
    """Γ_Z as Pythia 8.3 recomputes it at initialisation from m_Z and the couplings (GeV).

    Γ = Σ_f α_EM(m_Z²) m_Z / (48 s_W² c_W²) · β [v_f² (1 + 2m_f²/m_Z²) + a_f² β²] · N_f,
    N_f = 3(1 + α_s(m_Z²)/π) for quarks. With the defaults this is 2.50419 GeV.
    diffgen treats ``23:mWidth`` as an independent parameter (Pythia does not let it be
    set); to follow Pythia when moving ``23:m0``, set ``23:mWidth`` to ``z_width(params)``.
    """
    m = params["23:m0"]
    s2w = params["StandardModel:sin2thetaW"]
    s2wb = params["StandardModel:sin2thetaWbar"]
    a = alpha_em(m * m, params["StandardModel:alphaEMmZ"])
    a_s = alpha_s_one_loop(m * m, params.get("SigmaProcess:alphaSvalue", 0.130))
    total = 0.0
    for f, mf in _WIDTH_MASSES.items():
        beta = _beta(m * m, mf)
        v, ax = vector_coupling(f, s2wb), axial_coupling(f)
        coupling = v * v * (1.0 + 2.0 * mf * mf / (m * m)) + ax * ax * beta * beta
        g = a * m / (48.0 * s2w * (1.0 - s2w)) * beta * coupling
        total = total + (g * 3.0 * (1.0 + a_s / jnp.pi) if f <= 6 else g)
    return total
