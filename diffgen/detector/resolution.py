"""Resolution functions and reparameterised (pathwise) smearing of tracks and calorimeter clusters.

All functions act elementwise on arrays of any shape ``[...]`` (per particle slot), are jittable and
gradient-safe (double ``where`` around sqrt, log and division: finite values and gradients at pT = 0,
E = 0, zero resolution and in padded slots). The noise ``z`` is standard normal and supplied by the
caller, so every reconstructed quantity is a deterministic, differentiable function of the truth,
the settings θ and the noise: gradients are pathwise.

Tracks (1/pT in GeV⁻¹, angles in rad):

    σ(1/pT) = a ⊕ b/pT = √(a² + (b/pT)²),    1/pT_reco = 1/pT + σ(1/pT)·z₁,
    θ_reco = θ + σ_θ·z₂,    φ_reco = φ + σ_φ·z₃.

Calorimeters (E in GeV):

    σ(E)/E = s/√E ⊕ c = √(s²/E + c²),
    E_reco = E · exp(σ_ln z − σ_ln²/2),   σ_ln² = log(1 + (σ(E)/E)²),

a log-normal response whose mean is exactly E and whose relative r.m.s. is exactly σ(E)/E (for
σ(E)/E ≪ 1 it is the Gaussian E(1 + σ(E)/E·z)); unlike a Gaussian it never gives E_reco ≤ 0, which
matters for the HCAL's 0.85/√E at E ≈ 0.5 GeV (σ/E ≈ 1.2).

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.detector.resolution import calo_sigma_rel, track_sigma_inv_pt
    >>> round(float(track_sigma_inv_pt(jnp.asarray(10.0), 6e-4, 0.005)), 6)  # √(6e-4² + 5e-4²) GeV⁻¹
    0.000781
    >>> round(float(calo_sigma_rel(jnp.asarray(4.0), 0.18, 0.0)), 3)  # 0.18/√4
    0.09
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_arctan2, safe_div, safe_sqrt

__all__ = ["track_sigma_inv_pt", "calo_sigma_rel", "smear_track", "smear_energy", "INV_PT_FLOOR"]

#: GeV⁻¹: a reconstructed 1/pT is floored here (pT ≤ 10 TeV). At LEP energies the floor is ≳ 30 σ
#: away from any accepted track, so it never acts on a physical track; it keeps the values finite.
INV_PT_FLOOR = 1.0e-4


def track_sigma_inv_pt(pt, a, b):
    """σ(1/pT) = √(a² + (b/pT)²) in GeV⁻¹ for pT in GeV (a in GeV⁻¹, b dimensionless).

    Gradient-safe: pT = 0 gives 0 (and a zero gradient), not inf.
    """
    return safe_sqrt(a * a + jnp.square(safe_div(b, pt)))


def calo_sigma_rel(energy, stochastic, constant):
    """σ(E)/E = √(s²/E + c²) (dimensionless) for E in GeV, s in GeV^1/2; 0 at E ≤ 0 (gradient-safe)."""
    return safe_sqrt(jnp.square(stochastic) * safe_div(1.0, jnp.maximum(energy, 0.0)) + jnp.square(constant))


def smear_track(p4, ok, z, a, b, sigma_theta, sigma_phi):
    """Reconstructed track four-momenta: smeared 1/pT, θ and φ; the mass is the truth mass.

    Args:
        p4: f[..., 4] truth four-momenta (E, px, py, pz), GeV.
        ok: bool[...] slots to smear; the others return zeros (their inputs may be anything, e.g. padding).
        z: f[..., 3] standard normals (for 1/pT, θ, φ).
        a, b, sigma_theta, sigma_phi: the resolution settings (scalars, traced or not).

    Returns:
        f[..., 4]: (E', p') with p' = pT'(cos φ', sin φ', cot θ') and E' = √(|p'|² + m²), m² = max(p·p, 0)
        of the truth; θ' is clipped to [10⁻⁶, π − 10⁻⁶] so that cot θ' stays finite.
    """
    px, py, pz = p4[..., 1], p4[..., 2], p4[..., 3]
    pt_true = safe_sqrt(px * px + py * py)
    ok = ok & (pt_true > 0)
    pt = jnp.where(ok, pt_true, 1.0)
    theta = safe_arctan2(pt, jnp.where(ok, pz, 0.0))
    phi = safe_arctan2(jnp.where(ok, py, 0.0), jnp.where(ok, px, 1.0))
    inv = 1.0 / pt + track_sigma_inv_pt(pt, a, b) * z[..., 0]
    pt_r = 1.0 / jnp.maximum(inv, INV_PT_FLOOR)
    eps = 1.0e-6
    theta_r = jnp.clip(theta + sigma_theta * z[..., 1], eps, jnp.pi - eps)
    phi_r = phi + sigma_phi * z[..., 2]
    pz_r = pt_r * jnp.cos(theta_r) / jnp.sin(theta_r)
    m2 = jnp.maximum(p4[..., 0] ** 2 - px * px - py * py - pz * pz, 0.0)
    e_r = safe_sqrt(pt_r * pt_r + pz_r * pz_r + jnp.where(ok, m2, 0.0))
    out = jnp.stack([e_r, pt_r * jnp.cos(phi_r), pt_r * jnp.sin(phi_r), pz_r], axis=-1)
    return jnp.where(ok[..., None], out, 0.0)


def smear_energy(p4, ok, z, stochastic, constant):
    """Reconstructed cluster four-momenta: p4 · E_reco/E with the log-normal E_reco of the module docstring.

    The direction and the ratio m/E are kept (photons stay massless). ``ok``: bool[...] slots to smear
    (others return zeros); ``z``: f[...] standard normals. Returns f[..., 4] in GeV.
    """
    energy = p4[..., 0]
    ok = ok & (energy > 0)
    e = jnp.where(ok, energy, 1.0)
    rel = calo_sigma_rel(e, stochastic, constant)
    s2 = jnp.log1p(rel * rel)
    scale = jnp.exp(safe_sqrt(s2) * z - 0.5 * s2)
    return jnp.where(ok[..., None], p4 * scale[..., None], 0.0)
