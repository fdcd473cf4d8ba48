"""Core API: Events, settings, determinism, chunking, sharding, no recompilation, histograms, linearisation."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen import Status
from diffgen.expect import event_weights


@pytest.fixture(scope="module")
def gen():
    return diffgen.presets.ee_mumu(91.188)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def test_settings_round_trip_and_defaults(gen):
    p = gen.default_params()
    s = diffgen.settings(p)
    assert float(s["23:m0"]) == pytest.approx(91.1876)
    assert float(s["23:mWidth"]) == pytest.approx(2.50419)
    assert float(s["StandardModel:alphaEMmZ"]) == pytest.approx(0.00781751)
    p2 = diffgen.with_settings(p, {"23:m0": 91.2, "Beams:eCM": 90.0})
    assert float(diffgen.settings(p2)["23:m0"]) == pytest.approx(91.2)
    assert float(diffgen.settings(p)["23:m0"]) == pytest.approx(91.1876)  # original untouched


def test_with_settings_accepts_traced_values(gen):
    p = gen.default_params()

    def sigma(m):
        q = diffgen.with_settings(p, {"23:m0": m})
        return diffgen.cross_section(gen, q, jax.random.key(0), 2000)[0]

    g = jax.grad(sigma)(91.1876)
    assert np.isfinite(float(g))


@pytest.mark.parametrize("process", ["ee-mumu", "ee-hadrons"])
def test_with_settings_keeps_the_jit_signature(process):
    """A new value of any setting must not retrace a jitted generator: the replaced leaf keeps the form of
    the default (a Python float stays a Python float, an array keeps its dtype). Found when a change of
    StringZ:aLund (a Python float by default, an array after with_settings) recompiled the whole e+e- →
    hadrons chain (83 s) in benchmarks/unfold_ee_hadrons.py."""
    from diffgen.params import SETTINGS

    p0 = diffgen.presets.make(process).default_params()
    traces = []

    @jax.jit
    def f(params):
        traces.append(1)
        return sum(jnp.sum(jnp.asarray(x)) for x in jax.tree_util.tree_leaves(params))

    f(p0)
    for name, value in diffgen.settings(p0).items():
        spec = SETTINGS[name]
        new = float(value) * 0.97 if float(value) * 0.97 >= spec.lo else float(value) + 0.01 * (spec.hi - spec.lo)
        f(diffgen.with_settings(p0, {name: new}))
        assert len(traces) == 1, f"with_settings({name!r}) changed the params' jit signature"


def test_traced_out_of_range_sets_status(gen):
    p = gen.default_params()

    @jax.jit
    def run(width):
        return gen.sample_traced(diffgen.with_settings(p, {"23:mWidth": width}), jax.random.key(0), 8)

    ev = run(-1.0)
    assert (np.asarray(ev.status) & int(Status.PARAM_OUT_OF_RANGE)).all()
    assert float(jnp.sum(event_weights(ev))) == 0.0
    ok = run(2.5)
    assert (np.asarray(ok.status) == 0).all()


def test_same_key_same_events_and_prefix_property(gen):
    p = gen.default_params()
    a = gen.sample(p, jax.random.key(7), 500)
    b = gen.sample(p, jax.random.key(7), 500)
    c = gen.sample(p, jax.random.key(7), 37)
    d = gen.sample(p, jax.random.key(8), 500)
    assert _leaves_equal(a, b)
    assert _leaves_equal(a[:37], c)
    assert not np.array_equal(np.asarray(a.p4), np.asarray(d.p4))


@pytest.mark.parametrize("chunk", [1000, 333, 64])
def test_chunking_is_bit_identical(chunk):
    g = diffgen.presets.ee_qq(91.188)
    p = g.default_params()
    ref = g.sample(p, jax.random.key(3), 1000)
    ev = diffgen.generate(g, p, jax.random.key(3), 1000, chunk=chunk, progress=False)
    assert _leaves_equal(jax.tree_util.tree_map(np.asarray, ref), ev)


def test_sharded_over_two_cpu_devices_matches_one_device(tmp_path):
    code = """
