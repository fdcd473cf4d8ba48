"""Hard-process stages: events created from nothing.

:func:`ee_to_ffbar` is e+e- → γ*/Z → f f̄ at fixed √s (no ISR), summed over the
requested flavours. Each event draws three uniforms u = (u_f, u_c, u_φ):

* flavour f from the proposal q_f = stop_gradient(σ_f / Σσ) (so the weights are
  flat in f and the gradient stays unbiased: q does not depend on θ);
* cos θ = 2u_c − 1 and φ = 2π u_φ (reparameterised, θ-independent);
* weight w = 2 (dσ_f/dcos θ) / q_f in pb, so that σ = E[w] and every
  parameter's gradient flows through w pathwise.

Slot 0 holds the fermion f (the quark for q q̄, colour tag 1), slot 1 the
antifermion (anticolour tag 1); the incoming e- moves along +z.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffgen import particles
from diffgen.amplitudes import ee_ffbar
from diffgen.amplitudes.couplings import alpha_s_landau_pole, inverse_alpha_s
from diffgen.events import Events, Status
from diffgen.numerics import safe_log, safe_sqrt
from diffgen.params import DEFAULT_SQRT_S, SETTINGS, check_value, out_of_range
from diffgen.stage import Stage, event_keys, uniforms

__all__ = ["ee_to_ffbar", "fermion_mass", "check_alpha_s_pole", "EW_SETTINGS"]

EW_SETTINGS = ("Beams:eCM", "23:m0", "23:mWidth", "StandardModel:sin2thetaW",
               "StandardModel:sin2thetaWbar", "StandardModel:alphaEMmZ")
_ALLOWED = (1, 2, 3, 4, 5, 11, 13, 15)


def fermion_mass(pid: int) -> float:
    """Mass used in the hard process: 0 for u, d, s; Pythia's m0 for c, b and leptons."""
    a = abs(int(pid))
    if a in (1, 2, 3):
        return 0.0
    return float(particles.mass(a))


def check_alpha_s_pole(sqrt_s: float, alpha_s_mz: float) -> None:
    """``ValueError`` unless √s is above the Landau pole of the hard process's one-loop α_s.

    The quark channels carry 3(1 + α_s(s)/π) with α_s from ``SigmaProcess:alphaSvalue``
    (:func:`diffgen.amplitudes.couplings.alpha_s_one_loop`), which is infinite at and below
    :func:`~diffgen.amplitudes.couplings.alpha_s_landau_pole` (0.2517 GeV for the default 0.13).
    """
    pole = alpha_s_landau_pole(alpha_s_mz)
    if not float(sqrt_s) > pole:
        raise ValueError(f"sqrt_s = {float(sqrt_s):g} GeV is at or below the Landau pole of alpha_s "
                         f"({pole:.4g} GeV for SigmaProcess:alphaSvalue = {float(alpha_s_mz):g}), where the "
                         f"QCD factor 3(1 + alpha_s/pi) of e+e- -> q qbar is infinite; allowed: sqrt_s > "
                         f"{pole:.4g} GeV (or a smaller SigmaProcess:alphaSvalue)")


