"""e+e- → γ*/Z → μ+μ- with √s over a range as an integration variable (the Z line shape).

x = (x_E, x_c, x_φ) ∈ [0, 1]³: √s = E_lo + (E_hi − E_lo) x_E, cos θ = 2x_c − 1, φ = 2π x_φ, and

    w(x) = 2 dσ/dcos θ (s = √s², cos θ)     [pb],

so ∫ w dx = σ̄ = (1/(E_hi − E_lo)) ∫ σ(√s) d√s, the Born cross section averaged over a flat spread of
beam energies (a scan), with the full γ/Z interference of :mod:`diffgen.amplitudes.ee_ffbar`. Over 60–130 GeV
the Z peak (Γ_Z ≈ 2.5 GeV) makes w strongly peaked in x_E: the case for a learned mapping.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.unit_processes import z_line_shape, integrand
    >>> proc = z_line_shape()
    >>> f = integrand(proc, proc.init(None))
    >>> float(f(jnp.array([[(91.1876 - 60) / 70, 0.5, 0.0]]))[0]) > 1000   # at the pole, cos θ = 0
    True
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.amplitudes import ee_ffbar
from diffgen.events import Events, Status
from diffgen.flows.channels import axis_map, cauchy
from diffgen.numerics import safe_log, safe_sqrt
from diffgen.unit_processes.base import UnitProcess, default_settings, direction, ee_beams

__all__ = ["z_line_shape", "SETTING_NAMES"]

SETTING_NAMES = ("23:m0", "23:mWidth", "StandardModel:sin2thetaW", "StandardModel:sin2thetaWbar",
                 "StandardModel:alphaEMmZ")
_MU = 13
_M_MU = 0.1056584


def z_line_shape(e_lo: float = 60.0, e_hi: float = 130.0) -> UnitProcess:
    """The process of the module docstring for √s ∈ [``e_lo``, ``e_hi``] GeV (0.5 ≤ e_lo < e_hi ≤ 1e4)."""
    if not (0.5 <= e_lo < e_hi <= 1e4):
        raise ValueError(f"need 0.5 <= e_lo < e_hi <= 1e4 GeV for the line shape, got e_lo = {e_lo}, e_hi = {e_hi}")

    def init(key):
        return default_settings(SETTING_NAMES)

    def events(params, x):
        n = x.shape[0]
        e_cm = e_lo + (e_hi - e_lo) * x[:, 0]
        s = e_cm * e_cm
        cos_t = 2.0 * x[:, 1] - 1.0
        phi = 2.0 * jnp.pi * x[:, 2]
        log_w = safe_log(2.0 * ee_ffbar.dsigma_dcos(params, _MU, _M_MU, cos_t, s=s))
        p_abs = safe_sqrt(s / 4.0 - _M_MU**2)
        p3 = direction(cos_t, phi) * p_abs[:, None]
        e = 0.5 * e_cm[:, None]
        beams = ee_beams(e_cm, n)
        ev = Events(p4=jnp.stack([jnp.concatenate([e, p3], 1), jnp.concatenate([e, -p3], 1)], axis=1),
                    pid=jnp.broadcast_to(jnp.asarray([_MU, -_MU], jnp.int32), (n, 2)),
                    mask=jnp.ones((n, 2), bool), colour=jnp.zeros((n, 2, 2), jnp.int32), log_weight=log_w,
                    status=jnp.zeros(n, jnp.uint32), p4_in=beams,
                    pid_in=jnp.broadcast_to(jnp.asarray([11, -11], jnp.int32), (n, 2)))
        return ev.with_status(~jnp.isfinite(log_w), Status.NONFINITE)

    def mapping(params):
        # near the peak σ(√s) ∝ 1/((√s − m_Z)² + Γ_Z²/4): a Cauchy in x₁ = (√s − e_lo)/(e_hi − e_lo)
        m_z, width = float(params["23:m0"]), float(params["23:mWidth"])
        centre = min(max((m_z - e_lo) / (e_hi - e_lo), 1e-3), 1.0 - 1e-3)
        return axis_map(3, {0: cauchy(centre, 0.5 * width / (e_hi - e_lo))})

    return UnitProcess("z-line-shape", 3, init, events, mapping)
