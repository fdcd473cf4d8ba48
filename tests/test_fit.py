"""Tuning machinery: targets, losses, bounds, fits (closure), linearised variations, tune files."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen.expect import event_weights
from diffgen.fit import losses, targets, transforms, tune_file
from diffgen.fit.fitter import fit
from diffgen.fit.variations import linearized_histograms

MZ, S2W = "23:m0", "StandardModel:sin2thetaWbar"
EDGES = np.linspace(-1.0, 1.0, 11)
OBS = [("cos_theta", targets.cos_theta, EDGES), ("cos_fb", targets.cos_theta, [-1.0, 0.0, 1.0])]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def gen():
    return diffgen.presets.ee_mumu(91.2)


def _pseudo_data(gen, truth, energies, n, seed, sigma_at=()):
    """Normalised cos θ shapes at each √s (+ forward/backward σ in pb at ``sigma_at``)."""
    pt = diffgen.with_settings(gen.default_params(), truth)
    out = []
    for i, e in enumerate(energies):
        ev = gen.sample(diffgen.with_settings(pt, {"Beams:eCM": e}), jax.random.key(1000 * seed + 100 + i), n)
        out += targets.from_events(ev, OBS[:1], conditions={"Beams:eCM": e}, names=[f"cos@{e:g}"])
        if e in sigma_at:
            out += targets.from_events(ev, OBS[1:], conditions={"Beams:eCM": e}, names=[f"sigma@{e:g}"],
                                       normalisation="sigma")
    return out


# ---------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------
def test_bounds_transform_round_trip_and_gradient():
    t = transforms.bounded_transform([MZ, S2W], {MZ: (90.0, 92.5)})
    assert t.lo.tolist() == [90.0, 0.0] and t.hi.tolist() == [92.5, 1.0]  # S2W: its physical range
    theta = {MZ: 91.3, S2W: 0.2315}
    phi = t.inverse(theta)
    back = np.asarray(t.forward(phi))
    np.testing.assert_allclose(back, [91.3, 0.2315], rtol=1e-6)
    # Jacobian: analytic diagonal == jax.jacfwd, and == central finite differences
    jac = np.asarray(jax.jacfwd(t.forward)(phi))
    np.testing.assert_allclose(np.diag(jac), np.asarray(t.jacobian(phi)), rtol=1e-5)
    assert np.allclose(jac - np.diag(np.diag(jac)), 0.0)
    h = 1e-2
    for j in range(2):
        e = jnp.zeros(2).at[j].set(h)
        fd = (np.asarray(t.forward(phi + e)) - np.asarray(t.forward(phi - e)))[j] / (2 * h)
        assert fd == pytest.approx(float(t.jacobian(phi)[j]), rel=1e-3)
    # gradients flow at any φ, and θ stays strictly inside the bounds (no clipping)
    g = jax.grad(lambda p: jnp.sum(t.forward(p) ** 2))(jnp.asarray([8.0, -8.0]))
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) != 0)
    far = np.asarray(t.forward(jnp.asarray([12.0, -12.0])))
    assert 90.0 < far[0] < 92.5 and 0.0 < far[1] < 1.0
    _, log_det = t.forward_and_log_det(phi)
    assert float(log_det) == pytest.approx(float(jnp.sum(jnp.log(jnp.diag(jax.jacfwd(t.forward)(phi))))), rel=1e-5)
    # host (float64 NumPy) twins used by the linearised fit: same map, no overflow at a bound
    np.testing.assert_allclose(t.forward_host(np.asarray(phi)), np.asarray(t.forward(phi)), rtol=1e-6)
    np.testing.assert_allclose(t.jacobian_host(np.asarray(phi)), np.asarray(t.jacobian(phi)), rtol=1e-5)
    with np.errstate(all="raise"):
        edge = t.forward_host(np.array([[1e3, -1e3], [-1e3, 1e3]]))
    np.testing.assert_array_equal(edge, [[92.5, 0.0], [90.0, 1.0]])


def test_bounds_validation():
    with pytest.raises(ValueError, match="outside its physical range"):
        transforms.bounded_transform([S2W], {S2W: (-0.1, 0.3)})
    with pytest.raises(ValueError, match="lo < hi"):
        transforms.bounded_transform([MZ], {MZ: (92.0, 91.0)})
    with pytest.raises(ValueError, match="not a free parameter"):
        transforms.bounded_transform([MZ], {S2W: (0.2, 0.3)})
    with pytest.raises(ValueError, match="unknown setting"):
        transforms.bounded_transform(["23:mZero"])
    with pytest.raises(ValueError, match="strictly inside"):
        transforms.bounded_transform([MZ], {MZ: (92.0, 93.0)}).inverse({MZ: 91.1876})


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------
def test_targets_pickle_for_process_pools():
    """Targets cross process boundaries (a Pythia grid run in worker processes returns them); the
    read-only conditions mapping must survive the round trip and stay read-only."""
    import pickle

    t = targets.from_arrays("x", [0.1, 0.5, 0.4], [0.01, 0.02, 0.015], [0.0, 0.5, 1.5, 2.0],
                            normalisation="events", conditions={"Beams:eCM": 94.0})
    back = pickle.loads(pickle.dumps(t))
    assert back.name == "x" and back.normalisation == "events" and dict(back.conditions) == {"Beams:eCM": 94.0}
    np.testing.assert_array_equal(back.contents, t.contents)
    with pytest.raises(TypeError):
        back.conditions["Beams:eCM"] = 1.0  # still read-only
    plain = pickle.loads(pickle.dumps(targets.from_arrays("y", [1.0], [0.1], [0.0, 1.0])))
    assert dict(plain.conditions) == {}


def test_yoda_round_trip_and_formats():
    t = targets.from_arrays("x", [0.1, 0.5, 0.4], [0.01, 0.02, 0.015], [0.0, 0.5, 1.5, 2.0],
                            normalisation="events", conditions={"Beams:eCM": 94.0})
    back = targets.from_yoda_text(targets.to_yoda_text(t), normalisation="events")
    np.testing.assert_allclose(back.contents, t.contents, rtol=1e-12)
    np.testing.assert_allclose(back.errors, t.errors, rtol=1e-12)
    np.testing.assert_allclose(back.edges, t.edges, rtol=1e-12)
    unit = targets.from_yoda_text(targets.to_yoda_text(t))  # default: unit normalisation
    assert unit.contents.sum() == pytest.approx(1.0)
    v3 = """BEGIN YODA_HISTO1D_V3 /A/h
