"""Two-body decays and n-body phase space as a chain of two-body decays, from explicit uniforms.

Conventions are those of :mod:`diffgen.phasespace.volume` (dΦ_n with (2π)^4 δ⁴ Π d³p/((2π)³ 2E)).
Four-vectors are (E, px, py, pz) in GeV on the last axis; any leading batch shape ``[...]`` (usually ``[N]``)
is allowed and carried through, so the functions are jittable and vmappable row by row.

Two-body phase space integrated over the decay solid angle, cos θ = 2u₀ − 1 and φ = 2πu₁ uniform:

    Φ_2(M; m1, m2) = |p*| / (4π M) = λ^½(M², m1², m2²) / (8π M²),

so ``exp(log_weight)`` is the exact phase-space weight of each event (it does not depend on the angles).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.phasespace import two_body
    >>> u = jax.random.uniform(jax.random.key(0), (5, two_body.n_random(3)))
    >>> p4, log_w = two_body.sequential(u, 10.0, (0.0, 0.0, 0.0))
    >>> p4.shape, log_w.shape
    ((5, 3, 4), (5,))
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics
from diffgen.numerics import safe_div, safe_log, safe_sqrt
from diffgen.phasespace.volume import (
    as_float_array,
    check_last_dim,
    check_masses,
    check_n_particles,
    clip_unit,
    is_concrete,
    p_star_gap,
)

__all__ = ["decay", "sequential", "n_random"]


def n_random(n: int) -> int:
    """Number of uniforms per event that :func:`sequential` takes for ``n`` particles: 3n − 4."""
    check_n_particles(n)
    return 3 * n - 4


def _boost_from_rest(p4_rest, parent_p4, parent_mass, mass):
    """Boost ``p4_rest`` from the rest frame of ``parent_p4`` (mass ``parent_mass``) to the frame of ``parent_p4``.

    E = (P⁰E* + P⃗·p⃗*)/M and p⃗ = p⃗* + P⃗ (E* + E)/(P⁰ + M): exact for any γ = P⁰/M and free of the 1 − β²
    cancellation of :func:`diffgen.kinematics.boost` (which loses all precision in float32 for γ ≳ 10³). The energy
    is then recomputed as √(m² + |p⃗|²) so that the result is on shell to rounding; the momentum balance moves by
    O(ε P⁰) at most.
    """
    e_rest = p4_rest[..., 0]
    p_rest = p4_rest[..., 1:]
    p0 = parent_p4[..., 0]
    pvec = parent_p4[..., 1:]
    e_lab = safe_div(p0 * e_rest + jnp.sum(pvec * p_rest, axis=-1), parent_mass)
    p_lab = p_rest + pvec * safe_div(e_rest + e_lab, p0 + parent_mass)[..., None]
    e_lab = safe_sqrt(mass * mass + jnp.sum(p_lab * p_lab, axis=-1))
    return jnp.concatenate([e_lab[..., None], p_lab], axis=-1)


def _decay(u2, parent_p4, parent_mass, m1, m2, gap):
    """Isotropic decay of a parent of known mass; ``gap`` = M − m1 − m2 computed accurately by the caller."""
    cos_t = 2.0 * u2[..., 0] - 1.0
    phi = 2.0 * jnp.pi * u2[..., 1]
    sin_t = safe_sqrt((1.0 - cos_t) * (1.0 + cos_t))
    ps = p_star_gap(parent_mass, m1, m2, gap)
    p_vec = ps[..., None] * jnp.stack([sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t], axis=-1)
    e1 = safe_sqrt(m1 * m1 + ps * ps)
    e2 = safe_sqrt(m2 * m2 + ps * ps)
    p1 = _boost_from_rest(jnp.concatenate([e1[..., None], p_vec], -1), parent_p4, parent_mass, m1)
    p2 = _boost_from_rest(jnp.concatenate([e2[..., None], -p_vec], -1), parent_p4, parent_mass, m2)
    log_phi2 = safe_log(ps) - safe_log(4.0 * jnp.pi * parent_mass)
    return p1, p2, log_phi2, ps > 0


def decay(u2, parent_p4, m1, m2):
    """Isotropic two-body decay P → p1 p2 in the parent rest frame, boosted to the frame of ``parent_p4``.

    In the rest frame cos θ = 2u₀ − 1, φ = 2πu₁, |p*| = λ^½(M², m1², m2²)/(2M), and the returned momenta are
    boosted along P⃗/P⁰ with γ = P⁰/M (M = √(P²)).

    Args:
        u2: f[..., 2] uniforms in [0, 1].
        parent_p4: f[..., 4] parent four-momentum (GeV), timelike.
        m1, m2: daughter masses (GeV), scalars or f[...]; concrete values must be >= 0.

    Returns:
        ``(p1, p2, log_weight, valid)``: f[..., 4] daughters; f[...] log Φ_2 = log(|p*|/(4πM)) (GeV⁰);
        bool[...] ``valid`` = (M > m1 + m2). **Where not valid** (parent below threshold; this is data, not an
        error) ``log_weight`` is −inf (weight exactly 0, zero gradient) and the daughters are finite but
        meaningless (both at rest in the parent frame): mask them with ``valid`` (e.g. set
        ``Status.BELOW_THRESHOLD``) rather than reading them.
    """
    u2 = as_float_array(u2)
    parent_p4 = jnp.asarray(parent_p4, dtype=u2.dtype)
    check_last_dim(u2, 2, "two_body.decay")
    if parent_p4.shape[-1] != 4:
        raise ValueError(f"two_body.decay: parent_p4 must have shape [..., 4], got {tuple(parent_p4.shape)}")
    for name, m in (("m1", m1), ("m2", m2)):
        if is_concrete(m) and (not np.all(np.isfinite(np.asarray(m))) or np.any(np.asarray(m) < 0)):
            raise ValueError(f"two_body.decay: {name} = {np.asarray(m).tolist()} GeV outside allowed range [0, M)")
    m1 = jnp.asarray(m1, dtype=u2.dtype)
    m2 = jnp.asarray(m2, dtype=u2.dtype)
    mass = kinematics.mass(parent_p4)
    p1, p2, log_phi2, ok = _decay(u2, parent_p4, mass, m1, m2, mass - m1 - m2)
    valid = ok & (mass > m1 + m2)
    return p1, p2, jnp.where(valid, log_phi2, -jnp.inf), valid


def sequential(u, sqrt_s, masses):
    """n-body phase space in the centre-of-mass frame as a chain of isotropic two-body decays.

    With M_k the invariant mass of p_1..p_k (M_1 = m_1, M_n = √s) the recursion

        dΦ_n(P; p_1..p_n) = dΦ_2(P; Q_{n−1}, p_n) (dM²_{n−1}/2π) dΦ_{n−1}(Q_{n−1}; p_1..p_{n−1})

    is unrolled: for k = n−1, …, 2 the mass M_k is drawn uniformly in [m_1+…+m_k, M_{k+1} − m_{k+1}], then
    M_n → M_{n−1} + p_n, M_{n−1} → M_{n−2} + p_{n−1}, …, M_2 → p_1 + p_2 decay isotropically. The weight

        w = Π_{k=2}^{n−1} [2 M_k (M_k^max − M_k^min) / (2π)] · Π_{k=2}^{n} Φ_2(M_k; M_{k−1}, m_k)

    is exact and non-constant; E[w] = Φ_n(√s; m_1..m_n), an independent check of RAMBO.

    Args:
        u: f[..., 3n − 4] uniforms in [0, 1] (see :func:`n_random`): columns 0..n−3 give M_{n−1}, …, M_2
            (clipped into [ε, 1−ε]); then (cos θ, φ) pairs for the decays of M_n, M_{n−1}, …, M_2.
        sqrt_s: √s (GeV), scalar or f[...].
        masses: n daughter masses (GeV), tuple or f[n]; n in [2, 10] (static), concrete values >= 0 with
            Σm < √s (ValueError otherwise).

    Returns:
        ``(p4, log_weight)``: f[..., n, 4] momenta in the √s rest frame (particle i has mass m_i) and f[...]
        log w. For traced inputs below threshold log_weight is −inf (weight 0, zero gradient).
    """
    u = as_float_array(u)
    masses = jnp.asarray(masses, dtype=u.dtype)
    if masses.ndim != 1:
        raise ValueError(f"two_body.sequential: masses must be a 1-d sequence of n values, got shape {masses.shape}")
    n = int(masses.shape[0])
    check_n_particles(n)
    check_last_dim(u, 3 * n - 4, f"two_body.sequential with n = {n}")
    check_masses(sqrt_s, masses)
    batch = u.shape[:-1]
    sqrt_s = jnp.broadcast_to(jnp.asarray(sqrt_s, dtype=u.dtype), batch)

    u_mass = clip_unit(u[..., : n - 2])
    u_ang = u[..., n - 2 :].reshape(batch + (n - 1, 2))
    cum = jnp.cumsum(masses)  # cum[k-1] = m_1 + ... + m_k

    # Intermediate masses, top down. big_m[k] = M_k; gap[k] = M_k − M_{k−1} − m_k computed without cancellation.
    big_m = {n: sqrt_s}
    gap = {}
    log_w = jnp.zeros(batch, u.dtype)
    upper_gap = sqrt_s - cum[n - 1]  # M_n − Σ_{i≤n} m_i
    for j, k in enumerate(range(n - 1, 1, -1)):
        width = jnp.maximum(big_m[k + 1] - masses[k] - cum[k - 1], 0.0)  # M_k^max − M_k^min
        x = u_mass[..., j]
        big_m[k] = cum[k - 1] + x * width
        gap[k + 1] = (1.0 - x) * width
        upper_gap = x * width
        log_w = log_w + safe_log(2.0 * big_m[k] * width) - math.log(2.0 * math.pi)
    gap[2] = jnp.maximum(upper_gap, 0.0)  # M_2 − m_1 − m_2 (or √s − m_1 − m_2 for n = 2)
    big_m[1] = jnp.broadcast_to(masses[0], batch)

    # Decays M_k → M_{k−1} + p_k for k = n, …, 2 as one lax.scan (compiles once whatever n is).
    ks = range(n, 1, -1)
    xs = (
        jnp.moveaxis(u_ang, -2, 0),
        jnp.stack([big_m[k] for k in ks]),
        jnp.stack([big_m[k - 1] for k in ks]),
        jnp.stack([jnp.broadcast_to(masses[k - 1], batch) for k in ks]),
        jnp.stack([gap[k] for k in ks]),
    )

    def step(parent, x):
        u2, m_parent, m_rest, m_k, gap_k = x
        q, p_k, log_phi2, _ = _decay(u2, parent, m_parent, m_rest, m_k, gap_k)
        return q, (p_k, log_phi2)

    zeros = jnp.zeros(batch, u.dtype)
    parent = jnp.stack([sqrt_s, zeros, zeros, zeros], axis=-1)
    p_1, (p_rest, log_phi2) = jax.lax.scan(step, parent, xs)
    log_w = log_w + jnp.sum(log_phi2, axis=0)
    p4 = jnp.concatenate([p_1[None], jnp.flip(p_rest, axis=0)], axis=0)  # p_1, p_2, …, p_n
    p4 = jnp.moveaxis(p4, 0, -2)
    valid = sqrt_s > cum[n - 1]
    return p4, jnp.where(valid, log_w, -jnp.inf)
