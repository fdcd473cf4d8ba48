"""Low-variance score-function gradients (issue 17): sibling baselines, replicated sampling, variance report.

The fast tests use a two-stage toy chain with an exact answer: the upstream stage draws x ~ N(0, 1)
per event (θ-independent), the downstream stage takes two Bernoulli decisions with probability
p = σ(θ + x) and records them as a score term (the magic box). Then

    ⟨O⟩ = 2 E[σ(θ + x)] + 2 E[x]   for O = b₁ + b₂ + 2x,   d⟨O⟩/dθ = 2 E[σ′(θ + x)],

computed by Gauss–Hermite quadrature (independent of the sampler). The parent explains most of O's
variance, which is what the sibling baseline removes. The slow tests do the same on e+e- → hadrons
at 91.2 GeV against finite differences of independent samples.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen.events import Events
from diffgen.expect import (
    BASELINES,
    check_variance_options,
    event_weights,
    expect,
    sample_replicated,
    sample_replicated_traced,
    sibling_baseline,
    weighted_mean,
)
from diffgen.fit.binning import binned
from diffgen.params import settings, with_settings
from diffgen.stage import Generator, Stage, chain, normals, uniforms

THETA = 0.3
HIST_EDGES = np.array([-8.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 8.0])
SMEAR = 0.3  # the downstream choices' share of the histogrammed observable (test_binned_...)


def _parent_stage():
    def apply(params, keys, events):
        x = normals(keys)
        ev = Events.empty(x.shape[0], 2, x.dtype)
        return ev.replace(p4=ev.p4.at[:, 0, 1].set(x))

    return Stage(init=lambda key: {}, apply=apply)


def _toss_stage():
    def apply(params, keys, events):
        theta = params["theta"]
        x = events.p4[:, 0, 1]
        p = jax.nn.sigmoid(theta + x)[:, None]
        bits = uniforms(keys, (2,)) < jax.lax.stop_gradient(p)
        log_p = jnp.sum(jnp.where(bits, jnp.log(p), jnp.log1p(-p)), axis=1)
        return events.replace(mask=bits).add_log_weight(log_p - jax.lax.stop_gradient(log_p))

    return Stage(init=lambda key: {"theta": jnp.asarray(THETA)}, apply=apply)


TOY = Generator(chain(("parent", _parent_stage()), ("toss", _toss_stage())), name="toy")


def toy_observable(ev):
    return jnp.sum(ev.mask, axis=1).astype(ev.p4.dtype) + 2.0 * ev.p4[:, 0, 1]


def _gauss_hermite(f, n=80):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return float(np.sum(w * f(x)) / np.sqrt(2 * np.pi))


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def exact_mean(theta=THETA):
    return _gauss_hermite(lambda x: 2 * _sig(theta + x))


def exact_slope(theta=THETA):
    return _gauss_hermite(lambda x: 2 * _sig(theta + x) * (1 - _sig(theta + x)))


def _toy_theta(theta):
    return {"parent": {}, "toss": {"theta": theta}}


@functools.cache
def _toy_runner(baseline, replicas, n, what="mean"):
    """A jitted ``seeds[S] -> (values, d/dθ)`` over S independent samples of ``n`` toy events (one compile)."""
    edges = jnp.asarray(HIST_EDGES)

    def one(seed):
        def f(theta):
            rep = sample_replicated_traced(TOY, _toy_theta(theta), jax.random.key(seed), n, replicas, "toss")
            ev = rep.events
            w = event_weights(ev, normalise=True)
            down = ev.log_weight - rep.upstream_log_weight
            if what == "mean":
                return weighted_mean(toy_observable(ev), w, log_weight_down=down, replicas=replicas, baseline=baseline)
            values = 2.0 * ev.p4[:, 0, 1] + SMEAR * jnp.sum(ev.mask, axis=1)
            return binned(values, w, edges, log_weight_down=down, replicas=replicas, baseline=baseline).contents

        return jax.jvp(f, (jnp.asarray(THETA),), (jnp.asarray(1.0),))

    return jax.jit(jax.vmap(one))


def _toy(baseline, replicas, seeds, n=2048, what="mean"):
    val, tan = _toy_runner(baseline, replicas, n, what)(jnp.asarray(seeds, jnp.uint32))
    return np.asarray(val, float), np.asarray(tan, float)


def test_replicas_one_reproduces_sample():
    params = TOY.default_params()
    key = jax.random.key(4)
    rep = sample_replicated(TOY, params, key, 64, 1, split="toss")
    ev = TOY.sample(params, key, 64)
    assert bool(jnp.all(rep.events.p4 == ev.p4)) and bool(jnp.all(rep.events.mask == ev.mask))


def test_replicas_share_parent_and_differ_downstream():
    rep = sample_replicated(TOY, TOY.default_params(), jax.random.key(5), 4000, 4, split="toss")
    x = np.asarray(rep.events.p4[:, 0, 1]).reshape(-1, 4)
    bits = np.asarray(rep.events.mask[:, 0]).reshape(-1, 4)
    assert np.all(x == x[:, :1])
    # independent downstream choices: siblings agree with probability E[p² + (1 − p)²] < 1, not always
    p = _sig(THETA + x[:, 0])
    agree = np.mean(bits[:, 0] == bits[:, 1])
    expected = np.mean(p ** 2 + (1 - p) ** 2)
    assert abs(agree - expected) < 4 * np.sqrt(expected * (1 - expected) / x.shape[0])


def test_sibling_baseline_is_leave_one_out():
    v = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    w = jnp.array([1.0, 1.0, 3.0, 0.0])
    out = np.asarray(sibling_baseline(v, w, 2))
    np.testing.assert_allclose(out, [[3.0, 4.0], [1.0, 2.0], [0.0, 0.0], [5.0, 6.0]])


def test_expect_with_sibling_baselines():
    """The public path: expect(..., replicas, baseline) equals the array arithmetic on the same sample,
    in value and in forward- and reverse-mode derivative."""
    params = TOY.default_params()
    key = jax.random.key(7)
    ref_val, ref_tan = _toy("siblings_cv", 4, [7], n=512)

    def f(p):
        return expect(toy_observable, TOY, p, key, 512, baseline="siblings_cv", replicas=4, split="toss")

    val, tan = jax.jvp(f, (params,), (_toy_theta(jnp.asarray(1.0)),))
    grad = jax.grad(f)(params)["toss"]["theta"]
    np.testing.assert_allclose([float(val), float(tan), float(grad)], [ref_val[0], ref_tan[0], ref_tan[0]], rtol=1e-5)


@pytest.mark.slow
def test_expect_error_counts_correlated_replicas():
    """The error of a replicated sample's mean sums the residuals per parent: it matches the scatter of
    the mean over 32 independent samples (±25 %), and exceeds the naive per-event error (x is common to
    the four replicas: the naive error would be too small by about √(1 + 3ρ), ρ ≈ 0.9)."""
    params = TOY.default_params()
    key = jax.random.key(7)
    _, err = expect(toy_observable, TOY, params, key, 512, True, baseline="siblings_cv", replicas=4, split="toss")
    _, naive = expect(toy_observable, TOY, params, key, 512, True)
    vals = _toy("mean", 4, range(200, 232), n=512)[0]
    assert 0.7 < float(err) / vals.std(ddof=1) < 1.4
    assert float(err) > 1.5 * float(naive)


@pytest.mark.parametrize("baseline", BASELINES)
def test_value_unchanged_and_gradient_unbiased(baseline):
    """Every estimator's gradient agrees with the exact slope within 3σ over 32 independent seeds, and
    the value equals the plain self-normalised mean on the same events."""
    k = 1 if baseline == "mean" else 4
    vals, grads = _toy(baseline, k, range(32))
    np.testing.assert_allclose(vals, _toy("mean", k, range(32))[0], rtol=1e-6)
    err = grads.std(ddof=1) / np.sqrt(grads.size)
    assert abs(grads.mean() - exact_slope()) < 3 * err, (grads.mean(), err, exact_slope())
    assert exact_slope() > 10 * err  # the slope is resolved
    assert abs(vals.mean() - exact_mean()) < 3 * vals.std(ddof=1) / np.sqrt(vals.size)


def test_sibling_baselines_reduce_variance_on_the_same_events():
    """Same replicated events, three baselines: Var(siblings) and Var(siblings_cv) < Var(mean).

    Here Var(O | parent) is small (two bits) and Var(E[O | parent]) = 4 Var(x) large, so the sibling
    baseline removes most of the score term's variance (measured ratio ≈ 0.1); with 64 paired seeds
    a variance ratio is known to about ±20 %, so the bound 0.5 is far from the measurement."""
    var = {b: _toy(b, 4, range(100, 164))[1].var(ddof=1) for b in BASELINES}
    assert var["siblings"] / var["mean"] < 0.5, var
    assert var["siblings_cv"] / var["mean"] < 0.5, var


def _exact_bin_slopes(edges):
    """dP(lo ≤ O′ < hi)/dθ per bin, O′ = 2x + SMEAR·c: Σ_c ∫ φ(x) dP(c | x)/dθ 1{lo ≤ O′ < hi} dx on a fine grid."""
    x = np.linspace(-9.0, 9.0, 360001)
    phi = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    p = _sig(THETA + x)
    dpdt = p * (1 - p)
    d_count = {0: -2 * (1 - p) * dpdt, 1: 2 * (1 - 2 * p) * dpdt, 2: 2 * p * dpdt}
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        total = 0.0
        for c, dc in d_count.items():
            o = SMEAR * c + 2 * x
            inside = (o >= lo) & (o < hi)
            total += np.trapezoid(phi * dc * inside, x)
        out.append(total)
    return np.asarray(out)


def test_binned_siblings_keeps_contents_and_is_unbiased():
    """Histogram of O′ = 2x + SMEAR·c (the downstream choices smear a parent-level value, as hadronization
    smears an event shape of the partons): contents identical to the plain ones, every estimator's
    gradient of every bin within 3σ of the exact dP(bin)/dθ over independent seeds, and the
    cross-fitted sibling estimator's variance summed over the bins lower than the plain one's on the
    same events (measured 0.62 with seeds 0–23; a variance ratio from 24 paired seeds is known to about
    ±20 %, so the bound 0.85 is > 1.5σ away and still asserts a reduction)."""
    edges = HIST_EDGES
    res = {b: _toy(b, 4, range(24), what="hist") for b in BASELINES}
    np.testing.assert_allclose(res["siblings"][0], res["mean"][0], rtol=1e-6)
    exact = _exact_bin_slopes(edges)
    for b in BASELINES:
        g = res[b][1]
        err = g.std(0, ddof=1) / np.sqrt(g.shape[0])
        assert np.all(np.abs(g.mean(0) - exact) < 3 * err + 1e-6), (b, g.mean(0), err, exact)
    resolved = np.abs(exact) > 3 * res["siblings_cv"][1].std(0, ddof=1) / np.sqrt(24)
    assert resolved.sum() >= 3
    ratio = {b: np.sum(res[b][1].var(0)) / np.sum(res["mean"][1].var(0)) for b in BASELINES}
    print(ratio)
    assert ratio["siblings_cv"] < 0.85, ratio


def test_bad_options():
    with pytest.raises(ValueError, match="unknown baseline 'best'"):
        check_variance_options("best", 2)
    with pytest.raises(ValueError, match="needs replicas >= 2"):
        check_variance_options("siblings", 1)
    with pytest.raises(ValueError, match="multiple of replicas"):
        check_variance_options("siblings", 3, 100)
    with pytest.raises(ValueError, match="replicas"):
        check_variance_options("mean", 0)
    with pytest.raises(ValueError, match="cannot split generator .* at stage 'hadronization'"):
        sample_replicated(TOY, TOY.default_params(), jax.random.key(0), 8, 2)
    with pytest.raises(ValueError, match="first stage"):
        sample_replicated(TOY, TOY.default_params(), jax.random.key(0), 8, 2, split="parent")


# --------------------------------------------------------------------------------------------------
# e+e- → hadrons at 91.2 GeV: autodiff of every estimator against finite differences of independent
# samples, for the five tune parameters, and the variance of each estimator on the same events.

HAD_PARAMS = ("TimeShower:alphaSvalue", "StringZ:aLund", "StringZ:bLund", "StringPT:sigma", "StringFlav:probStoUD")
#: central-difference half steps (a few % to 20 % of the Monash values: slopes resolved with 2·10⁴ events,
#: curvature terms h² f‴/6 well below the statistical errors)
HAD_STEPS = {"TimeShower:alphaSvalue": 0.012, "StringZ:aLund": 0.2, "StringZ:bLund": 0.25, "StringPT:sigma": 0.08,
             "StringFlav:probStoUD": 0.13}
AD_EVENTS, AD_BATCHES, AD_REPLICAS, FD_EVENTS = 16384, 32, 2, 16384


def _had_observables():
    from diffgen.fit import lep
    from diffgen.observables import REGISTRY

    return {"n_charged": REGISTRY["charged_multiplicity"].fn, "one_minus_thrust": lep.one_minus_thrust,
            "x_lead": lep.x_lead, "n_kaons": REGISTRY["n_kaons"].fn, "c_parameter": REGISTRY["c_parameter"].fn,
            "b_wide": REGISTRY["b_wide"].fn}


def _had_values(ev):
    return jnp.stack([jnp.asarray(fn(ev), ev.p4.dtype) for fn in _had_observables().values()], axis=-1)


@pytest.fixture(scope="module")
def hadrons():
    gen = diffgen.presets.ee_hadrons(91.2)
    return gen, gen.default_params()


@pytest.fixture(scope="module")
def ad_gradients(hadrons):
    """[baseline, batch, observable, parameter]: the gradient of the observables' means in each of
    ``AD_BATCHES`` disjoint batches of one replicated sample, for each baseline (the same events)."""
    from diffgen.expect import sample_replicated_traced, weighted_mean

    gen, params = hadrons
    theta0 = jnp.asarray([float(settings(params)[n]) for n in HAD_PARAMS])
    size = AD_EVENTS // AD_BATCHES

    def means(theta):
        p = with_settings(params, dict(zip(HAD_PARAMS, theta)))
        rep = sample_replicated_traced(gen, p, jax.random.key(2026), AD_EVENTS, AD_REPLICAS)
        ev = rep.events
        w = event_weights(ev, normalise=True)
        down = ev.log_weight - rep.upstream_log_weight
        vals = _had_values(ev)

        def split(x):
            return x.reshape((AD_BATCHES, size) + x.shape[1:])

        return jnp.stack([jax.vmap(lambda v, ww, d, b=b: weighted_mean(v, ww, log_weight_down=d, replicas=AD_REPLICAS,
                                                                     baseline=b))(split(vals), split(w), split(down))
                          for b in BASELINES])

    return np.asarray(jax.jit(jax.jacfwd(means))(theta0), float)


@pytest.mark.slow
@pytest.mark.parametrize("name", HAD_PARAMS)
def test_hadron_gradients_match_finite_differences(hadrons, ad_gradients, name):
    """Each estimator's d⟨O⟩/dθ (mean over batches ± their scatter/√B) agrees within 3σ with central
    differences of independent plain samples of FD_EVENTS events at θ ± h (errors from the ratio
    estimator), on all six observables, of which at least three have slopes resolved at > 3σ by the finite
    differences or by the ``siblings_cv`` estimator (which resolves event shapes' slopes in the string
    parameters at 3–17σ where the plain estimator and the finite differences see < 3σ).

    Measured (2026-12-06, pathwise strings): every pull below 3 except for StringZ:aLund on x_lead, where the
    plain estimator too disagreed with the finite difference (pull 3.6; −2.9 and −2.5 for StringZ:bLund and
    StringPT:sigma): the pathwise kinked strings drop the term of "does the hadron fit across a kink", a
    deterministic function of z and pT. With the score-function strings (the default since 2026-12-07) z and
    pT do not move with the parameters and nothing is dropped: x_lead pulls −1.0 (a), −0.8 (b), −0.0 (σ_pT)
    for the plain estimator, all pulls below 2 (2026-12-07), so the xfail is gone."""
    from diffgen.expect import expect_of

    gen, params = hadrons
    j = HAD_PARAMS.index(name)
    h = HAD_STEPS[name]
    theta = float(settings(params)[name])
    ends = []
    for sign, seed in ((+1, 11), (-1, 12)):
        ev = gen.sample(with_settings(params, {name: theta + sign * h}), jax.random.key(1000 * j + seed), FD_EVENTS)
        m, e = expect_of(_had_values, ev, with_error=True)
        ends.append((np.asarray(m, float), np.asarray(e, float)))
    fd = (ends[0][0] - ends[1][0]) / (2 * h)
    fd_err = np.hypot(ends[0][1], ends[1][1]) / (2 * h)
    names = list(_had_observables())
    fd_resolved = np.abs(fd) > 3 * fd_err
    pulls, signif = {}, {}
    for bi, b in enumerate(BASELINES):
        g = ad_gradients[bi, :, :, j]
        ad, ad_err = g.mean(0), g.std(0, ddof=1) / np.sqrt(g.shape[0])
        pulls[b] = (ad - fd) / np.hypot(ad_err, fd_err)
        signif[b] = ad / ad_err
    print(name, "FD/σ", dict(zip(names, (fd / fd_err).round(1))), "pulls",
          {b: p.round(2).tolist() for b, p in pulls.items()},
          "AD/σ", {b: v.round(1).tolist() for b, v in signif.items()})
    for b in BASELINES:
        assert np.all(np.abs(pulls[b]) < 3), (name, b, dict(zip(names, pulls[b].round(2))))
    # a slope counts as resolved when the finite difference or the lowest-variance estimator resolves it
    resolved = fd_resolved | (np.abs(signif["siblings_cv"]) > 3)
    assert resolved.sum() >= 3, (name, dict(zip(names, (fd / fd_err).round(1))), signif["siblings_cv"])


@pytest.mark.slow
def test_hadron_sibling_cv_variance_lower(ad_gradients):
    """On the same events, the cross-fitted sibling baseline's batch-to-batch variance of the string
    parameters' gradients (a, b, σ_pT; 6 observables each), in units of the plain estimator's, is
    lower on average over those 18 ratios (32 paired batches each). Measured (2026-12-06): 0.66–0.68
    for n_ch, 0.02–0.03 for 1 − T, C and B_W, ≈ 1 for x_lead and n_K; 1.0 for α_s (shower scores keep ⟨O⟩)."""
    var = ad_gradients.var(axis=1, ddof=1)  # [baseline, observable, parameter]
    ratio = var[BASELINES.index("siblings_cv")] / var[BASELINES.index("mean")]
    strings = [HAD_PARAMS.index(n) for n in ("StringZ:aLund", "StringZ:bLund", "StringPT:sigma")]
    print({n: ratio[:, j].round(3).tolist() for j, n in enumerate(HAD_PARAMS)})
    assert ratio[:, strings].mean() < 1.0, ratio


def test_default_estimator_resolution():
    from diffgen.expect import AUTO_BASELINE, AUTO_REPLICAS, resolve_variance_options

    assert resolve_variance_options(TOY, None, None) == (1, "mean")  # no "hadronization" stage
    assert resolve_variance_options(TOY, None, None, split="toss") == (AUTO_REPLICAS, AUTO_BASELINE)
    assert resolve_variance_options(TOY, None, None, split="toss", n=AUTO_REPLICAS * 10 + 1) == (1, "mean")
    assert resolve_variance_options(TOY, 2, None, split="toss") == (2, AUTO_BASELINE)
    assert resolve_variance_options(TOY, None, "mean", split="toss") == (1, "mean")
    assert resolve_variance_options(TOY, 3, "siblings", split="toss", n=30) == (3, "siblings")
    with pytest.raises(ValueError, match="multiple of replicas"):
        resolve_variance_options(TOY, 3, "siblings", split="toss", n=31)


def test_variance_report_basics():
    """One report on ee → μμ (pathwise gradients only): small noise, the 1/√n planning arithmetic, bad targets."""
    from diffgen.fit import targets, variance_report
    from diffgen.presets import ee_mumu

    gen = ee_mumu(94.0)
    obs = [("cos_theta", targets.cos_theta, np.linspace(-1, 1, 11))]
    name = "StandardModel:sin2thetaWbar"
    rep = variance_report(gen, gen.default_params(), obs, [name], key=jax.random.key(0), n_events=2000)
    assert rep.replicas == 1 and rep.baseline == "mean"  # no hadronization stage: the plain estimator
    assert 0 < rep.noise[name] < 0.5 and rep.jacobian.shape == (10, 1)
    assert abs(rep.events_for_noise(rep.noise[name] / 2)[name] - 8000) <= 1
    assert rep.events_for_error(rep.param_error[name] / 3)[name] == pytest.approx(18000, abs=1)
    assert name in rep.table()
    with pytest.raises(ValueError, match="target Jacobian noise ratio must be a finite number > 0"):
        rep.events_for_noise(0.0)
    with pytest.raises(ValueError, match="batches"):
        variance_report(gen, gen.default_params(), obs, [name], key=jax.random.key(0), n_events=2000, batches=1)


@pytest.mark.slow
def test_variance_report_noise_matches_independent_samples():
    """ee → μμ at 94 GeV, d(cos θ histogram)/d sin²θ̄_W: the report's per-bin Jacobian error (from 10
    batches of one sample) agrees with the scatter of the Jacobian over 6 independent samples (summed
    over the 10 bins: ≈ 50 degrees of freedom, the ratio known to ±20 %), and the noise ratio falls as
    1/√n (4× the events: half the ratio, within 25 %)."""
    from diffgen.fit import targets, variance_report
    from diffgen.presets import ee_mumu

    gen = ee_mumu(94.0)
    params = gen.default_params()
    obs = [("cos_theta", targets.cos_theta, np.linspace(-1, 1, 11))]
    name = "StandardModel:sin2thetaWbar"
    reps = [variance_report(gen, params, obs, [name], key=jax.random.key(s), n_events=2000) for s in range(6)]
    jac = np.stack([r.jacobian[:, 0] for r in reps])
    reported = np.mean([r.jacobian_error[:, 0] ** 2 for r in reps], axis=0)
    ratio = np.sum(jac.var(0, ddof=1)) / np.sum(reported)
    assert 0.5 < ratio < 2.0, ratio
    assert reps[0].replicas == 1 and reps[0].baseline == "mean"  # no hadronization stage: plain
    big = variance_report(gen, params, obs, [name], key=jax.random.key(9), n_events=8000)
    small = np.mean([r.noise[name] for r in reps])
    assert 0.375 < big.noise[name] / small < 0.625, (big.noise[name], small)
    need = reps[0].events_for_noise(reps[0].noise[name] / 2)[name]
    assert abs(need - 8000) <= 1
