"""Tests of the final-state shower stage (diffgen.shower).

Physics and properties: four-momentum, colour and flavour conservation; the capacity-overflow
rate; the first emission against the O(α_s) e+e- → q q̄ g matrix element (ERT) and the Durham
three-jet rate; one-loop α_s; finite gradients; autodiff ∂⟨O⟩/∂α_s against finite differences
of independent samples (slow).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss
from scipy import stats

from diffgen.events import Events, Status
from diffgen.params import SETTINGS
from diffgen.shower import DEFAULT_CAPACITY, alpha_s, final_state_shower, shower_mass
from diffgen.shower.fsr import default_max_trials

SQRT_S = 91.188
S = SQRT_S**2
C_F = 4.0 / 3.0
N_MAIN = 20_000
DEFAULTS = {"TimeShower:alphaSvalue": 0.1365, "TimeShower:pTmin": 0.5}


def qqbar_events(n: int, key, flavours=(1, 2, 3, 4, 5), sqrt_s: float = SQRT_S) -> Events:
    """e+e- → q q̄ at rest, isotropic, flavour uniform in ``flavours`` (c, b with Pythia masses)."""
    k1, k2, k3 = jax.random.split(key, 3)
    cos_t = jax.random.uniform(k1, (n,), minval=-1.0, maxval=1.0)
    phi = jax.random.uniform(k2, (n,), maxval=2 * math.pi)
    fl = jnp.asarray(flavours, jnp.int32)[jax.random.randint(k3, (n,), 0, len(flavours))]
    e = 0.5 * sqrt_s
    p = jnp.sqrt(e * e - shower_mass(fl) ** 2)
    sin_t = jnp.sqrt(1.0 - cos_t**2)
    p3 = jnp.stack([sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t], -1) * p[:, None]
    energy = jnp.full((n, 1), e)
    p4 = jnp.stack([jnp.concatenate([energy, p3], -1), jnp.concatenate([energy, -p3], -1)], 1)
    beams = jnp.array([[e, 0.0, 0.0, e], [e, 0.0, 0.0, -e]])
    return Events.empty(n, 2).replace(
        p4=p4, pid=jnp.stack([fl, -fl], 1), mask=jnp.ones((n, 2), bool),
        colour=jnp.broadcast_to(jnp.array([[1, 0], [0, 1]], jnp.int32), (n, 2, 2)),
        p4_in=jnp.broadcast_to(beams, (n, 2, 4)), pid_in=jnp.broadcast_to(jnp.array([11, -11]), (n, 2)))


def params(**changes):
    out = {k: jnp.asarray(v, jnp.float32) for k, v in DEFAULTS.items()}
    out.update({k: jnp.asarray(v, jnp.float32) for k, v in changes.items()})
    return out


def to_numpy(ev: Events) -> dict:
    return {k: np.asarray(getattr(ev, k)) for k in ("p4", "pid", "mask", "colour", "log_weight", "status", "p4_in")}


@pytest.fixture(scope="module")
def main_sample():
    """N_MAIN showered events, all five flavours, default settings and capacity (one compilation)."""
    shower = final_state_shower()
    ev = qqbar_events(N_MAIN, jax.random.key(11))
    return to_numpy(jax.jit(shower.apply)(shower.init(None), jax.random.key(12), ev))


# ---------------------------------------------------------------- conservation laws


def test_four_momentum_conservation(main_sample):
    ev = main_sample
    total = np.sum(np.where(ev["mask"][..., None], ev["p4"], 0.0), axis=1)
    dev = np.max(np.abs(total - ev["p4_in"].sum(1)), axis=1) / SQRT_S
    assert dev.max() <= 1e-5, f"worst |Σp − p_in|/√s = {dev.max():.2e}"
    assert np.all(np.isfinite(ev["p4"]))


def test_mass_shells(main_sample):
    ev = main_sample
    p4 = ev["p4"].astype(np.float64)
    m2 = p4[..., 0] ** 2 - np.sum(p4[..., 1:] ** 2, -1)
    m0 = np.asarray(shower_mass(ev["pid"]), np.float64)
    dev = np.abs(m2 - m0**2)[ev["mask"]]
    assert dev.max() < 5e-3  # GeV²; float32 rounding of 45 GeV momenta
    assert np.all(p4[..., 0][ev["mask"]] > 0)


def colour_chains(pid, colour, mask):
    """Check the large-N_c colour flow of one event; returns the number of chains.

    Every tag appears once as colour and once as anticolour; quarks carry colour only,
    antiquarks anticolour only, gluons both (different); walking from each quark along
    colour → matching anticolour through gluons ends at an antiquark, visiting every parton once.
    """
    occ = np.flatnonzero(mask)
    pid, col = pid[occ], colour[occ]
    quark, antiquark, gluon = (pid >= 1) & (pid <= 5), (pid <= -1) & (pid >= -5), pid == 21
    assert np.all(quark | antiquark | gluon), pid
    assert np.all(col[quark, 0] > 0) and np.all(col[quark, 1] == 0)
    assert np.all(col[antiquark, 1] > 0) and np.all(col[antiquark, 0] == 0)
    assert np.all(col[gluon] > 0) and np.all(col[gluon, 0] != col[gluon, 1])
    c, a = col[:, 0][col[:, 0] > 0], col[:, 1][col[:, 1] > 0]
    assert len(set(c)) == len(c) and len(set(a)) == len(a) and set(c) == set(a)
    by_anticolour = {t: i for i, t in enumerate(col[:, 1]) if t > 0}
    seen = np.zeros(len(pid), bool)
    for start in np.flatnonzero(quark):
        cur = start
        seen[cur] = True
        while True:
            cur = by_anticolour[col[cur, 0]]
            assert not seen[cur]
            seen[cur] = True
            if not gluon[cur]:
                assert antiquark[cur]
                break
    assert seen.all(), "closed gluon loop"
    return int(quark.sum())


def test_colour_flow(main_sample):
    ev = main_sample
    chains = [colour_chains(ev["pid"][i], ev["colour"][i], ev["mask"][i]) for i in range(N_MAIN)]
    assert min(chains) >= 1 and max(chains) > 1  # g → q q̄ makes several chains
    # padded slots are empty
    assert np.all(ev["pid"][~ev["mask"]] == 0) and np.all(ev["colour"][~ev["mask"]] == 0)
    assert np.all(ev["p4"][~ev["mask"]] == 0)


def test_flavour_conservation(main_sample):
    ev = main_sample
    pid = np.where(ev["mask"], ev["pid"], 0)
    for f in range(1, 6):
        assert np.all(np.sum(pid == f, 1) == np.sum(pid == -f, 1))
    assert np.all(np.isin(pid[ev["mask"]], [1, 2, 3, 4, 5, -1, -2, -3, -4, -5, 21]))
    # the primary quark keeps slot 0 and its flavour
    assert np.all(pid[:, 0] > 0) and np.all(pid[:, 1] == -pid[:, 0])


def test_weights_are_unit_values(main_sample):
    assert np.all(main_sample["log_weight"] == 0.0)
    assert np.all(main_sample["status"] == 0)


def test_capacity_overflow_fraction(main_sample):
    """Overflow fraction at the default capacity is below 1e-4.

    No overflow may occur in the sample. Zero events out of 2e4 alone bounds the rate only by
    1.5e-4 (95 % CL), so the bound is made with the multiplicity tail: a log-concave discrete
    distribution (as the near-negative-binomial parton multiplicity is; the measured tail ratios
    are checked to decrease) has S(k0 + m) ≤ S(k0) q^m with q = S(k0 + 1)/S(k0), S(k) = P(n ≥ k).
    With 99 % Clopper–Pearson upper limits on S(k0) and q this bounds P(n > capacity).
    """
    ev = main_sample
    assert not np.any(ev["status"] & int(Status.CAPACITY_OVERFLOW))
    mult = ev["mask"].sum(1)
    surv = np.array([np.sum(mult >= k) for k in range(DEFAULT_CAPACITY + 2)])
    k0 = int(np.flatnonzero(surv >= 100)[-1])  # deepest point with ≥ 100 events
    ratios = surv[k0 - 8:k0 + 1] / surv[k0 - 9:k0]
    # binomial errors of the ratios (S(k) ≈ 100-1000 events here: ≈ 0.02-0.05 each); an increase beyond
    # 3σ of the difference would contradict log-concavity
    sd = np.sqrt(ratios * (1 - ratios) / surv[k0 - 9:k0])
    rise = np.diff(ratios) / np.hypot(sd[1:], sd[:-1])
    assert np.all(rise < 3.0), f"tail ratios not decreasing: {ratios} (rises in σ: {rise})"
    s_up = stats.beta.ppf(0.99, surv[k0] + 1, N_MAIN - surv[k0])
    q_up = stats.beta.ppf(0.99, surv[k0 + 1] + 1, surv[k0] - surv[k0 + 1])
    bound = s_up * q_up ** (DEFAULT_CAPACITY + 1 - k0)
    assert bound < 1e-4, f"P(n > {DEFAULT_CAPACITY}) bound {bound:.1e} (k0={k0}, S={s_up:.1e}, q={q_up:.2f})"


@pytest.fixture(scope="module")
def small_shower():
    """capacity 6 (overflows often), 500 light-quark events of which the last is empty; α_s traced."""
    shower = final_state_shower(capacity=6)
    ev = qqbar_events(500, jax.random.key(3), flavours=(1,))
    ev = ev.replace(mask=ev.mask.at[-1].set(False))
    run = jax.jit(lambda a, key: shower.apply({"TimeShower:alphaSvalue": a, "TimeShower:pTmin": jnp.float32(0.5)},
                                              key, ev))
    return run, ev


def test_capacity_overflow_is_flagged_and_consistent(small_shower):
    run, _ = small_shower
    out = to_numpy(run(jnp.float32(0.1365), jax.random.key(4)))
    over = (out["status"] & int(Status.CAPACITY_OVERFLOW)) > 0
    assert 0.2 < over.mean() < 1.0
    assert np.all(out["mask"][over].sum(1) == 6)
    total = np.sum(np.where(out["mask"][..., None], out["p4"], 0.0), axis=1)
    assert np.max(np.abs(total - out["p4_in"].sum(1))[:-1]) / SQRT_S < 1e-5
    for i in np.flatnonzero(over)[:50]:
        colour_chains(out["pid"][i], out["colour"][i], out["mask"][i])


# ---------------------------------------------------------------- α_s


def _alpha_s_reference(mu, a_mz):
    """One-loop α_s = 12π/((33 − 2n_f) ln(μ²/Λ²_{n_f})) with Λ matched at m_c = 1.5, m_b = 4.8, m_t = 171 GeV."""
    lam5 = 91.188**2 * math.exp(-12 * math.pi / (23 * a_mz))
    a_b = 12 * math.pi / (23 * math.log(4.8**2 / lam5))
    lam4 = 4.8**2 * math.exp(-12 * math.pi / (25 * a_b))
    a_c = 12 * math.pi / (25 * math.log(1.5**2 / lam4))
    lam3 = 1.5**2 * math.exp(-12 * math.pi / (27 * a_c))
    a_t = 12 * math.pi / (23 * math.log(171.0**2 / lam5))
    lam6 = 171.0**2 * math.exp(-12 * math.pi / (21 * a_t))
    nf, lam = ((6, lam6) if mu >= 171.0 else (5, lam5) if mu >= 4.8 else (4, lam4) if mu >= 1.5
               else (3, lam3))
    return 12 * math.pi / ((33 - 2 * nf) * math.log(mu * mu / lam))


@pytest.mark.parametrize("a_mz", [0.118, 0.1365, 0.14])
def test_alpha_s_one_loop(a_mz):
    mus = [0.55, 0.8, 1.2, 1.4999, 1.5, 3.0, 4.7999, 4.8, 10.0, 45.0, 91.188, 170.99, 171.0, 200.0, 1000.0]
    got = np.asarray(alpha_s(jnp.asarray(mus, jnp.float32) ** 2, a_mz))
    want = np.array([_alpha_s_reference(m, a_mz) for m in mus])
    np.testing.assert_allclose(got, want, rtol=2e-5)
    assert abs(float(alpha_s(91.188**2, a_mz)) - a_mz) < 1e-6
    # continuity at the thresholds, monotonic decrease
    np.testing.assert_allclose(got[3], got[4], rtol=1e-4)
    np.testing.assert_allclose(got[6], got[7], rtol=1e-4)
    np.testing.assert_allclose(got[11], got[12], rtol=1e-4)
    assert np.all(np.diff(got) < 0)


def test_alpha_s_landau_pole_and_gradients():
    assert np.isinf(float(alpha_s(0.3**2, 0.1365)))  # below Λ₃ = 0.325 GeV
    g = jax.grad(lambda a, q: alpha_s(q, a), argnums=(0, 1))(0.1365, 4.0)
    assert all(np.isfinite(float(x)) for x in g)
    g0 = jax.grad(lambda a: alpha_s(0.09, a))(0.1365)  # past the pole: zero, not NaN
    assert float(g0) == 0.0


def test_dipole_kinematics_and_z_range():
    """Random dipoles (massless and c/b): Σp conserved, daughters on shell, and no branching outside
    the overestimate's z range is kinematically allowed (1 − z ≥ p⊥/M massless, ≥ p⊥/2M massive)."""
    from diffgen.shower.dipole_kinematics import branch_dipole

    rng = np.random.default_rng(0)
    n = 40_000
    mi = rng.choice([0.0, 0.0, 1.5, 4.8], n)
    mk = rng.choice([0.0, 0.0, 1.5, 4.8], n)
    ei, ek = mi + rng.uniform(0.2, 45.0, n), mk + rng.uniform(0.2, 45.0, n)
    cos = 1 - 10 ** rng.uniform(-4, np.log10(2), n)
    ai = np.array([0.0, 0.0, 1.0])
    ak = np.stack([np.sqrt(1 - cos**2), np.zeros(n), cos], 1)
    p_i = np.concatenate([ei[:, None], np.sqrt(ei**2 - mi**2)[:, None] * ai], 1)
    p_k = np.concatenate([ek[:, None], np.sqrt(ek**2 - mk**2)[:, None] * ak], 1)
    m2 = mi**2 + mk**2 + 2 * (ei * ek - np.sum(p_i[:, 1:] * p_k[:, 1:], 1))
    pt2 = m2 / 4 * 10 ** rng.uniform(-5, 0, n)
    # 1 − z either inside the overestimate range or just outside it
    lo = np.where((mi == 0) & (mk == 0), np.sqrt(pt2 / m2), 0.5 * np.sqrt(pt2 / m2))
    outside = rng.uniform(size=n) < 0.3
    omz = np.where(outside, lo * rng.uniform(0.5, 0.999, n), np.exp(np.log(lo) * rng.uniform(size=n)))
    z = 1 - omz
    q2 = mi**2 + pt2 / (z * omz)
    f = jax.jit(jax.vmap(branch_dipole))
    c = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    pa, pb, pk, ok, *_ = f(c(p_i), c(p_k), c(mi), c(mk), c(q2), c(mi), c(np.zeros(n)), c(z), c(omz),
                           c(rng.uniform(0, 2 * np.pi, n)))
    pa, pb, pk, ok = (np.asarray(x, np.float64) for x in (pa, pb, pk, ok))
    ok = ok.astype(bool)
    assert not np.any(ok & outside), "allowed branching outside the sampled z range"
    assert 0.2 < ok[~outside].mean() < 1.0
    dev = np.max(np.abs(pa + pb + pk - p_i - p_k), 1) / (ei + ek)
    assert dev[ok].max() < 1e-5

    def m2_of(p):
        return p[:, 0] ** 2 - np.sum(p[:, 1:] ** 2, 1)

    for p, m in ((pa, mi), (pb, 0.0), (pk, mk)):
        assert np.max(np.abs(m2_of(p[ok]) - (m**2 if np.ndim(m) == 0 else m[ok] ** 2))) < 0.05
    assert np.all(pb[ok, 0] > 0) and np.all(pk[ok, 0] > 0)