import jax, numpy as np, diffgen
assert len(jax.devices()) == 2, jax.devices()
g = diffgen.presets.ee_qq(91.188); p = g.default_params(); k = jax.random.key(5)
one = diffgen.generate(g, p, k, 1000, chunk=250, progress=False)
two = diffgen.generate(g, p, k, 1000, chunk=250, devices=jax.devices(), progress=False)
same = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(two)))
print("SAME" if same else "DIFFERENT")
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "SAME" in out.stdout


def test_no_recompilation_on_second_call():
    traces = []
    hard = diffgen.processes.ee_to_ffbar((13,), 91.188)

    def counting_apply(params, key, events):
        traces.append(1)
        return hard.apply(params, key, events)

    g = diffgen.Generator(diffgen.chain(("hard", diffgen.Stage(hard.init, counting_apply))))
    p = g.default_params()
    g.sample(p, jax.random.key(0), 100)
    g.sample(diffgen.with_settings(p, {"23:m0": 91.0}), jax.random.key(1), 100)
    assert len(traces) == 1
    g.sample(p, jax.random.key(0), 200)  # a new shape compiles once more
    assert len(traces) == 2


def test_chain_reseeds_by_name_not_position():
    hard = diffgen.processes.ee_to_ffbar((13,), 91.188)
    ident = diffgen.Stage(lambda k: {}, lambda p, k, ev: ev)
    g1 = diffgen.Generator(diffgen.chain(("hard", hard)))
    g2 = diffgen.Generator(diffgen.chain(("hard", hard), ("extra", ident)))
    a = g1.sample(g1.default_params(), jax.random.key(2), 50)
    b = g2.sample(g2.default_params(), jax.random.key(2), 50)
    assert _leaves_equal(a, b)


def test_events_resize_flags_overflow():
    ev = diffgen.Events.empty(3, 4)
    ev = ev.replace(mask=ev.mask.at[1, 3].set(True))
    small = ev.resize(2)
    assert small.capacity == 2
    assert list(np.asarray(small.status) & int(Status.CAPACITY_OVERFLOW)) == [0, 1, 0]
    assert ev.resize(6).capacity == 6


def _compact_reference(mask, field, capacity):
    out = np.zeros((mask.shape[0], capacity) + field.shape[2:], field.dtype)
    for i in range(mask.shape[0]):
        kept = field[i][mask[i]][:capacity]
        out[i, : len(kept)] = kept
    return out


@pytest.mark.parametrize("capacity", [0, 3, 6, 9])
def test_compact_slots_keeps_order_flags_overflow_and_pads_zeros(capacity):
    from diffgen.events import compact_slots

    rng = np.random.default_rng(5)
    mask = rng.uniform(size=(40, 6)) < 0.5
    mask[0] = True  # 6 occupied
    mask[1] = False  # none
    p4 = rng.normal(size=(40, 6, 4)).astype(np.float32)
    pid = np.where(mask, rng.integers(1, 300, size=(40, 6)), 0).astype(np.int32)
    out_mask, fields, over = jax.jit(compact_slots, static_argnums=2)(
        jnp.asarray(mask), {"p4": jnp.asarray(p4), "pid": jnp.asarray(pid)}, capacity)
    assert set(fields) == {"p4", "pid"} and fields["p4"].shape == (40, capacity, 4)
    assert fields["pid"].dtype == jnp.int32 and out_mask.shape == (40, capacity)
    np.testing.assert_array_equal(fields["p4"], _compact_reference(mask, p4, capacity))
    np.testing.assert_array_equal(fields["pid"], _compact_reference(mask, pid, capacity))
    count = mask.sum(1)
    np.testing.assert_array_equal(out_mask, np.arange(capacity)[None, :] < np.minimum(count, capacity)[:, None])
    np.testing.assert_array_equal(over, count > capacity)


