"""RAMBO: flat n-body phase space in the centre-of-mass frame from 4n uniforms.

R. Kleiss, W. J. Stirling and S. D. Ellis, "A new Monte Carlo treatment of multiparticle phase space at high
energies", Comput. Phys. Commun. 40 (1986) 359.

Massless algorithm. For each particle i, from uniforms (u₀, u₁, u₂, u₃): cos θ = 2u₀ − 1, φ = 2πu₁ and
q⁰ = −log(u₂u₃), q_i = q⁰ (1, n̂_i). With Q = Σ q_i, M = √(Q²), the conformal map (a boost b⃗ = −Q⃗/M and a
scaling x = √s/M) gives p_i with Σ p_i = (√s, 0⃗) and p_i² = 0, distributed exactly as dΦ_n, so the weight is
the constant Φ_n(s) (see :mod:`diffgen.phasespace.volume`).

The map is evaluated in a form that stays accurate in float32 when Q is nearly light-like (γ = Q⁰/M ≫ 1, which
happens often for n = 2): E_i = √s (Q·q_i)/Q² with Q·q_i = Σ_j q⁰_i q⁰_j |n̂_i − n̂_j|²/2 (all terms ≥ 0), the
direction p̂_i ∝ q⃗_i − c_i Q⃗ with c_i = (q⁰_i M + Q·q_i)/(M(M + Q⁰)) (algebraically RAMBO's boost), and
p⃗_i = E_i p̂_i (massless to rounding); for n = 2, p̂_2 = −p̂_1 exactly.

Massive algorithm. The massless p_i are rescaled, k⃗_i = ξ p⃗_i, k⁰_i = √(m_i² + ξ²E_i²), with ξ the root of
Σ_i k⁰_i(ξ) = √s. The weight becomes

    w = Φ_n^massless(s) · ξ^(2n−3) · Π_i (|k⃗_i|/k⁰_i) · √s / Σ_i (|k⃗_i|²/k⁰_i),

exact; its mean over events is the massive volume Φ_n(s; m). ξ is found by Newton's method from
ξ₀ = √(1 − (Σm/√s)²), which lies above the root (Minkowski's inequality) so the convex iteration decreases
monotonically; the iterations run under ``stop_gradient`` and one final differentiable Newton step gives the
implicit-function derivative dξ/dθ = −(∂f/∂θ)/(∂f/∂ξ).

Example:
    >>> import jax
    >>> from diffgen.phasespace import rambo
    >>> u = jax.random.uniform(jax.random.key(0), (4, rambo.n_random(3)))
    >>> p4, log_w = rambo.massive(u, 10.0, (0.14, 0.5, 1.0))
    >>> p4.shape, log_w.shape
    ((4, 3, 4), (4,))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffgen.numerics import safe_div, safe_log, safe_norm, safe_sqrt
from diffgen.phasespace.volume import (
    as_float_array,
    check_last_dim,
    check_masses,
    check_n_particles,
    clip_unit,
    log_massless,
)

__all__ = ["massless", "massive", "n_random", "NEWTON_ITERATIONS"]

#: Newton iterations for the massive rescaling ξ (quadratic convergence from above; 30 is ample in float64).
NEWTON_ITERATIONS = 30


def n_random(n: int) -> int:
    """Number of uniforms per event for ``n`` particles: 4n."""
    check_n_particles(n)
    return 4 * n


def _pair_terms(q0, nhat):
    """Q·q_i = Σ_j q⁰_i q⁰_j (1 − cos θ_ij) f[..., n] and Q² = Σ_i Q·q_i f[...]; every term is >= 0."""
    diff = nhat[..., :, None, :] - nhat[..., None, :, :]
    half_d2 = 0.5 * jnp.sum(diff * diff, axis=-1)  # 1 − cos θ_ij, exactly 0 on the diagonal
    q_dot_qi = q0 * jnp.einsum("...ij,...j->...i", half_d2, q0)
    return q_dot_qi, jnp.sum(q_dot_qi, axis=-1)


def _massless_energies_directions(u, sqrt_s, n):
    """E f[..., n] and unit directions f[..., n, 3] of the massless RAMBO momenta (see module docstring).

    The q_i are normalised to Σq⁰ = 1 (RAMBO is scale invariant). Configurations with Q² <= ε² (all q_i
    collinear to within γ > 1/ε: only reachable at the clipped corners of the unit cube) are replaced, by the
    double-``where`` trick, by a fixed regular configuration, so that values and gradients stay finite.
    """
    batch = u.shape[:-1]
    u = clip_unit(u).reshape(batch + (n, 4))
    cos_t = 2.0 * u[..., 0] - 1.0
    phi = 2.0 * jnp.pi * u[..., 1]
    sin_t = safe_sqrt((1.0 - cos_t) * (1.0 + cos_t))
    nhat = jnp.stack([sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t], axis=-1)  # [..., n, 3]
    q0 = -(jnp.log(u[..., 2]) + jnp.log(u[..., 3]))  # [..., n], > 0 after clipping
    q0 = q0 / jnp.sum(q0, axis=-1, keepdims=True)

    _, mass2 = _pair_terms(q0, nhat)
    degenerate = (mass2 <= jnp.finfo(u.dtype).eps ** 2)[..., None]
    signs = jnp.where(jnp.arange(n) % 2 == 0, 1.0, -1.0).astype(u.dtype)
    nhat_default = jnp.zeros((n, 3), u.dtype).at[:, 2].set(signs)
    nhat = jnp.where(degenerate[..., None], nhat_default, nhat)
    q0 = jnp.where(degenerate, 1.0 / n, q0)

    q_dot_qi, mass2 = _pair_terms(q0, nhat)
    energy = sqrt_s[..., None] * safe_div(q_dot_qi, mass2[..., None])

    mass = safe_sqrt(mass2)[..., None]
    q_vec = jnp.sum(q0[..., None] * nhat, axis=-2)  # [..., 3]; Q⁰ = 1
    coef = safe_div(q0 * mass + q_dot_qi, mass * (mass + 1.0))
    v = q0[..., None] * nhat - coef[..., None] * q_vec[..., None, :]
    direction = safe_div(v, safe_norm(v, keepdims=True))
    if n == 2:
        direction = jnp.stack([direction[..., 0, :], -direction[..., 0, :]], axis=-2)
    return energy, direction


def _prepare(u, sqrt_s, n, what):
    u = as_float_array(u)
    check_last_dim(u, 4 * n, f"{what} with n = {n}")
    sqrt_s = jnp.broadcast_to(jnp.asarray(sqrt_s, dtype=u.dtype), u.shape[:-1])
    return u, sqrt_s


def massless(u, sqrt_s, n: int):
    """n massless momenta with total four-momentum (√s, 0, 0, 0), flat in dΦ_n.

    Args:
        u: f[..., 4n] uniforms in [0, 1] (clipped into [ε, 1−ε]); columns 4i..4i+3 belong to particle i.
        sqrt_s: √s (GeV), scalar or f[...]; concrete values must be > 0.
        n: number of particles, static Python int in [2, 10] (ValueError otherwise).

    Returns:
        ``(p4, log_weight)``: f[..., n, 4] momenta (GeV) and f[...] log Φ_n(s), the same for every event
        (units log GeV^(2n−4)).
    """
    check_n_particles(n)
    check_masses(sqrt_s, [0.0] * n)
    u, sqrt_s = _prepare(u, sqrt_s, n, "rambo.massless")
    energy, direction = _massless_energies_directions(u, sqrt_s, n)
    p4 = jnp.concatenate([energy[..., None], energy[..., None] * direction], axis=-1)
    return p4, log_massless(n, sqrt_s)


def massive(u, sqrt_s, masses):
    """n momenta with masses ``masses`` and total four-momentum (√s, 0, 0, 0), with the exact RAMBO weight.

    Args:
        u: f[..., 4n] uniforms in [0, 1] (as for :func:`massless`).
        sqrt_s: √s (GeV), scalar or f[...].
        masses: n masses (GeV), tuple or f[n] (may be traced); n in [2, 10]; concrete values must be >= 0
            with Σm < √s (ValueError otherwise).

    Returns:
        ``(p4, log_weight)``: f[..., n, 4] momenta (particle i on shell with mass m_i) and f[...] the log of
        the massive weight (module docstring); E[exp(log_weight)] = Φ_n(√s; m). For traced inputs below
        threshold log_weight is −inf (weight 0, zero gradient).
    """
    masses = jnp.asarray(masses)
    if masses.ndim != 1:
        raise ValueError(f"rambo.massive: masses must be a 1-d sequence of n values, got shape {masses.shape}")
    n = int(masses.shape[0])
    check_n_particles(n)
    check_masses(sqrt_s, masses)
    u, sqrt_s = _prepare(u, sqrt_s, n, "rambo.massive")
    masses = masses.astype(u.dtype)
    energy, direction = _massless_energies_directions(u, sqrt_s, n)
    m2 = masses * masses
    rs = sqrt_s[..., None]

    def residual(xi, e, m2_, rs_):
        k0 = safe_sqrt(m2_ + (xi * e) ** 2)
        return jnp.sum(k0, axis=-1) - rs_[..., 0], jnp.sum(safe_div(xi * e * e, k0), axis=-1)

    # Newton iterations without gradient, then one differentiable step (implicit-function derivative).
    e_sg, m2_sg, rs_sg = jax.lax.stop_gradient((energy, m2, rs))
    xi0 = safe_sqrt(1.0 - (jnp.sum(jax.lax.stop_gradient(masses)) / rs_sg) ** 2)

    def newton(_, xi):
        f, df = residual(xi, e_sg, m2_sg, rs_sg)
        return jnp.clip(xi - safe_div(f, df)[..., None], 0.0, 1.0)

    xi_star = jax.lax.stop_gradient(jax.lax.fori_loop(0, NEWTON_ITERATIONS, newton, xi0))
    f, df = residual(xi_star, energy, m2, rs)
    xi = xi_star - safe_div(f, df)[..., None]  # [..., 1]

    k_abs = xi * energy
    k0_sq = m2 + k_abs * k_abs
    k0 = safe_sqrt(k0_sq)
    p4 = jnp.concatenate([k0[..., None], k_abs[..., None] * direction], axis=-1)

    log_w = log_massless(n, sqrt_s) + (2 * n - 3) * safe_log(xi[..., 0])
    log_w = log_w + jnp.sum(safe_log(k_abs) - 0.5 * safe_log(k0_sq), axis=-1)  # Σ log(|k|/k⁰)
    log_w = log_w + safe_log(sqrt_s) - safe_log(jnp.sum(safe_div(k_abs * k_abs, k0), axis=-1))
    valid = sqrt_s > jnp.sum(masses)
    return p4, jnp.where(valid, log_w, -jnp.inf)