# ---------------------------------------------------------------- first emission vs ERT


def _alpha_np(mu2, a_mz):
    b = [(33 - 2 * nf) / (12 * math.pi) for nf in (3, 4, 5)]
    inv_mb = 1 / a_mz + b[2] * math.log(4.8**2 / 91.188**2)
    inv_mc = inv_mb + b[1] * math.log(1.5**2 / 4.8**2)
    mu2 = np.asarray(mu2, float)
    inv = np.where(mu2 >= 4.8**2, 1 / a_mz + b[2] * np.log(mu2 / 91.188**2),
                   np.where(mu2 >= 1.5**2, inv_mb + b[1] * np.log(mu2 / 4.8**2), inv_mc + b[0] * np.log(mu2 / 1.5**2)))
    return 1 / inv


def ert(x1, x2):
    """ERT: (1/σ₀) dσ/dx₁dx₂ = (α_s/2π) C_F (x₁² + x₂²)/((1 − x₁)(1 − x₂))."""
    return (x1**2 + x2**2) / ((1 - x1) * (1 - x2))


def _kernel_sum(x1, x2, me: bool):
    """Σ_ends k_e(x₁, x₂) of the first emission: the density is (C_F/2π) Σ_e α_s(p⊥e²) Δ(p⊥e²) k_e.

    With the ME correction k_e = ERT·(1 − x_e)/x₃ (Σ_e k_e = ERT); without it the plain kernel
    C_F(1 + z²)/(1 − z) dz dp⊥²/p⊥², which is k_e = (1 + z_e²)/(x₃ (1 − x_rec)), z_e = x_e/(2 − x_rec).
    """
    x3 = 2 - x1 - x2
    if me:
        return ert(x1, x2)
    return sum((1 + (xa / (2 - xb)) ** 2) / (x3 * (1 - xb)) for xa, xb in ((x1, x2), (x2, x1)))