def test_compact_slots_gradient_goes_to_the_kept_slots():
    from diffgen.events import compact_slots

    mask = jnp.array([[False, True, True, False, True], [True, False, False, False, False]])
    p4 = jnp.arange(40.0).reshape(2, 5, 4)
    weights = jnp.arange(1.0, 1.0 + 2 * 2 * 4).reshape(2, 2, 4)  # capacity 2: event 0 drops slot 4

    def loss(p):
        _, (q,), _ = compact_slots(mask, (p,), 2)
        return jnp.sum(weights * q)

    g = np.asarray(jax.grad(loss)(p4))
    want = np.zeros((2, 5, 4))
    want[0, 1], want[0, 2], want[1, 0] = weights[0, 0], weights[0, 1], weights[1, 0]
    np.testing.assert_array_equal(g, want)  # empty and dropped slots get exactly zero
    _, (q,), over = compact_slots(mask, (p4,), 2)
    np.testing.assert_array_equal(over, [True, False])
    np.testing.assert_array_equal(q[1, 1], 0.0)
    # no particle slots at all: everything empty, nothing overflows
    m0, (f0,), o0 = compact_slots(jnp.zeros((3, 0), bool), (jnp.zeros((3, 0, 4)),), 2)
    assert f0.shape == (3, 2, 4) and not np.any(m0) and not np.any(o0)


def test_events_compact_sets_overflow_status():
    ev = diffgen.Events.empty(2, 4)
    mask = jnp.array([[False, True, False, True], [True, True, True, False]])
    p4 = jnp.broadcast_to(jnp.arange(1.0, 5.0)[None, :, None], (2, 4, 4)) * mask[..., None]
    colour = jnp.stack([mask * 501, mask * 0], -1).astype(jnp.int32)
    ev = ev.replace(mask=mask, p4=p4, pid=mask * 22, colour=colour)
    same = ev.compact()
    assert same.capacity == 4 and np.all(same.status == 0)
    np.testing.assert_array_equal(same.mask, [[True, True, False, False], [True, True, True, False]])
    np.testing.assert_array_equal(same.p4[0, :, 0], [2.0, 4.0, 0.0, 0.0])
    np.testing.assert_array_equal(same.colour[0, :, 0], [501, 501, 0, 0])
    np.testing.assert_allclose(same.total_p4(), ev.total_p4())
    cut = ev.compact(2)
    assert cut.capacity == 2
    np.testing.assert_array_equal(cut.status, [0, int(Status.CAPACITY_OVERFLOW)])
    np.testing.assert_array_equal(cut.p4[0, :, 0], [2.0, 4.0])
    with pytest.raises(ValueError, match="capacity must be an integer >= 0, got -1"):
        ev.compact(-1)


def test_events_concatenate_keeps_host_dtypes():
    ev = diffgen.Events.empty(3, 2)
    host = jax.tree_util.tree_map(np.asarray, ev).replace(p4=np.full((3, 2, 4), 1.0 + 1e-12))  # float64
    both = diffgen.Events.concatenate([host, host[:1]])
    assert both.n_events == 4 and both.p4.dtype == np.float64 and isinstance(both.p4, np.ndarray)
    assert np.all(both.p4 == 1.0 + 1e-12)
    traced = diffgen.Events.concatenate([ev, ev])  # jax batches stay jax arrays
    assert isinstance(traced.p4, jax.Array) and traced.n_events == 6
    with pytest.raises(ValueError, match="at least one"):
        diffgen.Events.concatenate([])


