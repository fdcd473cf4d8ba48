"""Flows on the unit hypercube: bijectivity, exact log-determinants, identity at init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.flows import (
    axis_map,
    cauchy,
    flow_sampler,
    multichannel,
    peak_map,
    pole,
    rq_spline_forward,
    rq_spline_inverse,
    spline_flow,
)


def _randomise(params, key, scale=0.2):
    """Random non-identity parameters (the zero-initialised last layers get noise too). scale 0.2 moves points by
    up to ~0.4 with log-dets up to ~4; at 0.5 log-dets reach 18 (density ratios e^18) and float32 inverses lose
    1e-2, an ill-conditioning no trained flow here comes near."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)])


def test_spline_round_trip_and_derivative():
    with jax.enable_x64(True):
        key = jax.random.key(0)
        theta = 2.0 * jax.random.normal(key, (500, 3 * 10 + 1))
        x = jax.random.uniform(jax.random.key(1), (500,))
        forward, inverse = jax.jit(rq_spline_forward), jax.jit(rq_spline_inverse)  # compiled once, not op by op
        y, ld = forward(x, theta)
        x2, ld_inv = inverse(y, theta)
        np.testing.assert_allclose(x2, x, atol=1e-10)
        np.testing.assert_allclose(ld_inv, -ld, atol=1e-8)
        dydx = jax.jit(jax.vmap(jax.grad(lambda a, t: rq_spline_forward(a, t)[0])))(x, theta)
        np.testing.assert_allclose(jnp.log(dydx), ld, rtol=1e-8, atol=1e-8)
        # monotone bijection of [0, 1] with fixed end points
        ends, _ = forward(jnp.array([0.0, 1.0]), theta[:2])
        np.testing.assert_allclose(ends, [0.0, 1.0], atol=1e-12)


# all slow (~50 s each, op-by-op dispatch and jacfwd of the stack); the spline's own round trip and
# derivative are tested by default above, the flows' densities by the multi-channel test
@pytest.mark.parametrize("dim,cond_dim", [pytest.param(1, 0, marks=pytest.mark.slow),
                                          pytest.param(3, 0, marks=pytest.mark.slow),
                                          pytest.param(5, 2, marks=pytest.mark.slow)])
def test_flow_round_trip_and_jacobian(dim, cond_dim):
    flow = spline_flow(dim, bins=6, hidden=(16,), cond_dim=cond_dim)
    params = _randomise(flow.init(jax.random.key(0)), jax.random.key(1))
    cond = jnp.array([0.3, -1.2])[:cond_dim] if cond_dim else None
    u = jax.random.uniform(jax.random.key(2), (64, dim), minval=0.001, maxval=0.999)
    x, ld = flow.forward(params, u, cond)
    assert not np.allclose(x, u, atol=1e-3)  # really not the identity
    u2, ld_inv = flow.inverse(params, x, cond)
    np.testing.assert_allclose(u2, u, atol=1e-5)  # float32 round trip
    # float32: ξ's rounding (1e-7) is amplified by 1/(bin width) in log S', so compare at 1e-3 here and
    # to 1e-9 in float64 below
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-3, rtol=1e-3)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        u64 = jnp.asarray(u, jnp.float64)
        c64 = None if cond is None else jnp.asarray(cond, jnp.float64)
        jac = jax.vmap(jax.jacfwd(lambda v: flow.forward(p64, v[None], c64)[0][0]))(u64)
        x64, ld64 = flow.forward(p64, u64, c64)
        np.testing.assert_allclose(ld64, jnp.linalg.slogdet(jac)[1], rtol=1e-9, atol=1e-9)
        u64b, ld64_inv = flow.inverse(p64, x64, c64)
        np.testing.assert_allclose(u64b, u64, atol=1e-10)
        np.testing.assert_allclose(ld64_inv, -ld64, atol=1e-8)


def test_condition_changes_the_map():
    flow = spline_flow(2, bins=4, hidden=(8,), cond_dim=1)
    params = _randomise(flow.init(jax.random.key(0)), jax.random.key(1))
    u = jnp.full((1, 2), 0.4)
    forward = jax.jit(flow.forward)
    a, _ = forward(params, u, jnp.array([0.0]))
    b, _ = forward(params, u, jnp.array([1.0]))
    assert not np.allclose(a, b, atol=1e-4)


def test_identity_at_init():
    flow = spline_flow(4, bins=8, hidden=(16, 16), cond_dim=1)
    params = flow.init(jax.random.key(3))
    u = jax.random.uniform(jax.random.key(4), (128, 4))
    x, ld = jax.jit(flow.forward)(params, u, jnp.array([0.7]))
    np.testing.assert_allclose(x, u, atol=2e-6)
    np.testing.assert_allclose(ld, 0.0, atol=2e-5)


