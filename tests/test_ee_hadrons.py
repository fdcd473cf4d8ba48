"""The full e+e- → hadrons chain: conservation laws, overflow accounting, finite gradients, and
autodiff against finite differences for the five tune parameters."""

import jax
import jax.numpy as jnp
import lep_reference
import numpy as np
import pytest

import diffgen
from diffgen import Status, particles
from diffgen import observables as obs
from diffgen.expect import event_weights, expect_of
from diffgen.hadronization import quark_content

SQRT_S = 91.188
TUNE = ("TimeShower:alphaSvalue", "StringZ:aLund", "StringZ:bLund", "StringPT:sigma", "StringFlav:probStoUD")


@pytest.fixture(scope="module")
def full():
    return diffgen.presets.ee_hadrons(SQRT_S)


@pytest.fixture(scope="module")
def full_sample(full):
    return full.sample(full.default_params(), jax.random.key(2024), 10_000)


def test_preset_settings(full):
    s = diffgen.settings(full.default_params())
    for name in TUNE + ("TimeShower:pTmin",):
        assert name in s
    assert float(s["TimeShower:alphaSvalue"]) == pytest.approx(0.1365)
    assert float(s["StringZ:aLund"]) == pytest.approx(0.68)
    assert float(s["StringZ:bLund"]) == pytest.approx(0.98)
    assert float(s["StringPT:sigma"]) == pytest.approx(0.335)
    assert float(s["StringFlav:probStoUD"]) == pytest.approx(0.217)


def test_four_momentum_and_charge_conservation_10k(full_sample):
    ev = full_sample
    good = np.asarray(ev.status) == 0
    # kinked strings flag ~2e-3 of events FAILED_KINEMATICS (weight 0: σ biased low by that fraction, stated in
    # docs/validation.md): 17 of 10⁴ measured with this sample (2026-12-07; Poisson ± 4), bound 3e-3
    assert good.mean() > 0.997, diffgen.events.status_summary(ev.status)
    total = np.asarray(ev.total_p4())
    p_in = np.asarray(ev.p4_in).sum(axis=1)
    dev = np.abs(total - p_in).max(axis=1) / SQRT_S
    assert dev[good].max() <= 1e-4, dev.max()
    charge3 = (np.asarray(particles.charge3(ev.pid)) * np.asarray(ev.mask)).sum(axis=1)
    assert np.all(charge3[good] == 0)
    # final state of good events (flagged ones carry zero weight): only particles the decay stage
    # keeps stable, all on shell
    m = np.asarray(ev.mask) & good[:, None]
    pid = np.abs(np.asarray(ev.pid))[m]
    assert set(np.unique(pid)) <= {11, 12, 13, 14, 16, 22, 130, 211, 321, 2112, 2212}
    p4 = np.asarray(ev.p4, np.float64)[m]
    mass2 = p4[:, 0] ** 2 - (p4[:, 1:] ** 2).sum(axis=1)
    expected = np.asarray(particles.mass(ev.pid), np.float64)[m] ** 2
    # every particle on its own mass shell at float32 precision: the momenta are built by boosts and
    # light-cone sums at the event's scale √s/2, so a component carries an absolute error of a few
    # eps₃₂·√s/2 and p² one of a few eps₃₂·(√s/2)² (measured max 4·10⁻⁴ GeV² over 9·10⁴ particles; the bound
    # is 2·10⁻³ GeV²) — small enough that a π with the μ mass (Δm² = 8·10⁻³) or a K with the π mass fails
    tol = 8.0 * np.finfo(np.float32).eps * (SQRT_S / 2.0) ** 2
    bad = np.abs(mass2 - expected) > tol
    assert not bad.any(), (pid[bad][:10], mass2[bad][:10], expected[bad][:10])


@pytest.mark.slow  # two more compilations (~95 s); per-stage flavour conservation is tested by default in
# test_shower, test_hadronization and test_kinked_strings
def test_flavour_conserved_through_shower_and_hadronization():
    gen = diffgen.presets.ee_hadrons(SQRT_S, decays=False)
    # exact conservation laws: any violation would show in a large fraction of 1000 events
    ev = gen.sample(gen.default_params(), jax.random.key(5), 1000)
    good = np.asarray(ev.status) == 0
    content = np.asarray(quark_content(ev.pid) * ev.mask[..., None]).sum(axis=1)  # [N, 5] net d,u,s,c,b
    assert np.all(content[good] == 0)
    # and at parton level after the shower: net quark number per flavour is zero
    partons = diffgen.Generator(diffgen.chain(
        ("hard", diffgen.processes.ee_to_ffbar((1, 2, 3, 4, 5), SQRT_S)),
        ("shower", diffgen.shower.final_state_shower())))
    pe = partons.sample(partons.default_params(), jax.random.key(6), 1000)
    pid = np.asarray(pe.pid) * np.asarray(pe.mask)
    for f in range(1, 6):
        net = (pid == f).sum(axis=1) - (pid == -f).sum(axis=1)
        assert np.all(net[np.asarray(pe.status) == 0] == 0)