def _one_end_sudakov_exponent(a_mz, me: bool, n_r=3000, n_z=96):
    """I(r), r = p⊥²/s, of one dipole end of the q q̄ system, from the matrix element / kernel alone.

    The quark end maps (p⊥², z) to x₂ = 1 − r/(z(1 − z)), x₁ = z + r/(1 − z) (Q² = s(1 − x₂),
    z = x₁/(2 − x₂)); its rate is (α_s(p⊥²)/2π) C_F K dz/(1 − z) dr/r on z(1 − z) > √r − r (the
    physical triangle), K = x₁² + x₂² (ME-corrected) or 1 + z² (plain kernel). I(r) integrates it
    over p⊥'² > p⊥²; the no-emission probability above p⊥² is Δ = exp(−2I).
    """
    lnr = np.linspace(math.log(1e-9), math.log(0.25), n_r)
    r = np.exp(lnr)
    u0 = np.sqrt(r) - r
    zm = 0.5 * (1 - np.sqrt(np.maximum(1 - 4 * u0, 0)))
    va, vb = -np.log1p(-zm), -np.log(zm)  # v = −ln(1 − z): dz/(1 − z) = dv
    gx, gw = leggauss(n_z)
    v = 0.5 * (vb - va)[:, None] * gx + 0.5 * (vb + va)[:, None]
    z = -np.expm1(-v)
    x2 = 1 - r[:, None] / (z * (1 - z))
    x1 = z + r[:, None] / (1 - z)
    kernel = x1**2 + x2**2 if me else 1 + z**2
    inner = np.sum(0.5 * (vb - va)[:, None] * gw * kernel, axis=1)
    g = inner * _alpha_np(r * S, a_mz) / (2 * math.pi) * C_F
    seg = 0.5 * (g[1:] + g[:-1]) * np.diff(lnr)
    return lnr, np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])


