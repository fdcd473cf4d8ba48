"""e+e- → W+W- → four fermions at tree level (the CC03 diagrams: s-channel γ and Z, t-channel ν_e).

The amplitude is evaluated numerically from explicit Dirac matrices and massless helicity spinors (chiral
basis, γ5 = diag(−1, −1, 1, 1), upper components left-handed), so that every spin correlation between
production and decay is kept. For e-(p1) e+(p2) → W-(q₋ → f₁(p3) f̄₂(p4)) W+(q₊ → f₃(p5) f̄₄(p6)) and the
e- chirality h ∈ {L, R}:

    ε₋^μ = (g/√2) ū(p3) γ^μ P_L v(p4) P_W(q₋²),   ε₊^ν = (g/√2) ū(p5) γ^ν P_L v(p6) P_W(q₊²),
    P_W(s) = 1/(s − m_W² + i m_W Γ_W),      g² = e²/sin²θ_W,

    M_h = A_h(s) [2(L·ε₋)(q₋·ε₊) − 2(L·ε₊)(q₊·ε₋) + (ε₋·ε₊) L·(q₊ − q₋)]
          + δ_hL (g²/2) v̄(p2) ε̸₊ (p̸1 − q̸₋) ε̸₋ P_L u(p1) / (p1 − q₋)²,

    L^α = v̄(p2) γ^α P_h u(p1),   A_h(s) = e² [Q_e/s + (g_h/sin²θ_W) / (s − m_Z² + i m_Z Γ_Z)],

with the triple-gauge vertex g_{VWW} [g^{αμ}(P + q₋)^ν + g^{μν}(q₊ − q₋)^α − g^{να}(P + q₊)^μ] (P = q₊ + q₋,
reduced with q·ε = 0 for massless decay products), g_{γWW} = e, g_{ZWW} = g cos θ_W, and the Z couplings of the
electron g_L = −1/2 + sin²θ̄_W, g_R = sin²θ̄_W. For e_R the γ and Z terms cancel as s → ∞ (Q_e + g_R/sin²θ_W ≈ 0,
exactly when sin²θ̄_W = sin²θ_W); the relative sign of the t-channel term is the one for which the e_L amplitude
cancels too (with the other sign σ at 200 GeV is 5× too large and grows with s). The whole is checked
against the closed-form off-shell cross section integrated over the W line shapes (tests/test_ee_ww.py).
Couplings follow Pythia 8's ``Sigma2ffbar2WW``: α_EM fixed at ``StandardModel:alphaEMmZ``, the normalisation
with ``sin2thetaW``, vector couplings with ``sin2thetaWbar``, fixed Z and W widths.

:func:`me2` returns Σ_h |M_h|² (summed over the e- helicity; the e+ helicity is fixed by the chiral vertex, the
decay helicities by the W's V − A coupling); average over the beams' spins with 1/4.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_sqrt

__all__ = ["me2", "spinor", "current", "slash", "GAMMA", "sigma_onshell_dt"]

_I2 = np.eye(2)
_Z2 = np.zeros((2, 2))
_PAULI = (np.array([[0, 1], [1, 0]], complex), np.array([[0, -1j], [1j, 0]], complex),
          np.array([[1, 0], [0, -1]], complex))
#: γ^μ in the chiral (Weyl) basis, f[4, 4, 4] complex
GAMMA = np.stack([np.block([[_Z2, _I2], [_I2, _Z2]])]
                 + [np.block([[_Z2, s], [-s, _Z2]]) for s in _PAULI]).astype(complex)
_METRIC = np.array([1.0, -1.0, -1.0, -1.0])
_P_L = np.diag([1.0, 1.0, 0.0, 0.0]).astype(complex)
_P_R = np.diag([0.0, 0.0, 1.0, 1.0]).astype(complex)


def _mdot(a, b):
    """Minkowski product of (complex) four-vectors, no conjugation."""
    return jnp.sum(a * b * jnp.asarray(_METRIC, jnp.result_type(a.dtype, float)), axis=-1)


def spinor(p, left: bool):
    """Massless helicity spinor u(p) of chirality L (upper two components) or R (lower two), f[N, 4] complex
    from real p[N, 4]; |u|² = 2E. The phase convention switches between two equivalent forms at p_z = 0 to
    stay finite along ±z (an event-wise phase, which no |M|² sees). v(p) of an antifermion coupling through
    P_h is the same spinor of chirality h."""
    e = p[:, 0]
    px, py, pz = p[:, 1], p[:, 2], p[:, 3]
    up = pz >= 0.0
    a = safe_sqrt(jnp.where(up, e + pz, e - pz))  # ≥ √E, never 0 for E > 0
    pt_plus = px + 1j * py
    pt_minus = px - 1j * py
    inv_a = safe_div(1.0, a)
    if left:  # χ₋ = [−(px − i py)/√(E+pz), √(E+pz)]  or  [√(E−pz), −(px + i py)/√(E−pz)]
        c0 = jnp.where(up, -pt_minus * inv_a, a)
        c1 = jnp.where(up, a, -pt_plus * inv_a)
        zero = jnp.zeros_like(c0)
        return jnp.stack([c0, c1, zero, zero], axis=-1)
    # χ₊ = [√(E+pz), (px + i py)/√(E+pz)]  or  [(px − i py)/√(E−pz), √(E−pz)]
    c0 = jnp.where(up, a, pt_minus * inv_a)
    c1 = jnp.where(up, pt_plus * inv_a, a)
    zero = jnp.zeros_like(c0)
    return jnp.stack([zero, zero, c0, c1], axis=-1)


def _bar(u):
    return jnp.einsum("ni,ij->nj", jnp.conj(u), jnp.asarray(GAMMA[0]))


def current(ubar_spinor, v_spinor):
    """J^μ = ū γ^μ v (contravariant components), f[N, 4] complex; ``ubar_spinor`` is the unbarred spinor."""
    return jnp.einsum("ni,mij,nj->nm", _bar(ubar_spinor), jnp.asarray(GAMMA), v_spinor)


def slash(k):
    """k̸ = γ^μ k_μ for complex or real k[N, 4] (contravariant), f[N, 4, 4]."""
    k_low = k * jnp.asarray(_METRIC)
    return jnp.einsum("nm,mij->nij", k_low.astype(complex), jnp.asarray(GAMMA))


def me2(p, e2, sin2w, sin2w_bar, m_z, w_z, m_w, w_w):
    """Σ over the e- helicity of |M|² for momenta p[N, 6, 4] ordered (e-, e+, f₁, f̄₂, f₃, f̄₄) with
    W- → f₁ f̄₂, W+ → f₃ f̄₄ (module docstring); e2 = e² = 4π α. Real f[N]."""
    p1, p2, p3, p4, p5, p6 = (p[:, i] for i in range(6))
    qm, qp = p3 + p4, p5 + p6
    ptot = qm + qp
    s = _mdot(ptot, ptot)
    s1, s2 = _mdot(qm, qm), _mdot(qp, qp)
    g2 = e2 / sin2w
    prop_w = lambda sv: 1.0 / (sv - m_w * m_w + 1j * m_w * w_w)  # noqa: E731
    eps_m = math.sqrt(0.5) * jnp.sqrt(g2) * current(spinor(p3, True), spinor(p4, True)) * prop_w(s1)[:, None]
    eps_p = math.sqrt(0.5) * jnp.sqrt(g2) * current(spinor(p5, True), spinor(p6, True)) * prop_w(s2)[:, None]
    qm_c, qp_c = qm.astype(complex), qp.astype(complex)
    total = jnp.zeros(p.shape[0])
    for left in (True, False):
        u1, v2 = spinor(p1, left), spinor(p2, left)
        lep = current(v2, u1)  # v̄(p2) γ^α u(p1); the chirality is carried by the spinors
        g_h = (-0.5 + sin2w_bar) if left else sin2w_bar
        a_h = e2 * (-1.0 / s + (g_h / sin2w) / (s - m_z * m_z + 1j * m_z * w_z))
        m_s = a_h * (2.0 * _mdot(lep, eps_m) * _mdot(qm_c, eps_p) - 2.0 * _mdot(lep, eps_p) * _mdot(qp_c, eps_m)
                     + _mdot(eps_m, eps_p) * _mdot(lep, qp_c - qm_c))
        amp = m_s
        if left:
            k = p1 - qm
            t = _mdot(k, k)
            chain = jnp.einsum("nij,njk,nkl->nil", slash(eps_p), slash(k.astype(complex)), slash(eps_m))
            m_t = jnp.einsum("ni,nij,nj->n", _bar(v2), chain, jnp.einsum("ij,nj->ni", jnp.asarray(_P_L), u1))
            amp = amp + 0.5 * g2 * m_t / t
        total = total + jnp.real(amp * jnp.conj(amp))
    return total


def sigma_onshell_dt(s, t, s3, s4, e2, sin2w, sin2w_bar, m_z, w_z):
    """dσ/dt (GeV⁻⁴) of e+e- → W-(s3) W+(s4) for W masses² s3, s4, t = (p_e- − p_W-)², summed over the W
    polarisations, in the closed form of Pythia 8's ``Sigma2ffbar2WW::sigmaKin`` (there credited to the
    standard f f̄ → W+W- result with γ, Z and t-channel exchange): an independent reference for :func:`me2`
    once both W decays are integrated out (tests)."""
    alpha = e2 / (4.0 * math.pi)
    r = 1.0 / (4.0 * sin2w)
    z_prop = s * s / ((s - m_z**2) ** 2 + (m_z * w_z) ** 2)
    z_int = z_prop * (1.0 - m_z**2 / s)
    u = s3 + s4 - s - t
    pt2 = (t * u - s3 * s4) / s
    rat34 = s * (2.0 * (s3 + s4) + pt2) / (s3 * s4)
    lam = (s - s3 - s4) ** 2 - 4.0 * s3 * s4
    g_ss = (lam * rat34 + 12.0 * s * pt2) / (s * s)
    g_tt = rat34 + 4.0 * s * pt2 / (t * t)
    g_st = (s - s3 - s4) * rat34 / s + 4.0 * (s3 + s4 - pt2) / t
    ei, ai = -1.0, -1.0
    vi = ai - 4.0 * sin2w_bar * ei
    c_gg, c_gz, c_zz = 0.5, r * z_int, 0.5 * r * r * z_prop
    c_fg, c_fz, c_ff = r, r * r * z_int, r * r
    return (math.pi / (s * s)) * alpha**2 * ((c_gg * ei * ei + c_gz * ei * vi + c_zz * (vi * vi + ai * ai)) * g_ss
                                             + (c_fg * ei + c_fz * (vi + ai)) * g_st + c_ff * g_tt)
