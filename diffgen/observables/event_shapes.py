"""Event shapes of e+e- final states: thrust family, sphericity family, C and D, broadenings, jet masses.

All functions take final-state :class:`~diffgen.events.Events` (p4 f[N, P, 4] in GeV, mask bool[N, P])
and return dimensionless f[N] (unless stated). Only occupied slots contribute: padded slots are
masked (even if they held non-zero momenta). Momenta are the 3-momenta p⃗ = p4[..., 1:]; energies are
only used by the jet masses. Definitions follow the Pythia 8 manual ("Event Analysis": Thrust,
Sphericity) and the LEP QCD reviews (e.g. hep-ph/0312016).

Defaults for empty events (no occupied slot, or Σ|p⃗| = 0) are those of a perfect two-jet event:
T = 1, T_major = T_minor = O = 0, S = A = C = D = 0, B_T = B_W = 0, ρ_H = 0, thrust axis = 0⃗.

Gradients (all finite for padded slots, single particles, collinear and back-to-back configurations,
empty events):

* **Thrust** T(p) = max_n f(n, p) with f = Σ|p⃗·n|/Σ|p⃗|. By the envelope theorem dT/dp = ∂f/∂p at the
  maximising axis n*, so T is evaluated with ``stop_gradient(n*)``; jax.grad then gives
  dT/dp⃗_k = (s_k n* − T p̂_k)/Σ|p⃗|, s_k = sign(p⃗_k·n*).
* The **thrust axis** is, locally (fixed signs s_k), exactly n = Σ s_k p⃗_k / |Σ s_k p⃗_k|; one such
  differentiable step after the (stop-gradient) search gives the correct axis derivative. The same
  holds for the major axis in the plane ⊥ n, so T_major, T_minor, broadenings and hemisphere masses
  are differentiated including the motion of the axes. Hemisphere assignments are piecewise constant.
* **Eigenvalues** of the sphericity tensor: λ1 = max_{|v|=1} vᵀSv and λ3 = min vᵀSv, so by the
  envelope theorem λ1 = v1ᵀ S v1 and λ3 = v3ᵀ S v3 with the eigenvectors from ``eigh`` of
  ``stop_gradient(S)``, and λ2 = tr S − λ1 − λ3. No gradient flows through ``eigh`` (whose
  derivative is NaN for degenerate eigenvalues, e.g. two back-to-back particles); at degenerate λ1 or
  λ3 the result is a one-sided derivative. C and D are symmetric in the eigenvalues and are
  polynomials in the tensor invariants: no eigen-decomposition at all.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.events import Events
    >>> from diffgen.observables import thrust, sphericity, c_parameter
    >>> ev = Events.empty(1, 3)
    >>> c, s = -0.5, 3**0.5 / 2  # Mercedes star: three unit momenta at 120° in the x-y plane
    >>> ev = ev.replace(p4=jnp.array([[[1., 1., 0., 0.], [1., c, s, 0.], [1., c, -s, 0.]]]),
    ...                 mask=jnp.ones((1, 3), bool))
    >>> [round(float(f(ev)[0]), 4) for f in (thrust, sphericity, c_parameter)]
    [0.6667, 0.75, 0.75]
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.events import Events
from diffgen.numerics import safe_div, safe_norm

__all__ = [
    "ThrustResult", "thrust_analysis", "thrust", "thrust_axis", "thrust_major", "thrust_minor", "oblateness",
    "thrust_rapidity", "sphericity_tensor", "sphericity_eigenvalues", "sphericity", "aplanarity",
    "linearized_tensor", "c_parameter", "d_parameter", "broadenings", "b_total", "b_wide",
    "hemisphere_masses", "heavy_jet_mass", "light_jet_mass",
]

_sg = jax.lax.stop_gradient


def einsum_highest(spec, *operands):
    """einsum at full float32 precision (GPUs default to TF32 for float32 contractions)."""
    return jnp.einsum(spec, *operands, precision=jax.lax.Precision.HIGHEST)


# --------------------------------------------------------------------------------------------- helpers
def _momenta(events: Events):
    """Masked 3-momenta f[N, P, 3], energies f[N, P] and |p⃗| f[N, P]."""
    m = events.mask
    p3 = jnp.where(m[..., None], events.p4[..., 1:], 0.0)
    e = jnp.where(m, events.p4[..., 0], 0.0)
    return p3, e, safe_norm(p3)


def _unit(v):
    """v/|v| on the last axis; the zero vector (with zero gradient) for v = 0."""
    return safe_div(v, safe_norm(v, keepdims=True))


def _dot(a, b):
    return jnp.sum(a * b, axis=-1)


def _tiny(x):
    """Relative threshold below which a norm is rounding noise (100 ulp)."""
    return 100.0 * jnp.finfo(x.dtype).eps


def _combinations(k: int) -> np.ndarray:
    """All c ∈ {−1, 0, 1}^k, c ≠ 0, whose first non-zero entry is +1: (3^k − 1)/2 rows."""
    rows = [c for c in itertools.product((-1, 0, 1), repeat=k) if any(c) and c[next(i for i in range(k) if c[i])] > 0]
    return np.array(rows, dtype=np.float64).reshape(-1, k)


def _hardest_combinations(v, k: int):
    """Seeds Σ c_i v_i over the ``k`` largest vectors of v f[N, P, 3], all c ∈ {−1, 0, 1}^k: f[N, S, 3]."""
    k = min(k, v.shape[1])
    if k == 0:
        return jnp.zeros((v.shape[0], 0, 3), v.dtype)
    _, idx = jax.lax.top_k(jnp.sum(v * v, -1), k)
    hard = jnp.take_along_axis(v, idx[..., None], axis=1)  # [N, k, 3]
    return einsum_highest("sk,nki->nsi", jnp.asarray(_combinations(k), v.dtype), hard)


def _max_projection_axis(v, seeds, n_iter: int):
    """Axis n maximising Σ_k |v_k·n| by fixed-point iteration from each seed (no gradient).

    Iteration n ← Σ_k s_k v_k / |Σ_k s_k v_k| with s_k = sign(v_k·n) (s = +1 at 0). Each step does not
    decrease F(n) = Σ|v·n|: F(n') ≥ Σ s_k v_k·n' = |Σ s_k v_k| ≥ Σ s_k v_k·n = F(n). Signs take finitely
    many values, so each seed reaches a fixed point (a local maximum) after finitely many steps.
    The best seed is returned, f[N, 3] (the zero vector when all v vanish).
    """
    v = _sg(v)
    n = _unit(_sg(seeds))

    def step(_, n):
        s = jnp.where(einsum_highest("npi,nsi->nsp", v, n) >= 0, 1.0, -1.0).astype(v.dtype)
        return _unit(einsum_highest("nsp,npi->nsi", s, v))

    n = jax.lax.fori_loop(0, n_iter, step, n)
    score = jnp.sum(jnp.abs(einsum_highest("npi,nsi->nsp", v, n)), -1)  # [N, S]
    best = jnp.argmax(score, axis=-1)
    return jnp.take_along_axis(n, best[:, None, None], axis=1)[:, 0]


def _signed_sum_axis(v, n_star):
    """Differentiable W = Σ_k s_k v_k with s_k = sign(v_k·n*) frozen, f[N, 3]; W/|W| is the axis.

    Oriented so that W_z ≥ 0 (the thrust axis is a line). |W| = Σ|v·n*| at convergence.
    """
    s = jnp.where(_dot(v, _sg(n_star)[:, None, :]) >= 0, 1.0, -1.0).astype(v.dtype)
    w = einsum_highest("np,npi->ni", s, v)
    return w * jnp.where(_sg(w[:, 2]) < 0, -1.0, 1.0).astype(v.dtype)[:, None]


# --------------------------------------------------------------------------------------------- thrust
class ThrustResult(NamedTuple):
    """Thrust-family results: values f[N], unit axes f[N, 3] (zero vectors when undefined)."""

    thrust: jax.Array
    major: jax.Array
    minor: jax.Array
    axis: jax.Array
    major_axis: jax.Array
    minor_axis: jax.Array


def thrust_analysis(events: Events, n_hardest: int = 4, n_iter: int = 8, particle_seeds: bool = False) -> ThrustResult:
    """Thrust, thrust major and minor with their axes (one search shared by all).

    T = max_{|n|=1} Σ|p⃗·n| / Σ|p⃗|, attained at the thrust axis n_T;
    T_major = max_{m ⊥ n_T} Σ|p⃗·m| / Σ|p⃗| (major axis m); T_minor = Σ|p⃗·n_m| / Σ|p⃗| along
    n_m = n_T × m. 1/2 ≤ T ≤ 1 (1 for two back-to-back particles, 2/3 for the symmetric three-particle star,
    → 1/2 for isotropic events).

    Search: the fixed-point iteration n ← Σ sign(p⃗·n) p⃗ (normalised) — monotone in Σ|p⃗·n| and finite,
    see :func:`_max_projection_axis` — run for ``n_iter`` steps from several seeds, best result taken:
    every combination Σ c_i p⃗_i, c_i ∈ {−1, 0, +1}, of the ``n_hardest`` hardest particles ((3^k − 1)/2
    seeds: single directions, pair sums/differences, ...) plus the sphericity axis, and with
    ``particle_seeds=True`` every particle's direction. The result never exceeds the exact thrust (it is
    Σ|p⃗·n|/Σ|p⃗| at a unit n); a converged seed is a local maximum. Measured against the exact value (all 2^n sign
    assignments for n ≤ 10, the O(n³) plane enumeration beyond), with the defaults: random events with
    2–10 particles 2000/2000 within 1e-5; 3-jet-like events of 40 particles 200/200 (stable from
    ``n_iter=4``); isotropic 40-particle events, whose many near-equal local maxima are the hard case,
    96% (largest deficit 0.005), 99.5% with ``particle_seeds=True`` (deficit ≤ 4e-4).
    The major axis is found the same way with the momenta projected onto the plane ⊥ n_T.

    Cost O(N · S · P · n_iter) for S = (3^k − 1)/2 + 1 (+ P) seeds. Gradients: module docstring.
    """
    p3, _, pabs = _momenta(events)
    norm = jnp.sum(pabs, -1)
    n_ev = p3.shape[0]
    if p3.shape[1] == 0:
        zero3 = jnp.zeros((n_ev, 3), p3.dtype)
        z = jnp.zeros((n_ev,), p3.dtype)
        return ThrustResult(z + 1.0, z, z, zero3, zero3, zero3)
    tiny = _tiny(p3) * norm

    # Thrust: seeds from the hardest particles and the sphericity axis, then one differentiable step.
    _, vecs = jnp.linalg.eigh(_sg(_quadratic_tensor(p3, pabs)))
    seeds = [_hardest_combinations(p3, n_hardest), vecs[:, None, :, 2]] + ([p3] if particle_seeds else [])
    seeds = jnp.concatenate(seeds, axis=1)
    n_star = _max_projection_axis(p3, seeds, n_iter)
    w = _signed_sum_axis(p3, n_star)
    axis = _unit(w)
    t = safe_div(jnp.sum(jnp.abs(_dot(p3, _sg(axis)[:, None, :])), -1), norm, 1.0)

    # Major: the same search in the plane ⊥ axis (projection kept differentiable).
    q = p3 - _dot(p3, axis[:, None, :])[..., None] * axis[:, None, :]
    seeds_q = jnp.concatenate([_hardest_combinations(_sg(q), n_hardest), vecs[:, None, :, 1]], axis=1)
    seeds_q = seeds_q - _dot(seeds_q, _sg(axis)[:, None, :])[..., None] * _sg(axis)[:, None, :]
    m_star = _max_projection_axis(q, seeds_q, n_iter)
    wm = _signed_sum_axis(q, m_star)
    wm_norm = safe_norm(wm)
    ok = wm_norm > tiny  # below: all momenta along the thrust axis up to rounding
    major_axis = jnp.where(ok[:, None], _unit(jnp.where(ok[:, None], wm, 0.0)), 0.0)
    major = safe_div(jnp.where(ok, wm_norm, 0.0), norm)

    minor_axis = jnp.cross(axis, major_axis)
    minor = safe_div(jnp.sum(jnp.abs(_dot(p3, minor_axis[:, None, :])), -1), norm)
    return ThrustResult(t, major, minor, axis, major_axis, minor_axis)


def thrust(events: Events, n_hardest: int = 4, n_iter: int = 8, particle_seeds: bool = False):
    """Thrust T = max_n Σ|p⃗·n|/Σ|p⃗|, f[N] (1 for empty events). See :func:`thrust_analysis`."""
    return thrust_analysis(events, n_hardest, n_iter, particle_seeds).thrust


def thrust_axis(events: Events, n_hardest: int = 4, n_iter: int = 8, particle_seeds: bool = False):
    """Unit thrust axis f[N, 3], oriented with n_z ≥ 0 (zero vector for empty events); differentiable."""
    return thrust_analysis(events, n_hardest, n_iter, particle_seeds).axis


def thrust_major(events: Events, n_hardest: int = 4, n_iter: int = 8, particle_seeds: bool = False):
    """Thrust major T_major = max_{m ⊥ n_T} Σ|p⃗·m|/Σ|p⃗|, f[N] (0 for pencil-like and empty events)."""
    return thrust_analysis(events, n_hardest, n_iter, particle_seeds).major


def thrust_minor(events: Events, n_hardest: int = 4, n_iter: int = 8, particle_seeds: bool = False):
    """Thrust minor T_minor = Σ|p⃗·(n_T × m)|/Σ|p⃗|, f[N] (0 for planar and empty events)."""
    return thrust_analysis(events, n_hardest, n_iter, particle_seeds).minor


def oblateness(events: Events, n_hardest: int = 4, n_iter: int = 8, particle_seeds: bool = False):
    """Oblateness O = T_major − T_minor, f[N]."""
    r = thrust_analysis(events, n_hardest, n_iter, particle_seeds)
    return r.major - r.minor


def thrust_rapidity(events: Events, max_abs: float = 20.0):
    """Rapidity of each particle along the thrust axis, y_T = ½ ln((E + p⃗·n_T)/(E − p⃗·n_T)), f[N, P].

    Uses the particles' own energies; clipped to ±``max_abs`` (massless particles along the axis);
    0 in padded slots. The sign follows the orientation of :func:`thrust_axis` (n_z ≥ 0).
    """
    p3, e, _ = _momenta(events)
    pl = _dot(p3, thrust_axis(events)[:, None, :])
    y = kin.rapidity(kin.four_vector(e, 0.0, 0.0, pl), max_abs)
    return jnp.where(events.mask, y, 0.0)


# --------------------------------------------------------------------------------------------- tensors
def _quadratic_tensor(p3, pabs):
    den = jnp.sum(pabs * pabs, -1)
    return safe_div(einsum_highest("npi,npj->nij", p3, p3), den[:, None, None])


def sphericity_tensor(events: Events, power: float = 2.0):
    """Generalised momentum tensor S^{ab} = Σ_k |p⃗_k|^{r−2} p_k^a p_k^b / Σ_k |p⃗_k|^r, f[N, 3, 3].

    r = ``power`` = 2 (default) is the quadratic sphericity tensor, r = 1 the linearised tensor Θ of
    the C and D parameters. tr S = 1 (0 for empty events). For r < 2 particles with p⃗ = 0 contribute 0.
    """
    p3, _, pabs = _momenta(events)
    if power == 2.0:
        return _quadratic_tensor(p3, pabs)
    ok = pabs > 0
    safe = jnp.where(ok, pabs, 1.0)
    w = jnp.where(ok, safe ** (power - 2.0), 0.0)
    den = jnp.sum(jnp.where(ok, safe**power, 0.0), -1)
    return safe_div(einsum_highest("np,npi,npj->nij", w, p3, p3), den[:, None, None])


def linearized_tensor(events: Events):
    """Linearised momentum tensor Θ^{ab} = Σ p^a p^b/|p⃗| / Σ|p⃗|, f[N, 3, 3] (C and D parameters)."""
    return sphericity_tensor(events, power=1.0)


def sphericity_eigenvalues(events: Events, power: float = 2.0):
    """Eigenvalues λ1 ≥ λ2 ≥ λ3 of :func:`sphericity_tensor`, f[N, 3] (sum 1; zeros for empty events).

    Values as ``eigh``; gradients by the envelope theorem (λ1 = v1ᵀSv1, λ3 = v3ᵀSv3 with stop-gradient
    eigenvectors, λ2 = tr S − λ1 − λ3), finite at degenerate eigenvalues.
    """
    t = sphericity_tensor(events, power)
    _, vecs = jnp.linalg.eigh(_sg(t))
    v1, v3 = vecs[..., 2], vecs[..., 0]
    l1 = einsum_highest("ni,nij,nj->n", v1, t, v1)
    l3 = einsum_highest("ni,nij,nj->n", v3, t, v3)
    l2 = jnp.trace(t, axis1=-2, axis2=-1) - l1 - l3
    return jnp.stack([l1, l2, l3], axis=-1)


def sphericity(events: Events):
    """Sphericity S = 3/2 (λ2 + λ3) of the quadratic tensor, f[N]; 0 ≤ S ≤ 1 (0: two-jet, 1: isotropic).

    Not infrared/collinear safe (quadratic in momenta), as in Pythia's default ``power = 2``.
    """
    lam = sphericity_eigenvalues(events)
    return 1.5 * (lam[:, 1] + lam[:, 2])


def aplanarity(events: Events):
    """Aplanarity A = 3/2 λ3 of the quadratic tensor, f[N]; 0 ≤ A ≤ 1/2 (0 for planar events)."""
    return 1.5 * sphericity_eigenvalues(events)[:, 2]


def _invariants(t):
    """(tr, sum of principal 2x2 minors, det) of symmetric f[N, 3, 3]; polynomial, smooth everywhere."""
    a, b, c = t[:, 0, 0], t[:, 1, 1], t[:, 2, 2]
    d, e, f = t[:, 0, 1], t[:, 0, 2], t[:, 1, 2]
    tr = a + b + c
    minors = a * b - d * d + a * c - e * e + b * c - f * f
    det = a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e)
    return tr, minors, det


def c_parameter(events: Events):
    """C = 3(λ1λ2 + λ2λ3 + λ3λ1) of the linearised tensor Θ = 3 × (sum of its principal 2x2 minors), f[N].

    0 ≤ C ≤ 1: 0 for two-jet (pencil) events, 3/4 for symmetric planar three-jet, 1 isotropic.
    """
    return 3.0 * _invariants(linearized_tensor(events))[1]


def d_parameter(events: Events):
    """D = 27 λ1λ2λ3 = 27 det Θ of the linearised tensor, f[N]; 0 for planar events, 1 isotropic."""
    return 27.0 * _invariants(linearized_tensor(events))[2]


# --------------------------------------------------------------------------------------------- hemispheres
def _hemispheres(events: Events, axis):
    """bool[N, P]: particle in the hemisphere p⃗·n_T ≥ 0 (stop-gradient assignment)."""
    p3, _, _ = _momenta(events)
    return _dot(_sg(p3), _sg(axis)[:, None, :]) >= 0


def broadenings(events: Events):
    """Total and wide jet broadenings (B_T, B_W), each f[N].

    B_± = Σ_{k ∈ H±} |p⃗_k × n_T| / (2 Σ_k |p⃗_k|) in the hemispheres H± separated by the plane ⊥ n_T
    (p⃗·n_T ≥ 0 counts as H+); B_T = B+ + B−, B_W = max(B+, B−). Differentiated including the axis motion.
    """
    p3, _, pabs = _momenta(events)
    axis = thrust_axis(events)
    kt = safe_norm(jnp.cross(p3, axis[:, None, :]))
    plus = _hemispheres(events, axis)
    den = 2.0 * jnp.sum(pabs, -1)
    b_plus = safe_div(jnp.sum(jnp.where(plus, kt, 0.0), -1), den)
    b_minus = safe_div(jnp.sum(jnp.where(plus, 0.0, kt), -1), den)
    return b_plus + b_minus, jnp.maximum(b_plus, b_minus)


def b_total(events: Events):
    """Total jet broadening B_T, f[N]. See :func:`broadenings`."""
    return broadenings(events)[0]


def b_wide(events: Events):
    """Wide jet broadening B_W, f[N]. See :func:`broadenings`."""
    return broadenings(events)[1]


def hemisphere_masses(events: Events):
    """Normalised hemisphere masses (ρ_H, ρ_L) = (max, min) of M²_±/E_vis², each f[N].

    M_± is the invariant mass of the particles in the hemispheres of the thrust axis, E_vis = Σ E.
    """
    axis = thrust_axis(events)
    plus = _hemispheres(events, axis) & events.mask
    minus = ~plus & events.mask
    m2p = kin.mass2(jnp.sum(jnp.where(plus[..., None], events.p4, 0.0), 1))
    m2m = kin.mass2(jnp.sum(jnp.where(minus[..., None], events.p4, 0.0), 1))
    evis = jnp.sum(jnp.where(events.mask, events.p4[..., 0], 0.0), -1)
    e2 = evis * evis
    return safe_div(jnp.maximum(m2p, m2m), e2), safe_div(jnp.minimum(m2p, m2m), e2)


def heavy_jet_mass(events: Events):
    """Heavy hemisphere mass ρ_H = M²_heavy/E_vis², f[N]. See :func:`hemisphere_masses`."""
    return hemisphere_masses(events)[0]


def light_jet_mass(events: Events):
    """Light hemisphere mass ρ_L = M²_light/E_vis², f[N]. See :func:`hemisphere_masses`."""
    return hemisphere_masses(events)[1]
