"""Two- and three-body decay kinematics: rest-frame momenta from uniforms, random rotation, boost.

Everything random here is a deterministic function of uniforms ``u ∈ [0, 1)`` and of constants (the PDG
masses), so gradients reach the daughters only through :func:`boost_from_rest`, which is smooth in the
mother's four-momentum ``P`` (pathwise derivatives, DESIGN.md §2).

* Two-body: in the mother's rest frame the daughters are back to back with
  |p*| = λ^½(M², m1², m2²)/(2M) (λ the Källén function) along the direction R·ẑ, isotropic because the
  rotation R is Haar-distributed (:func:`euler_rotation`).
* Three-body: flat phase space, i.e. uniform in the Dalitz plane (s12, s23) = (m12², m23²). s12 is drawn
  from its marginal density f(s12) ∝ λ^½(s12, m1², m2²) λ^½(M², s12, m3²)/s12 (the length of the s23 range
  at fixed s12) by inverting a tabulated CDF (:func:`dalitz_inverse_cdf`, host-side, once per channel),
  then s23 uniformly in its range. The energies E1 = (M² + m1² − s23)/(2M), E3 = (M² + m3² − s12)/(2M),
  E2 = M − E1 − E3 fix the triangle of momenta, which is placed in the x–z plane and rotated by R.
  No matrix element is applied (ω → 3π, η → 3π, Dalitz decays and semileptonic decays are flat).
* Boost: with the mother's ``P`` and pole mass ``M``,
  E = (P⁰q⁰ + P⃗·q⃗)/M,  p⃗ = q⃗ + P⃗ (q⁰ + E)/(P⁰ + M).
  It is linear in q, so Σ q = (M, 0⃗) maps exactly onto P (four-momentum is conserved even when the
  input is slightly off shell in floating point), and it is the Lorentz boost to P when P² = M².

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.decays import kinematics as dk
    >>> round(float(dk.two_body_momentum(0.1349768, 0.0, 0.0)), 7)
    0.0674884
    >>> q = jnp.array([[0.5, 0.0, 0.0, 0.5], [0.5, 0.0, 0.0, -0.5]])
    >>> P = jnp.array([2.0, 0.0, 0.0, jnp.sqrt(3.0)])
    >>> [round(float(x), 5) for x in dk.boost_from_rest(q, P, 1.0).sum(0)]
    [2.0, 0.0, 0.0, 1.73205]
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_sqrt

__all__ = ["kallen", "two_body_momentum", "dalitz_inverse_cdf", "euler_rotation", "rotate", "rest_two_body",
           "rest_three_body", "boost_from_rest"]


def kallen(a, b, c):
    """Källén function λ(a, b, c) = a² + b² + c² − 2ab − 2bc − 2ca (works on NumPy and JAX arrays)."""
    return a * a + b * b + c * c - 2 * (a * b + b * c + c * a)


def two_body_momentum(M, m1, m2):
    """Rest-frame momentum λ^½(M², m1², m2²)/(2M) in GeV (host-side, float64); 0 below threshold."""
    lam = kallen(np.float64(M) ** 2, np.float64(m1) ** 2, np.float64(m2) ** 2)
    return np.sqrt(np.maximum(lam, 0.0)) / (2.0 * M)


def dalitz_inverse_cdf(M: float, m1: float, m2: float, m3: float, n_grid: int = 1025,
                       n_fine: int = 20000) -> np.ndarray:
    """s12 = m12² at the CDF values u_k = k/(n_grid − 1) of flat three-body phase space (host, float64).

    The marginal density of s12 is f ∝ λ^½(s12, m1², m2²) λ^½(M², s12, m3²)/s12 on
    [(m1 + m2)², (M − m3)²]; its CDF is integrated with the midpoint rule on ``n_fine`` cells and inverted
    by linear interpolation. The end points are exact.
    """
    lo, hi = (m1 + m2) ** 2, (M - m3) ** 2
    if not hi > lo:
        raise ValueError(f"three-body channel closed: M = {M} <= m1 + m2 + m3 = {m1 + m2 + m3}")
    edges = np.linspace(lo, hi, n_fine + 1)
    mid = 0.5 * (edges[1:] + edges[:-1])
    f = np.sqrt(np.maximum(kallen(mid, m1 ** 2, m2 ** 2), 0) * np.maximum(kallen(M ** 2, mid, m3 ** 2), 0)) / mid
    cdf = np.concatenate([[0.0], np.cumsum(f)])
    cdf /= cdf[-1]
    u = np.linspace(0.0, 1.0, n_grid)
    out = np.interp(u, cdf, edges)
    out[0], out[-1] = lo, hi
    return out


def euler_rotation(u_cos, u_phi, u_psi):
    """cos, sin of the z–y–z Euler angles of a Haar-random rotation R = R_z(φ) R_y(θ) R_z(ψ).

    cos θ = 2u − 1, φ = 2πu', ψ = 2πu''. Returns the tuple (cθ, sθ, cφ, sφ, cψ, sψ).
    """
    ct = 2.0 * u_cos - 1.0
    st = safe_sqrt(1.0 - ct * ct)
    ph = 2.0 * jnp.pi * u_phi
    ps = 2.0 * jnp.pi * u_psi
    return ct, st, jnp.cos(ph), jnp.sin(ph), jnp.cos(ps), jnp.sin(ps)


def rotate(v, rot):
    """Apply the rotation ``rot`` (from :func:`euler_rotation`, broadcastable) to 3-vectors ``v[..., 3]``."""
    ct, st, cp, sp, cs, ss = rot
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    x1, y1 = cs * x - ss * y, ss * x + cs * y
    x2, z2 = ct * x1 + st * z, -st * x1 + ct * z
    return jnp.stack([cp * x2 - sp * y1, sp * x2 + cp * y1, z2], axis=-1)


def rest_two_body(p_star, m1, m2):
    """Rest-frame four-momenta ``[..., 2, 4]`` of a two-body decay along ±z with momentum ``p_star``."""
    e1 = jnp.sqrt(p_star * p_star + m1 * m1)
    e2 = jnp.sqrt(p_star * p_star + m2 * m2)
    zero = jnp.zeros_like(p_star)
    q1 = jnp.stack([e1, zero, zero, p_star], axis=-1)
    q2 = jnp.stack([e2, zero, zero, -p_star], axis=-1)
    return jnp.stack([q1, q2], axis=-2)


def rest_three_body(M, m1, m2, m3, s12, v):
    """Rest-frame four-momenta ``[..., 3, 4]`` for the Dalitz point (s12, s23 = s23⁻ + v (s23⁺ − s23⁻)).

    Daughter 1 points along +z, daughter 3 lies in the x–z plane (x ≥ 0), p⃗2 = −p⃗1 − p⃗3.
    """
    m12 = safe_sqrt(s12)
    e2s = safe_div(s12 - m1 * m1 + m2 * m2, 2.0 * m12)
    e3s = safe_div(M * M - s12 - m3 * m3, 2.0 * m12)
    p2s = safe_sqrt(e2s * e2s - m2 * m2)
    p3s = safe_sqrt(e3s * e3s - m3 * m3)
    s23_lo = (e2s + e3s) ** 2 - (p2s + p3s) ** 2
    s23_hi = (e2s + e3s) ** 2 - (p2s - p3s) ** 2
    s23 = s23_lo + v * (s23_hi - s23_lo)
    e1 = (M * M + m1 * m1 - s23) / (2.0 * M)
    e3 = (M * M + m3 * m3 - s12) / (2.0 * M)
    e2 = M - e1 - e3
    p1 = safe_sqrt(e1 * e1 - m1 * m1)
    p2 = safe_sqrt(e2 * e2 - m2 * m2)
    p3 = safe_sqrt(e3 * e3 - m3 * m3)
    c13 = jnp.clip(safe_div(p2 * p2 - p1 * p1 - p3 * p3, 2.0 * p1 * p3), -1.0, 1.0)
    s13 = safe_sqrt(1.0 - c13 * c13)
    zero = jnp.zeros_like(e1)
    q1 = jnp.stack([e1, zero, zero, p1], axis=-1)
    q3 = jnp.stack([e3, p3 * s13, zero, p3 * c13], axis=-1)
    q2 = jnp.stack([e2, -p3 * s13, zero, -p1 - p3 * c13], axis=-1)
    return jnp.stack([q1, q2, q3], axis=-2)


def boost_from_rest(q, P, M):
    """Boost rest-frame momenta ``q[..., 4]`` to the frame where the mother has ``P[..., 4]`` and mass ``M``.

    E = (P⁰q⁰ + P⃗·q⃗)/M and p⃗ = q⃗ + P⃗ (q⁰ + E)/(P⁰ + M); ``P`` and ``M`` broadcast against ``q``.
    Requires M > 0 (the caller substitutes a harmless value in unused slots).
    """
    M = jnp.asarray(M)
    e = (P[..., 0] * q[..., 0] + jnp.sum(P[..., 1:] * q[..., 1:], axis=-1)) / M
    coef = (q[..., 0] + e) / (P[..., 0] + M)
    p3 = q[..., 1:] + P[..., 1:] * coef[..., None]
    return jnp.concatenate([e[..., None], p3], axis=-1)
