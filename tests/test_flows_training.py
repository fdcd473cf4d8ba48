"""Flow training (variance / KL, buffered), checkpoints, unweighting and weight diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.flows import checkpoint, flow_sampler, init_train_state, make_optimizer, spline_flow, train
from diffgen.flows.integrands import camel
from diffgen.flows.unweight import check_weights, unweight_mask, unweighting_efficiency


def _peak(x):
    """∫ = 1: a product of two normalised Beta(4, 2)-like bumps, 20 x^3 (1 - x) per coordinate."""
    return jnp.prod(20.0 * x**3 * (1.0 - x), axis=1)


@pytest.mark.parametrize("loss", ["variance", pytest.param("kl", marks=pytest.mark.slow)])
def test_training_reduces_variance_and_keeps_the_integral(loss):
    sampler = flow_sampler(spline_flow(2, bins=8, hidden=(16,)))
    state, hist = train(jax.random.key(0), sampler, _peak, steps=40, batch=512, buffered_steps=1, loss=loss,
                        progress=False)
    assert hist["calls"][-1] == 40 * 512
    # flat sampling has rel. std sqrt(E f^2 - 1) = sqrt((100/63)^2 ... ) = 1.21; the trained flow must do better
    assert hist["rel_std"][-1] < 0.6 * hist["rel_std"][0]
    u = jax.random.uniform(jax.random.key(9), (20_000, 2))
    x, log_q = sampler.sample(state.params, u)
    w = np.asarray(_peak(x) * jnp.exp(-log_q), np.float64)
    mean, err = w.mean(), w.std() / np.sqrt(w.size)
    assert abs(mean - 1.0) < 4 * err  # the trained flow's integral agrees with the exact one (4 sigma)
    assert err < 0.01


def test_checkpoint_resume_is_bit_exact(tmp_path):
    sampler = flow_sampler(spline_flow(2, bins=4, hidden=(8,)))
    kw = dict(batch=64, buffered_steps=2, buffer_size=256, progress=False, schedule_steps=6)
    full, _ = train(jax.random.key(1), sampler, _peak, steps=6, **kw)
    half, _ = train(jax.random.key(1), sampler, _peak, steps=3, **kw)
    path = tmp_path / "state.msgpack"
    checkpoint.save(path, half)
    template = init_train_state(jax.random.key(7), sampler, make_optimizer(1e-3, 1), 256)
    restored = checkpoint.load(path, template)
    for a, b in zip(jax.tree_util.tree_leaves(half), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    resumed, _ = train(jax.random.key(123), sampler, _peak, steps=3, state=restored, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not list(tmp_path.glob(".tmp-*"))  # the temporary file was renamed


def test_camel_integral_is_one():
    """∫ camel = 1 in 2D by a midpoint grid (error O(h^2 f'') < 1e-4 on 1000^2 points)."""
    g = (jnp.arange(1000) + 0.5) / 1000
    xx = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
    assert abs(float(jnp.mean(camel(2)(xx))) - 1.0) < 1e-4


def test_unweighting_efficiency_and_cap():
    w = np.array([1.0, 1.0, 1.0, 1.0, 6.0])  # Σ = 10
    e = unweighting_efficiency(w)
    assert e.efficiency == pytest.approx(2.0 / 6.0) and e.cap_bias == 0.0
    c = unweighting_efficiency(w, cap=0.3)  # overweights carry 3 of 10: w_max = 3
    assert c.w_max == pytest.approx(3.0) and c.cap_bias == pytest.approx(0.3)
    assert c.overweight_fraction == pytest.approx(0.2)
    with pytest.raises(ValueError, match="cap"):
        unweighting_efficiency(w, cap=1.5)
    with pytest.raises(ValueError, match="finite"):
        unweighting_efficiency([1.0, -1.0])


def test_unweighted_sample_is_unbiased():
    """Kept events × w_max reproduce Σw: binomial error √(Σ p(1-p)) w_max, checked at 4 sigma."""
    w = np.asarray(jax.random.exponential(jax.random.key(0), (50_000,)), np.float64)
    w_max = w.max()
    keep = np.asarray(unweight_mask(jax.random.key(1), jnp.asarray(w), w_max))
    p = w / w_max
    est, err = keep.sum() * w_max, np.sqrt(np.sum(p * (1 - p))) * w_max
    assert abs(est - w.sum()) < 4 * err


def test_check_weights_warns_on_a_rarely_sampled_peak():
    w = np.ones(10_000)
    assert check_weights(w).ess_fraction == pytest.approx(1.0)
    w[17] = 5_000.0  # one point of a structure the sampler almost never visits
    with pytest.warns(UserWarning, match="unreliable weights"):
        check_weights(w)


def test_bad_training_input():
    sampler = flow_sampler(spline_flow(2, bins=4, hidden=(8,)))
    with pytest.raises(ValueError, match="loss"):
        train(jax.random.key(0), sampler, _peak, steps=1, loss="l2", progress=False)
    with pytest.raises(ValueError, match="batch"):
        train(jax.random.key(0), sampler, _peak, steps=1, batch=1, progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.load("/nonexistent/x.msgpack", {})


def test_unweight_events_keeps_sigma_and_is_chunk_independent():
    import diffgen
    from diffgen.flows.unweight import unweight_events

    gen = diffgen.presets.ee_mumu()
    ev = gen.sample(gen.default_params(), jax.random.key(0), 4096)
    w = np.exp(np.asarray(ev.log_weight, np.float64))
    w_max = float(w.max())
    key = jax.random.key(5)
    kept, dropped, over = unweight_events(ev, w_max, key)
    assert kept.n_events + dropped == 4096 and over == 0
    a, _, _ = unweight_events(ev[:1000], w_max, key, 0)
    b, _, _ = unweight_events(ev[1000:], w_max, key, 1000)
    assert a.n_events + b.n_events == kept.n_events  # same decisions whatever the chunking
    p = w / w_max  # kept × w_max estimates Σw: binomial error, 4 sigma
    assert abs(kept.n_events * w_max - w.sum()) < 4 * np.sqrt(np.sum(p * (1 - p))) * w_max
    with pytest.raises(ValueError, match="w_max"):
        unweight_events(ev, 0.0, key)


def test_cli_unweighted(capsys):
    from diffgen.cli import main

    assert main(["generate", "--process", "ee-mumu", "--events", "2000", "--unweighted", "--quiet", "--bins", "2",
                 "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "unweighted: kept" in out
    assert main(["generate", "--events", "100", "--unweighted", "--overweight-cap", "2", "--quiet",
                 "--no-cache"]) == 2
