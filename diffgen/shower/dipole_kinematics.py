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

__all__ = ["precise_dot", "kallen", "transverse_basis", "branch_dipole"]

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