def _to_fixed_order_weight(x1, x2, a_mz, table, me: bool):
    """α_s(m_Z) Σ_e k_e / Σ_e k_e α_s(p⊥e²) Δ(p⊥e²): maps the shower's first-emission density onto
    the fixed-order one (C_F/2π) α_s(m_Z) Σ_e k_e (ERT with the ME correction)."""
    lnr, expo = table
    x3 = 2 - x1 - x2
    total = 0.0
    for xa, xb in ((x1, x2), (x2, x1)):
        r = xa * x3 * (1 - xb) / (2 - xb) ** 2  # p⊥²_evol/s of the end whose radiator has x_a
        k = ert(x1, x2) * (1 - xa) / x3 if me else (1 + (xa / (2 - xb)) ** 2) / (x3 * (1 - xb))
        total = total + k * _alpha_np(r * S, a_mz) * np.exp(-2 * np.interp(np.log(r), lnr, expo))
    return a_mz * _kernel_sum(x1, x2, me) / total


def _fixed_order_bin(a1, b1, a2, b2, me: bool, n=24):
    """∫ Σ_e k_e over [a1,b1]×[a2,b2] ∩ {x₁ + x₂ > 1} (Gauss–Legendre with the exact triangle edge)."""
    gx, gw = leggauss(n)
    lo1 = max(a1, 1 - b2)
    if lo1 >= b1:
        return 0.0
    x1 = 0.5 * (b1 - lo1) * gx + 0.5 * (b1 + lo1)
    w1 = 0.5 * (b1 - lo1) * gw
    lo2 = np.maximum(a2, 1 - x1)
    x2 = 0.5 * (b2 - lo2)[:, None] * gx + 0.5 * (b2 + lo2)[:, None]
    w2 = 0.5 * (b2 - lo2)[:, None] * gw
    return float(np.sum(w1[:, None] * w2 * _kernel_sum(x1[:, None], x2, me)))