Path: /A/h
Type: Histo1D
---
# Mean: 0
Edges(A1): [0.000000e+00, 1.000000e+00, 3.000000e+00]
# sumW\tsumW2\tsumW(A1)\tsumW2(A1)\tnumEntries
1 1 0 0 1
4 4 0 0 4
2 1 0 0 2
9 9 0 0 9
END YODA_HISTO1D_V3
BEGIN YODA_SCATTER2D_V2 /REF/A/d01
Path: /REF/A/d01
Type: Scatter2D
---
# xval\t xerr-\t xerr+\t yval\t yerr-\t yerr+
0.5 0.5 0.5 2.0 0.1 0.3
2.0 1.0 1.0 1.0 0.2 0.2
END YODA_SCATTER2D_V2
"""
    h = targets.from_yoda_text(v3, histogram="/A/h", normalisation="events")
    assert h.contents.tolist() == [4.0, 2.0] and h.errors.tolist() == [2.0, 1.0] and h.edges.tolist() == [0, 1, 3]
    s = targets.from_yoda_text(v3, histogram="/REF/A/d01", normalisation="events")  # density × width
    np.testing.assert_allclose(s.contents, [2.0, 2.0])
    np.testing.assert_allclose(s.errors, [0.2, 0.4])
    with pytest.raises(ValueError, match="holds 2 histograms"):
        targets.from_yoda_text(v3)
    bad = targets.to_yoda_text(t)
    for broken, match in ((bad.replace("END YODA_HISTO1D_V2", ""), "no END"),
                          (bad.replace("\t0\t0\t1\n", "\t0\t1\n", 1), "expected 7 numbers"),
                          (bad.replace("5.00000000000000000e-01\t1.5", "6.00000000000000000e-01\t1.5"), "contiguous"),
                          ("nothing here", "does not exist"),
                          (bad.replace("YODA_HISTO1D_V2", "YODA_COUNTER_V2"), "no YODA_HISTO1D"),
                          (bad.replace("END YODA_HISTO1D_V2", "END YODA_SCATTER2D_V2"), "does not close")):
        with pytest.raises(ValueError, match=match):
            targets.from_yoda_text(broken)


def test_from_hist_and_array_validation():
    import hist

    h = hist.Hist(hist.axis.Regular(4, -1, 1, name="cos_theta"), storage=hist.storage.Weight())
    h.fill(np.array([-0.9, -0.2, 0.3, 0.35, 0.9]), weight=np.array([1.0, 2.0, 1.0, 1.0, 3.0]))
    t = targets.from_hist(h, normalisation="events")
    assert t.name == "cos_theta" and t.contents.tolist() == [1.0, 2.0, 2.0, 3.0]
    np.testing.assert_allclose(t.errors, np.sqrt([1.0, 4.0, 2.0, 9.0]))
    with pytest.raises(ValueError, match="3 bins from the edges"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="errors must be >= 0"):
        targets.from_arrays("a", [1, 2], [1, -1], [0, 1, 2])
    with pytest.raises(ValueError, match="strictly increasing"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 2, 1])
    with pytest.raises(ValueError, match="unknown normalisation"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2], normalisation="area")
    with pytest.raises(ValueError, match="unknown setting"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2], conditions={"Beams:eCMM": 91.0})
    # conditions take Pythia's strings as any settings do, names matched without regard to case
    for c in ("Beams:eCM = 94", ["beams:ecm 94"], {"Beams:ECM": 94}):
        assert dict(targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2], conditions=c).conditions) == {
            "Beams:eCM": 94.0}
    with pytest.raises(ValueError, match="on/off switch"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2], conditions="HadronLevel:Decay = off")
    with pytest.raises(ValueError, match=r"Beams:eCM.*outside its allowed range"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2], conditions="Beams:eCM = -3")
    with pytest.raises(ValueError, match="'Group:name = value' strings, got 3"):
        targets.from_arrays("a", [1, 2], [1, 1], [0, 1, 2], conditions=3)


def test_binned_normalisations_and_soft_gradients(gen):
    ev = gen.sample(gen.default_params(), jax.random.key(3), 4000)
    x = targets.cos_theta(ev)
    w = event_weights(ev)
    edges = np.linspace(-0.8, 0.8, 9)  # leaves entries outside the range
    binned = jax.jit(losses.binned, static_argnames=("normalisation", "smoothing", "straight_through"))
    ref = np.histogram(np.asarray(x), edges, weights=np.asarray(w))[0]
    ev_n = binned(x, w, edges, normalisation="events")
    np.testing.assert_allclose(ev_n.contents, ref / float(jnp.sum(w)), rtol=1e-5)
    assert float(jnp.sum(ev_n.contents)) < 0.9
    assert float(jnp.sum(binned(x, w, edges, normalisation="unit").contents)) == pytest.approx(1.0, rel=1e-6)
    sig = binned(x, w, np.array([-1.0, 1.0]), normalisation="sigma")
    from diffgen.expect import cross_section_of

    sigma, err = cross_section_of(ev)
    assert float(sig.contents[0]) == pytest.approx(float(sigma), rel=1e-5)
    assert float(jnp.sqrt(sig.variances[0])) == pytest.approx(float(err), rel=1e-3)
    # straight-through soft binning: hard values, non-zero pathwise gradient in the values
    st = binned(x, w, edges, smoothing=0.3)
    np.testing.assert_allclose(st.contents, ev_n.contents, rtol=1e-6)
    grads = jax.jit(jax.grad(lambda s: jnp.stack([losses.binned(x + s, w, edges, smoothing=0.3).contents[0],
                                                  losses.binned(x + s, w, edges).contents[0]]) @ jnp.array([1.0, 0.0])
                             ))
    g_soft = float(grads(0.0))
    g_hard = float(jax.jit(jax.grad(lambda s: losses.binned(x + s, w, edges).contents[0]))(0.0))
    assert g_soft != 0.0 and g_hard == 0.0
    # per-particle values with a mask: padded slots ignored
    vals = jnp.stack([x, jnp.full_like(x, 0.1)], axis=1)
    mask = jnp.stack([jnp.ones_like(x, bool), jnp.zeros_like(x, bool)], axis=1)
    np.testing.assert_allclose(binned(vals, w, edges, mask=mask).contents, ev_n.contents, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# fits
# ---------------------------------------------------------------------------------------------
def test_closure_ee_mumu_recovers_mz_and_sin2thetaw(gen):
    """Pseudo-data at shifted m_Z and sin²θ̄_W; the fit from the defaults recovers both within 2σ.

    Shapes (1/N dN/dcos θ) at √s = 88, 91.2, 94 GeV plus the forward/backward cross sections in pb
    at 88 and 94 GeV (the σ-sensitive line shape, which breaks the m_Z–sin²θ̄_W degeneracy of the
    shapes). Data and fit use independent keys.
    """
    truth = {MZ: 91.2176, S2W: 0.2275}
    data = _pseudo_data(gen, truth, (88.0, 91.2, 94.0), 100_000, seed=0, sigma_at=(88.0, 94.0))
    res = fit(gen, gen.default_params(), data, OBS, [MZ, S2W], bounds={MZ: (90.0, 92.5), S2W: (0.21, 0.245)},
              steps=60, n_events=20_000, key=jax.random.key(7), progress=False, covariance_events=20_000)
    for name in (MZ, S2W):
        start_pull = (res.start[name] - truth[name]) / res.errors[name]
        pull = (res.settings[name] - truth[name]) / res.errors[name]
        assert abs(start_pull) > 2.0, (name, start_pull)  # the start is several σ away
        assert abs(pull) < 2.0, (name, res.settings[name], res.errors[name], pull)
    before = sum(v[0] for v in res.chi2_before.values())
    after = sum(v[0] for v in res.chi2_after.values())
    assert after < before
    assert after < 2.0 * res.ndf
    assert res.converged
    assert res.covariance.shape == (2, 2) and np.allclose(res.covariance, res.covariance.T)
    assert np.allclose(np.diag(res.correlation), 1.0) and abs(res.correlation[0, 1]) < 1
    # the reported errors come from the loss Hessian (positive definite here), not the Fisher fallback;
    # at χ²/ndf ≈ 1 the two differ only by the residual-curvature term (measured: 0.5 % and 5 %)
    assert res.covariance_method == "hessian"
    fisher_err = np.sqrt(np.diag(res.fisher_covariance))
    np.testing.assert_allclose(fisher_err, [res.errors[MZ], res.errors[S2W]], rtol=0.15)
    assert res.param_history.shape == (len(res.loss_history), 2)
    assert res.n_events_total >= len(res.loss_history) * 3 * 20_000
    assert set(res.chi2_before) == {t.name for t in data}


def test_linearized_fit_agrees_with_gradient_fit_and_shares_simulation(gen):
    """Gauss–Newton on the forward-mode Jacobian (diffgen.fit.linear) on the closure problem above:
    it recovers m_Z and sin²θ̄_W within 2σ, agrees with :func:`fit` within a fraction of σ, and fits
    many datasets against one simulation with the data/simulation split of the covariance."""
    from diffgen.fit.linear import fit_linearized

    truth = {MZ: 91.2176, S2W: 0.2275}
    bounds = {MZ: (90.0, 92.5), S2W: (0.21, 0.245)}
    data = _pseudo_data(gen, truth, (88.0, 91.2, 94.0), 100_000, seed=0, sigma_at=(88.0, 94.0))
    # fit() simulates with fold_in(key, 0) at every step (common random numbers): give the linearised
    # fit the same events, so both minimise the same objective
    lin = fit_linearized(gen, gen.default_params(), data, OBS, [MZ, S2W], bounds=bounds, n_events=20_000,
                         key=jax.random.fold_in(jax.random.key(7), 0), progress=False)
    assert lin.converged and lin.covariance_method == "fisher"
    for name in (MZ, S2W):
        assert abs(lin.settings[name] - truth[name]) < 2.0 * lin.errors[name], (name, lin.settings[name])
        assert abs((lin.start[name] - truth[name]) / lin.errors[name]) > 2.0
    ref = fit(gen, gen.default_params(), data, OBS, [MZ, S2W], bounds=bounds, steps=60, n_events=20_000,
              key=jax.random.key(7), progress=False, covariance_events=20_000)
    for name in (MZ, S2W):  # same objective (same events): same minimum and similar errors
        assert abs(lin.settings[name] - ref.settings[name]) < 0.3 * ref.errors[name], name
        assert lin.errors[name] == pytest.approx(ref.errors[name], rel=0.3)
    assert sum(v[0] for v in lin.chi2_after.values()) < sum(v[0] for v in lin.chi2_before.values())
    assert lin.n_events_total == len(lin.loss_history) * 3 * 20_000  # 3 condition groups (√s) per iteration

    # several datasets share one simulation; the data part of the covariance is below the total
    sets = [_pseudo_data(gen, truth, (94.0,), 20_000, seed=s)[:1] for s in range(3)]
    many = fit_linearized(gen, gen.default_params(), sets, OBS[:1], [S2W], bounds={S2W: bounds[S2W]}, n_events=50_000,
                          key=jax.random.key(8), progress=False)
    assert len(many) == 3 and len({r.settings[S2W] for r in many}) == 3
    for r in many:
        assert 0 < r.data_covariance[0, 0] < r.covariance[0, 0]
        assert r.data_covariance[0, 0] / r.covariance[0, 0] == pytest.approx(50 / 70, abs=0.1)
        assert abs(r.settings[S2W] - truth[S2W]) < 3 * r.errors[S2W]


def test_linearized_fit_pools_fresh_samples(gen):
    """pool > 1 with fresh random numbers: the surrogate averages the last linearisations, so the
    simulation's share of the error shrinks (σ_sim²/m) and the estimate stays consistent."""
    from diffgen.fit.linear import fit_linearized

    truth = {MZ: 91.1876, S2W: 0.2275}
    data = _pseudo_data(gen, truth, (94.0,), 200_000, seed=3)[:1]
    kw = dict(bounds={S2W: (0.21, 0.245)}, n_events=20_000, key=jax.random.key(9), progress=False,
              common_random_numbers=False, tol=0.5)
    one = fit_linearized(gen, gen.default_params(), data, OBS[:1], [S2W], iterations=3, **kw)
    pooled = fit_linearized(gen, gen.default_params(), data, OBS[:1], [S2W], iterations=6, pool=4, **kw)
    assert pooled.converged and "pooled over the last 4" in pooled.message, pooled.message
    # pathwise Jacobian: far below the noise that dilutes the steps, so no warning
    assert "WARNING" not in pooled.message and pooled.jacobian_noise[S2W] < 0.2, pooled.jacobian_noise
    from diffgen.fit import linear
    msg = linear.noise_warning([pooled.jacobian_noise[S2W]], [S2W], 20_000, m_pool=4, limit=0.0, target=0.01)
    need = int(msg.split("about ")[1].split(" events")[0])
    assert need == int(np.ceil(80_000 * (pooled.jacobian_noise[S2W] / 2 / 0.01) ** 2))  # noise / √4, 1/√n
    assert pooled.n_events_total == len(pooled.loss_history) * 20_000
    # data: 2e5 events, simulation 2e4 per sample -> pooling four samples cuts the error by ~sqrt(11/3.5)
    assert pooled.errors[S2W] < 0.75 * one.errors[S2W], (pooled.errors, one.errors)
    frac = pooled.data_covariance[0, 0] / pooled.covariance[0, 0]
    assert frac == pytest.approx(1 / 3.5, abs=0.07)  # σ_d² : σ_d² + σ_sim²/4 = 1 : 1 + 10/4
    assert abs(pooled.settings[S2W] - truth[S2W]) < 3 * pooled.errors[S2W]