@pytest.mark.slow
def test_density_normalised():
    """q(x) = exp(log_prob) integrates to 1 over the cube (2D grid, randomised flow)."""
    with jax.enable_x64(True):
        flow = spline_flow(2, bins=6, hidden=(8,))
        sampler = flow_sampler(flow)
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                        _randomise(flow.init(jax.random.key(0)), jax.random.key(5), 0.3))
        g = (jnp.arange(200) + 0.5) / 200
        xx = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
        total = jnp.mean(jnp.exp(sampler.log_prob(params, xx)))
        assert abs(float(total) - 1.0) < 2e-3  # midpoint rule on a 200² grid: error O(h² q'') ≈ 1e-4 here


def test_multichannel_density_consistent():
    with jax.enable_x64(True):
        chans = [(peak_map([0.3, 0.6], 0.2), spline_flow(2, bins=4, hidden=(8,))),
                 (peak_map([0.7, 0.2], 0.1), spline_flow(2, bins=4, hidden=(8,)))]
        sampler = multichannel(chans, weights=[0.3, 0.7])
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                        _randomise(sampler.init(jax.random.key(0)), jax.random.key(1), 0.3))
        sample, log_prob = jax.jit(sampler.sample), jax.jit(sampler.log_prob)  # one compilation, not op by op
        x, log_q = sample(params, jax.random.uniform(jax.random.key(2), (50, 3), jnp.float64))
        np.testing.assert_allclose(log_q, log_prob(params, x), atol=1e-8)
        g = (jnp.arange(300) + 0.5) / 300
        xx = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
        assert abs(float(jnp.mean(jnp.exp(log_prob(params, xx)))) - 1.0) < 5e-3


def test_axis_maps_round_trip_jacobian_and_normalisation():
    """cauchy and pole maps: inverse ∘ forward = id, log-det = jacfwd's, each 1D density integrates to 1
    (midpoint rule on 2·10⁶ points: error ≲ 1e-9 for these widths), untouched axes stay put."""
    with jax.enable_x64(True):
        maps = {0: cauchy(0.4455, 0.0179), 2: pole(0.02, at=1), 3: pole(0.0103, at=0)}
        cmap = axis_map(4, maps)
        z = jax.random.uniform(jax.random.key(0), (200, 4), jnp.float64)
        x, ld = cmap.forward(z)
        np.testing.assert_array_equal(x[:, 1], z[:, 1])
        z2, ld_inv = cmap.inverse(x)
        np.testing.assert_allclose(z2, z, atol=1e-12)
        np.testing.assert_allclose(ld_inv, -ld, atol=1e-12)
        jac = jax.jit(jax.vmap(jax.jacfwd(lambda v: cmap.forward(v[None])[0][0])))(z)
        np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], atol=1e-10)
        g = (jnp.arange(2_000_000) + 0.5) / 2_000_000
        for m in maps.values():
            assert abs(float(jnp.mean(jnp.exp(jax.jit(m.inverse)(g)[1]))) - 1.0) < 1e-8
        # pole(c, at=1) has density ∝ 1/(c + 1 − x): ratio of densities at the two ends is (1 + c)/c
        lq = maps[2].inverse(jnp.array([0.0, 1.0]))[1]
        assert float(lq[1] - lq[0]) == pytest.approx(np.log(1.02 / 0.02), rel=1e-12)
        # a flow in front of the map: the sampler's density is still consistent
        sampler = flow_sampler(spline_flow(4, bins=4, hidden=(8,)), cmap)
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                        _randomise(sampler.init(jax.random.key(1)), jax.random.key(2)))
        xs, log_q = jax.jit(sampler.sample)(params, z)
        np.testing.assert_allclose(log_q, jax.jit(sampler.log_prob)(params, xs), atol=1e-8)


def test_bad_input():
    with pytest.raises(ValueError, match="spline bins"):
        spline_flow(2, bins=1)
    with pytest.raises(ValueError, match="flow dim"):
        spline_flow(0)
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        flow = spline_flow(3)
        flow.forward(flow.init(jax.random.key(0)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="centre"):
        peak_map([1.2], 0.1)
    with pytest.raises(ValueError, match="cauchy width"):
        cauchy(0.5, 0.0)
    with pytest.raises(ValueError, match="pole offset"):
        pole(-0.1)
    with pytest.raises(ValueError, match="'at'"):
        pole(0.1, at=0.5)
    with pytest.raises(ValueError, match=r"axis must be an integer in \[0, 1\]"):
        axis_map(2, {2: pole(0.1)})
    with pytest.raises(ValueError, match="channel_map must be a ChannelMap of dim 3"):
        flow_sampler(spline_flow(3), axis_map(2, {}))
