"""e+e- → q q̄ g at O(α_s) (tree level, massless quarks) with a y-cut on all three pair invariants.

With energy fractions x_i = 2E_i/√s (x₁ + x₂ + x₃ = 2) and y_ij = s_ij/s = 1 − x_k, the orientation-averaged
tree-level matrix element gives (Ellis, Ross, Terrano)

    dσ/(dx₁ dx₂) = σ₀ (α_s/2π) C_F (x₁² + x₂²) / ((1 − x₁)(1 − x₂)),      C_F = 4/3,

with σ₀ = Σ_q σ(e+e- → q q̄) the Born cross section (N_c = 3, no QCD K-factor) and α_s = α_s(s) at one loop
from ``SigmaProcess:alphaSvalue``. The cut y_ij > y_cut for all pairs is the triangle
y_ij = y_cut + (1 − 3y_cut) z_ij, z on the simplex, which x = (x₁..x₆) ∈ [0, 1]⁶ covers flat:
z₁ = 1 − √x₁, z₂ = √x₁ x₂, z₃ = √x₁ (1 − x₂) (Jacobian 1/2), so

    w(x) = dσ/(dx₁ dx₂) (1 − 3y_cut)² / 2.

x₃..x₅ orient the event isotropically (cos β = 2x₃ − 1, α = 2πx₄, γ = 2πx₅: the ME is averaged over the beam
direction, so the orientation is flat), and x₆ picks the flavour with probability σ₀_q/σ₀. Slot 0 is the quark
(colour 1), slot 1 the antiquark (anticolour 2), slot 2 the gluon (colour 2, anticolour 1).
The three-jet rate σ/σ₀ has the closed form of :func:`three_jet_rate`.

Example:
    >>> from diffgen.unit_processes.ee_qqg import three_jet_rate
    >>> round(float(three_jet_rate(0.05, 0.12)), 4)
    0.2202
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from diffgen.amplitudes import ee_ffbar
from diffgen.amplitudes.couplings import alpha_s_one_loop
from diffgen.events import Events, Status
from diffgen.flows.channels import ChannelMap, pole_forward, pole_inverse
from diffgen.numerics import safe_log, safe_sqrt
from diffgen.params import DEFAULT_SQRT_S
from diffgen.unit_processes.base import UnitProcess, default_settings, ee_beams

__all__ = ["ee_qqg", "three_jet_rate", "born_sigma", "SETTING_NAMES"]

SETTING_NAMES = ("Beams:eCM", "23:m0", "23:mWidth", "StandardModel:sin2thetaW", "StandardModel:sin2thetaWbar",
                 "StandardModel:alphaEMmZ", "SigmaProcess:alphaSvalue")
C_F = 4.0 / 3.0


def three_jet_rate(y_cut: float, alpha_s: float) -> float:
    """σ(q q̄ g, all y_ij > y_cut)/σ₀ = (C_F α_s/2π)[(3 − 6y) ln(y/(1 − 2y)) + 2 ln²(y/(1 − y)) + 5/2 − 6y
    − 9y²/2 + 4 Li₂(y/(1 − y)) − π²/3] (Kramer; the integral of the module docstring's dσ over the cut triangle)."""
    if not (0 < y_cut < 1.0 / 3.0):
        raise ValueError(f"y_cut must be in (0, 1/3), got {y_cut}")
    from scipy.special import spence

    y = y_cut
    li2 = spence(1.0 - y / (1.0 - y))  # scipy's spence(z) = Li2(1 − z)
    bracket = ((3 - 6 * y) * math.log(y / (1 - 2 * y)) + 2 * math.log(y / (1 - y)) ** 2 + 2.5 - 6 * y
               - 4.5 * y * y + 4 * li2 - math.pi**2 / 3)
    return float(C_F * alpha_s / (2 * math.pi) * bracket)


def born_sigma(params, flavours, s):
    """σ₀ per flavour (pb, massless, N_c = 3 without the 1 + α_s/π factor): f[F]."""
    a_s = alpha_s_one_loop(s, params["SigmaProcess:alphaSvalue"])
    return jnp.stack([ee_ffbar.sigma_total(params, f, 0.0, s=s) for f in flavours]) / (1.0 + a_s / jnp.pi)


def _rotation(cos_b, alpha, gamma):
    sin_b = safe_sqrt(1.0 - cos_b * cos_b)
    ca, sa, cg, sg = jnp.cos(alpha), jnp.sin(alpha), jnp.cos(gamma), jnp.sin(gamma)
    one, zero = jnp.ones_like(ca), jnp.zeros_like(ca)
    rz_a = jnp.stack([jnp.stack([ca, -sa, zero], -1), jnp.stack([sa, ca, zero], -1),
                      jnp.stack([zero, zero, one], -1)], -2)
    ry_b = jnp.stack([jnp.stack([cos_b, zero, sin_b], -1), jnp.stack([zero, one, zero], -1),
                      jnp.stack([-sin_b, zero, cos_b], -1)], -2)
    rz_g = jnp.stack([jnp.stack([cg, -sg, zero], -1), jnp.stack([sg, cg, zero], -1),
                      jnp.stack([zero, zero, one], -1)], -2)
    return rz_a @ ry_b @ rz_g


def _pole_map(y_cut, span):
    """The fixed map onto the poles 1/(y23 y13) (a triangular map of x₁, x₂; x₃..x₆ untouched): x₁ from
    d = 1 − x₁ ∝ 1/(2y_cut/span + d), since y23 ≈ y_cut + span d/2 near x₁ = 1; then x₂ ∝ 1/(y_cut/(span r) + x₂),
    which is exactly 1/y13 at r = √x₁ (flat as r → 0, where y13 no longer depends on x₂)."""

    def offset(x0):
        return y_cut / (span * jnp.maximum(safe_sqrt(x0), 1e-12))

    def forward(z):
        d, ld0 = pole_forward(z[:, 0], 2.0 * y_cut / span)
        x0 = 1.0 - d
        x1, ld1 = pole_forward(z[:, 1], offset(x0))
        return jnp.concatenate([jnp.stack([x0, x1], 1), z[:, 2:]], 1), ld0 + ld1

    def inverse(x):
        z0, ld0 = pole_inverse(jnp.clip(1.0 - x[:, 0], 0.0, 1.0), 2.0 * y_cut / span)
        z1, ld1 = pole_inverse(x[:, 1], offset(x[:, 0]))
        return jnp.concatenate([jnp.stack([z0, z1], 1), x[:, 2:]], 1), ld0 + ld1

    return ChannelMap(6, forward, inverse)


def ee_qqg(y_cut: float = 0.01, sqrt_s: float = DEFAULT_SQRT_S, flavours=(1, 2, 3, 4, 5)) -> UnitProcess:
    """The process of the module docstring (``y_cut`` in (0, 1/3); quark ``flavours`` 1..5, all massless)."""
    if not (0 < y_cut < 1.0 / 3.0):
        raise ValueError(f"y_cut must be in (0, 1/3), got {y_cut}")
    if not (sqrt_s > 0 and math.isfinite(sqrt_s)):
        raise ValueError(f"sqrt_s must be a positive number of GeV, got {sqrt_s}")
    flavours = tuple(int(f) for f in flavours)
    if not flavours or any(f not in (1, 2, 3, 4, 5) for f in flavours) or len(set(flavours)) != len(flavours):
        raise ValueError(f"flavours must be distinct quark PDG codes in 1..5, got {flavours}")
    span = 1.0 - 3.0 * y_cut

    def init(key):
        return default_settings(SETTING_NAMES, sqrt_s)

    def events(params, x):
        n = x.shape[0]
        e_cm = params["Beams:eCM"]
        s = e_cm * e_cm
        r = safe_sqrt(x[:, 0])
        y23 = y_cut + span * (1.0 - r)
        y13 = y_cut + span * r * x[:, 1]
        y12 = y_cut + span * r * (1.0 - x[:, 1])
        x1, x2, x3 = 1.0 - y23, 1.0 - y13, 1.0 - y12
        sig = born_sigma(params, flavours, s)
        a_s = alpha_s_one_loop(s, params["SigmaProcess:alphaSvalue"])
        me = (x1 * x1 + x2 * x2) / (y23 * y13)
        log_w = (safe_log(jnp.sum(sig) * a_s / (2 * jnp.pi) * C_F * me) + math.log(span * span / 2.0))
        # flavour from x6 with probability σ0_q/σ0 (flat in the weight)
        cum = jnp.cumsum(jax.lax.stop_gradient(sig / jnp.sum(sig)))
        idx = jnp.clip(jnp.sum(x[:, 5:6] >= cum[None, :-1], axis=1), 0, len(flavours) - 1)
        pid = jnp.asarray(flavours, jnp.int32)[idx]
        # momenta in the event plane: quark along z, antiquark at cos θ12 = 1 − 2 y12/(x1 x2), gluon balances
        e1, e2 = 0.5 * e_cm * x1, 0.5 * e_cm * x2
        c12 = jnp.clip(1.0 - 2.0 * y12 / (x1 * x2), -1.0, 1.0)
        s12 = safe_sqrt(1.0 - c12 * c12)
        zero = jnp.zeros_like(e1)
        p1 = jnp.stack([zero, zero, e1], -1)
        p2 = jnp.stack([e2 * s12, zero, e2 * c12], -1)
        p3 = -(p1 + p2)
        rot = _rotation(2.0 * x[:, 2] - 1.0, 2 * jnp.pi * x[:, 3], 2 * jnp.pi * x[:, 4])
        p3s = jnp.einsum("nij,npj->npi", rot, jnp.stack([p1, p2, p3], 1), precision="highest")
        energies = jnp.stack([e1, e2, 0.5 * e_cm * x3], 1)
        p4 = jnp.concatenate([energies[..., None], p3s], -1)
        colour = jnp.asarray([[1, 0], [0, 2], [2, 1]], jnp.int32)
        beams = ee_beams(e_cm, n)
        ev = Events(p4=p4, pid=jnp.stack([pid, -pid, jnp.full_like(pid, 21)], 1), mask=jnp.ones((n, 3), bool),
                    colour=jnp.broadcast_to(colour, (n, 3, 2)), log_weight=log_w, status=jnp.zeros(n, jnp.uint32),
                    p4_in=beams, pid_in=jnp.broadcast_to(jnp.asarray([11, -11], jnp.int32), (n, 2)))
        return ev.with_status(~jnp.isfinite(log_w), Status.NONFINITE)

    def mapping(params):
        return _pole_map(y_cut, span)

    return UnitProcess("ee-qqg", 6, init, events, mapping)
