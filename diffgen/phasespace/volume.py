"""Analytic phase-space volumes, the Källén function and input checks shared by the samplers.

Convention (used by every module of :mod:`diffgen.phasespace`): the Lorentz-invariant phase space

    dΦ_n(P; p_1..p_n) = (2π)^4 δ⁴(P − Σ p_i) Π_i d³p_i / ((2π)³ 2E_i),

so that a cross section is σ = 1/(2s) ∫ |M|² dΦ_n and a decay width Γ = 1/(2M) ∫ |M|² dΦ_n.
Energies and masses are in GeV; Φ_n has units GeV^(2n−4).

* Massless n-body volume: Φ_n(s) = (2π)^(4−3n) (π/2)^(n−1) s^(n−2) / ((n−1)! (n−2)!).
* Two-body volume: Φ_2 = λ^½(s, m1², m2²) / (8π s) = |p*| / (4π √s), with |p*| the daughter momentum in the
  rest frame and λ(a, b, c) = a² + b² + c² − 2ab − 2bc − 2ca the Källén function.

Example:
    >>> from diffgen.phasespace import volume
    >>> round(float(volume.two_body(10.0, 0.0, 0.0)) * 8 * 3.141592653589793, 6)
    1.0
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_log, safe_sqrt

__all__ = ["massless", "log_massless", "two_body", "log_two_body", "kallen", "p_star", "N_MAX"]

#: Largest multiplicity accepted by the samplers (RAMBO's table and unrolled loops are sized for it).
N_MAX = 10


def kallen(a, b, c):
    """Källén function λ(a, b, c) = a² + b² + c² − 2ab − 2bc − 2ca (arguments are squared masses, GeV²)."""
    return a * a + b * b + c * c - 2.0 * (a * b + b * c + c * a)


def p_star(m, m1, m2):
    """Daughter momentum |p*| (GeV) in the rest frame of a mass-``m`` parent decaying to masses ``m1``, ``m2``.

    |p*| = √((m² − (m1+m2)²)(m² − (m1−m2)²)) / (2m), evaluated in the factored form
    (m − m1 − m2)(m + m1 + m2)(m − m1 + m2)(m + m1 − m2) to avoid cancellation near threshold.
    Zero (with a zero gradient) below threshold or for m = 0.
    """
    return p_star_gap(m, m1, m2, m - m1 - m2)


def p_star_gap(m, m1, m2, gap):
    """|p*| given the (separately and accurately computed) gap = m − m1 − m2 ≥ 0.

    λ = gap (gap + 2 m1)(gap + 2 m2)(m + m1 + m2): every factor is a sum of non-negative terms, so |p*| has full
    relative precision even a few ulps above threshold and for massless daughters.
    """
    gap = jnp.maximum(gap, 0.0)
    lam = gap * (gap + 2.0 * m1) * (gap + 2.0 * m2) * (m + m1 + m2)
    return safe_div(safe_sqrt(lam), 2.0 * m)


def log_massless(n: int, sqrt_s):
    """log Φ_n for n massless particles at total energy ``sqrt_s`` (GeV); see the module docstring."""
    check_n_particles(n)
    const = (4 - 3 * n) * math.log(2 * math.pi) + (n - 1) * math.log(math.pi / 2)
    const -= math.lgamma(n) + math.lgamma(n - 1)
    return const + (2 * n - 4) * safe_log(jnp.asarray(sqrt_s))


def massless(n: int, sqrt_s):
    """Φ_n(s) = (2π)^(4−3n) (π/2)^(n−1) s^(n−2) / ((n−1)!(n−2)!), GeV^(2n−4). ``n`` in [2, 10] (static)."""
    return jnp.exp(log_massless(n, sqrt_s))


def log_two_body(sqrt_s, m1, m2):
    """log Φ_2 = log(|p*| / (4π √s)); −inf (zero gradient) at or below threshold."""
    sqrt_s = jnp.asarray(sqrt_s)
    ps = p_star(sqrt_s, m1, m2)
    ok = ps > 0
    return jnp.where(ok, safe_log(ps) - safe_log(4.0 * jnp.pi * sqrt_s), -jnp.inf)


def two_body(sqrt_s, m1, m2):
    """Φ_2(√s; m1, m2) = λ^½(s, m1², m2²)/(8π s) = |p*|/(4π√s); 1/(8π) when massless, 0 below threshold."""
    sqrt_s = jnp.asarray(sqrt_s)
    return safe_div(p_star(sqrt_s, m1, m2), 4.0 * jnp.pi * sqrt_s)


# ---------------------------------------------------------------------------------------------------------
# Input checks (concrete values only; traced values pass through and are handled as data by the samplers).


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_n_particles(n) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ValueError(f"number of particles n must be a Python int in [2, {N_MAX}], got {n!r}")
    if n < 2 or n > N_MAX:
        raise ValueError(f"number of particles n = {n} is outside the allowed range [2, {N_MAX}]")


def check_masses(sqrt_s, masses) -> None:
    """Raise ``ValueError`` for concrete negative masses, non-positive √s or Σm ≥ √s."""
    if is_concrete(masses):
        m = np.asarray(masses, dtype=np.float64)
        if np.any(~np.isfinite(m)) or np.any(m < 0):
            raise ValueError(f"masses = {m.tolist()} must be finite and >= 0 GeV (allowed range [0, sqrt_s))")
        total = float(np.sum(m))
    else:
        total = None
    if is_concrete(sqrt_s):
        rs = np.asarray(sqrt_s, dtype=np.float64)
        if np.any(~np.isfinite(rs)) or np.any(rs <= 0):
            raise ValueError(f"sqrt_s = {rs.tolist()} GeV must be finite and > 0 (allowed range (sum(masses), inf))")
        if total is not None and np.any(rs <= total):
            raise ValueError(
                f"sum of masses {total:g} GeV >= sqrt_s = {rs.min():g} GeV: below threshold "
                f"(allowed range sqrt_s > {total:g} GeV)"
            )


def check_last_dim(u, want: int, what: str) -> None:
    if u.ndim < 1 or u.shape[-1] != want:
        raise ValueError(f"{what}: uniforms u must have shape [..., {want}], got {tuple(u.shape)}")


def clip_unit(u):
    """Clip uniforms into [ε, 1 − ε] (ε = machine epsilon of their dtype) so that logs stay finite."""
    eps = jnp.finfo(u.dtype).eps
    return jnp.clip(u, eps, 1.0 - eps)


def as_float_array(x):
    """``x`` as a JAX array of the default float dtype (or its own float dtype)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))
