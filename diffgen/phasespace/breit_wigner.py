"""s-channel Breit–Wigner importance sampling by the tan mapping.

For a resonance of mass m and width Γ (GeV) the invariant mass squared s ∈ [s_min, s_max] (GeV²) is drawn as

    s = m² + mΓ tan ρ,   ρ = ρ_min + u (ρ_max − ρ_min),   ρ_{min,max} = arctan((s_{min,max} − m²)/(mΓ)),

which is the inverse CDF of the normalised line shape

    f(s) = mΓ / ([(s − m²)² + m²Γ²] (ρ_max − ρ_min))   on [s_min, s_max],

and ds/du = (ρ_max − ρ_min) mΓ (1 + tan²ρ) = 1/f(s). Everything is differentiable in m, Γ, s_min and s_max
(the endpoints ρ_min, ρ_max move with them). Multiply an event weight by exp(log_jacobian) to turn a uniform
u into a flat dS measure: ∫ g(s) ds = E_u[g(s(u)) ds/du].

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.phasespace import breit_wigner
    >>> s, log_jac = breit_wigner.sample_mass2(jnp.array([0.5]), 91.1876, 2.4952, 60.0**2, 120.0**2)
    >>> round(float(jnp.sqrt(s[0])), 1)
    91.2
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_log
from diffgen.phasespace.volume import as_float_array, is_concrete

__all__ = ["sample_mass2", "line_shape"]


def _check(m, width, s_min, s_max, what):
    for name, v in (("m", m), ("width", width)):
        if is_concrete(v):
            a = np.asarray(v, dtype=np.float64)
            if np.any(~np.isfinite(a)) or np.any(a <= 0):
                raise ValueError(f"{what}: {name} = {a.tolist()} GeV outside allowed range (0, inf)")
    if is_concrete(s_min) and is_concrete(s_max):
        lo = np.asarray(s_min, dtype=np.float64)
        hi = np.asarray(s_max, dtype=np.float64)
        if np.any(~np.isfinite(lo)) or np.any(~np.isfinite(hi)) or np.any(lo < 0) or np.any(lo >= hi):
            raise ValueError(
                f"{what}: s_min = {lo.tolist()}, s_max = {hi.tolist()} GeV^2 outside allowed range "
                "0 <= s_min < s_max < inf"
            )


def _rho_limits(m, width, s_min, s_max):
    m_gamma = m * width
    m2 = m * m
    rho_min = jnp.arctan(safe_div(s_min - m2, m_gamma))
    rho_max = jnp.arctan(safe_div(s_max - m2, m_gamma))
    return m2, m_gamma, rho_min, rho_max


def sample_mass2(u, m, width, s_min, s_max):
    """Map uniforms to s distributed as :func:`line_shape` by the tan mapping.

    Args:
        u: f[...] uniforms in [0, 1] (u = 0, 1 give s_min, s_max).
        m, width: resonance mass and width (GeV), > 0; scalars or broadcastable to u.
        s_min, s_max: limits on s (GeV²), 0 <= s_min < s_max < inf.

    Returns:
        ``(s, log_jacobian)``: f[...] s in [s_min, s_max] (GeV²) and log(ds/du) = log((ρ_max − ρ_min) mΓ (1 + tan²ρ))
        (log GeV²), so that exp(log_jacobian) · line_shape(s) = 1.
    """
    _check(m, width, s_min, s_max, "breit_wigner.sample_mass2")
    u = as_float_array(u)
    m, width, s_min, s_max = (jnp.asarray(x, dtype=u.dtype) for x in (m, width, s_min, s_max))
    m2, m_gamma, rho_min, rho_max = _rho_limits(m, width, s_min, s_max)
    d_rho = rho_max - rho_min
    t = jnp.tan(rho_min + u * d_rho)
    s = jnp.clip(m2 + m_gamma * t, s_min, s_max)
    log_jac = safe_log(d_rho) + safe_log(m_gamma) + jnp.log1p(t * t)
    return s, log_jac


def line_shape(s, m, width, s_min, s_max):
    """Normalised Breit–Wigner pdf of s on [s_min, s_max] (GeV⁻²), zero outside.

    f(s) = mΓ / ([(s − m²)² + m²Γ²] (ρ_max − ρ_min)) with ρ_{min,max} = arctan((s_{min,max} − m²)/(mΓ)),
    so that ∫_{s_min}^{s_max} f(s) ds = 1.
    """
    _check(m, width, s_min, s_max, "breit_wigner.line_shape")
    s = as_float_array(s)
    m, width, s_min, s_max = (jnp.asarray(x, dtype=s.dtype) for x in (m, width, s_min, s_max))
    m2, m_gamma, rho_min, rho_max = _rho_limits(m, width, s_min, s_max)
    den = ((s - m2) ** 2 + m_gamma**2) * (rho_max - rho_min)
    inside = (s >= s_min) & (s <= s_max)
    return jnp.where(inside, safe_div(m_gamma, den), 0.0)