def test_jacobian_noise_correction_removes_regression_dilution():
    """A Jacobian averaged over B noisy batches overstates JᵀWJ by Σ w Cov(δJ) (errors in variables):
    the batch-scatter correction makes the Gauss–Newton matrix unbiased and the step undiluted.

    Toy: M = 40 bins, two nearly degenerate columns (the a–b valley: cos = 0.98), per-batch noise as
    large as the valley's signal. Over 400 replicas the mean of the corrected matrix's valley eigenvalue
    must agree with the truth within 5 standard errors of that mean, while the uncorrected one is about
    twice too large; the mean corrected step towards a known shift recovers it (the plain step is
    diluted to a fraction of it).
    """
    from diffgen.fit.linear import _corrected_problem, _fisher, _noise_moments

    rng = np.random.default_rng(4)
    m, k, b = 40, 2, 10
    base = rng.normal(size=m)
    other = rng.normal(size=m)
    true_j = np.stack([base, 0.98 * base + 0.2 * other], axis=1)
    w = np.ones(m)
    f_true = true_j.T @ true_j
    valley = np.linalg.eigh(f_true)[1][:, 0]
    shift = 3.0 * valley / np.sqrt(valley @ f_true @ valley)  # 3σ along the valley
    y = true_j @ shift
    # noise of the batch mean per bin such that Σ_bins σ² equals the valley's signal |J v|² (≈ 0.73)
    sigma_batch = 0.135 * np.sqrt(b)
    plain, corrected, steps_plain, steps_corr = [], [], [], []
    for _ in range(400):
        jac_b = true_j[None] + sigma_batch * rng.normal(size=(b, m, k))
        c_b = 0.01 * rng.normal(size=(b, m))
        jac = jac_b.mean(0)
        jcov, jhcov = _noise_moments(jac_b, c_b)
        fp, fc = _fisher(jac, None, w), _fisher(jac, jcov, w, floor=1e-3)
        plain.append(valley @ fp @ valley)
        corrected.append(valley @ fc @ valley)
        steps_plain.append(valley @ np.linalg.solve(fp, jac.T @ y))
        h_c, l_t, _, _ = _corrected_problem(np.zeros(m), jac, jcov, jhcov, y, w)
        steps_corr.append(valley @ -np.linalg.solve(l_t, h_c))
    truth = valley @ f_true @ valley
    corrected, plain = np.asarray(corrected), np.asarray(plain)
    assert abs(corrected.mean() - truth) < 5 * corrected.std() / np.sqrt(corrected.size), (corrected.mean(), truth)
    assert plain.mean() > 1.6 * truth, (plain.mean(), truth)
    target = valley @ shift
    assert np.median(steps_plain) < 0.7 * target, (np.median(steps_plain), target)
    assert abs(np.median(steps_corr) - target) < 0.25 * abs(target), (np.median(steps_corr), target)