def durham_y3(x1, x2):
    """min_ij y_ij = 2 min(E_i², E_j²)(1 − cos θ_ij)/s of three massless partons = min (1 − x_k) min/max(x_i, x_j)."""
    x3 = 2 - x1 - x2

    def y(xi, xj, xk):
        return (1 - xk) * np.minimum(xi, xj) / np.maximum(xi, xj)

    return np.minimum(np.minimum(y(x1, x2, x3), y(x1, x3, x2)), y(x2, x3, x1))


def _fixed_order_three_jet(ycut, a_mz, me: bool, n=4000):
    """(α_s/2π) C_F ∫_{y₃ > y_cut} Σ_e k_e dx₁dx₂ (ERT with the ME correction) on a midpoint grid."""
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h
    total = 0.0
    for i in range(0, n, 500):
        x1, x2 = x[i:i + 500, None], x[None, :]
        inside = (x1 + x2 > 1) & (x1 + x2 < 2 - h)
        x2s = np.where(inside, x2, 0.5)
        x1s = np.where(inside, x1, 0.75)
        total += np.sum(np.where(inside & (durham_y3(x1s, x2s) > ycut), _kernel_sum(x1s, x2s, me), 0.0))
    return a_mz / (2 * math.pi) * C_F * total * h * h


@pytest.fixture(scope="module", params=[True, False], ids=["me", "no-me"])
def first_emission(request):
    """First emission (max_emissions=1) of 2e4 light-quark events, with and without ME correction."""
    me = request.param
    shower = final_state_shower(capacity=3, max_emissions=1, me_correction=me)
    ev = qqbar_events(N_MAIN, jax.random.key(21), flavours=(1, 2, 3))
    out = to_numpy(jax.jit(shower.apply)(shower.init(None), jax.random.key(22), ev))
    assert np.all(out["status"] == 0)
    emitted = out["mask"].sum(1) == 3
    p4 = out["p4"].astype(np.float64)
    x1, x2 = 2 * p4[:, 0, 0] / SQRT_S, 2 * p4[:, 1, 0] / SQRT_S
    assert np.all(out["pid"][emitted, 2] == 21)
    table = _one_end_sudakov_exponent(DEFAULTS["TimeShower:alphaSvalue"], me)
    return {"emitted": emitted, "x1": x1, "x2": x2, "table": table, "n": len(x1), "me": me}