def test_default_capacity_essentially_never_overflows(full_sample):
    flags = np.asarray(full_sample.status) & int(Status.CAPACITY_OVERFLOW)
    assert np.count_nonzero(flags) <= 1  # ≤ 1e-4 of 10^4 events


@pytest.mark.slow  # a second compilation of the whole chain (~90 s); the stage-level overflow tests are fast
def test_overflow_is_flagged_never_silent():
    """Tiny capacities must overflow and flag it, with zero weight."""
    tiny = diffgen.presets.ee_hadrons(SQRT_S, final_capacity=12)
    ev = tiny.sample(tiny.default_params(), jax.random.key(1), 500)
    frac = np.mean(np.asarray(ev.status) & int(Status.CAPACITY_OVERFLOW) > 0)
    assert frac > 0.9
    # flagged events carry zero weight in every estimate
    w = np.asarray(event_weights(ev))
    assert np.all(w[np.asarray(ev.status) != 0] == 0.0)


#: Pythia 8 Monash means the default model must reproduce (tests/data/pythia_reference.json, made by
#: benchmarks/pythia_reference.py, 10⁵ events): allowed |diffgen/Pythia − 1|, the targets of issue 16 (2 % on
#: the multiplicities, 5 % on K±, 10 % on p + p̄, 3 % on the event shapes, 5 % on ⟨1 − T⟩ — not ⟨T⟩, whose 10 %
#: would exceed ⟨1 − T⟩ itself) ...
TARGETS = {"n_ch": 0.02, "n": 0.02, "n_K_pm": 0.05, "n_p": 0.10, "S": 0.03, "A": 0.03, "C": 0.03,
           "one_minus_T": 0.05}
#: ... except where the model does not reach the target yet: there the measured gap (REGRESSION value,
#: measured with this file's sample, see docs/validation.md and benchmarks/lep_comparison.py) is the allowed
#: deviation, so that the model cannot get worse unnoticed. Shrink it when the model improves.
KNOWN_GAPS: dict[str, float] = {}  # none since kinked strings restart (S: +0.5 ± 1.6 %, was +6.5 %, 2026-12-07)
#: Σχ²/Σndf over the eight LEP histograms (diffgen 10⁴ events vs Pythia 10⁵) may not exceed this
CHI2_PER_NDF_MAX = 2.5  # REGRESSION bound: measured 1.69 with this sample (2026-12-07, after the kinked strings'
#                          per-region pT bases and window restarts; 3.62 before them, 4.52 before string
#                          restarts, 10.7 on 2026-12-06 — each of which this bound fails)


def _observable_values(ev):
    charged = {"n_ch": obs.charged_multiplicity, "n": obs.multiplicity, "n_K_pm": obs.n_kaons,
               "n_pi": obs.n_pions, "S": obs.sphericity, "A": obs.aplanarity, "C": obs.c_parameter}
    out = {k: np.asarray(fn(ev), np.float64) for k, fn in charged.items()}
    out["one_minus_T"] = 1.0 - np.asarray(obs.thrust(ev), np.float64)
    out["n_p"] = np.asarray(obs.count(ev, (2212,)), np.float64)
    return out


def test_default_means_against_pythia(full_sample):
    """Default-setting means of an independent 10⁴-event sample against Pythia 8 Monash (10⁵ events): within
    the target (or the recorded gap) plus 3σ of the combined statistical error."""
    ref = lep_reference.load()["ee_hadrons"]["monash"]["observables"]
    w = np.asarray(event_weights(full_sample))
    values = _observable_values(full_sample)
    report = {}
    for name, target in TARGETS.items():
        mean, err = lep_reference.mean_and_error(values[name], w)
        r = ref[name]
        rel = mean / r["mean"] - 1.0
        rel_err = np.hypot(err / mean, r["error"] / r["mean"]) if mean else np.inf
        report[name] = (round(mean, 5), round(r["mean"], 5), f"{rel:+.3%}")
        allowed = max(target, KNOWN_GAPS.get(name, 0.0))
        assert abs(rel) < allowed + 3.0 * rel_err, (name, report[name], allowed)
    print(report)
    mean, _ = lep_reference.mean_and_error(values["n_ch"], w)
    assert mean == pytest.approx(float(expect_of(obs.charged_multiplicity, full_sample)), rel=1e-5)


def test_lep_histograms_against_pythia(full_sample):
    """Normalised histograms of n_ch, n, 1 − T, S, A, C, n(π±), n(K±) against Pythia's: the sum of χ²/ndf
    (errors of both samples) stays below the recorded bound; a wrong model (e.g. K± with the π± rate, or the
    thrust of no shower) gives hundreds."""
    ref = lep_reference.load()["ee_hadrons"]["monash"]["histograms"]
    w = np.asarray(event_weights(full_sample))
    values = _observable_values(full_sample)
    values["n_K"] = values["n_K_pm"]
    per = {name: lep_reference.hist_chi2(values[name], w, h) for name, h in ref.items()}
    total = sum(c for c, _ in per.values()) / sum(n for _, n in per.values())
    print({k: round(c / n, 2) for k, (c, n) in per.items()}, "total", round(total, 2))
    assert total < CHI2_PER_NDF_MAX, per


