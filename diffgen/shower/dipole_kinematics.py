"""Exact 2 → 3 dipole kinematics with local recoil, written covariantly in the lab frame.

A dipole end has a radiator p̃_i (mass m_i) and a recoiler p̃_k (mass m_k), P = p̃_i + p̃_k,
M² = P². A branching i → a + b at virtuality Q² = (p_a + p_b)² with energy sharing z
(E_a = z E_{ab}, E_b = (1 − z) E_{ab} in the dipole rest frame, Pythia's definition) and
azimuth φ is built as in Pythia 8: in the dipole rest frame the recoiler keeps its direction and
its mass, the (a + b) system takes the opposite momentum

    |p'| = λ^{1/2}(M², Q², m_k²)/(2M),   E_k' = (M² + m_k² − Q²)/(2M),   E_{ab} = M − E_k',

and a, b share it with transverse momentum k⊥ relative to the dipole axis,

    4|p'|² k⊥² = 4E_{ab}² [z(1 − z)Q² − (1 − z)m_a² − z m_b²] − λ(Q², m_a², m_b²).

Every new momentum is written as c_i p̃_i + c_k p̃_k ± k⊥ e_φ with coefficients computed from
invariants (rationalised where a difference would cancel), and e_φ = cos φ e₁ + sin φ e₂ a unit
space-like vector orthogonal to p̃_i and p̃_k, so no boost is needed and float32 keeps both the
dipole four-momentum (to rounding) and the mass shells of collinear high-energy partons.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_div, safe_norm, safe_sqrt

__all__ = ["precise_dot", "kallen", "transverse_basis", "branch_dipole", "pythia_split"]

_PARALLEL = 3.0e-4  # below this sin(angle) the cross product is replaced by a fixed-axis one


def kallen(a, b, c):
    """Källén function λ(a, b, c) = a² + b² + c² − 2ab − 2bc − 2ca, as (a − b − c)² − 4bc."""
    return (a - b - c) ** 2 - 4.0 * b * c


def precise_dot(p, q, m_p, m_q):
    """p·q for on-shell p, q of masses m_p, m_q, accurate for nearly collinear vectors.

    p·q = E_p (E_q − |q|) + |q| (E_p − |p|) + |p||q| (1 − cos θ), with E − |p| = m²/(E + |p|)
    and 1 − cos θ = |p̂ − q̂|²/2.
    """
    ap, aq = safe_norm(p[..., 1:]), safe_norm(q[..., 1:])
    ep_minus = safe_div(m_p * m_p, p[..., 0] + ap)
    eq_minus = safe_div(m_q * m_q, q[..., 0] + aq)
    ph = p[..., 1:] * safe_div(1.0, ap)[..., None]
    qh = q[..., 1:] * safe_div(1.0, aq)[..., None]
    one_minus_cos = 0.5 * jnp.sum((ph - qh) ** 2, axis=-1)
    return p[..., 0] * eq_minus + aq * ep_minus + ap * aq * one_minus_cos


def transverse_basis(p_i, p_k, m_times_p):
    """Unit space-like e₁, e₂ (e² = −1) orthogonal to p_i, p_k and to each other.

    e₁ = (0, n̂) with n̂ ∝ p⃗_i × p⃗_k (or p⃗_i × a lab axis when they are (anti)parallel);
    e₂ = (n̂·(p⃗_i × p⃗_k), (E_i p⃗_k − E_k p⃗_i) × n̂)/(M |p|), with ``m_times_p`` = M|p| =
    √((p_i·p_k)² − m_i² m_k²).
    """
    a, b = p_i[..., 1:], p_k[..., 1:]
    n = jnp.cross(a, b)
    n2 = jnp.sum(n * n, axis=-1)
    scale2 = jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1)
    ok = n2 > (_PARALLEL * _PARALLEL) * scale2
    axis = jnp.argmin(jnp.abs(a), axis=-1)
    ref = (jnp.arange(3) == axis[..., None]).astype(a.dtype)
    n_fallback = jnp.cross(a, ref)
    nvec = jnp.where(ok[..., None], n, n_fallback)
    nhat = nvec * safe_div(1.0, safe_norm(nvec))[..., None]
    e1 = jnp.concatenate([jnp.zeros_like(nhat[..., :1]), nhat], axis=-1)
    t = jnp.sum(nhat * n, axis=-1)
    w = jnp.cross(p_i[..., :1] * b - p_k[..., :1] * a, nhat)
    inv = safe_div(1.0, m_times_p)
    e2 = jnp.concatenate([(t * inv)[..., None], w * inv[..., None]], axis=-1)
    return e1, e2


def _coefficients(x, y, x2_minus_y2, pabs, e_i, e_k, m2_i, m2_k, m_pabs):
    """(c_i, c_k) with x n + y a = c_i p̃_i + c_k p̃_k (n = P/M, a the unit dipole axis along p̃_i).

    c_i = (x|p| + y E_k)/(M|p|), c_k = (x|p| − y E_i)/(M|p|); the numerator that would cancel is
    rationalised with x² − y² (the vector's m² + k⊥²) and E² = |p|² + m².
    """
    num_i_direct = x * pabs + y * e_k
    num_i_rat = safe_div(pabs * pabs * x2_minus_y2 - y * y * m2_k, x * pabs - y * e_k)
    num_k_direct = x * pabs - y * e_i
    num_k_rat = safe_div(pabs * pabs * x2_minus_y2 - y * y * m2_i, x * pabs + y * e_i)
    num_i = jnp.where(y < 0, num_i_rat, num_i_direct)
    num_k = jnp.where(y > 0, num_k_rat, num_k_direct)
    inv = safe_div(1.0, m_pabs)
    return num_i * inv, num_k * inv


def branch_dipole(p_i, p_k, m_i, m_k, q2, m_a, m_b, z, omz, phi):
    """Branch radiator ``p_i`` → a + b with recoil on ``p_k`` (shapes (..., 4); scalars broadcast).

    Args:
        p_i, p_k: radiator and recoiler four-momenta (GeV), on shell with masses ``m_i``, ``m_k``.
        q2: virtuality Q² = (p_a + p_b)² (GeV²).
        m_a, m_b: masses of the daughters (a replaces the radiator, b is new).
        z, omz: energy fraction of a in the dipole rest frame and 1 − z (for precision).
        phi: azimuth of a around the dipole axis.

    Returns:
        ``(p_a, p_b, p_k_new, ok, x_a, x_b, x_k)``: new momenta with p_a + p_b + p_k_new = p_i + p_k,
        ``ok`` whether the branching is kinematically allowed, and x = 2E/M in the dipole rest frame.
    """
    m2_i, m2_k, m2_a, m2_b = m_i * m_i, m_k * m_k, m_a * m_a, m_b * m_b
    d = precise_dot(p_i, p_k, m_i, m_k)
    m2 = m2_i + m2_k + 2.0 * d
    mass = safe_sqrt(m2)
    m_pabs = safe_sqrt(d * d - m2_i * m2_k)
    inv_m = safe_div(1.0, mass)
    pabs = m_pabs * inv_m
    e_i = (m2_i + d) * inv_m
    e_k = (m2_k + d) * inv_m

    lam = kallen(m2, q2, m2_k)
    p_new = 0.5 * safe_sqrt(lam) * inv_m
    e_k_new = 0.5 * (m2 + m2_k - q2) * inv_m
    e_ab = 0.5 * (m2 + q2 - m2_k) * inv_m
    e_a, e_b = z * e_ab, omz * e_ab

    lam_ab = kallen(q2, m2_a, m2_b)
    bracket = 4.0 * e_ab * e_ab * (z * omz * q2 - omz * m2_a - z * m2_b)
    kt2_num = bracket - lam_ab
    inv_2p = safe_div(0.5, p_new)
    pa_par = (2.0 * z * e_ab * e_ab - (q2 + m2_a - m2_b)) * inv_2p
    pb_par = p_new - pa_par  # exact axial balance: the coefficient sums below are then 1 to rounding
    # Two equal forms of k⊥²: |p⃗_a|² − p_a∥² and the Källén form above; take the one whose
    # subtraction cancels less (the first fails for a along the axis, the second for small |p'|).
    pa2 = e_a * e_a - m2_a
    use_direct = pa2 * 4.0 * p_new * p_new < jnp.abs(bracket)
    kt2 = jnp.where(use_direct, pa2 - pa_par * pa_par, safe_div(kt2_num, 4.0 * p_new * p_new))
    kt = safe_sqrt(kt2)

    ok = ((lam > 0) & (kt2_num > 0) & (m_pabs > 0) & (q2 > (m_a + m_b) ** 2) & (z > 0) & (omz > 0)
          & (mass > jnp.sqrt(jnp.maximum(q2, 0.0)) + m_k))

    args = (pabs, e_i, e_k, m2_i, m2_k, m_pabs)
    ca_i, ca_k = _coefficients(e_a, pa_par, kt2 + m2_a, *args)
    cb_i, cb_k = _coefficients(e_b, pb_par, kt2 + m2_b, *args)
    ck_i, ck_k = _coefficients(e_k_new, -p_new, m2_k + 0.0 * kt2, *args)

    e1, e2 = transverse_basis(p_i, p_k, m_pabs)
    e_phi = jnp.cos(phi)[..., None] * e1 + jnp.sin(phi)[..., None] * e2
    kvec = kt[..., None] * e_phi
    p_a = ca_i[..., None] * p_i + ca_k[..., None] * p_k + kvec
    p_b = cb_i[..., None] * p_i + cb_k[..., None] * p_k - kvec
    p_k_new = ck_i[..., None] * p_i + ck_k[..., None] * p_k
    two_inv_m = 2.0 * inv_m
    return p_a, p_b, p_k_new, ok, e_a * two_inv_m, e_b * two_inv_m, e_k_new * two_inv_m


def pythia_split(m2_dip, m_rec, m_rad, m_pair, q2, z, omz, pt2):
    """Pythia 8's allowed region and energy sharing of a massive 1 → 2 branching (``SimpleTimeShower``).

    Pythia builds a branching of evolution variables (p⊥², z) first with massless daughters — in the
    dipole rest frame, with E and p_z of the a + b system (mass² Q²),

        p_z,a = (E² z − Q²/2)/p_z,   p_z,b = (E² (1 − z) − Q²/2)/p_z,   k⊥² = Q² (E² z(1 − z) − Q²/4)/p_z²,

    and then "reduces" the kinematics for the masses: q → q g with a radiator of mass m (k = m²/Q²):
    k⊥ → (1 − k) k⊥, p_z,a → p_z,a + k p_z,b, p_z,b → (1 − k) p_z,b; g → q q̄ with quarks of mass m_q
    (β = √(1 − 4m_q²/Q²)): k⊥ → β k⊥, p_z,a → ((1 + β) p_z,a + (1 − β) p_z,b)/2, p_z,b = p_z − p_z,a. So
    for massive daughters z is not the energy fraction; this returns the energy fraction z_e = E_a/(E_a +
    E_b) of Pythia's momenta, which :func:`branch_dipole` turns into the same momenta (its a + b system and
    recoiler are Pythia's, and E_a fixes the decay angle). The branching is allowed, as in
    ``pT2nextQCD``, when z_min < z < 1 − z_min with z_min = ½ − √(¼ − p⊥²/m²_corr), m²_corr = (M − m_rec)²
    − m²_rad, and Q² M² < z(1 − z)(M² + Q² − m²_rec)².

    Args: ``m2_dip`` = M², ``m_rec`` recoiler mass, ``m_rad`` the radiator's mass before the branching
    (0 for a gluon), ``m_pair`` the quark mass of g → q q̄ (0 otherwise), ``q2`` = Q² = m_rad² +
    p⊥²/(z(1 − z)), ``z``, ``omz`` = 1 − z, ``pt2`` = p⊥²_evol.

    Returns ``(allowed, z_e, omz_e, shrink)``: ``shrink`` = 1 − m_rad²/Q², the factor by which Pythia's
    mass reduction lowers the p⊥ of a gluon emission (it rejects the emission when that falls below the
    cut-off, ``branch``); z_e = z exactly when m_rad = m_pair = 0.
    """
    m2_rec = m_rec * m_rec
    mass = safe_sqrt(m2_dip)
    m2_corr = (mass - m_rec) ** 2 - m_rad * m_rad
    r = safe_div(pt2, m2_corr)
    z_min = r / (0.5 + safe_sqrt(jnp.maximum(0.25 - r, 0.0)))  # ½ − √(¼ − r) without the cancellation
    sum_m = m2_dip + q2 - m2_rec
    allowed = (m2_corr > 0) & (r < 0.25) & (z > z_min) & (omz > z_min) & (q2 * m2_dip < z * omz * sum_m * sum_m)
    inv_m = safe_div(1.0, mass)
    e = 0.5 * sum_m * inv_m
    pz = 0.5 * safe_sqrt(kallen(m2_dip, q2, m2_rec)) * inv_m
    inv_pz = safe_div(1.0, pz)
    e2 = e * e
    pz_a = (e2 * z - 0.5 * q2) * inv_pz
    pz_b = (e2 * omz - 0.5 * q2) * inv_pz
    kt2 = jnp.maximum(q2 * (e2 * z * omz - 0.25 * q2), 0.0) * inv_pz * inv_pz
    k = safe_div(m_rad * m_rad, q2)
    shrink = 1.0 - k
    beta = safe_sqrt(jnp.maximum(1.0 - 4.0 * safe_div(m_pair * m_pair, q2), 0.0))
    pair = m_pair > 0
    pz_a_r = jnp.where(pair, 0.5 * ((1.0 + beta) * pz_a + (1.0 - beta) * pz_b), pz_a + k * pz_b)
    pz_b_r = jnp.where(pair, pz - pz_a_r, shrink * pz_b)
    kt2_r = kt2 * jnp.where(pair, beta * beta, shrink * shrink)
    m2_a = jnp.where(pair, m_pair * m_pair, m_rad * m_rad)
    m2_b = jnp.where(pair, m_pair * m_pair, 0.0)
    e_a = safe_sqrt(pz_a_r * pz_a_r + kt2_r + m2_a)
    e_b = safe_sqrt(pz_b_r * pz_b_r + kt2_r + m2_b)
    inv_e = safe_div(1.0, e_a + e_b)
    massive = (m_rad > 0) | pair
    z_e = jnp.where(massive, e_a * inv_e, z)
    omz_e = jnp.where(massive, e_b * inv_e, omz)
    return allowed, z_e, omz_e, shrink