def test_histogram_hard_and_smooth():
    x = jnp.array([0.1, 0.2, 0.6, 0.95, 1.5, -0.2])
    w = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    h = diffgen.histogram(x, 2, range=(0.0, 1.0), weights=w)
    np.testing.assert_allclose(h.contents, [3.0, 7.0])
    np.testing.assert_allclose(h.errors, [np.sqrt(5.0), 5.0])
    # smoothed contents tend to the hard ones as the bandwidth shrinks, and have value gradients
    hs = diffgen.histogram(x, 2, range=(0.0, 1.0), weights=w, smoothing=2e-4)  # 1e-4 in x: 2e-4 of a 0.5 bin
    np.testing.assert_allclose(hs.contents, h.contents, atol=1e-3)
    g = jax.grad(lambda v: diffgen.histogram(v, 2, range=(0.0, 1.0), weights=w, smoothing=0.1).contents[0])(x)
    assert np.all(np.isfinite(g)) and float(g[3]) == pytest.approx(0.0, abs=1e-6)
    assert float(g[0]) > 0 and float(g[2]) < 0  # leaving the bin edge at 0 / leaking in across 0.5
    gw = jax.grad(lambda ww: diffgen.histogram(x, 2, range=(0.0, 1.0), weights=ww).contents[1])(w)
    np.testing.assert_allclose(gw, [0, 0, 1, 1, 0, 0])
    # masks and per-event weights broadcast over particles
    hp = diffgen.histogram(jnp.ones((3, 2)) * 0.5, 1, range=(0, 1), weights=jnp.array([1.0, 2.0, 3.0]),
                           mask=jnp.array([[1, 0], [1, 1], [0, 0]], bool))
    np.testing.assert_allclose(hp.contents, [5.0])
    # edges: left edges belong to their bin, the last bin is closed on the right
    he = diffgen.histogram(jnp.array([0.0, 0.5, 1.0, 1.0000001, -1e-7]), 2, range=(0.0, 1.0))
    np.testing.assert_allclose(he.contents, [1.0, 2.0])


def test_bin_one_hot_matches_numpy_and_masks():
    from diffgen.expect import bin_one_hot

    rng = np.random.default_rng(7)
    edges = np.array([-1.0, -0.3, 0.0, 0.2, 1.0])
    x = np.concatenate([rng.uniform(-1.5, 1.5, 200), edges, [np.nan, np.inf, -np.inf]])
    oh = np.asarray(bin_one_hot(jnp.asarray(x), jnp.asarray(edges)))
    assert oh.shape == (x.size, 4) and set(np.unique(oh)) <= {0.0, 1.0} and np.all(oh.sum(1) <= 1)
    want, _ = np.histogram(x[np.isfinite(x)], edges)  # numpy: [lo, hi) bins, the last closed
    np.testing.assert_array_equal(oh.sum(0), want)
    outside = ~((x >= edges[0]) & (x <= edges[-1]))
    assert np.all(oh[outside] == 0) and np.all(oh[~outside].sum(1) == 1)
    # a mask broadcast over [N, P] values; a dtype; jittable with traced edges
    v = jnp.full((3, 2), 0.1)
    m = jnp.array([[True, False], [True, True], [False, False]])
    om = bin_one_hot(v, edges, mask=m, dtype=jnp.float32)
    assert om.shape == (3, 2, 4) and om.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(om).sum((1, 2)), [1, 2, 0])
    jitted = jax.jit(bin_one_hot)(jnp.asarray(x), jnp.asarray(edges))
    np.testing.assert_array_equal(np.asarray(jitted), oh)
    # weighted: the histogram's hard contents are w @ one-hot
    w = rng.uniform(size=x.size)
    h = diffgen.histogram(jnp.asarray(x), jnp.asarray(edges), weights=jnp.asarray(w))
    np.testing.assert_allclose(h.contents, w @ oh, rtol=1e-5)


