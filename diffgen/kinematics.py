"""Gradient-safe relativistic kinematics on four-vectors ``(E, px, py, pz)`` in GeV.

Every function acts on the last axis (size 4) and broadcasts over the others.
Values and gradients are finite at pT = 0, for massless vectors and for padded
(all-zero) slots: the double-``where`` helpers of :mod:`diffgen.numerics` are used
for every square root, logarithm and division.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen import kinematics as kin
    >>> p = jnp.array([5.0, 3.0, 0.0, 4.0])
    >>> float(kin.mass(p)), float(kin.pt(p))
    (0.0, 3.0)
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_arctan2, safe_div, safe_log, safe_norm, safe_sqrt

__all__ = [
    "minkowski_dot", "mass2", "mass", "pt", "p3_abs", "eta", "phi", "rapidity",
    "delta_phi", "delta_r", "boost", "boost_to_rest_frame", "rotate", "rotate_z_to",
    "four_vector", "cos_theta", "match_total_momentum",
]


def minkowski_dot(p, q):
    """p·q = E_p E_q − p⃗·q⃗ (metric +−−−)."""
    return p[..., 0] * q[..., 0] - jnp.sum(p[..., 1:] * q[..., 1:], axis=-1)


def mass2(p):
    """Invariant mass squared m² = E² − |p⃗|² (may be slightly negative from rounding)."""
    return minkowski_dot(p, p)


def mass(p):
    """Invariant mass √max(m², 0)."""
    return safe_sqrt(mass2(p))


def p3_abs(p):
    """|p⃗|."""
    return safe_norm(p[..., 1:])


def pt(p):
    """Transverse momentum √(px² + py²)."""
    return safe_sqrt(p[..., 1] ** 2 + p[..., 2] ** 2)


def cos_theta(p, axis=None):
    """cos θ of the three-momentum of ``p`` relative to the direction of ``axis`` (default: +z).

    cos θ = p⃗·a⃗ / (|p⃗| |a⃗|) with a⃗ the spatial part of ``axis``; without ``axis`` it is pz/|p⃗|.
    Shapes: ``p`` f[..., 4], ``axis`` f[..., 4] (any four-vector along the axis, e.g. the incoming
    e⁻; only its direction matters), broadcast against each other. 0, with zero gradient, when
    either three-vector is zero (padded slots); gradients are finite everywhere.

    Example (the polar angle of the outgoing fermion w.r.t. the e⁻ beam):
        >>> import jax.numpy as jnp
        >>> from diffgen.kinematics import cos_theta
        >>> mu = jnp.array([45.0, 0.0, 27.0, 36.0]); e_minus = jnp.array([45.0, 0.0, 0.0, -45.0])
        >>> round(float(cos_theta(mu)), 6), round(float(cos_theta(mu, e_minus)), 6)
        (0.8, -0.8)
    """
    if axis is None:
        return safe_div(p[..., 3], p3_abs(p))
    dot = jnp.sum(p[..., 1:] * axis[..., 1:], axis=-1)
    norms2 = jnp.sum(p[..., 1:] ** 2, axis=-1) * jnp.sum(axis[..., 1:] ** 2, axis=-1)
    return safe_div(dot, safe_sqrt(norms2))


def eta(p, max_abs: float = 20.0):
    """Pseudorapidity η = asinh(pz / pT), clipped to ±``max_abs`` (pT = 0 gives ±max_abs)."""
    pt_ = pt(p)
    pz = p[..., 3]
    ok = pt_ > 0
    val = jnp.arcsinh(jnp.where(ok, pz, 0.0) / jnp.where(ok, pt_, 1.0))
    return jnp.where(ok, jnp.clip(val, -max_abs, max_abs), jnp.sign(pz) * max_abs)


def phi(p):
    """Azimuth φ = atan2(py, px) in (−π, π]; 0 at pT = 0."""
    return safe_arctan2(p[..., 2], p[..., 1])


def rapidity(p, max_abs: float = 20.0):
    """Rapidity y = ½ log((E + pz)/(E − pz)), clipped to ±``max_abs``."""
    e, pz = p[..., 0], p[..., 3]
    num = e + pz
    den = e - pz
    y = 0.5 * (safe_log(num, -2 * max_abs) - safe_log(den, -2 * max_abs))
    return jnp.clip(y, -max_abs, max_abs)


def delta_phi(p, q):
    """φ_p − φ_q wrapped into (−π, π]."""
    d = phi(p) - phi(q)
    return jnp.mod(d + jnp.pi, 2 * jnp.pi) - jnp.pi


def delta_r(p, q):
    """ΔR = √(Δη² + Δφ²)."""
    return safe_sqrt((eta(p) - eta(q)) ** 2 + delta_phi(p, q) ** 2)


def four_vector(e, px, py, pz):
    """Stack components into a ``(..., 4)`` array."""
    return jnp.stack(jnp.broadcast_arrays(e, px, py, pz), axis=-1)


def boost(p, beta):
    """Lorentz-boost ``p`` by velocity ``beta`` (3-vector, |β| < 1).

    p' = p + [γ β·p⃗ ... ] in the standard form
    E' = γ (E + β·p⃗),   p⃗' = p⃗ + ((γ−1)/β² (β·p⃗) + γ E) β⃗.
    For β = 0 this is the identity, with finite gradients.
    """
    b2 = jnp.sum(beta * beta, axis=-1)
    gamma = 1.0 / safe_sqrt(1.0 - b2, eps=-1.0)
    bp = jnp.sum(beta * p[..., 1:], axis=-1)
    # (γ − 1)/β² = γ²/(γ + 1), regular at β = 0.
    coef = gamma * gamma / (gamma + 1.0)
    e_new = gamma * (p[..., 0] + bp)
    p_new = p[..., 1:] + (coef * bp + gamma * p[..., 0])[..., None] * beta
    return jnp.concatenate([e_new[..., None], p_new], axis=-1)


def boost_to_rest_frame(p, frame):
    """Boost ``p`` into the rest frame of the (timelike) four-vector ``frame``."""
    beta = -safe_div(frame[..., 1:], frame[..., :1])
    return boost(p, beta)


def rotate(p, axis_angle):
    """Rotate the spatial part of ``p`` by the rotation vector ``axis_angle`` (Rodrigues)."""
    theta = safe_norm(axis_angle, keepdims=True)
    k = safe_div(axis_angle, theta)
    v = p[..., 1:]
    c, s = jnp.cos(theta), jnp.sin(theta)
    kv = jnp.sum(k * v, axis=-1, keepdims=True)
    v_rot = v * c + jnp.cross(k, v) * s + k * kv * (1 - c)
    return jnp.concatenate([p[..., :1], v_rot], axis=-1)


def rotate_z_to(p, direction):
    """Rotate ``p`` so that the +z axis is carried onto the unit 3-vector ``direction``.

    Uses the polar angles of ``direction``: R = R_z(φ) R_y(θ).
    """
    d = direction
    ct = safe_div(d[..., 2], safe_norm(d))
    st = safe_sqrt(1.0 - ct * ct)
    ph = safe_arctan2(d[..., 1], d[..., 0])
    cp, sp = jnp.cos(ph), jnp.sin(ph)
    x, y, z = p[..., 1], p[..., 2], p[..., 3]
    # R_y(θ)
    x1 = ct * x + st * z
    z1 = -st * x + ct * z
    # R_z(φ)
    x2 = cp * x1 - sp * y
    y2 = sp * x1 + cp * y
    return jnp.stack([p[..., 0], x2, y2, z1], axis=-1)


def match_total_momentum(p4, mask, target, newton_steps: int = 2):
    """Correct a set of momenta so that their sum equals ``target`` exactly, keeping every mass.

    Used after steps that conserve four-momentum only up to float32 rounding. With
    P = Σ p (over ``mask``): boost to the rest frame of P, rescale all three-momenta by a common
    factor k with Σ √(m_i² + k²|q⃗_i|²) = M_target (Newton from k = 1), then boost into the frame
    of ``target``. For a small mismatch this is a tiny, smooth (differentiable) change.

    Shapes: ``p4`` f[..., P, 4], ``mask`` bool[..., P], ``target`` f[..., 4].
    """
    m = mask[..., None]
    total = jnp.sum(jnp.where(m, p4, 0.0), axis=-2)
    q = boost_to_rest_frame(p4, total[..., None, :])
    own_m2 = jnp.maximum(mass2(q), 0.0)
    q3_2 = jnp.sum(q[..., 1:] ** 2, axis=-1)
    target_mass = mass(target)[..., None]
    k = jnp.ones_like(target_mass)
    for _ in range(newton_steps):
        e = safe_sqrt(own_m2 + k * k * q3_2)
        f = jnp.sum(jnp.where(mask, e, 0.0), axis=-1, keepdims=True) - target_mass
        df = jnp.sum(jnp.where(mask, safe_div(k * q3_2, e), 0.0), axis=-1, keepdims=True)
        k = k - safe_div(f, df)
    e = safe_sqrt(own_m2 + k * k * q3_2)
    rescaled = jnp.concatenate([e[..., None], k[..., None] * q[..., 1:]], axis=-1)
    beta = safe_div(target[..., 1:], target[..., :1])[..., None, :]
    out = boost(rescaled, beta)
    return jnp.where(m, out, p4)
