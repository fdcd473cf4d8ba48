"""The ML hadronization layer (diffgen.hadronization.ml): conservation, determinism, gradients, settings.

The default tests run on 64 synthetic parton-level events (RAMBO momenta, one or two colour chains; no
shower to compile) with a small network: one compilation of the stage's ``diagnose`` and one of its
gradient. The 10^4-event test on showered events is marked slow.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen import particles, presets
from diffgen.events import Events, Status
from diffgen.hadronization.ml import ML_SETTING_NAMES, ml_hadronization
from diffgen.processes import ee_to_ffbar
from diffgen.shower import final_state_shower
from diffgen.stage import Generator, chain

SQRT_S = 91.188
N = 64
SMALL = {"capacity": 64, "max_clusters": 32, "fission_rounds": 5, "hidden": 16, "noise_dim": 2}
_QUARK_CHARGE3 = np.array([0, -1, 2, -1, 2, -1])


def parton_generator():
    return Generator(chain(("hard", ee_to_ffbar((1, 2, 3, 4, 5), SQRT_S)), ("shower", final_state_shower())),
                     name="partons")


def _rambo(n, rng):
    """n massless momenta with Σp = (√s, 0, 0, 0), flat in phase space (RAMBO), f[n, 4] GeV."""
    c = 2 * rng.uniform(size=n) - 1
    phi = 2 * np.pi * rng.uniform(size=n)
    e = -np.log(rng.uniform(size=n) * rng.uniform(size=n))
    s = np.sqrt(1 - c * c)
    q = np.stack([e, e * s * np.cos(phi), e * s * np.sin(phi), e * c], axis=1)
    big_q = q.sum(0)
    m = np.sqrt(big_q[0] ** 2 - np.sum(big_q[1:] ** 2))
    b = -big_q[1:] / m
    x = SQRT_S / m
    gamma = big_q[0] / m
    a = 1 / (1 + gamma)
    bq = q[:, 1:] @ b
    p0 = x * (gamma * q[:, 0] + bq)
    p3 = x * (q[:, 1:] + b[None, :] * q[:, :1] + a * bq[:, None] * b[None, :])
    return np.concatenate([p0[:, None], p3], axis=1)


def synthetic_partons(n, seed=0, capacity=16):
    """Parton-level events without the shower (cheap for the default tests): one or two colour chains
    q g … g q̄ with 0–6 gluons, RAMBO momenta at √s, quark flavours 1..5 (massless)."""
    rng = np.random.default_rng(seed)
    p4 = np.zeros((n, capacity, 4), np.float32)
    pid = np.zeros((n, capacity), np.int32)
    colour = np.zeros((n, capacity, 2), np.int32)
    for i in range(n):
        chains = [int(rng.integers(0, 7))] + ([int(rng.integers(0, 3))] if rng.uniform() < 0.3 else [])
        slot, tag = 0, 100
        for n_g in chains:
            f = int(rng.integers(1, 6))
            pid[i, slot], colour[i, slot] = f, (tag + 1, 0)
            for _ in range(n_g):
                pid[i, slot + 1], colour[i, slot + 1] = 21, (tag + 2, tag + 1)
                slot, tag = slot + 1, tag + 1
            pid[i, slot + 1], colour[i, slot + 1] = -f, (0, tag + 1)
            slot, tag = slot + 2, tag + 10
        p4[i, :slot] = _rambo(slot, rng)
    ev = Events.empty(n, capacity).replace(p4=jnp.asarray(p4), pid=jnp.asarray(pid), mask=jnp.asarray(pid != 0),
                                           colour=jnp.asarray(colour))
    return ev


@pytest.fixture(scope="module")
def partons():
    return synthetic_partons(N, seed=11)


@pytest.fixture(scope="module")
def stage():
    return ml_hadronization(**SMALL)


@pytest.fixture(scope="module")
def diagnose(stage):
    return jax.jit(stage.diagnose)


@pytest.fixture(scope="module")
def result(stage, diagnose, partons):
    params = stage.init(jax.random.key(0))
    return diagnose(params, jax.random.key(5), partons)


def _parton_charge3(ev):
    pid = np.asarray(ev.pid)
    c = np.where((np.abs(pid) >= 1) & (np.abs(pid) <= 5), _QUARK_CHARGE3[np.clip(np.abs(pid), 0, 5)] * np.sign(pid), 0)
    return np.where(np.asarray(ev.mask), c, 0).sum(axis=1)


def test_four_momentum_and_charge_conserved_per_cluster_and_event(partons, result):
    out, info = result
    assert int(np.max(np.asarray(out.status))) == 0
    tol = 1e-5 * SQRT_S
    act = np.asarray(info["cluster_active"])
    assert act.sum() > 5 * N  # several clusters per event
    hadrons = np.asarray(info["hadron_p4"])  # [N, C, 2, 4]
    dev = np.abs(hadrons.sum(axis=2) - np.asarray(info["cluster_p4"]))[act]
    assert dev.max() < tol
    # both hadrons on their mass shell (GeV)
    pid = np.asarray(info["hadron_pid"])[act]
    m_pdg = np.asarray(particles.mass(pid))
    p = hadrons[act]
    m2 = p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, axis=-1)
    np.testing.assert_allclose(np.sqrt(np.maximum(m2, 0)), m_pdg, atol=2e-3)
    # charge: exactly per cluster (decayed and single-meson ones) and per event
    q_pair = np.asarray(particles.charge3(np.asarray(info["hadron_pid"]))).sum(axis=2)
    np.testing.assert_array_equal(np.where(act, q_pair, 0), np.asarray(info["cluster_charge3"]))
    np.testing.assert_array_equal(np.asarray(info["light_charge3"]), np.asarray(info["light_cluster_charge3"]))
    assert np.all(np.asarray(info["hadron_pid"])[act] != 0)
    q_out = np.where(np.asarray(out.mask), np.asarray(particles.charge3(out.pid)), 0).sum(axis=1)
    np.testing.assert_array_equal(q_out, _parton_charge3(partons))
    # four-momentum per event
    np.testing.assert_allclose(np.asarray(out.total_p4()), np.asarray(partons.total_p4()), atol=tol)
    # only known hadrons, no partons left, colour tags cleared
    occupied = np.asarray(out.pid)[np.asarray(out.mask)]
    assert np.all(np.asarray(particles.is_known(occupied))) and not np.any(np.abs(occupied) <= 21)
    assert not np.any(np.asarray(out.colour))


def test_untrained_network_decays_isotropically(result):
    out, info = result
    act = np.asarray(info["cluster_active"])
    cos = np.asarray(info["cos_theta"])[act]
    n = cos.size
    # uniform cos θ*: mean 0 ± 1/√(3n), variance 1/3 ± √(4/45 / n)
    assert abs(cos.mean()) < 4.0 / np.sqrt(3 * n)
    assert abs(cos.var() - 1 / 3) < 4.0 * np.sqrt(4 / 45 / n)


def test_clusters_are_light_after_fission(result):
    out, info = result
    m = np.asarray(info["cluster_mass"])[np.asarray(info["cluster_active"])]
    # RAMBO events with a bare q q̄ pair start from one 91 GeV cluster: fission must have split them
    assert np.mean(np.asarray(info["heavy_left"])) < 0.1
    assert np.median(m) < 3.0 and np.quantile(m, 0.9) < 6.0
    n_clusters, n_formed = np.asarray(info["n_clusters"]), np.asarray(info["n_formed"])
    assert np.all(n_clusters >= n_formed) and np.mean(n_clusters - n_formed) > 1.0


def test_same_key_same_events_other_key_other_events(stage, diagnose, partons, result):
    params = stage.init(jax.random.key(0))
    again, _ = diagnose(params, jax.random.key(5), partons)
    out, _ = result
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other, _ = diagnose(params, jax.random.key(6), partons)
    assert not np.array_equal(np.asarray(other.p4), np.asarray(out.p4))


def _observable(ev: Events):
    """Weighted mean of Σ_h |p⃗_h|² / s (depends on the decay angles, the species and the cluster count)."""
    p2 = jnp.sum(jnp.where(ev.mask[..., None], ev.p4[..., 1:] ** 2, 0.0), axis=(1, 2)) / SQRT_S ** 2
    n = jnp.sum(ev.mask, axis=1).astype(p2.dtype)
    w = jnp.exp(ev.log_weight) * (ev.status == 0)
    return jnp.sum(w * (p2 + 0.05 * n)) / jnp.sum(w)


def test_gradients_finite_and_nonzero(stage, partons):
    params = stage.init(jax.random.key(0))

    def loss(net, max_mass, p_split, prob_s, p4):
        p = {**params, "net": net, "ClusterFission:maxMass": max_mass, "ClusterFission:pSplit": p_split,
             "StringFlav:probStoUD": prob_s}
        return _observable(stage.apply(p, jax.random.key(5), partons.replace(p4=p4)))

    args = (params["net"], params["ClusterFission:maxMass"], params["ClusterFission:pSplit"],
            params["StringFlav:probStoUD"], partons.p4)
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))(*args)
    assert np.isfinite(float(value))
    g_net, g_max, g_split, g_s, g_p4 = grads
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(g_net)]
    assert all(np.all(np.isfinite(x)) for x in leaves)
    assert max(np.abs(x).max() for x in leaves) > 0  # the zero-initialised last layer gets a gradient
    for g in (g_max, g_split, g_s):
        assert np.isfinite(float(g)) and float(g) != 0.0
    g_p4 = np.asarray(g_p4)
    assert np.all(np.isfinite(g_p4)) and np.abs(g_p4).max() > 0
    assert np.all(g_p4[~np.asarray(partons.mask)] == 0)  # padded slots get no gradient


@pytest.mark.slow
def test_no_nonfinite_values_or_gradients_in_ten_thousand_events():
    """10^4 showered events through the default-size layer: values and gradients finite everywhere."""
    gen = parton_generator()
    st = ml_hadronization()
    params = st.init(jax.random.key(0))

    @jax.jit
    def run(p, ev):
        def loss(net, theta):
            q = {**p, "net": net, **theta}
            return _observable(st.apply(q, jax.random.key(1), ev))

        theta = {n: p[n] for n in ML_SETTING_NAMES}
        value, grads = jax.value_and_grad(loss, argnums=(0, 1))(p["net"], theta)
        out = st.apply(p, jax.random.key(1), ev)
        return value, grads, out

    failed = 0
    for chunk in range(10):
        ev = gen.sample(gen.default_params(), jax.random.key(7), 1000, offset=1000 * chunk)
        value, grads, out = run(params, ev)
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(grads))
        assert np.all(np.isfinite(np.asarray(out.p4))) and np.all(np.isfinite(np.asarray(out.log_weight)))
        status = np.asarray(out.status)
        assert not np.any(status & int(Status.NONFINITE | Status.CAPACITY_OVERFLOW))
        failed += int(np.count_nonzero(status & int(Status.FAILED_KINEMATICS)))
    assert failed <= 10  # light clusters that no neighbour can absorb: rare


def test_settings_registered_with_ranges_and_bad_values_raise(stage):
    params = {"hadronization": stage.init(None)}
    s = diffgen.settings(params)
    for name in ML_SETTING_NAMES:
        assert name in s
    with pytest.raises(ValueError, match=r"ClusterFission:maxMass.*outside its allowed range \[0.5, 20\] GeV"):
        diffgen.with_settings(params, {"ClusterFission:maxMass": 0.1})
    with pytest.raises(ValueError, match="ClusterFission:pSplit"):
        diffgen.with_settings(params, {"ClusterFission:pSplit": 0.0})
    with pytest.raises(ValueError, match="ClusterFission:power"):
        diffgen.params.check_params({"hadronization": {**params["hadronization"], "ClusterFission:power": 50.0}})
    p2 = diffgen.with_settings(params, {"ClusterFission:maxMass": 4.0})
    assert float(diffgen.settings(p2)["ClusterFission:maxMass"]) == 4.0


def test_traced_out_of_range_setting_sets_status(stage, diagnose, partons):
    params = {**stage.init(jax.random.key(0)), "ClusterFission:maxMass": jnp.asarray(-1.0, jnp.float32)}
    out, _ = diagnose(params, jax.random.key(5), partons)  # params are traced inside the jitted diagnose
    assert np.all(np.asarray(out.status) & int(Status.PARAM_OUT_OF_RANGE))


@pytest.mark.parametrize("kwargs, match", [
    ({"capacity": 1}, "capacity"), ({"max_clusters": 0}, "max_clusters"), ({"hidden": 0}, "hidden"),
    ({"fission_rounds": -1}, "fission_rounds"), ({"noise_dim": 1.5}, "noise_dim"), ({"depth": True}, "depth"),
])
def test_bad_factory_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ml_hadronization(**kwargs)


def test_preset_hadronization_choice():
    gen = presets.ee_hadrons(hadronization="ml")
    p = gen.default_params()
    assert "net" in p["hadronization"] and "ClusterFission:maxMass" in diffgen.settings(p)
    assert "StringZ:aLund" not in diffgen.settings(p)
    assert "StringZ:aLund" in diffgen.settings(presets.ee_hadrons().default_params())
    with pytest.raises(ValueError, match=r"unknown hadronization model 'lund'; allowed: string, ml"):
        presets.ee_hadrons(hadronization="lund")
