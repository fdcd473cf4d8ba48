"""The learned detector surrogate: checkpoints, drop-in stage, learned widths and efficiencies vs the parametric stage.

Tolerances. The networks are trained on fresh particle-gun samples (``_STEPS`` × ``_BATCH`` particles,
≈ 2·10⁵ per type), so the statistical error of a fitted width is ≲ 1 %; what remains is the bias of a
short Adam run of a small MLP (measured 1–7 % after 400 steps at the energies below), so the widths
are required within 15 % of the formulas and the efficiencies within 0.03 of their settings — tight
enough that a width from the wrong formula (e.g. the HCAL's in the ECAL: ×4.7) or an untrained network
(efficiency ½, width = the sample r.m.s.) fails.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import Events
from diffgen.detector import learned, load_checkpoint, parametric, save_checkpoint, train_learned
from diffgen.detector.learned import conditional, init_model
from diffgen.detector.learned_train import particle_gun

_STEPS, _BATCH = 250, 1024


@pytest.fixture(scope="module")
def model():
    m, losses = train_learned(jax.random.key(0), steps=_STEPS, batch=_BATCH, hidden=(32, 32))
    assert np.all(np.isfinite(losses)) and losses[-20:].mean() < losses[:20].mean() - 1.0
    return m


@pytest.fixture(scope="module")
def quick_model():
    """An untrained model set by hand, for the structural tests (no training: cheap to compile).

    Hidden layers random, output bias (m, s, ℓ) = (0, 0, logit 0.9), ``scale`` = rough widths
    (tracks 0.01, 10⁻³, 10⁻³; photons 0.1; neutral hadrons 0.4): a constant-width Gaussian response.
    The output kernels get small random values so that every weight matters for the round trip.
    """
    m = init_model(jax.random.key(1), hidden=(16,))
    scales = {"track": [0.01, 1e-3, 1e-3], "photon": [0.1], "neutral_hadron": [0.4]}
    weights = {}
    for i, (t, sc) in enumerate(scales.items()):
        net = dict(m.weights[t]["net"])
        d = len(sc)
        out = dict(net["Dense_1"])
        out["kernel"] = 1e-3 * jax.random.normal(jax.random.key(10 + i), out["kernel"].shape)
        out["bias"] = jnp.zeros(2 * d + 1).at[2 * d].set(np.log(0.9 / 0.1))
        net["Dense_1"] = out
        weights[t] = {"net": net, "scale": jnp.asarray(sc, jnp.float32)}
    return m._replace(weights=weights)


@pytest.mark.slow
def test_training_reduces_the_loss_and_is_finite():
    """A very short training run: the loss is finite and decreases (accuracy: the slow tests)."""
    _, losses = train_learned(jax.random.key(2), steps=30, batch=256, hidden=(8,), learning_rate=1e-2)
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < losses[:5].mean()


def _features(e):
    return jnp.array([[(np.log(e) - np.log(3.0)) / 2.0, 0.3]])


@pytest.mark.slow
@pytest.mark.parametrize("energy", [1.0, 4.0, 20.0])
def test_learned_widths_match_the_formulas(model, energy):
    a, b = 6e-4, 0.005
    want = {"track": np.array([np.hypot(a * energy, b), 1e-3, 1e-3]),  # σ(1/pT)·pT at pT = energy, σθ, σφ
            "photon": np.array([np.sqrt(np.log1p(0.18**2 / energy + 0.009**2))]),
            "neutral_hadron": np.array([np.sqrt(np.log1p(0.85**2 / energy))])}
    for t, w in want.items():
        _, s, _ = conditional(model.hidden, model.weights[t], _features(energy))
        got = np.asarray(model.weights[t]["scale"] * jnp.exp(s[0]))
        np.testing.assert_allclose(got, w, rtol=0.15, err_msg=f"{t} at {energy} GeV")


@pytest.mark.slow
def test_sampled_calo_response_matches_the_parametric_stage(model):
    """Through the stages: r.m.s. of E'/E of 10 GeV photons, learned vs parametric, and the mean (≈ 1)."""
    n = 4096
    p4 = jnp.broadcast_to(jnp.array([10.0, 6.0, 0.0, 8.0]), (n // 16, 16, 4))
    ev = Events.empty(n // 16, 16).replace(p4=p4, pid=jnp.full((n // 16, 16), 22), mask=jnp.ones((n // 16, 16), bool))
    out = {}
    for name, det in (("learned", learned(model)), ("parametric", parametric())):
        reco = det.apply(det.init(None), jax.random.key(3), ev)
        ratio = np.asarray(reco.p4[..., 0])[np.asarray(reco.mask)] / 10.0
        out[name] = (ratio.mean(), ratio.std(), np.asarray(reco.mask).mean())
    (m_l, s_l, e_l), (m_p, s_p, e_p) = out["learned"], out["parametric"]
    assert abs(m_l - 1.0) < 0.01 and abs(m_p - 1.0) < 0.01 and abs(s_l / s_p - 1.0) < 0.15, out
    assert abs(e_l - e_p) < 0.03, out


@pytest.mark.slow
def test_efficiency_classifier_matches_the_settings(model):
    det = parametric().init(None)
    for t, eff in (("track", det["Detector:trackEfficiency"]), ("photon", det["Detector:ecalEfficiency"]),
                   ("neutral_hadron", det["Detector:hcalEfficiency"])):
        for e in (2.0, 10.0):
            _, _, logit = conditional(model.hidden, model.weights[t], _features(e))
            assert abs(float(jax.nn.sigmoid(logit[0])) - eff) < 0.03, (t, e)


def test_checkpoint_round_trip_is_bit_exact(quick_model, tmp_path):
    path = tmp_path / "det.msgpack"
    save_checkpoint(path, quick_model)
    back = load_checkpoint(path)
    assert back.hidden == quick_model.hidden and back.config == quick_model.config
    leaves_a, tree_a = jax.tree_util.tree_flatten(quick_model.weights)
    leaves_b, tree_b = jax.tree_util.tree_flatten(back.weights)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["det.msgpack"]  # the temporary file is gone
    ev = particle_gun(jax.random.key(1), 64)
    a = jax.jit(learned(quick_model).apply)({"weights": quick_model.weights}, jax.random.key(2), ev)
    b = jax.jit(learned(str(path)).apply)({"weights": back.weights}, jax.random.key(2), ev)
    assert np.asarray(a.p4).tobytes() == np.asarray(b.p4).tobytes()


def test_malformed_checkpoints_raise_value_error(quick_model, tmp_path):
    from flax import serialization

    bad = tmp_path / "garbage.msgpack"
    bad.write_bytes(b"\x00\x01not a checkpoint")
    with pytest.raises(ValueError, match="garbage.msgpack"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="cannot read"):
        learned(str(tmp_path / "missing.msgpack"))
    good = tmp_path / "good.msgpack"
    save_checkpoint(good, quick_model)
    payload = serialization.msgpack_restore(good.read_bytes())
    payload["weights"]["photon"]["scale"] = np.ones(3, np.float32)  # wrong shape
    shape = tmp_path / "shape.msgpack"
    shape.write_bytes(serialization.msgpack_serialize(payload))
    with pytest.raises(ValueError, match="photon/scale"):
        load_checkpoint(shape)
    payload = serialization.msgpack_restore(good.read_bytes())
    payload["format"] = "something-else"
    fmt = tmp_path / "fmt.msgpack"
    fmt.write_bytes(serialization.msgpack_serialize(payload))
    with pytest.raises(ValueError, match="something-else"):
        load_checkpoint(fmt)
    with pytest.raises(ValueError, match="hidden"):
        init_model(jax.random.key(0), hidden=(0,))


def test_drop_in_stage_shapes_and_truth_pairing(quick_model):
    ev = Events.empty(2, 4).replace(
        p4=jnp.array([[[10.0, 6.0, 0.0, 8.0], [5.0, 0.0, 5.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]],
                      [[3.0, 0.0, 2.9, 0.5], [2.0, 0.0, 0.0, 2.0], [4.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]),
        pid=jnp.array([[211, 22, 12, 0], [-211, 22, 2112, 0]]), mask=jnp.array([[1, 1, 1, 0], [1, 1, 1, 0]], bool))
    det = learned(quick_model)
    reco = jax.jit(det.apply)(det.init(None), jax.random.key(5), ev)
    assert reco.p4.shape == ev.p4.shape and reco.truth is not None
    np.testing.assert_array_equal(np.asarray(reco.truth.p4), np.asarray(ev.p4))
    mask = np.asarray(reco.mask)
    assert not mask[0, 2] and not mask[0, 3] and not mask[1, 1] and not mask[1, 3]  # ν, padding, |cos θ| = 1
    np.testing.assert_array_equal(np.asarray(reco.pid)[mask], np.asarray(ev.pid)[mask])
    # a detected particle is its own truth particle smeared (same slot): |p'|/|p| − 1 within 5 σ of the formula
    p_t = np.linalg.norm(np.asarray(ev.p4)[..., 1:], axis=-1)
    p_r = np.linalg.norm(np.asarray(reco.p4)[..., 1:], axis=-1)
    e = np.asarray(ev.p4)[..., 0]
    pid = np.asarray(ev.pid)
    sigma = np.where(pid == 22, np.sqrt(0.18**2 / np.maximum(e, 1e-3) + 0.009**2),
                     np.where(pid == 2112, 0.85 / np.sqrt(np.maximum(e, 1e-3)), 0.05))
    assert np.all((np.abs(p_r / np.maximum(p_t, 1e-9) - 1) < 5 * sigma)[mask]), (p_r, p_t)
    assert np.all(np.asarray(reco.status) == 0) and np.all(np.asarray(reco.log_weight) == 0)


def test_values_and_gradients_are_finite(quick_model):
    """∂⟨Σ E′⟩/∂(truth momenta) (pathwise) and ∂⟨n_kept⟩/∂(classifier bias) (score) are finite, and non-zero."""
    ev = particle_gun(jax.random.key(7), 512)
    ev = ev.replace(p4=ev.p4.at[0, 0].set(0.0).at[0, 1].set(jnp.array([1.0, 0.0, 0.0, 1.0])),
                    mask=ev.mask.at[0, 2].set(False))  # zero momentum, pT = 0 along the beam, a padded slot
    det = learned(quick_model)
    params = det.init(None)

    def mean_energy(p4):
        reco = det.apply(params, jax.random.key(8), ev.replace(p4=p4))
        return jnp.mean(jnp.sum(reco.p4[..., 0], axis=1))

    value, grad = jax.jit(jax.value_and_grad(mean_energy))(ev.p4)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)

    def weighted_count(weights):
        reco = det.apply({"weights": weights}, jax.random.key(8), ev)
        w = jnp.exp(reco.log_weight)
        return jnp.sum(w * jnp.sum(reco.mask, axis=1)) / jnp.sum(w)

    g = jax.jit(jax.grad(weighted_count))(params["weights"])
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(g)]
    assert all(np.all(np.isfinite(x)) for x in leaves)
    net = g["photon"]["net"]
    bias = np.asarray(net[max(net, key=lambda k: int(k.split("_")[1]))]["bias"])  # the output layer
    assert bias[2] > 0  # raising the photon efficiency logit raises the number kept


def test_preset_appends_the_learned_detector(quick_model):
    import diffgen

    gen = diffgen.presets.ee_hadrons(detector=quick_model)
    params = gen.default_params()
    assert gen.info["detector"] == "learned:aleph"
    assert set(params["detector"]) == {"weights"} and "Detector:trackEfficiency" not in str(list(params["detector"]))


@pytest.mark.slow
def test_whole_chain_with_the_learned_detector(model):
    """ee_hadrons(detector=model).sample: reco is a subset of truth slot by slot, ⟨n_tracks⟩ as parametric."""
    import diffgen
    from diffgen.detector import n_tracks

    out = {}
    for name, det in (("learned", model), ("parametric", "aleph")):
        gen = diffgen.presets.ee_hadrons(detector=det)
        ev = gen.sample(gen.default_params(), jax.random.key(4), 256)
        assert ev.truth is not None and ev.truth.capacity == ev.capacity
        assert not np.any(np.asarray(ev.mask) & ~np.asarray(ev.truth.mask))
        assert np.all(np.isfinite(np.asarray(ev.p4)))
        np.testing.assert_array_equal(np.asarray(ev.status), np.asarray(ev.truth.status))  # no detector flags
        out[name] = np.asarray(n_tracks(ev))
    # same truth events (same key, same upstream stages): the track counts differ only by the efficiency draws
    means = out["learned"].mean(), out["parametric"].mean()
    assert abs(means[0] - means[1]) < 0.3, means
