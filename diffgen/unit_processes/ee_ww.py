"""e+e- → W+W- → μ- ν̄_μ u d̄ at tree level (CC03: γ, Z and ν_e exchange) with every spin correlation.

Four final-state fermions with the full off-shell W propagators; the amplitude is
:func:`diffgen.amplitudes.ee_ww.me2`. The unit cube x ∈ [0, 1]⁸ covers the phase space flat:

* x₁, x₂: the W- and W+ virtualities s₁, s₂ flat in [m_min², (√s − m_min)²] (m_min = 10 GeV, Pythia's
  ``24:mMin``); points with √s₁ + √s₂ ≥ √s have weight 0;
* x₃, x₄: the W- direction (cos θ = 2x₃ − 1 against the e- beam, φ = 2πx₄);
* x₅..x₈: each W's decay direction in its rest frame (cos θ*, φ*), fermion first.

    dσ = (1/2s) (1/4) Σ|M|² N_c dΦ₄,   dΦ₄ = dΦ₂(s; s₁, s₂) (ds₁/2π) dΦ₂(s₁) (ds₂/2π) dΦ₂(s₂),
    dΦ₂(s; s₁, s₂) = λ^½(s, s₁, s₂)/(8π s) dΩ/(4π),   dΦ₂(s_i) = 1/(8π) dΩ/(4π)   (massless decays),

with N_c = 3 for the u d̄ pair and |V_ud| = 1. Couplings as Pythia 8's ``Sigma2ffbar2WW`` (α_EM fixed at
``StandardModel:alphaEMmZ``, ``24:m0``, ``24:mWidth`` fixed width). :meth:`UnitProcess.mapping` maps x₁, x₂ by
Breit–Wigners (Cauchy in s_i, centre m_W², width m_W Γ_W) and x₃ by the t-channel pole 1/(−t) at nominal W
masses, so a flow in front only learns what is left (the decay correlations, the rest of the angular shape).
Slots: μ- (13), ν̄_μ (−14), u (2, colour 1), d̄ (−1, anticolour 1).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from diffgen.amplitudes.couplings import GEV2_TO_PB
from diffgen.amplitudes.ee_ww import me2, sigma_onshell_dt
from diffgen.events import Events, Status
from diffgen.flows.channels import axis_map, cauchy, pole
from diffgen.kinematics import boost
from diffgen.numerics import safe_log, safe_sqrt
from diffgen.params import SETTINGS
from diffgen.unit_processes.base import UnitProcess, default_settings, direction, ee_beams

__all__ = ["ee_ww", "reference_sigma", "SETTING_NAMES", "M_MIN"]

SETTING_NAMES = ("Beams:eCM", "23:m0", "23:mWidth", "24:m0", "24:mWidth", "StandardModel:sin2thetaW",
                 "StandardModel:sin2thetaWbar", "StandardModel:alphaEMmZ")
#: GeV: the lowest W virtuality (Pythia's ``24:mMin``)
M_MIN = 10.0
_PIDS = (13, -14, 2, -1)


def _two_body(parent, m_parent, cos_t, phi):
    """Massless decay of ``parent`` (p[N, 4], mass m_parent[N]) along (cos_t, phi) in its rest frame."""
    half = 0.5 * m_parent
    d = direction(cos_t, phi) * half[:, None]
    a = jnp.concatenate([half[:, None], d], 1)
    b = jnp.concatenate([half[:, None], -d], 1)
    beta = parent[:, 1:] / parent[:, :1]
    return boost(a, beta), boost(b, beta)


def reference_sigma(sqrt_s: float, params=None, n: int = 400, n_cos: int = 48) -> float:
    """σ(e+e- → μ- ν̄ u d̄) in pb from the closed form, independently of :func:`diffgen.amplitudes.ee_ww.me2`:
    ∫ds₁ ds₂ ρ_μν(s₁) ρ_ud(s₂) ∫dt dσ/dt(s, t, s₁, s₂) over the same window (s_i ≥ m_min², √s₁ + √s₂ < √s).
    Integrating each W's massless decay out of |M|² leaves the production cross section at virtualities s_i
    (:func:`~diffgen.amplitudes.ee_ww.sigma_onshell_dt`) times ρ(s_i) = √s_i Γ_f(√s_i)/(π |s_i − m_W² + i m_W Γ_W|²),
    Γ_f(m) = N_c α m/(12 sin²θ_W). Gauss–Legendre in tan-mapped s_i (n² points) and in cos θ (n_cos); n = 200 and
    400 agree to 2e-6. ``params``: the settings (default: the process defaults)."""
    p = {name: float(SETTINGS[name].default) for name in SETTING_NAMES}
    p.update({k: float(v) for k, v in (params or {}).items() if k in SETTING_NAMES})
    alpha, s2w, s2wb = p["StandardModel:alphaEMmZ"], p["StandardModel:sin2thetaW"], p["StandardModel:sin2thetaWbar"]
    m_w, w_w = p["24:m0"], p["24:mWidth"]
    s = sqrt_s**2
    s_lo, s_hi = M_MIN**2, (sqrt_s - M_MIN) ** 2

    def rho(si, n_c):
        width = n_c * alpha * np.sqrt(si) / (12.0 * s2w)
        return np.sqrt(si) * width / math.pi / ((si - m_w**2) ** 2 + (m_w * w_w) ** 2)

    xg, wg = np.polynomial.legendre.leggauss(n)
    r0, r1 = math.atan((s_lo - m_w**2) / (m_w * w_w)), math.atan((s_hi - m_w**2) / (m_w * w_w))
    r = r0 + (r1 - r0) * (xg + 1.0) / 2.0
    si = m_w**2 + m_w * w_w * np.tan(r)
    wsi = wg * (r1 - r0) / 2.0 * m_w * w_w * (1.0 + np.tan(r) ** 2)
    s1, s2 = np.meshgrid(si, si, indexing="ij")
    w12 = np.outer(wsi * rho(si, 1), wsi * rho(si, 3))
    ok = np.sqrt(s1) + np.sqrt(s2) < sqrt_s
    s1, s2, w12 = s1[ok], s2[ok], w12[ok]
    p_abs = np.sqrt((s - s1 - s2) ** 2 - 4.0 * s1 * s2) / (2.0 * sqrt_s)
    e3 = (s + s1 - s2) / (2.0 * sqrt_s)
    total = 0.0
    xc, wc = np.polynomial.legendre.leggauss(n_cos)
    for c, w_c in zip(xc, wc):
        t = s1 - sqrt_s * (e3 - p_abs * c)
        dsdt = sigma_onshell_dt(s, t, s1, s2, 4.0 * math.pi * alpha, s2w, s2wb, p["23:m0"], p["23:mWidth"])
        total += np.sum(w12 * dsdt * sqrt_s * p_abs * w_c)
    return float(total * GEV2_TO_PB)


def ee_ww(sqrt_s: float = 200.0, matrix_element: bool = True) -> UnitProcess:
    """The process of the module docstring at √s = ``sqrt_s`` GeV (2 m_min < √s ≤ 1e4). ``matrix_element=False``
    builds the kinematics only (|M|² set to 1 in the weight), for a surrogate matrix element
    (:func:`diffgen.flows.surrogate.surrogate_process`)."""
    if not (2.0 * M_MIN < sqrt_s <= 1.0e4):
        raise ValueError(f"ee_ww needs {2 * M_MIN:g} < sqrt_s <= 1e4 GeV, got {sqrt_s}")
    s_lo, s_hi = M_MIN**2, (sqrt_s - M_MIN) ** 2

    def init(key):
        return default_settings(SETTING_NAMES, sqrt_s)

    def events(params, x):
        n = x.shape[0]
        e_cm = params["Beams:eCM"]
        s = e_cm * e_cm
        s1 = s_lo + (s_hi - s_lo) * x[:, 0]
        s2 = s_lo + (s_hi - s_lo) * x[:, 1]
        m1, m2 = safe_sqrt(s1), safe_sqrt(s2)
        lam = (s - s1 - s2) ** 2 - 4.0 * s1 * s2
        open_ = (m1 + m2 < e_cm) & (lam > 0.0)
        p_abs = safe_sqrt(jnp.where(open_, lam, 1.0)) / (2.0 * e_cm)
        e1 = (s + s1 - s2) / (2.0 * e_cm)
        e2 = (s - s1 + s2) / (2.0 * e_cm)
        d = direction(2.0 * x[:, 2] - 1.0, 2.0 * jnp.pi * x[:, 3]) * p_abs[:, None]
        w_minus = jnp.concatenate([e1[:, None], d], 1)
        w_plus = jnp.concatenate([e2[:, None], -d], 1)
        f1, f2 = _two_body(w_minus, m1, 2.0 * x[:, 4] - 1.0, 2.0 * jnp.pi * x[:, 5])
        f3, f4 = _two_body(w_plus, m2, 2.0 * x[:, 6] - 1.0, 2.0 * jnp.pi * x[:, 7])
        beams = ee_beams(e_cm, n)
        final = jnp.stack([f1, f2, f3, f4], 1)
        amp2 = 1.0
        if matrix_element:
            amp2 = me2(jnp.concatenate([beams, final], 1), 4.0 * math.pi * params["StandardModel:alphaEMmZ"],
                       params["StandardModel:sin2thetaW"], params["StandardModel:sin2thetaWbar"], params["23:m0"],
                       params["23:mWidth"], params["24:m0"], params["24:mWidth"])
        # flux 1/(2s), spin average 1/4, colour 3; dΦ₂(s) = λ^½/(8πs) (angles flat: dΩ/4π = dx dx);
        # each W: (s_hi − s_lo) dx / 2π × 1/(8π)
        jac = (jnp.sqrt(jnp.where(open_, lam, 1.0)) / (8.0 * jnp.pi * s)
               * ((s_hi - s_lo) / (2.0 * jnp.pi) / (8.0 * jnp.pi)) ** 2)
        w = GEV2_TO_PB * amp2 * 3.0 / (4.0 * 2.0 * s) * jac
        log_w = jnp.where(open_, safe_log(w), -jnp.inf)
        ev = Events(p4=final, pid=jnp.broadcast_to(jnp.asarray(_PIDS, jnp.int32), (n, 4)),
                    mask=jnp.ones((n, 4), bool),
                    colour=jnp.broadcast_to(jnp.asarray([[0, 0], [0, 0], [1, 0], [0, 1]], jnp.int32), (n, 4, 2)),
                    log_weight=log_w, status=jnp.zeros(n, jnp.uint32), p4_in=beams,
                    pid_in=jnp.broadcast_to(jnp.asarray([11, -11], jnp.int32), (n, 2)))
        ev = ev.with_status(~open_, Status.BELOW_THRESHOLD)
        return ev.with_status(open_ & ~jnp.isfinite(log_w), Status.NONFINITE)

    def mapping(params):
        m_w, w_w = float(params["24:m0"]), float(params["24:mWidth"])
        centre = (m_w * m_w - s_lo) / (s_hi - s_lo)
        if not (0.0 < centre < 1.0):
            raise ValueError(f"24:m0 = {m_w} GeV lies outside the W mass window of √s = {sqrt_s} GeV")
        bw = cauchy(centre, m_w * w_w / (s_hi - s_lo))
        # t-channel ν_e: 1/(−t) = 1/(a + b(1 − cos θ)) at s₁ = s₂ = m_W², a = √s(E − p) − m_W², b = √s p,
        # i.e. a pole at x₃ = 1 with offset a/(2b)
        e_w = 0.5 * sqrt_s
        p_w = math.sqrt(max(e_w * e_w - m_w * m_w, 1e-6 * e_w * e_w))
        a, b = sqrt_s * (e_w - p_w) - m_w * m_w, sqrt_s * p_w
        return axis_map(8, {0: bw, 1: bw, 2: pole(max(a / (2.0 * b), 1e-3), at=1)})

    return UnitProcess("ee-ww" if matrix_element else "ee-ww (kinematics)", 8, init, events, mapping)