def test_first_emission_matches_ert_matrix_element(first_emission):
    """χ² of the (x₁, x₂) distribution against ERT (or, without ME correction, the shower kernel),
    for 1 − x_i ≥ 0.1 and x_i ≥ 0.1: every evolution p⊥² there is ≥ 2 GeV² ≫ p⊥min² = 0.25 GeV²,
    so the cut-off plays no role.

    The shower's first-emission density is the matrix element times α_s(p⊥)/α_s(m_Z) and the
    Sudakov factor Δ(p⊥) of the same evolution; both are computed here from the ERT formula (or
    the kernel) and the one-loop α_s and divided out event by event (weights), so the weighted
    histogram must reproduce fixed order, (α_s/2π) C_F ∫_bin ME, with errors √Σw² per bin.
    """
    d, a_mz = first_emission, DEFAULTS["TimeShower:alphaSvalue"]
    edges = np.round(np.arange(0.1, 0.91, 0.1), 10)
    sel = d["emitted"] & (d["x1"] < 0.9) & (d["x2"] < 0.9) & (d["x1"] > 0.1) & (d["x2"] > 0.1)
    x1, x2 = d["x1"][sel], d["x2"][sel]
    w = _to_fixed_order_weight(x1, x2, a_mz, d["table"], d["me"])
    obs, _, _ = np.histogram2d(x1, x2, bins=[edges, edges], weights=w)
    var, _, _ = np.histogram2d(x1, x2, bins=[edges, edges], weights=w * w)
    expected = np.array([[_fixed_order_bin(edges[i], edges[i + 1], edges[j], edges[j + 1], d["me"])
                          for j in range(8)] for i in range(8)]) * a_mz / (2 * math.pi) * C_F * d["n"]
    use = expected > 5.0
    chi2 = float(np.sum((obs[use] - expected[use]) ** 2 / var[use]))
    ndf = int(use.sum())
    p_value = stats.chi2.sf(chi2, ndf)
    assert ndf >= 25
    assert p_value > 1e-3, f"χ²/ndf = {chi2:.1f}/{ndf}, p = {p_value:.2e}"


def test_three_jet_rate_matches_ert(first_emission):
    """Durham three-jet rate at y_cut = 0.05 (simple 3-parton y_ij) against ∫_{y>y_cut} ERT (kernel)."""
    d, a_mz = first_emission, DEFAULTS["TimeShower:alphaSvalue"]
    ycut = 0.05
    sel = d["emitted"] & (durham_y3(d["x1"], d["x2"]) > ycut)
    w = _to_fixed_order_weight(d["x1"][sel], d["x2"][sel], a_mz, d["table"], d["me"])
    rate, err = w.sum() / d["n"], math.sqrt(np.sum(w * w)) / d["n"]
    want = _fixed_order_three_jet(ycut, a_mz, d["me"])
    assert abs(rate - want) < 3 * err, f"R3 = {rate:.4f} ± {err:.4f}, fixed order {want:.4f}"
    # the unweighted shower rate is lower (Sudakov factor, α_s(p⊥) vs α_s(m_Z)) but of the same size
    raw = sel.sum() / d["n"]
    assert 0.5 * want < raw < 1.5 * want


def test_no_emission_probability_is_sudakov(first_emission):
    """Fraction of events with no emission above p⊥min equals Δ(p⊥min) = exp(−2 I)."""
    d = first_emission
    lnr, expo = d["table"]
    delta = math.exp(-2 * np.interp(math.log(DEFAULTS["TimeShower:pTmin"] ** 2 / S), lnr, expo))
    k = int((~d["emitted"]).sum())
    assert stats.poisson.cdf(k, d["n"] * delta) > 1e-3 and stats.poisson.sf(k - 1, d["n"] * delta) > 1e-3


# ---------------------------------------------------------------- gradients


