"""Gradient-safe kinematics: values against vector (scikit-hep) and finite gradients at the edges."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import vector

from diffgen import kinematics as kin

FUNCS = [kin.mass, kin.mass2, kin.pt, kin.eta, kin.phi, kin.rapidity, kin.p3_abs, kin.cos_theta]

EDGE_CASES = {
    "padded": [0.0, 0.0, 0.0, 0.0],
    "pt_zero_along_z": [5.0, 0.0, 0.0, 5.0],
    "pt_zero_massive": [5.0, 0.0, 0.0, 3.0],
    "massless": [5.0, 3.0, 0.0, 4.0],
    "at_rest": [1.0, 0.0, 0.0, 0.0],
    "backward_lightlike": [2.0, 0.0, 0.0, -2.0],
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_values_and_gradients_finite_at_edges(fn, case):
    p = jnp.asarray(EDGE_CASES[case])
    assert np.isfinite(float(fn(p)))
    g = jax.grad(fn)(p)
    assert np.all(np.isfinite(np.asarray(g))), (fn.__name__, case, g)


def test_pairwise_functions_finite_at_edges():
    zero = jnp.zeros(4)
    along_z = jnp.asarray([5.0, 0.0, 0.0, 5.0])
    for a, b in [(zero, zero), (along_z, zero), (along_z, along_z)]:
        for fn in (kin.delta_r, kin.delta_phi, kin.minkowski_dot):
            assert np.isfinite(float(fn(a, b)))
            ga, gb = jax.grad(fn, argnums=(0, 1))(a, b)
            assert np.all(np.isfinite(np.asarray(ga))) and np.all(np.isfinite(np.asarray(gb)))


@jax.enable_x64(True)
def test_values_agree_with_scikit_hep_vector():
    # float64: m from E² − p² cancels catastrophically in float32 for light, fast particles
    rng = np.random.default_rng(1)
    p3 = rng.normal(size=(200, 3)) * 10
    m = rng.uniform(0.1, 5, size=200)
    e = np.sqrt((p3**2).sum(1) + m**2)
    p = np.column_stack([e, p3])
    v = vector.array({"px": p3[:, 0], "py": p3[:, 1], "pz": p3[:, 2], "E": e})
    jp = jnp.asarray(p)
    np.testing.assert_allclose(kin.mass(jp), v.mass, rtol=1e-9)
    np.testing.assert_allclose(kin.pt(jp), v.pt, rtol=1e-5)
    np.testing.assert_allclose(kin.eta(jp), v.eta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kin.phi(jp), v.phi, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kin.rapidity(jp), v.rapidity, rtol=1e-4, atol=1e-4)
    q = jp[::-1]
    vq = v[::-1]
    np.testing.assert_allclose(kin.delta_r(jp, q), v.deltaR(vq), rtol=1e-4, atol=1e-4)


def test_boost_round_trip_and_invariance():
    rng = np.random.default_rng(2)
    p = jnp.asarray(np.column_stack([np.full(50, 20.0), rng.normal(size=(50, 3)) * 5]))
    beta = jnp.asarray(rng.uniform(-0.5, 0.5, size=(50, 3)))
    q = kin.boost(p, beta)
    np.testing.assert_allclose(kin.mass2(q), kin.mass2(p), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(kin.boost(q, -beta), p, rtol=1e-4, atol=1e-4)
    frame = jnp.asarray([10.0, 1.0, 2.0, 3.0])
    rest = kin.boost_to_rest_frame(frame, frame)
    np.testing.assert_allclose(rest[1:], 0.0, atol=1e-5)
    np.testing.assert_allclose(rest[0], kin.mass(frame), rtol=1e-6)
    # identity boost has finite gradients
    g = jax.grad(lambda b: kin.boost(p[0], b).sum())(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(g)))


def test_rotations():
    p = jnp.asarray([5.0, 0.0, 0.0, 5.0])
    d = jnp.asarray([1.0, 1.0, 1.0]) / jnp.sqrt(3.0)
    q = kin.rotate_z_to(p, d)
    np.testing.assert_allclose(q[1:] / 5.0, d, atol=1e-6)
    r = kin.rotate(jnp.asarray([1.0, 1.0, 0.0, 0.0]), jnp.asarray([0.0, 0.0, jnp.pi / 2]))
    np.testing.assert_allclose(r, [1.0, 0.0, 1.0, 0.0], atol=1e-6)
    g = jax.grad(lambda a: kin.rotate(p, a).sum())(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(g)))
    g2 = jax.grad(lambda v: kin.rotate_z_to(p, v).sum())(jnp.asarray([0.0, 0.0, 1.0]))
    assert np.all(np.isfinite(np.asarray(g2)))


def test_match_total_momentum_restores_the_sum_and_keeps_masses():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        masses = rng.uniform(0.1, 1.0, size=(20, 12))
        p3 = rng.normal(size=(20, 12, 3)) * 3
        p4 = jnp.asarray(np.concatenate([np.sqrt(masses[..., None] ** 2 + (p3**2).sum(-1, keepdims=True)), p3], -1))
        mask = jnp.asarray(rng.uniform(size=(20, 12)) < 0.8)
        total = jnp.sum(jnp.where(mask[..., None], p4, 0.0), axis=1)
        target = total + jnp.asarray(rng.normal(size=(20, 4)) * 1e-3)  # a small imbalance to remove
        out = kin.match_total_momentum(p4, mask, target, newton_steps=3)
        new_total = jnp.sum(jnp.where(mask[..., None], out, 0.0), axis=1)
        np.testing.assert_allclose(new_total, target, atol=1e-9)
        np.testing.assert_allclose(kin.mass2(out)[mask], (masses**2)[np.asarray(mask)], atol=1e-9)
        np.testing.assert_allclose(out[~mask], p4[~mask])  # padded slots untouched
        np.testing.assert_allclose(out, p4, atol=1e-2)  # and the change is small
        g = jax.grad(lambda t: kin.match_total_momentum(p4, mask, t).sum())(target)
        assert np.all(np.isfinite(np.asarray(g)))


def test_cos_theta_relative_to_an_axis():
    rng = np.random.default_rng(4)
    p = jnp.asarray(np.column_stack([np.full(30, 50.0), rng.normal(size=(30, 3)) * 10]))
    a = jnp.asarray(np.column_stack([np.full(30, 45.0), rng.normal(size=(30, 3)) * 10]))
    p3, a3 = np.asarray(p)[:, 1:], np.asarray(a)[:, 1:]
    want = (p3 * a3).sum(1) / np.linalg.norm(p3, axis=1) / np.linalg.norm(a3, axis=1)
    np.testing.assert_allclose(kin.cos_theta(p, a), want, rtol=1e-5, atol=1e-6)
    # default axis +z; an axis along ±z (any energy, any length) gives ±cos θ; broadcasting
    z_axis = jnp.asarray([45.0, 0.0, 0.0, 45.0])
    np.testing.assert_allclose(kin.cos_theta(p, z_axis), kin.cos_theta(p), rtol=1e-6)
    np.testing.assert_allclose(kin.cos_theta(p, -3.0 * z_axis), -kin.cos_theta(p), rtol=1e-6)
    # zero vectors (padded slots): 0 with finite (zero) gradients in both arguments
    zero = jnp.zeros(4)
    for x, y in [(zero, z_axis), (p[0], zero), (zero, zero)]:
        assert float(kin.cos_theta(x, y)) == 0.0
        gx, gy = jax.grad(kin.cos_theta, argnums=(0, 1))(x, y)
        assert np.all(np.isfinite(np.asarray(gx))) and np.all(np.isfinite(np.asarray(gy)))
    # gradient against finite differences (float64)
    with jax.enable_x64(True):
        p0 = jnp.asarray([50.0, 3.0, -4.0, 12.0])
        a0 = jnp.asarray([45.0, 1.0, 2.0, -40.0])
        g = jax.grad(kin.cos_theta)(p0, a0)
        h = 1e-6
        fd = [(kin.cos_theta(p0.at[i].add(h), a0) - kin.cos_theta(p0.at[i].add(-h), a0)) / (2 * h) for i in range(4)]
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-10)