def test_noise_corrected_estimate_is_unbiased_and_its_sandwich_errors_cover():
    """Issue 17 item 4 on a toy: one Gauss–Newton step 1σ along the a–b valley with a Jacobian whose
    noise is twice the valley's signal. The plain step is diluted (biased towards the expansion point,
    "stops before the minimum"); the noise-corrected step is unbiased, and its covariance is the
    sandwich F_c⁻¹ (Jᵀ V⁻¹ J) F_c⁻¹ (what :func:`_dataset_result` reports): pulls of unit width, where
    F_c⁻¹ alone gives pulls ~2.7 wide. 1500 replicas: the pulls' mean has a standard error of 0.026 and
    their standard deviation one of 0.018 (×√(1 + κ/2) for the mild excess kurtosis), so the bands
    below (0.15 and ±0.15) are > 5σ wide and exclude the plain step's bias (≈ 1.8) and F_c⁻¹ (≈ 2.7)."""
    from diffgen.fit.linear import _corrected_problem, _fisher, _noise_moments

    rng = np.random.default_rng(4)
    m, k, b = 40, 2, 10
    base, other = rng.normal(size=m), rng.normal(size=m)
    true_j = np.stack([base, 0.98 * base + 0.2 * other], axis=1)
    vd, vs = np.full(m, 1.0), np.full(m, 0.1)
    var = vd + vs
    f_true = true_j.T @ (true_j / var[:, None])
    valley = np.linalg.eigh(f_true)[1][:, 0]
    shift = valley / np.sqrt(valley @ f_true @ valley)  # 1σ along the valley
    sigma_batch = 2 * 0.135 * np.sqrt(b * 1.1)  # Σ_m w_m Var(δJ_m) along the valley ≈ 2 × its signal
    plain, corr, corr_fc = [], [], []
    for _ in range(1500):
        jac_b = true_j[None] + sigma_batch * rng.normal(size=(b, m, k))
        c_b = np.sqrt(vs * b) * rng.normal(size=(b, m))
        jac, h = jac_b.mean(0), c_b.mean(0)
        y = true_j @ shift + np.sqrt(vd) * rng.normal(size=m)
        jcov, jhcov = _noise_moments(jac_b, c_b)
        f_plain, f_c = _fisher(jac, None, 1 / var), _fisher(jac, jcov, 1 / var)
        d_plain = -np.linalg.solve(f_plain, jac.T @ ((h - y) / var))
        h_c, l_t, _, _ = _corrected_problem(h, jac, jcov, jhcov, y, var)
        d_corr = -np.linalg.solve(l_t, h_c)
        fc_inv = np.linalg.inv(f_c)
        sandwich = fc_inv @ f_plain @ fc_inv
        plain.append((d_plain - shift) @ valley / np.sqrt(valley @ np.linalg.inv(f_plain) @ valley))
        corr.append((d_corr - shift) @ valley / np.sqrt(valley @ sandwich @ valley))
        corr_fc.append((d_corr - shift) @ valley / np.sqrt(valley @ fc_inv @ valley))
    plain, corr, corr_fc = map(np.asarray, (plain, corr, corr_fc))
    assert abs(np.mean(np.sign(valley @ shift) * plain)) > 1.0, np.mean(plain)  # diluted: biased
    assert abs(np.mean(corr)) < 0.15, np.mean(corr)
    assert abs(np.std(corr) - 1.0) < 0.15, np.std(corr)
    assert np.std(corr_fc) > 2.0, np.std(corr_fc)  # F_c⁻¹ alone: errors far too small