def _observables(ev: Events):
    mult = jnp.sum(ev.mask, axis=1).astype(jnp.float32)
    x = 2.0 * jnp.where(ev.mask, ev.p4[..., 0], 0.0) / SQRT_S
    return mult, 1.0 - jnp.max(x, axis=1)


def _weighted_mean(ev: Events, obs):
    w = jnp.exp(ev.log_weight)
    return jnp.sum(w * obs) / jnp.sum(w)


@pytest.fixture(scope="module")
def grad_probe():
    """One compiled function: ⟨O⟩ = ⟨mult⟩ + 10⟨1 − max x⟩ on 256 events, its jax.grad in
    (α_s, p⊥min), and the per-event score ∂ log_weight/∂α_s and observable (forward mode)."""
    shower = final_state_shower()
    ev = qqbar_events(256, jax.random.key(5))

    def run(a, ptmin):
        return shower.apply({"TimeShower:alphaSvalue": a, "TimeShower:pTmin": ptmin}, jax.random.key(6), ev)

    def loss(a, ptmin):
        out = run(a, ptmin)
        mult, one_minus_x = _observables(out)
        return _weighted_mean(out, mult + 10.0 * one_minus_x)

    def probe(a, ptmin):
        val, grads = jax.value_and_grad(loss, argnums=(0, 1))(a, ptmin)
        out, tangent = jax.jvp(lambda x: run(x, ptmin), (a,), (jnp.ones_like(a),))
        mult, one_minus_x = _observables(out)
        return val, grads, tangent.log_weight, mult + 10.0 * one_minus_x, out.log_weight

    return jax.jit(probe)


@pytest.mark.parametrize("settings", [DEFAULTS, {"TimeShower:alphaSvalue": 0.25, "TimeShower:pTmin": 0.1},
                                      {"TimeShower:alphaSvalue": 0.06, "TimeShower:pTmin": 2.0}])
def test_gradients_finite(grad_probe, settings):
    a0, p0 = (jnp.float32(settings[k]) for k in ("TimeShower:alphaSvalue", "TimeShower:pTmin"))
    val, grads, score, obs, log_w = grad_probe(a0, p0)
    assert np.isfinite(float(val)) and all(np.isfinite(float(g)) for g in grads)
    assert np.all(np.isfinite(np.asarray(score))) and np.all(np.asarray(log_w) == 0)
    if settings is DEFAULTS:
        assert float(grads[0]) > 0  # more α_s, more partons
        assert float(grads[1]) != 0.0  # the cut-off's boundary score (tests/test_shower_alignment.py)


def test_score_gradient_equals_covariance(grad_probe):
    """jax.grad of Σ w O/Σ w equals mean((O − Ō) s) with the per-event score s = ∂ log_weight/∂α_s (jvp)."""
    _, grads, score, obs, _ = grad_probe(jnp.float32(0.1365), jnp.float32(0.5))
    score, obs = np.asarray(score, np.float64), np.asarray(obs, np.float64)
    assert np.any(score != 0)
    np.testing.assert_allclose(float(grads[0]), np.mean((obs - obs.mean()) * score), rtol=1e-3)


@pytest.mark.slow
def test_gradient_matches_finite_difference():
    """Autodiff ∂⟨O⟩/∂α_s (score function) against (⟨O⟩₊ − ⟨O⟩₋)/2δ of independent samples at α_s ± δ.

    ⟨O⟩(α_s) is strongly curved here (∂⟨n⟩/∂α_s rises from ≈ 260 to ≈ 580 between α_s = 0.1315 and
    0.1415, because α_s(p⊥min) approaches the one-loop pole), so the central difference is not the
    derivative at α_s but its mean over [α_s − δ, α_s + δ]. That mean is compared with Simpson's
    rule on the autodiff derivatives at α_s − δ, α_s, α_s + δ (exact up to O(δ⁴)), each from its
    own sample of N events as mean((O − Ō) s), s = ∂ log_weight/∂α_s per event (jvp). The
    difference D = FD − Simpson is a sum of per-sample means of per-event terms, so its error is
    Σ_samples var(term)/N, correlations within a sample included. |D| < 3σ is required, and the
    plain derivative at α_s is checked to be resolved.
    """
    n, delta, a0 = 20_000, 0.005, 0.1365
    shower = final_state_shower()
    run = jax.jit(lambda a, ev, key: jax.jvp(
        lambda x: shower.apply({"TimeShower:alphaSvalue": x, "TimeShower:pTmin": jnp.float32(0.5)}, key, ev),
        (a,), (jnp.float32(1.0),)))
    samples = []
    for i, a in enumerate((a0 - delta, a0, a0 + delta)):
        out, tangent = run(jnp.float32(a), qqbar_events(n, jax.random.key(40 + i)), jax.random.key(50 + i))
        assert np.all(np.asarray(out.status) == 0)
        score = np.asarray(tangent.log_weight, np.float64)
        samples.append(([np.asarray(o, np.float64) for o in _observables(out)], score))
    for k, name in enumerate(("multiplicity", "1 - max x")):
        (o_m, s_m), (o_0, s_0), (o_p, s_p) = ((obs[k], sc) for obs, sc in samples)
        # per-event terms of D = (Ō₊ − Ō₋)/2δ − [g₋ + 4g₀ + g₊]/6, g = mean((O − Ō)s)
        t_p = o_p / (2 * delta) - (o_p - o_p.mean()) * s_p / 6
        t_m = -o_m / (2 * delta) - (o_m - o_m.mean()) * s_m / 6
        t_0 = -4 * (o_0 - o_0.mean()) * s_0 / 6
        diff = t_p.mean() + t_m.mean() + t_0.mean()
        sigma = math.sqrt((t_p.var() + t_m.var() + t_0.var()) / n)
        fd = (o_p.mean() - o_m.mean()) / (2 * delta)
        g0 = (o_0 - o_0.mean()) * s_0
        assert abs(diff) < 3 * sigma, f"{name}: FD {fd:.3f} − Simpson(autodiff) = {diff:.3f} ± {sigma:.3f}"
        assert abs(g0.mean()) > 5 * g0.std() / math.sqrt(n), f"{name}: slope not resolved"


