"""Tests of diffgen.decays: tables, conservation laws, statistics of channels and angles, gradients, jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lep_reference
from diffgen import kinematics, particles
from diffgen.decays import (
    DEFAULT_STABLE,
    MIXING,
    branching_table,
    chain_depth,
    decaying_codes,
    hadron_decays,
    is_stable,
    mean_multiplicity,
)
from diffgen.decays import kinematics as dk
from diffgen.decays import table as dt
from diffgen.events import Events, Status

HBARC_GEV_M = 1.973269804e-16


def _events(pid, p3, dtype=jnp.float32):
    """Events from PDG codes ``pid[N, K]`` (0 = empty) and momenta ``p3[N, K, 3]``, on shell."""
    pid = np.asarray(pid)
    m = np.vectorize(lambda c: dt.mass_of(c) if c else 0.0)(pid)
    e = np.sqrt(np.sum(p3 ** 2, -1) + m ** 2)
    p4 = np.where((pid != 0)[..., None], np.concatenate([e[..., None], p3], -1), 0.0)
    n, k = pid.shape
    return Events.empty(n, k, dtype=dtype).replace(
        p4=jnp.asarray(p4, dtype), pid=jnp.asarray(pid, jnp.int32), mask=jnp.asarray(pid != 0))


def _all_codes():
    codes = []
    for c in dt.DECAYS:
        codes += [c] if c in dt.SELF_CONJUGATE else [c, -c]
    return codes + [211, -211, 321, -321, 130, 2212, -2212, 2112, 22, 11, 13]


# ---------------------------------------------------------------------------------------------- tables

def test_tables_sum_to_one_and_positive():
    for pid, chans in branching_table().items():
        assert math.isclose(sum(br for br, _ in chans), 1.0, abs_tol=1e-12), pid
        assert all(br > 0 for br, _ in chans), pid
        assert 0.98 <= dt.RAW_SUM[pid] <= 1.0 + 1e-9, (pid, dt.RAW_SUM[pid])  # PDG modes cover ≥ 98 %


def test_every_channel_conserves_charge_is_open_and_known():
    rows = [(pid, ds + (0,) * (3 - len(ds))) for pid, chans in branching_table().items() for _, ds in chans]
    assert all(len(ds) == 3 for _, ds in rows)  # at most three daughters
    mother = np.array([pid for pid, _ in rows])
    dau = np.array([ds for _, ds in rows])
    real = dau != 0
    assert np.all(real[:, 0]) and np.all(np.asarray(particles.is_known(dau)) == real)
    q_mother = np.asarray(particles.charge3(mother))
    q_dau = np.sum(np.asarray(particles.charge3(dau)), axis=1)
    assert np.array_equal(q_mother, q_dau), [r for r, a, b in zip(rows, q_mother, q_dau) if a != b]
    # baryon number per channel (|code| 1000..9999 with a nonzero third digit, i.e. not a diquark)
    def baryon_number(c):
        a = np.abs(c)
        return np.where((a > 1000) & (a < 10000) & ((a // 10) % 10 > 0), np.sign(c), 0)
    assert np.array_equal(baryon_number(mother), np.sum(baryon_number(dau), axis=1))
    m_mother = np.asarray(particles.mass(mother), np.float64)
    m_sum = np.sum(np.asarray(particles.mass(dau), np.float64), axis=1)
    two_or_more = real[:, 1]
    assert np.all(m_sum[two_or_more] < m_mother[two_or_more])
    assert np.allclose(m_sum[~two_or_more], m_mother[~two_or_more])  # K0 → K_S / K_L relabelling


def test_stable_rule_and_is_stable():
    # Pythia's default: decayed iff c·τ0 < 1000 mm; the default stable set has no finite width here.
    for pid in decaying_codes():
        width = float(particles.width(jnp.array(pid)))  # 0 where the table gives none (K0, B*)
        assert width == 0.0 or HBARC_GEV_M / width < 1.0, pid
    for pid in DEFAULT_STABLE:
        assert float(particles.width(jnp.array(pid))) == 0.0
    got = is_stable(jnp.array([0, 22, 211, -211, 321, 130, 2212, 111, 310, -3122, 113, -521, 21, 1]))
    assert [bool(x) for x in got] == [True] * 7 + [False] * 5 + [True] * 2
    assert not bool(is_stable(jnp.array(211), stable=()))
    assert chain_depth() == 9


GUN = (421, 411, 431, 521, 511, 531, 441, 443, 15, 223, 221, 331, 333, 310, 3122, 3334)


@pytest.mark.parametrize("pid", GUN)
def test_mean_charged_multiplicity_near_pythia(pid):
    # reference: Pythia 8.317 particle gun at rest, default decay settings (benchmarks/pythia_reference.py,
    # tests/data/pythia_reference.json; 2·10⁴ decays each, so ≈ 0.5 % statistical error). τ and the light
    # hadrons follow PDG branching ratios directly: 6 %; the D/B/charmonium tables are inclusive proxies for
    # Pythia's thousands of exclusive channels: 12 % (B_s is the worst, −10 %).
    pythia, err = lep_reference.load()["decay_gun"]["mean_charged"][str(pid)]
    assert err < 0.02 * pythia
    heavy = abs(pid) > 400 and abs(pid) < 1000
    assert abs(mean_multiplicity(pid) / pythia - 1) < (0.12 if heavy else 0.06)


# ----------------------------------------------------------------------------------------- kinematics

def test_dalitz_inverse_cdf_end_points_and_monotone():
    t = dk.dalitz_inverse_cdf(0.78266, 0.13957, 0.13957, 0.13498)
    assert t[0] == pytest.approx((2 * 0.13957) ** 2) and t[-1] == pytest.approx((0.78266 - 0.13498) ** 2)
    assert np.all(np.diff(t) > 0)
    with pytest.raises(ValueError, match="closed"):
        dk.dalitz_inverse_cdf(0.3, 0.13957, 0.13957, 0.13498)


# ------------------------------------------------------------------------------------- the big batch

N_BIG, K_BIG = 10_000, 20


@pytest.fixture(scope="module")
def big():
    """10^4 events, 20 primaries each: all species (and antiparticles), light ones 4× more often."""
    rng = np.random.default_rng(2024)
    codes = np.array(_all_codes())
    w = np.array([1.0 if dt.mass_of(c) < 1.1 else 0.25 for c in codes])
    pid = rng.choice(codes, size=(N_BIG, K_BIG), p=w / w.sum())
    pid[:, -3:] = np.where(rng.random((N_BIG, 3)) < 0.3, 0, pid[:, -3:])  # some padding
    p3 = rng.normal(size=(N_BIG, K_BIG, 3)) * rng.exponential(3.0, size=(N_BIG, K_BIG, 1))
    ev = _events(pid, p3)
    out = jax.jit(hadron_decays().apply)({}, jax.random.key(7), ev)
    return jax.device_get(ev), jax.device_get(out)


def test_big_batch_overflow_is_rare_and_flagged(big):
    ev, out = big
    assert out.capacity == 160 and out.p4.shape == (N_BIG, 160, 4)
    flagged = (out.status & int(Status.CAPACITY_OVERFLOW)) != 0
    assert flagged.mean() < 1e-3
    assert np.all(out.status[~flagged] == 0)


def test_big_batch_four_momentum_conserved(big):
    ev, out = big
    ok = out.status == 0
    p_in = np.asarray(ev.total_p4(), np.float64)
    p_out = np.asarray(out.total_p4(), np.float64)
    sqrt_s = np.sqrt(np.maximum(p_in[:, 0] ** 2 - np.sum(p_in[:, 1:] ** 2, -1), 0))
    rel = np.max(np.abs(p_out - p_in), axis=1) / sqrt_s
    assert rel[ok].max() <= 1e-4


def test_big_batch_charge_conserved_all_stable_on_shell(big):
    ev, out = big
    ok = out.status == 0
    q_in = np.sum(np.where(ev.mask, particles.charge3(ev.pid), 0), 1)
    q_out = np.sum(np.where(out.mask, particles.charge3(out.pid), 0), 1)
    assert np.all(q_in[ok] == q_out[ok])

    def n_baryon(pid, mask):
        a = np.abs(pid)
        return np.sum(np.where(mask & (a > 1000) & (a < 10000), np.sign(pid), 0), 1)
    assert np.all(n_baryon(ev.pid, ev.mask)[ok] == n_baryon(out.pid, out.mask)[ok])
    assert not np.any(out.mask & ~np.asarray(is_stable(out.pid)))
    assert np.all(out.pid[~out.mask] == 0) and np.all(out.p4[~out.mask] == 0)
    p4 = out.p4.astype(np.float64)
    m2 = p4[..., 0] ** 2 - np.sum(p4[..., 1:] ** 2, -1)
    m_pdg = np.asarray(particles.mass(out.pid), np.float64)
    e_max = np.max(ev.p4[..., 0], axis=1, keepdims=True).astype(np.float64)
    # float32: |E² − p² − m²| at the rounding level of the hardest momentum in the event
    assert np.all(np.abs(m2 - m_pdg ** 2)[out.mask] <= (2e-6 * (1 + e_max ** 2) * out.mask)[out.mask])
    assert np.all(out.colour == 0)


def test_multiplicity_matches_table_recursion(big):
    ev, out = big
    ok = out.status == 0
    codes, inverse = np.unique(ev.pid, return_inverse=True)
    per_code = np.array([mean_multiplicity(int(c)) if c else 0.0 for c in codes])
    expected = np.sum(per_code[inverse.reshape(ev.pid.shape)], axis=1)
    got = np.sum(out.mask & (np.asarray(particles.charge3(out.pid)) != 0), 1)
    diff = got[ok] - expected[ok]
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(ok.sum())


# ------------------------------------------------------------------------------ single-species batches

N_ONE = 20_000


@pytest.fixture(scope="module")
def one_generation():
    """jit of a one-generation stage on [N_ONE, 1] events (compiled once for all single-species tests)."""
    st = hadron_decays(capacity=4, generations=1)
    f = jax.jit(st.apply)
    rng = np.random.default_rng(5)
    p3 = rng.normal(size=(N_ONE, 1, 3)) * 2.0

    def run(pid, seed=0):
        return jax.device_get(f({}, jax.random.key(seed), _events(np.full((N_ONE, 1), pid), p3)))

    return run


def test_ks_branching_ratio(one_generation):
    out = one_generation(310)
    charged = np.any(out.pid == 211, axis=1)
    assert np.all(np.any(out.pid == -211, axis=1) == charged)
    assert np.all(np.sum(out.pid == 111, axis=1)[~charged] == 2)
    p = 0.6920 / (0.6920 + 0.3069)
    assert abs(charged.mean() - p) < 3 * math.sqrt(p * (1 - p) / N_ONE)


def test_eta_channel_fractions_chi2(one_generation):
    out = one_generation(221)
    chans = branching_table()[221]
    keys = [tuple(sorted(ds)) for _, ds in chans]
    got = [tuple(sorted(int(x) for x in row if x)) for row in out.pid]
    counts = np.array([sum(g == k for g in got) for k in keys])
    assert counts.sum() == N_ONE
    expected = np.array([br for br, _ in chans]) * N_ONE
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 20.5  # χ²(4 dof) 99.96 % quantile


def test_antiparticles_decay_to_conjugate_channels(one_generation):
    out = one_generation(-3122)
    assert set(map(int, np.unique(out.pid))) <= {0, -2212, 211, -2112, 111}
    out = one_generation(-323)  # K*− → K̄0 π− (2/3), K− π0 (1/3)
    frac = np.mean(np.any(out.pid == -311, axis=1))
    assert abs(frac - 2 / 3) < 3 * math.sqrt(2 / 9 / N_ONE)


def test_b0_mixing_probability(one_generation):
    out = one_generation(511)
    charm = {411: 1, 421: 1, 431: 1, 413: 1, 423: 1, 433: 1}
    net = np.vectorize(lambda c: np.sign(c) * charm.get(abs(int(c)), 0))(out.pid).sum(1)
    flipped = np.mean(net[net != 0] > 0)  # a B0 (b̄) makes a c̄; after mixing a c
    n = np.count_nonzero(net)
    chi = MIXING[511]
    assert abs(flipped - chi) < 3 * math.sqrt(chi * (1 - chi) / n)


def test_pi0_isotropic_and_back_to_back(one_generation):
    out = one_generation(111, seed=3)
    two = np.all(out.pid[:, :2] == 22, axis=1)
    assert abs(two.mean() - 0.98823) < 0.003
    with jax.enable_x64(True):
        p = jnp.asarray(out.p4[two], jnp.float64)
        mother = p[:, 0] + p[:, 1]
        g1 = np.asarray(kinematics.boost_to_rest_frame(p[:, 0], mother))
        g2 = np.asarray(kinematics.boost_to_rest_frame(p[:, 1], mother))
    assert np.max(np.abs(g1[:, 1:] + g2[:, 1:])) < 1e-5
    n = g1.shape[0]
    flight = np.asarray(mother[:, 1:]) / np.linalg.norm(np.asarray(mother[:, 1:]), axis=-1, keepdims=True)
    for axis in (flight, np.array([0.0, 0.0, 1.0])):
        c = np.sum(g1[:, 1:] * axis, -1) / np.linalg.norm(g1[:, 1:], axis=-1)
        assert abs(c.mean()) < 4 / math.sqrt(3 * n)
        assert abs(np.mean(c ** 2) - 1 / 3) < 4 * math.sqrt(4 / 45 / n)
        counts, _ = np.histogram(c, bins=10, range=(-1, 1))
        assert np.sum((counts - n / 10) ** 2 / (n / 10)) < 27.9  # χ²(9 dof) 99.9 %


def test_three_body_flat_in_dalitz_plane(one_generation):
    out = one_generation(223)
    sel = np.sum(out.pid != 0, axis=1) == 3
    sel &= np.any(out.pid == 111, axis=1) & np.any(out.pid == 211, axis=1)
    p = out.p4[sel].astype(np.float64)
    ids = out.pid[sel]
    pip = p[ids == 211].reshape(-1, 4)
    pim = p[ids == -211].reshape(-1, 4)
    pi0 = p[ids == 111].reshape(-1, 4)

    def m2(a, b):
        s = a + b
        return s[:, 0] ** 2 - np.sum(s[:, 1:] ** 2, -1)

    s12, s23 = m2(pip, pim), m2(pim, pi0)
    M, mc, m0 = dt.mass_of(223), dt.mass_of(211), dt.mass_of(111)
    edges12 = np.linspace((2 * mc) ** 2, (M - m0) ** 2, 9)
    edges23 = np.linspace((mc + m0) ** 2, (M - mc) ** 2, 9)
    h, _, _ = np.histogram2d(s12, s23, bins=[edges12, edges23])
    # bins fully inside the Dalitz region must be equally populated (flat phase space)
    inside = np.zeros_like(h, bool)
    for i in range(8):
        for j in range(8):
            corners = [(a, b) for a in edges12[i:i + 2] for b in edges23[j:j + 2]]
            inside[i, j] = all(_in_dalitz(a, b, M, mc, mc, m0) for a, b in corners)
    c = h[inside]
    assert c.size >= 8
    chi2 = np.sum((c - c.mean()) ** 2 / c.mean())
    dof = c.size - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)


def _in_dalitz(s12, s23, M, m1, m2, m3):
    m12 = math.sqrt(s12)
    e2 = (s12 - m1 ** 2 + m2 ** 2) / (2 * m12)
    e3 = (M ** 2 - s12 - m3 ** 2) / (2 * m12)
    if e2 < m2 or e3 < m3:
        return False
    p2, p3 = math.sqrt(e2 ** 2 - m2 ** 2), math.sqrt(e3 ** 2 - m3 ** 2)
    return (e2 + e3) ** 2 - (p2 + p3) ** 2 <= s23 <= (e2 + e3) ** 2 - (p2 - p3) ** 2


# --------------------------------------------------------------------------------------- gradients

def test_gradient_matches_finite_differences_x64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(11)
        pid = np.array([[111, 221, 223, -313, 413, 521, 3312, 0],
                        [310, 331, -411, 333, 15, 3212, 2214, 211]])
        p3 = rng.normal(size=pid.shape + (3,)) * 3.0
        p3[0, 0] = 0.0  # a π0 at rest (pT = 0)
        ev = _events(pid, p3, dtype=jnp.float64)
        st = hadron_decays(capacity=96)
        key = jax.random.key(3)

        def loss_and_out(p4):
            out = st.apply({}, key, ev.replace(p4=p4))
            e2 = jnp.where(out.mask & (out.pid == 22), out.p4[..., 0] ** 2, 0.0)
            ch = jnp.where(out.mask & particles.is_charged(out.pid), out.p4[..., 3] * out.p4[..., 1], 0.0)
            return jnp.sum(e2) + jnp.sum(jnp.sin(ch)), out

        def loss(p4):
            return loss_and_out(p4)[0]

        g, out = jax.jit(jax.grad(loss_and_out, has_aux=True))(ev.p4)
        # in float64: exactly on shell and exactly conserving
        assert np.all(out.status == 0) and not np.any(out.mask & ~is_stable(out.pid))
        m2 = out.p4[..., 0] ** 2 - jnp.sum(out.p4[..., 1:] ** 2, -1)
        assert float(jnp.max(jnp.where(out.mask, jnp.abs(m2 - particles.mass(out.pid) ** 2), 0))) < 1e-10
        assert float(jnp.max(jnp.abs(out.total_p4() - ev.total_p4()))) < 1e-10
        assert bool(jnp.all(jnp.isfinite(g)))
        assert float(jnp.max(jnp.abs(g[~ev.mask]))) == 0.0
        assert float(jnp.max(jnp.abs(g))) > 0
        f = jax.jit(loss)
        for _i in range(3):
            v = jnp.asarray(rng.normal(size=ev.p4.shape)) * ev.mask[..., None]
            h = 1e-6
            fd = (f(ev.p4 + h * v) - f(ev.p4 - h * v)) / (2 * h)
            assert float(jnp.sum(g * v)) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


# ---------------------------------------------------------------------------------- stage behaviour

def test_disabled_is_identity_and_init_empty():
    st = hadron_decays(enabled=False)
    ev = _events(np.array([[111, 221]]), np.ones((1, 2, 3)))
    assert st.init(jax.random.key(0)) == {}
    out = st.apply({}, jax.random.key(0), ev)
    assert out is ev


def test_jit_compiles_once_deterministic_and_overflow_flagged():
    st = hadron_decays(capacity=6)
    traces = []

    def apply(params, key, events):
        traces.append(1)
        return st.apply(params, key, events)

    f = jax.jit(apply)
    ev = _events(np.array([[521, 521, 0], [111, 223, 0]]), np.ones((2, 3, 3)))
    a = f({}, jax.random.key(1), ev)
    b = f({}, jax.random.key(1), ev)
    c = f({}, jax.random.key(2), ev)
    assert len(traces) == 1 and f._cache_size() == 1
    assert np.array_equal(a.pid, b.pid) and np.array_equal(a.p4, b.p4)
    assert not np.array_equal(a.p4, c.p4)
    assert a.log_weight.tolist() == ev.log_weight.tolist()  # fixed probabilities: no score term
    # two B+ need more than 6 slots: flagged, never silent; the light event fits
    assert a.capacity == 6
    assert int(a.status[0]) & int(Status.CAPACITY_OVERFLOW)
    assert int(a.status[1]) == 0 and int(a.mask[1].sum()) >= 4


def test_stable_override_and_partons_pass_through():
    ev = _events(np.array([[310, 3122, 21]]), np.ones((1, 3, 3)))
    ev = ev.replace(colour=ev.colour.at[0, 2].set(jnp.array([501, 502])))
    out = jax.jit(hadron_decays(capacity=8, stable=DEFAULT_STABLE + (310, 3122)).apply)({}, jax.random.key(0), ev)
    assert out.pid[0, :3].tolist() == [310, 3122, 21] and out.colour[0, 2].tolist() == [501, 502]
    assert np.allclose(out.p4[0, :3], ev.p4[0])


@pytest.mark.parametrize("kwargs", [{"capacity": 0}, {"capacity": 2.5}, {"generations": -1},
                                    {"stable": 5}, {"enabled": "yes"}, {"decay_slots": 0}])
def test_factory_validates(kwargs):
    with pytest.raises(ValueError):
        hadron_decays(**kwargs)