def ee_to_ffbar(flavours=(13,), sqrt_s: float = DEFAULT_SQRT_S) -> Stage:
    """Stage generating e+e- → γ*/Z → f f̄ for ``flavours`` (PDG codes, e.g. (13,) or (1,2,3,4,5)).

    Params: ``Beams:eCM`` (default ``sqrt_s``), ``23:m0``, ``23:mWidth``,
    ``StandardModel:sin2thetaW``, ``StandardModel:sin2thetaWbar``,
    ``StandardModel:alphaEMmZ`` and, for quarks, ``SigmaProcess:alphaSvalue``.
    """
    flavours = tuple(int(f) for f in flavours)
    if not flavours:
        raise ValueError("flavours must name at least one fermion")
    for f in flavours:
        if f not in _ALLOWED:
            raise ValueError(f"flavour {f} not supported for e+e- -> f fbar; allowed PDG codes: {_ALLOWED}")
    if len(set(flavours)) != len(flavours):
        raise ValueError(f"flavours must be distinct, got {flavours}")
    check_value("Beams:eCM", sqrt_s)
    masses = tuple(fermion_mass(f) for f in flavours)
    has_quarks = any(f <= 6 for f in flavours)
    names = EW_SETTINGS + (("SigmaProcess:alphaSvalue",) if has_quarks else ())
    lightest = min(masses)
    if sqrt_s <= 2 * lightest:
        raise ValueError(f"sqrt_s = {sqrt_s} GeV is below the threshold 2 m_f = {2 * lightest:g} GeV "
                         f"for flavours {flavours}; allowed: sqrt_s > {2 * lightest:g} GeV")
    if has_quarks:
        check_alpha_s_pole(sqrt_s, SETTINGS["SigmaProcess:alphaSvalue"].default)

    def init(key):
        p = {name: jnp.asarray(SETTINGS[name].default, jnp.result_type(float)) for name in names}
        p["Beams:eCM"] = jnp.asarray(sqrt_s, jnp.result_type(float))
        return p

    def apply(params, key, events):
        n = events.n_events
        dtype = jnp.result_type(float)
        e_cm = params["Beams:eCM"]
        s = e_cm * e_cm
        sig = jnp.stack([ee_ffbar.sigma_total(params, f, m) for f, m in zip(flavours, masses)])
        q = jax.lax.stop_gradient(sig / jnp.sum(sig))
        u = uniforms(event_keys(key, n), (3,), dtype)
        cum = jnp.cumsum(q)
        idx = jnp.clip(jnp.sum(u[:, :1] >= cum[None, :-1], axis=1), 0, len(flavours) - 1)
        cos_t = 2.0 * u[:, 1] - 1.0
        phi = 2.0 * jnp.pi * u[:, 2]
        pid_f = jnp.asarray(flavours, jnp.int32)[idx]
        m_f = jnp.asarray(masses, dtype)[idx]
        # per-flavour dσ/dc, select the sampled one (static loop over a few flavours)
        dsig = jnp.zeros((n,), dtype)
        for j, (f, m) in enumerate(zip(flavours, masses)):
            dsig = jnp.where(idx == j, ee_ffbar.dsigma_dcos(params, f, m, cos_t), dsig)
        log_w = safe_log(2.0 * dsig) - safe_log(q[idx])
        p_abs = safe_sqrt(s / 4.0 - m_f * m_f)
        sin_t = safe_sqrt(1.0 - cos_t * cos_t)
        e = 0.5 * e_cm * jnp.ones((n,), dtype)
        p3 = jnp.stack([sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t], axis=-1) * p_abs[:, None]
        p_f = jnp.concatenate([e[:, None], p3], axis=-1)
        p_fbar = jnp.concatenate([e[:, None], -p3], axis=-1)
        is_q = jnp.abs(pid_f) <= 6
        colour = jnp.zeros((n, 2, 2), jnp.int32)
        colour = colour.at[:, 0, 0].set(jnp.where(is_q, 1, 0)).at[:, 1, 1].set(jnp.where(is_q, 1, 0))
        half = 0.5 * e_cm
        beams = jnp.stack([jnp.stack([half, 0.0 * half, 0.0 * half, half]),
                           jnp.stack([half, 0.0 * half, 0.0 * half, -half])])
        out = Events(
            p4=jnp.stack([p_f, p_fbar], axis=1),
            pid=jnp.stack([pid_f, -pid_f], axis=1),
            mask=jnp.ones((n, 2), bool),
            colour=colour,
            log_weight=events.log_weight + log_w,
            status=events.status,
            p4_in=jnp.broadcast_to(beams, (n, 2, 4)).astype(dtype),
            pid_in=jnp.broadcast_to(jnp.asarray([11, -11], jnp.int32), (n, 2)),
        )
        bad = jnp.zeros((), bool)
        for name in names:
            bad = bad | out_of_range(name, params[name])
        out = out.with_status(bad, Status.PARAM_OUT_OF_RANGE)
        below = e_cm <= 2 * m_f
        if has_quarks:  # α_s(s) of the QCD factor is infinite at and below its Landau pole
            below = below | (is_q & ~(inverse_alpha_s(s, params["SigmaProcess:alphaSvalue"]) > 0))
        out = out.with_status(below, Status.BELOW_THRESHOLD)
        return out

    return Stage(init=init, apply=apply)
