"""`diffgen unfold config.toml` (diffgen.unfold.job), the closure histograms (diffgen.unfold.closure) and the
packed features (diffgen.unfold.from_events.packed_events)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.events import Events, Status


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_unfold_file_problems_are_reported_together(tmp_path):
    from diffgen.unfold import job

    p = _write(tmp_path / "u.toml", '[inputs]\nsim = "nope.npz"\ndata = "nope2.npz"\nextra = 1\n'
                                    '[omnifold]\niterations = 0\nclip = 0.5\nfeatures = ["thrust", "x_p"]\n'
                                    'bootstrap = 1\n'
                                    '[report]\nobservables = ["thrust", "nonsense"]\n')
    with pytest.raises(ValueError) as err:
        job.load(p)
    msg = str(err.value)
    assert msg.startswith(f"unfold file {p!r} has 6 problems:"), msg
    for part in ("unknown key(s) 'extra'", "omnifold.iterations must be an integer >= 1, got 0",
                 "omnifold.clip must be > 1", "omnifold.bootstrap must be 0 (no bootstrap) or at least 2",
                 "omnifold.features: unknown or per-particle observable(s) ['x_p']",
                 "report.observables: unknown or per-particle observable(s) ['nonsense']"):
        assert part in msg, (part, msg)
    with pytest.raises(ValueError, match="unfold file .* is not valid TOML"):
        job.load(_write(tmp_path / "bad.toml", "[inputs\n"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'unfold'"):
        job.load(_write(tmp_path / "top.toml", "[unfold]\nsim = 1\n"))
    with pytest.raises(ValueError, match="inputs.sim: file .* does not exist"):
        job.load(_write(tmp_path / "miss.toml", '[inputs]\nsim = "a.npz"\ndata = "u.toml"\n'))


def _mumu_events(n, key):
    """n Events with two muons along ±z·(cos θ) and a paired truth record (reco = truth, one event in ten lost)."""
    k1, k2 = jax.random.split(key)
    c = jax.random.uniform(k1, (n,), minval=-1, maxval=1)
    s = jnp.sqrt(1 - c * c)
    p = jnp.stack([jnp.full(n, 45.0), 45.0 * s, jnp.zeros(n), 45.0 * c], -1)
    p4 = jnp.stack([p, p * jnp.array([1.0, -1, -1, -1])], 1)
    truth = Events.empty(n, 2).replace(p4=p4, pid=jnp.tile(jnp.array([13, -13]), (n, 1)), mask=jnp.ones((n, 2), bool))
    lost = jax.random.uniform(k2, (n,)) < 0.1
    return truth.replace(truth=truth).with_status(lost, Status.FAILED_KINEMATICS)


def test_sim_without_truth_and_malformed_weights_are_refused(tmp_path):
    from diffgen.io.dispatch import write_events
    from diffgen.unfold import job, load_weights

    ev = _mumu_events(16, jax.random.key(0))
    write_events(tmp_path / "sim.npz", ev.replace(truth=None))
    write_events(tmp_path / "data.npz", ev)
    p = _write(tmp_path / "u.toml", '[inputs]\nsim = "sim.npz"\ndata = "data.npz"\n')
    with pytest.raises(ValueError, match="inputs.sim: .* has no truth record"):
        job.load(p)
    with pytest.raises(ValueError, match="inputs.data: .*"):
        job.load(_write(tmp_path / "v.toml", '[inputs]\nsim = "data.npz"\ndata = "v.toml"\n'))
    _write(tmp_path / "w.npz", "not a zip file")
    with pytest.raises(ValueError, match="OmniFold weights file "):
        load_weights(tmp_path / "w.npz")
    np.savez(tmp_path / "w2.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match="lacks the array"):
        load_weights(tmp_path / "w2.npz")


def test_xp_histogram_counts_particles_per_event_with_correlated_errors():
    """x_p spectrum: Σ density × width = mean charged particles in range per event, and the error is the
    standard error of the per-event count in each bin (unit weights: sqrt(Σ (c_e − f)²)/N), not that of
    independent entries."""
    from diffgen.unfold.closure import particle_histograms

    rng = np.random.default_rng(1)
    n, cap = 400, 12
    mask = rng.random((n, cap)) < 0.6
    pabs = rng.uniform(0.5, 40.0, (n, cap))
    p4 = np.zeros((n, cap, 4), np.float32)
    p4[..., 3] = pabs
    p4[..., 0] = np.sqrt(pabs ** 2 + 0.0195)
    pid = np.where(rng.random((n, cap)) < 0.7, 211, 111)
    ev = Events.empty(n, cap).replace(p4=jnp.asarray(np.where(mask[..., None], p4, 0)), pid=jnp.asarray(pid),
                                      mask=jnp.asarray(mask),
                                      p4_in=jnp.tile(jnp.array([[45.6, 0, 0, 45.6], [45.6, 0, 0, -45.6]]), (n, 1, 1)))
    edges = np.array([0.0, 0.05, 0.2, 1.0])
    h = particle_histograms(ev, np.ones(n), ("x_p",), edges={"x_p": edges})["x_p"]
    xp = 2 * pabs / 91.2
    charged = mask & (pid == 211)
    counts = np.stack([np.sum(charged & (xp >= lo) & (xp < hi), 1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    f = counts.mean(0)
    np.testing.assert_allclose(h.y * np.diff(edges), f, rtol=1e-5)
    np.testing.assert_allclose(h.err * np.diff(edges), np.sqrt(np.sum((counts - f) ** 2, 0)) / n, rtol=1e-5)


def test_packed_events_give_the_same_features():
    from diffgen.unfold.from_events import event_features, packed_events

    rng = np.random.default_rng(2)
    n, cap = 64, 40
    mask = rng.random((n, cap)) < 0.3
    p4 = rng.normal(size=(n, cap, 4)).astype(np.float32)
    p4[..., 0] = np.linalg.norm(p4[..., 1:], axis=-1) + 0.2
    ev = Events.empty(n, cap).replace(p4=jnp.asarray(np.where(mask[..., None], p4, 0)), mask=jnp.asarray(mask),
                                      pid=jnp.full((n, cap), 211))
    packed = packed_events(ev)
    assert packed.capacity == -(-mask.sum(1).max() // 8) * 8 < cap
    assert np.array_equal(np.asarray(packed.mask).sum(1), mask.sum(1))
    from diffgen.observables import observable_spec

    names = ("charged_multiplicity", "thrust", "sphericity", "y23")
    direct = np.stack([np.asarray(jax.jit(observable_spec(k).fn)(ev)) for k in names], 1)  # jitted, not op by op
    np.testing.assert_allclose(event_features(ev, names), direct, rtol=2e-5, atol=1e-7)


@pytest.mark.slow
def test_unfold_cli_end_to_end(tmp_path):
    """diffgen unfold on e+e- → μ+μ- (√s = 94 GeV) with a smearing, inefficient toy detector: data at
    sin²θ̄_W = 0.19 (A_FB 0.36 against the prior's 0.26). The unfolded truth A_FB from the written weights
    must match the data's truth within 3σ (σ = 1.5/√N, as in test_unfold.test_omnifold_on_event_pairs),
    the prior must not, and in the report's closure table the prior's χ² of cos θ must lie more than 4σ above
    its bins, the unfolded one's within 3σ."""
    import diffgen
    from diffgen.cli import main
    from diffgen.io.dispatch import write_events
    from diffgen.observables import fermion_cos_theta
    from diffgen.unfold import load_weights

    gen = diffgen.presets.ee_mumu(94.0)
    p0 = gen.default_params()
    p1 = diffgen.with_settings(p0, {"StandardModel:sin2thetaWbar": 0.19})

    from test_unfold import toy_muon_detector as detector

    n = 8000
    sim = gen.sample(p0, jax.random.key(1), n)
    data = gen.sample(p1, jax.random.key(2), n)
    write_events(tmp_path / "sim.npz", detector(sim, jax.random.key(4)))
    write_events(tmp_path / "data.npz", detector(data, jax.random.key(5)))
    cfg = _write(tmp_path / "u.toml", '[inputs]\nsim = "sim.npz"\ndata = "data.npz"\n[omnifold]\n'
                                      'features = ["cos_theta"]\niterations = 2\nseed = 3\nbootstrap = 3\n'
                                      '[report]\nobservables = ["cos_theta"]\n')
    assert main(["unfold", cfg, "--quiet"]) == 0
    out = tmp_path / "u-unfold"
    assert sorted(os.listdir(out)) == ["bootstrap.npz", "report.md", "unfolded.png", "weights.npz"]
    with np.load(out / "bootstrap.npz") as f:
        reps = f["replica_weights"]
    assert reps.shape == (3, n) and np.all(np.isfinite(reps)) and not np.allclose(reps[0], reps[1])
    assert main(["unfold", cfg, "--quiet"]) == 2  # a second run refuses to overwrite without --force
    res = load_weights(out / "weights.npz")
    c_sim, c_data = np.asarray(fermion_cos_theta(sim)), np.asarray(fermion_cos_theta(data))

    def afb(c, w):
        return np.sum(w * np.sign(c)) / np.sum(w)

    unfolded, truth, prior = afb(c_sim, res.unfolded_weights), afb(c_data, np.asarray(data.weight)), \
        afb(c_sim, np.asarray(sim.weight))
    tol = 3 * 1.5 / np.sqrt(n)
    assert abs(unfolded - truth) < tol, (unfolded, truth, prior)
    assert abs(prior - truth) > tol
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| cos_theta |") and "=" in line)
    (cb, nb), (ca, na) = ((float(c.split("=")[0].split("/")[0]), int(c.split("=")[0].split("/")[1]))
                          for c in row.split("|")[2:4])
    # χ² over nb bins has mean nb and σ = √(2 nb): the prior lies > 4σ above, the unfolding within 3σ
    assert cb > nb + 4 * np.sqrt(2 * nb) and ca < na + 3 * np.sqrt(2 * na), row


@pytest.mark.slow
def test_bootstrap_errors_cover_the_statistical_error_of_the_unfolded_mean():
    """Poisson-bootstrap replicas of OmniFold on the Gaussian toy (10⁴ events each, smearing 0.5, data
    N(0.2, 0.8)): the replicas' spread of the unfolded mean must be at least the data truth's own statistical
    error σ/√N (the unfolding cannot know the truth better than the data determine it) and at most 3× it
    (smearing 0.5 on a width 0.8 amplifies it by ≈ 1.2–1.5; 8 replicas estimate a spread to ±27 %), the
    bootstrapped histogram errors must be finite and positive where the histogram is filled, and a fixed key
    gives the same replicas."""
    from diffgen.unfold import TrainConfig, bootstrap, gaussian_toy

    n = 10_000
    toy = gaussian_toy(jax.random.key(0), n, n)
    cfg = TrainConfig(epochs=30)
    reps = bootstrap(jax.random.key(5), toy.sim_truth, toy.sim_reco, toy.data_reco, 8, iterations=3, config=cfg)
    again = bootstrap(jax.random.key(5), toy.sim_truth, toy.sim_reco, toy.data_reco, 2, iterations=3, config=cfg)
    assert np.array_equal(reps[:2], again)
    means = np.array([np.average(toy.sim_truth, weights=w) for w in reps])
    stat = np.std(toy.data_truth) / np.sqrt(n)
    assert stat <= np.std(means, ddof=1) <= 3 * stat, (np.std(means, ddof=1), stat)
    assert abs(np.mean(means) - np.mean(toy.data_truth)) < 3 * np.std(means, ddof=1)