# ---------------------------------------------------------------- stage contract


def test_init_and_defaults():
    p = final_state_shower().init(jax.random.key(0))
    assert set(p) == {"TimeShower:alphaSvalue", "TimeShower:pTmin"}
    for k, v in p.items():
        assert float(v) == pytest.approx(SETTINGS[k].default)
    assert default_max_trials(DEFAULT_CAPACITY, None) >= 250


@pytest.mark.parametrize("kwargs", [{"capacity": 2}, {"capacity": 4.0}, {"max_emissions": -1},
                                    {"max_trials": 0}, {"capacity": True}])
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        final_state_shower(**kwargs)


def test_wrong_event_shape_raises():
    shower = final_state_shower(capacity=8)
    with pytest.raises(ValueError, match="2 slots"):
        shower.apply(shower.init(None), jax.random.key(0), Events.empty(3, 4))


def test_out_of_range_traced_param_sets_status_and_invalid_events_pass(small_shower):
    run, ev = small_shower
    good, bad = run(jnp.float32(0.1365), jax.random.key(1)), run(jnp.float32(0.5), jax.random.key(1))
    assert np.all((np.asarray(bad.status) & int(Status.PARAM_OUT_OF_RANGE)) > 0)
    assert not np.any(np.asarray(good.status) & int(Status.PARAM_OUT_OF_RANGE))
    # an event without a q q̄ pair (here: masked out) passes through: still empty, zero-padded
    assert not np.any(np.asarray(good.mask[-1])) and np.all(np.asarray(good.p4[-1]) == 0)
    assert int(good.status[-1]) == 0
    assert np.all(np.isfinite(np.asarray(bad.p4)))


def test_deterministic_and_max_emissions_zero(small_shower):
    run, ev = small_shower
    a, b = run(jnp.float32(0.1365), jax.random.key(3)), run(jnp.float32(0.1365), jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(a.p4), np.asarray(b.p4))
    c = run(jnp.float32(0.1365), jax.random.key(4))
    assert not np.array_equal(np.asarray(a.p4), np.asarray(c.p4))
    shower0 = final_state_shower(capacity=4, max_emissions=0)
    none = shower0.apply(shower0.init(None), jax.random.key(3), ev)
    np.testing.assert_array_equal(np.asarray(none.p4[:-1, :2]), np.asarray(ev.p4[:-1]))
    assert not np.any(np.asarray(none.mask[:, 2:])) and np.all(np.asarray(none.log_weight) == 0)


def test_in_a_generator_chain():
    """hard process + shower through Generator (each event under vmap) conserves momentum and colour."""
    from diffgen.processes import ee_to_ffbar
    from diffgen.stage import Generator, chain

    gen = Generator(chain(("hard", ee_to_ffbar((1, 2, 3, 4, 5), SQRT_S)), ("shower", final_state_shower(capacity=40))))
    ev = gen.sample(gen.default_params(), jax.random.key(9), 64)
    out = to_numpy(ev)
    assert np.all(out["status"] == 0)
    total = np.sum(np.where(out["mask"][..., None], out["p4"], 0.0), axis=1)
    assert np.max(np.abs(total - out["p4_in"].sum(1))) / SQRT_S < 1e-5
    for i in range(64):
        colour_chains(out["pid"][i], out["colour"][i], out["mask"][i])
    assert out["mask"].sum(1).mean() > 6