def test_linearisation_of_a_histogram_matches_resimulation(gen):
    """value + J·ε vs re-simulation at θ0 + ε (same random numbers): agreement within errors,
    with the mismatch growing like ε² (second-order Taylor remainder)."""
    with jax.enable_x64(True):
        g = diffgen.presets.ee_mumu(91.0)
        p0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), g.default_params())
        key = jax.random.key(4)
        n = 50_000

        def hist(p):
            ev = g.sample_traced(p, key, n)
            cos = ev.p4[:, 0, 3] / jnp.linalg.norm(ev.p4[:, 0, 1:], axis=-1)
            return diffgen.histogram(cos, 10, range=(-1.0, 1.0), weights=event_weights(ev) / n)

        value, jvp = diffgen.linearize(lambda p: hist(p).contents, p0)
        errors = hist(p0).errors
        mismatches = []
        for eps in (0.05, 0.1, 0.2):
            lin = value + jvp({"23:m0": eps})
            resim = hist(diffgen.with_settings(p0, {"23:m0": 91.1876 + eps})).contents
            # independent sample at θ0 + ε agrees with the linear prediction within its errors
            mismatches.append(float(jnp.max(jnp.abs(lin - resim))))
            indep = g.sample_traced(diffgen.with_settings(p0, {"23:m0": 91.1876 + eps}), jax.random.key(99), n)
            cos_i = indep.p4[:, 0, 3] / jnp.linalg.norm(indep.p4[:, 0, 1:], axis=-1)
            hi = diffgen.histogram(cos_i, 10, range=(-1, 1), weights=event_weights(indep) / n)
            pull = (lin - hi.contents) / jnp.sqrt(hi.errors**2 + errors**2)
            assert float(jnp.max(jnp.abs(pull))) < 4.0
        r1 = mismatches[1] / mismatches[0]
        r2 = mismatches[2] / mismatches[1]
        assert 3.0 < r1 < 5.0 and 3.0 < r2 < 5.0, mismatches


def test_linearize_with_error_reports_the_batch_means_error(gen):
    """f(a) = mean over 200 draws of a·x + x², x ~ N(0, 1): per batch the value has variance (a² + 2)/200 and
    ∂f/∂a = mean(x) variance 1/200, so with 10 batches the errors are √((a² + 2)/2000) and |ε|/√2000. The
    reported errors, averaged over 60 linearisations (precision ≈ 3 %), must match within 12 % (4σ)."""
    a = 0.7

    def f(p, key):
        x = jax.random.normal(key, (200,))
        return jnp.mean(p["a"] * x + x * x)

    vals, errs, shifts, shift_errs = [], [], [], []
    for i in range(60):
        lin = diffgen.linearize_with_error(f, {"a": jnp.float32(a)}, jax.random.key(i), batches=10)
        shift, shift_err = lin.jvp({"a": jnp.float32(0.5)})
        vals.append(float(lin.value))
        errs.append(float(lin.error))
        shifts.append(float(shift))
        shift_errs.append(float(shift_err))
    assert np.mean(errs) == pytest.approx(np.sqrt((a * a + 2) / 2000), rel=0.12)
    assert np.mean(shift_errs) == pytest.approx(0.5 / np.sqrt(2000), rel=0.12)
    assert abs(np.mean(shifts)) < 4 * 0.5 / np.sqrt(2000 * 60)  # E[∂f/∂a] = E[x] = 0
    assert abs(np.mean(vals) - 1.0) < 4 * np.sqrt((a * a + 2) / 2000 / 60)  # E[f] = E[x²] = 1
    # with a generator and settings names
    p = gen.default_params()
    lin = diffgen.linearize_with_error(
        lambda q, k: diffgen.expect(lambda ev: ev.p4[:, 0, 0], gen, q, k, 200), p, jax.random.key(3), batches=2)
    shift, err = lin.jvp({"Beams:eCM": 1.0})
    assert float(shift) == pytest.approx(0.5, rel=1e-4) and float(err) < 1e-4  # E_μ = √s/2 exactly
    with pytest.raises(ValueError, match="batches"):
        diffgen.linearize_with_error(f, {"a": 1.0}, jax.random.key(0), batches=1)


def test_expect_with_error_and_shape_check(gen):
    p = gen.default_params()
    m, e = diffgen.expect(lambda ev: ev.p4[:, 0, 0], gen, p, jax.random.key(0), 1000, with_error=True)
    assert float(m) == pytest.approx(91.188 / 2, rel=1e-6) and float(e) < 1e-3
    with pytest.raises(ValueError, match="one value per event"):
        diffgen.expect(lambda ev: jnp.zeros(3), gen, p, jax.random.key(0), 10)