OBSERVABLES = {
    "n_charged": obs.charged_multiplicity,
    "thrust": obs.thrust,
    "c_parameter": obs.c_parameter,
    "n_kaons": obs.n_kaons,
}


def _means(q, gen, key, n):
    ev = gen.sample_traced(q, key, n)
    return jnp.stack([expect_of(fn, ev) for fn in OBSERVABLES.values()])


def _tune_means(theta, base, gen, key, n):
    """⟨O⟩ as a function of the five tune parameters only (the others held fixed)."""
    return _means(diffgen.with_settings(base, theta), gen, key, n)


def _theta0(params):
    s = diffgen.settings(params)
    return {name: jnp.asarray(float(s[name])) for name in TUNE}


@pytest.mark.slow
def test_no_nan_in_values_or_gradients_1e5(full):
    p = full.default_params()
    # one reverse pass per chunk: the gradient of the summed means reaches every score and pathwise term
    grad = jax.jit(jax.grad(lambda t, k: jnp.sum(_tune_means(t, p, full, k, 10_000))))
    for i in range(10):
        key = jax.random.key(100 + i)
        ev = full.sample(p, key, 10_000)
        assert np.all(np.isfinite(np.asarray(ev.p4))) and np.all(np.isfinite(np.asarray(ev.log_weight)))
        jac = grad(_theta0(p), key)
        for leaf in jax.tree_util.tree_leaves(jac):
            assert np.all(np.isfinite(np.asarray(leaf)))


STEPS = {"TimeShower:alphaSvalue": 0.006, "StringZ:aLund": 0.1, "StringZ:bLund": 0.1,
         "StringPT:sigma": 0.04, "StringFlav:probStoUD": 0.05}


@pytest.mark.slow
def test_autodiff_matches_finite_differences_for_tune_parameters(full):
    """For each tune parameter and ≥ 3 observables: ∂⟨O⟩/∂θ by autodiff (at θ0) agrees with the
    central finite difference (θ0 ± δ) within 3σ.

    Both are estimated on B independent batches (different keys; the finite-difference pair of a
    batch shares its random numbers, which leaves each term unbiased and cancels most of the noise),
    and the errors are the batch-to-batch spread / √B. The autodiff batches use keys independent of
    the finite-difference batches.
    """
    p = full.default_params()
    n, batches = 4000, 6
    theta0 = _theta0(p)
    grad = jax.jit(jax.jacrev(lambda t, k: _tune_means(t, p, full, k, n)))
    fwd = jax.jit(lambda t, k: _tune_means(t, p, full, k, n))
    ad = {name: [] for name in TUNE}
    fd = {name: [] for name in TUNE}
    for b in range(batches):
        jac = grad(theta0, jax.random.key(1000 + b))
        key_fd = jax.random.key(5000 + b)
        for name in TUNE:
            ad[name].append(np.asarray(jac[name]))
            up = fwd(dict(theta0, **{name: theta0[name] + STEPS[name]}), key_fd)
            dn = fwd(dict(theta0, **{name: theta0[name] - STEPS[name]}), key_fd)
            fd[name].append(np.asarray((up - dn) / (2 * STEPS[name])))
    report = []
    for name in TUNE:
        a, f = np.array(ad[name]), np.array(fd[name])
        a_mean, a_err = a.mean(0), a.std(0, ddof=1) / np.sqrt(batches)
        f_mean, f_err = f.mean(0), f.std(0, ddof=1) / np.sqrt(batches)
        pull = (a_mean - f_mean) / np.sqrt(a_err**2 + f_err**2)
        for obs_name, am, ae, fm, fe, pu in zip(OBSERVABLES, a_mean, a_err, f_mean, f_err, pull):
            report.append(f"{name:24s} {obs_name:12s} AD {am:+.4g} ± {ae:.2g}  FD {fm:+.4g} ± {fe:.2g}  pull {pu:+.2f}")
        assert np.all(np.abs(pull) < 3.0), "\n".join(report)
        # agreement alone would pass a zero or pure-noise gradient: each parameter must have an
        # observable whose slope both estimates resolve (> 3σ) with the same sign (measured: n_ch for
        # α_s, a, b, σ_pT at 11σ, 10σ, 10σ, 6σ of AD; n_K for s/u at 78σ)
        resolved = (np.abs(a_mean) > 3 * a_err) & (np.abs(f_mean) > 3 * f_err) & (np.sign(a_mean) == np.sign(f_mean))
        assert np.any(resolved), "\n".join(report)
    print("\n".join(report))