def test_linearized_fit_rejects_inconsistent_datasets_before_generation(gen, monkeypatch):
    from diffgen.fit.linear import fit_linearized

    a = targets.from_arrays("cos", np.full(10, 0.1), np.full(10, 0.01), EDGES, observable="cos_theta")
    b = targets.from_arrays("cos", np.full(4, 0.25), np.full(4, 0.01), np.linspace(-1, 1, 5), observable="cos_theta")

    def boom(*a, **k):
        raise AssertionError("events were generated")

    monkeypatch.setattr(diffgen.Generator, "sample_traced", boom)
    monkeypatch.setattr(diffgen.Generator, "sample", boom)
    with pytest.raises(ValueError, match="different targets, binning or conditions"):
        fit_linearized(gen, gen.default_params(), [[a], [b]], OBS, [MZ], key=jax.random.key(0), progress=False)
    c = a._replace(errors=np.where(np.arange(10) == 3, 0.0, 0.01))
    with pytest.raises(ValueError, match="empty bins differ"):
        fit_linearized(gen, gen.default_params(), [[a], [c]], OBS, [MZ], key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        fit_linearized(gen, gen.default_params(), [a], OBS, [MZ], iterations=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="not used by this generator"):
        fit_linearized(gen, gen.default_params(), [a], OBS, ["StringZ:aLund"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="at least one dataset"):
        fit_linearized(gen, gen.default_params(), [], OBS, [MZ], key=jax.random.key(0))
    with pytest.raises(ValueError, match="needs common_random_numbers=False"):
        fit_linearized(gen, gen.default_params(), [a], OBS, [MZ], pool=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="pool must be an integer >= 1"):
        fit_linearized(gen, gen.default_params(), [a], OBS, [MZ], pool=0, key=jax.random.key(0))


def test_mismatched_binning_fails_before_generation(gen, monkeypatch):
    data = targets.from_arrays("cos", np.full(4, 0.25), np.full(4, 0.01), np.linspace(-1, 1, 5),
                               observable="cos_theta")

    def boom(*a, **k):
        raise AssertionError("events were generated")

    monkeypatch.setattr(diffgen.Generator, "sample_traced", boom)
    monkeypatch.setattr(diffgen.Generator, "sample", boom)
    with pytest.raises(ValueError, match="mismatched binning"):
        fit(gen, gen.default_params(), [data], OBS, [MZ], key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="not among the observables"):
        fit(gen, gen.default_params(), [data._replace(observable="thrust")], OBS, [MZ], key=jax.random.key(0))
    good = targets.from_arrays("cos", np.full(10, 0.1), np.full(10, 0.01), EDGES, observable="cos_theta")
    with pytest.raises(ValueError, match="not used by this generator"):
        fit(gen, gen.default_params(), [good], OBS, ["StringZ:aLund"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="fixes '23:m0' in its conditions"):
        fit(gen, gen.default_params(), [good._replace(conditions={MZ: 91.0})], OBS, [MZ], key=jax.random.key(0))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        fit(gen, gen.default_params(), [data], OBS, [MZ], steps=0, key=jax.random.key(0))


# ---------------------------------------------------------------------------------------------
# linearised variations
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow  # six linearisations (~50 s); the batch-means errors of linearize_with_error and the
# jackknife are tested by default (test_core, test_distributed)
def test_linearized_jacobian_errors_match_the_scatter_of_independent_samples(gen):
    """Batch-means errors of the Jacobian (blocks of one sample) against the spread of the Jacobians of
    independent samples: the mean ratio over 10 bins x 2 settings is 1 within its statistics (6 samples:
    ≈ 10 %, so ±30 % is 3σ); a missing √batches would give 3.2, errors of the nominal instead of the Jacobian
    far more."""
    p = diffgen.with_settings(gen.default_params(), {"Beams:eCM": 94.0})
    lins = [linearized_histograms(gen, p, OBS[:1], [MZ, S2W], jax.random.key(300 + i), 3000) for i in range(6)]
    jac = np.stack([lin.jacobian["cos_theta"] for lin in lins])
    reported = np.mean([lin.jacobian_errors["cos_theta"] for lin in lins], axis=0)
    ratio = np.mean(np.std(jac, axis=0, ddof=1) / reported)
    print("scatter / reported Jacobian error", ratio)
    assert 0.7 < ratio < 1.35
    lin = lins[0]
    # a one-setting shift: its error is |ε| times that column's error, exactly
    np.testing.assert_allclose(lin.predict_errors({MZ: 0.05})["cos_theta"],
                               0.05 * lin.jacobian_errors["cos_theta"][:, 0], rtol=1e-9)
    assert lin.predict_errors(np.zeros((3, 2)))["cos_theta"].shape == (3, 10)
    none = linearized_histograms(gen, p, OBS[:1], [MZ], jax.random.key(1), 3000, batches=1)
    assert none.jacobian_errors is None
    with pytest.raises(ValueError, match="batches"):
        none.predict_errors({MZ: 0.05})
    with pytest.raises(ValueError, match="batches"):
        linearized_histograms(gen, p, OBS[:1], [MZ], jax.random.key(1), 3000, batches=100)


def test_linearized_predict_matches_resimulation(gen):
    p = diffgen.with_settings(gen.default_params(), {"Beams:eCM": 94.0})
    obs = [OBS[0], ("cos_fb", targets.cos_theta, [-1.0, 0.0, 1.0])]
    lin = linearized_histograms(gen, p, obs, [MZ, S2W], jax.random.key(5), 20_000)
    assert lin.jacobian["cos_theta"].shape == (10, 2) and lin.nominal["cos_fb"].shape == (2,)
    # the Jacobian agrees with central finite differences of re-simulation (common random numbers)
    h = 0.02
    fd = (lin.resimulate({MZ: h})["cos_theta"] - lin.resimulate({MZ: -h})["cos_theta"]) / (2 * h)
    np.testing.assert_allclose(lin.jacobian["cos_theta"][:, 0], fd, rtol=0.02, atol=1e-4)
    eps = {MZ: 0.05, S2W: 0.002}
    pred = lin.predict(eps)
    same = lin.resimulate(eps)
    for name in pred:  # same random numbers: only the (tiny) non-linearity remains
        assert np.max(np.abs(pred[name] - same[name]) / lin.errors[name]) < 0.2
    # an independent sample at θ0 + ε agrees with the prediction within the statistical errors
    p_eps = diffgen.with_settings(p, {MZ: 91.1876 + 0.05, S2W: 0.2315 + 0.002})
    ind = gen.sample(p_eps, jax.random.key(6), 20_000)
    got = losses.binned(targets.cos_theta(ind), event_weights(ind, normalise=True), EDGES)
    chi2 = np.sum((pred["cos_theta"] - np.asarray(got.contents)) ** 2
                  / (lin.errors["cos_theta"] ** 2 + np.asarray(got.variances)))
    assert chi2 < 30.0  # 10 bins
    # many shifts at once
    batch = lin.predict(np.array([[0.0, 0.0], [0.05, 0.002]]))
    np.testing.assert_allclose(batch["cos_theta"][1], pred["cos_theta"], rtol=1e-12)
    np.testing.assert_allclose(batch["cos_theta"][0], lin.nominal["cos_theta"], rtol=1e-12)
    # validity: non-linearity below the stat error for small shifts, not for huge ones
    rep = lin.validity({MZ: 0.05}, multipliers=(1.0, 4.0, 16.0, 64.0))
    assert rep.max_eps[MZ] >= 0.05
    assert rep.max_eps[MZ] < 3.2
    assert rep.max_pull[MZ].shape == (4, 2) and rep.max_pull[MZ][-1].max() > 1.0
    with pytest.raises(ValueError, match="not among the linearised settings"):
        lin.predict({"23:mWidth": 0.1})


# ---------------------------------------------------------------------------------------------
# unbinned losses
# ---------------------------------------------------------------------------------------------
def test_energy_distance_decreases_towards_truth():
    g94 = diffgen.presets.ee_mumu(94.0)
    p0 = g94.default_params()
    data = g94.sample(diffgen.with_settings(p0, {MZ: 91.6}), jax.random.key(11), 3000)
    obs = OBS[:1]

    def loss(m, kind="energy"):
        sim = g94.sample_traced(diffgen.with_settings(p0, {MZ: m}), jax.random.key(12), 3000)
        return losses.sample_distance(sim, data, obs, kind=kind, max_events=1500)

    f = jax.jit(jax.value_and_grad(loss))
    values = [float(f(m)[0]) for m in (90.4, 90.8, 91.2, 91.6)]
    assert values[0] > values[1] > values[2] > values[3]
    assert float(f(91.0)[1]) < 0  # the gradient points towards the truth
    mmd = jax.jit(lambda m: loss(m, "mmd"))
    mmd_far, mmd_near = float(mmd(90.4)), float(mmd(91.6))
    assert mmd_far > mmd_near
    x = jnp.linspace(0.0, 1.0, 50)
    assert float(losses.energy_distance(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda s: losses.energy_distance(x * s, x))(1.0))))


# ---------------------------------------------------------------------------------------------
# tune files
# ---------------------------------------------------------------------------------------------
def _write_yoda(path, target):
    with open(path, "w") as fh:
        fh.write(targets.to_yoda_text(target))


GOOD = """
[generator]
process = "ee-mumu"
sqrt_s = 94.0

[fit]
free = ["23:m0"]
steps = 4
events = 2000
seed = 3
{fit_extra}

[fit.bounds]
"23:m0" = {bounds}

[output]
dir = "out"

[[target]]
name = "cos94"
observable = "{observable}"
yoda = "{yoda}"
normalisation = "events"
bins = {bins}
"""


def _tune(tmp_path, **over):
    data = targets.from_arrays("cos94", np.full(4, 0.25), np.full(4, 0.01), np.linspace(-1, 1, 5))
    _write_yoda(tmp_path / "cos94.yoda", data)
    fields = {"fit_extra": "", "bounds": "[90.0, 92.5]", "observable": "cos_theta", "yoda": "cos94.yoda",
              "bins": "[-1.0, -0.5, 0.0, 0.5, 1.0]"}
    fields.update(over)
    p = tmp_path / "tune.toml"
    p.write_text(GOOD.format(**fields))
    return p


@pytest.mark.parametrize("change, key", [
    ({"yoda": "missing.yoda"}, "target\\[0\\].*yoda.*does not exist"),
    ({"observable": "cos_phi"}, "target\\[0\\].*observable.*unknown observable 'cos_phi'"),
    ({"bounds": "[0.5, 92.5]"}, "fit.bounds.'23:m0'.*outside its physical range"),
    ({"bounds": "[91.5, 92.5]"}, "not strictly inside its fit bounds"),
    ({"bins": "[-1.0, 0.0, 1.0]"}, "target\\[0\\].*bins.*mismatched binning"),
    ({"fit_extra": "newton_steps = -1"}, "fit.newton_steps must be an integer >= 0"),
    ({"fit_extra": "learning_rat = 0.1"}, "\\[fit\\]: unknown key.*'learning_rat'"),
    ("process", "generator.process: unknown process 'ee-tautau'"),
    ("free", "fit.free: unknown setting name '23:mZero'"),
    ("steps", "fit.steps must be an integer >= 1"),
    ("events", "fit.events must be an integer >= 1"),
])
def test_bad_tune_files_fail_before_generation(tmp_path, monkeypatch, change, key):
    def boom(*a, **k):
        raise AssertionError("events were generated")

    monkeypatch.setattr(diffgen.Generator, "sample_traced", boom)
    monkeypatch.setattr(diffgen.Generator, "sample", boom)
    monkeypatch.setattr(diffgen.stage, "apply_indices", boom)
    if isinstance(change, dict):
        path = _tune(tmp_path, **change)
        text = path.read_text()
    else:
        text = _tune(tmp_path).read_text()
        text = {"process": text.replace('"ee-mumu"', '"ee-tautau"'),
                "free": text.replace('free = ["23:m0"]', 'free = ["23:mZero"]'),
                "steps": text.replace("steps = 4", "steps = 0"),
                "events": text.replace("events = 2000", "events = 0")}[change]
        path = tmp_path / "tune.toml"
        path.write_text(text)
    with pytest.raises(ValueError, match=key):
        tune_file.run(path, progress=False)
    assert not os.path.exists(tmp_path / "out" / "report.md")


def test_tune_file_density_flag_and_output_dir_override(tmp_path):
    # 'density' is a boolean for inline data only (a string "false" must not read as True)
    base = _tune(tmp_path).read_text()
    inline = base.replace('yoda = "cos94.yoda"\nnormalisation = "events"\nbins = [-1.0, -0.5, 0.0, 0.5, 1.0]\n',
                          "edges = [-1.0, -0.5, 1.0]\ncontents = [0.4, 0.6]\nerrors = [0.01, 0.01]\n")
    assert inline != base
    for extra, match in (('density = "false"', "density must be true or false"),):
        (tmp_path / "d.toml").write_text(inline + extra + "\n")
        with pytest.raises(ValueError, match=match):
            tune_file.load(tmp_path / "d.toml")
    (tmp_path / "d.toml").write_text(base + "density = true\n")
    with pytest.raises(ValueError, match="density is only meaningful with inline"):
        tune_file.load(tmp_path / "d.toml")
    (tmp_path / "d.toml").write_text(inline + "density = true\n")
    per_unit = tune_file.load(tmp_path / "d.toml").targets[0]
    np.testing.assert_allclose(per_unit.contents, [0.4 * 0.5, 0.6 * 1.5])  # × the bin widths
    np.testing.assert_allclose(per_unit.errors, [0.01 * 0.5, 0.01 * 1.5])
    # an [output] dir under a file cannot be made; --out (out_dir) replaces it and is what is checked;
    # missing levels of a nested output directory are fine
    (tmp_path / "afile").write_text("x")
    (tmp_path / "o.toml").write_text(base.replace('dir = "out"', 'dir = "afile/out"'))
    with pytest.raises(ValueError, match="output.dir.*not a directory"):
        tune_file.load(tmp_path / "o.toml")
    cfg = tune_file.load(tmp_path / "o.toml", out_dir=tmp_path / "new" / "nested")
    assert cfg.out_dir == str(tmp_path / "new" / "nested")
    with pytest.raises(ValueError, match="--out.*not a directory"):
        tune_file.load(tmp_path / "o.toml", out_dir=tmp_path / "afile" / "x")


def test_tune_run_writes_report_and_pngs(tmp_path, gen):
    truth = diffgen.with_settings(gen.default_params(), {"Beams:eCM": 94.0, MZ: 91.25})
    ev = gen.sample(truth, jax.random.key(21), 20_000)
    t = targets.from_events(ev, [("c", targets.cos_theta, np.linspace(-1, 1, 5))], names=["cos94"])[0]
    _write_yoda(tmp_path / "cos94.yoda", t)
    path = _tune(tmp_path, fit_extra="covariance_events = 4000")
    path.write_text(path.read_text().replace("sqrt_s = 94.0\n", 'sqrt_s = 94.0\nsettings = {"23:mWidth" = 2.4952}\n'))
    out = tune_file.run(path, progress=False)
    names = {os.path.basename(f) for f in out.files}
    assert {"report.md", "cos94.png", "loss.png", "params.png", "tune.cmnd", "fit.json"} <= names
    for f in out.files:
        assert os.path.getsize(f) > 0
        if f.endswith(".png"):
            with open(f, "rb") as fh:
                assert fh.read(8) == PNG
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| `23:m0` |" in report and "Correlation matrix" in report and "χ²/ndf" in report
    assert "23:m0 = " in (tmp_path / "out" / "tune.cmnd").read_text()
    # tune.cmnd reproduces the tuned configuration: √s, switches, fixed [generator] and fitted settings
    back = diffgen.read_settings(tmp_path / "out" / "tune.cmnd")
    assert back["Beams:eCM"] == 94.0 and back["23:mWidth"] == 2.4952 and back["PartonLevel:FSR"] is False
    _, tuned = diffgen.presets.configure("ee-mumu", back)
    assert float(diffgen.settings(tuned)["23:m0"]) == pytest.approx(out.result.settings["23:m0"], rel=1e-7)
    want = diffgen.with_settings(out.config.params, {"23:m0": diffgen.settings(tuned)["23:m0"]})
    assert {k: float(v) for k, v in diffgen.settings(tuned).items()} == \
        {k: float(v) for k, v in diffgen.settings(want).items()}
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp")]
    assert out.result.chi2_after["cos94"][1] == 4


def test_tune_load_registry_and_events_target(tmp_path, gen):
    ev = gen.sample(gen.default_params(), jax.random.key(2), 500)
    from diffgen.io import write_events

    write_events(str(tmp_path / "other.npz"), ev)
    (tmp_path / "t.toml").write_text("""
[generator]
process = "ee-mumu"
[fit]
free = ["StandardModel:sin2thetaWbar"]
[fit.bounds]
"StandardModel:sin2thetaWbar" = [0.2, 0.26]
[[target]]
name = "from_events"
observable = "cos_theta"
events = "other.npz"
bins = { n = 4, range = [-1.0, 1.0] }
conditions = { "Beams:eCM" = 91.188 }
""")
    cfg = tune_file.load(tmp_path / "t.toml")
    assert cfg.targets[0].edges.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert cfg.targets[0].contents.sum() == pytest.approx(1.0, rel=1e-5)
    assert "cos_theta" in targets.observable_registry()


@pytest.mark.slow
def test_closure_with_fresh_random_numbers(gen):
    """Stochastic-approximation mode: fresh events each step, decaying rate, Polyak average."""
    truth = {MZ: 91.2176, S2W: 0.2275}
    data = _pseudo_data(gen, truth, (88.0, 91.2, 94.0), 100_000, seed=2, sigma_at=(88.0, 94.0))
    import optax

    res = fit(gen, gen.default_params(), data, OBS, [MZ, S2W], bounds={MZ: (90.0, 92.5), S2W: (0.21, 0.245)},
              steps=200, n_events=20_000, common_random_numbers=False, tol=0.0,
              optimizer=optax.adam(optax.exponential_decay(0.03, 50, 0.5)), key=jax.random.key(9), progress=False,
              covariance_events=20_000)
    for name in (MZ, S2W):
        assert abs(res.settings[name] - truth[name]) < 2.5 * res.errors[name], name
    assert sum(v[0] for v in res.chi2_after.values()) < sum(v[0] for v in res.chi2_before.values())


def test_linearized_fit_trust_region_rejects_a_step_its_model_overpromised(gen):
    """Issue 17 item 4: the Gauss–Newton step from a point far from the minimum trusts the local model too far.
    Line shape: σ(F/B) at √s = 91.2 and 93 GeV (10⁵ events each) from m_Z = 91.1876 GeV, fitted from
    m_Z = 88 GeV (≈ 400 of the final errors away). The first step lands on the upper bound (96 GeV)
    with a χ² that fell by less than a quarter of the promised fall: the trust region rejects it and
    retries from 88 GeV within a quarter of that distance; every accepted point lowers the simulated χ²
    (common random numbers: a deterministic objective), and the fit converges on the truth. Before the
    trust region the fit "converged" on the bound (its Levenberg–Marquardt started from the saturated
    sigmoid there and could not leave it), reporting m_Z = 96 GeV."""
    from diffgen.fit.linear import fit_linearized

    truth = {MZ: 91.1876}
    data = [t for t in _pseudo_data(gen, truth, (91.2, 93.0), 100_000, seed=0, sigma_at=(91.2, 93.0))
            if t.name.startswith("sigma")]
    start = diffgen.with_settings(gen.default_params(), {MZ: 88.0})
    res = fit_linearized(gen, start, data, OBS[1:], [MZ], bounds={MZ: (86.0, 96.0)}, n_events=20_000,
                         iterations=10, key=jax.random.key(3), progress=False)
    assert res.converged, res.message
    assert "1 step(s) rejected by the trust region" in res.message, res.message
    path = res.param_history[:, 0]
    assert path[1] == pytest.approx(96.0, abs=1e-3)  # the rejected step, to the bound
    assert 88.0 < path[2] < 88.0 + 0.25 * 8.0 + 1e-3, path  # retried from 88 GeV within the shrunk radius
    accepted = np.delete(res.loss_history, 1)
    assert np.all(np.diff(accepted) < 0), res.loss_history
    assert abs(res.settings[MZ] - truth[MZ]) < 2 * res.errors[MZ], (res.settings, res.errors)
    # stopped right after the rejection, the estimate is the trust-region step from 88 GeV, not the
    # surrogate's unconstrained minimum (the bound, 96 GeV) that the rejected sample contradicted
    two = fit_linearized(gen, start, data, OBS[1:], [MZ], bounds={MZ: (86.0, 96.0)}, n_events=20_000,
                         iterations=2, key=jax.random.key(3), progress=False)
    assert not two.converged and "1 step(s) rejected" in two.message
    assert 88.0 < two.settings[MZ] < 88.0 + 0.25 * 8.0 + 1e-3, two.settings
