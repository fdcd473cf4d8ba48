"""e+e- → γ*/Z → f f̄: σ, A_FB and their gradients against the analytic formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen.amplitudes import couplings, ee_ffbar
from diffgen.expect import cross_section_of, event_weights, tangent_from_settings
from diffgen.processes import fermion_mass

N = 200_000
M_MU = fermion_mass(13)


def _hard(params):
    return params["hard"]


@pytest.mark.parametrize("sqrt_s", [60.0, 91.188, 130.0])
def test_sigma_and_afb_match_analytic(sqrt_s):
    gen = diffgen.presets.ee_mumu(sqrt_s)
    p = gen.default_params()
    ev = gen.sample(p, jax.random.key(11), N)
    sigma, err = cross_section_of(ev)
    exact = float(ee_ffbar.sigma_total(_hard(p), 13, M_MU))
    assert abs(float(sigma) - exact) < 3 * float(err), (float(sigma), float(err), exact)
    afb, afb_err = diffgen.forward_backward_asymmetry(ev)
    exact_afb = float(ee_ffbar.afb(_hard(p), 13, M_MU))
    assert abs(float(afb) - exact_afb) < 3 * float(afb_err), (float(afb), float(afb_err), exact_afb)


def test_qed_limit_far_below_the_z():
    """At √s = 10 GeV the Z is negligible in σ: σ → 4π α(s)²/(3s) (A_FB from interference only).

    The Z terms there are ≈ −3e-5 of σ (interference v_e v_μ χ ≈ −4.7e-5, resonant ≈ +1.8e-5), so
    a 1e-4 tolerance tests the QED normalisation itself while leaving room for them.
    """
    with jax.enable_x64(True):
        p = diffgen.presets.ee_mumu(10.0).default_params()["hard"]
        s = 100.0
        a = couplings.alpha_em(s, p["StandardModel:alphaEMmZ"])
        qed = couplings.GEV2_TO_PB * 4 * np.pi * a**2 / (3 * s)
        beta = np.sqrt(1 - 4 * M_MU**2 / s)
        qed *= beta * (3 - beta**2) / 2  # massive-fermion QED factor
        assert float(ee_ffbar.sigma_total(p, 13, M_MU)) == pytest.approx(float(qed), rel=1e-4)


def test_pythia_numbers_for_the_couplings():
    """The electroweak inputs reproduce the textbook Z-pole structure (Pythia couplings)."""
    v_mu = couplings.vector_coupling(13, 0.2315)
    assert v_mu == pytest.approx(-1 + 4 * 0.2315)
    assert couplings.vector_coupling(2, 0.2315) == pytest.approx(1 - 4 * 0.2315 * 2 / 3)
    # α_EM runs up; the values Pythia 8.317's AlphaEM gives at 60, 91.188, 130 GeV (read off the
    # library; tests/test_peers.py checks them against a live Pythia), float32 ≈ 1e-7 relative
    a = [float(couplings.alpha_em(q**2, 0.00781751)) for q in (60.0, 91.188, 130.0)]
    np.testing.assert_allclose(a, [0.00778059301, 0.00781751, 0.00784906052], rtol=1e-6)
    # one-loop α_s: value at m_Z; at 10 GeV (above m_b, n_f = 5) the closed form
    # α_s(Q²) = α_s(m_Z²) / (1 + α_s(m_Z²) b₀/(4π) ln(Q²/m_Z²)), b₀ = 11 − 2n_f/3
    assert float(couplings.alpha_s_one_loop(91.188**2, 0.13)) == pytest.approx(0.13, rel=1e-6)
    b0 = 11.0 - 2.0 * 5 / 3.0
    closed = 0.13 / (1.0 + 0.13 * b0 / (4 * np.pi) * np.log(10.0**2 / 91.188**2))
    assert float(couplings.alpha_s_one_loop(10.0**2, 0.13)) == pytest.approx(closed, rel=1e-6)
    # one function for the hard process and the shower; +inf (zero gradient) past the Landau pole
    from diffgen.shower import alpha_s as shower_alpha_s

    assert shower_alpha_s is couplings.alpha_s_one_loop
    assert np.isinf(float(couplings.alpha_s_one_loop(0.0, 0.13)))
    assert float(jax.grad(couplings.alpha_s_one_loop, argnums=1)(0.0, 0.13)) == 0.0


def test_quark_channels_sum_and_flavour_fractions():
    gen = diffgen.presets.ee_qq(91.188)
    p = gen.default_params()
    ev = gen.sample(p, jax.random.key(5), N)
    w = np.asarray(event_weights(ev))
    exact = {f: float(ee_ffbar.sigma_total(p["hard"], f, fermion_mass(f))) for f in (1, 2, 3, 4, 5)}
    sigma = w.mean()
    err = w.std() / np.sqrt(N)
    assert abs(sigma - sum(exact.values())) < 3 * err
    flav = np.abs(np.asarray(ev.pid[:, 0]))
    for f, s_f in exact.items():
        frac = (flav == f).mean()
        expected = s_f / sum(exact.values())
        assert abs(frac - expected) < 4 * np.sqrt(expected * (1 - expected) / N)
    # colour tags: quark carries colour 1, antiquark anticolour 1
    col = np.asarray(ev.colour)
    assert (col[:, 0, 0] == 1).all() and (col[:, 1, 1] == 1).all()
    assert (np.asarray(ev.pid[:, 0]) > 0).all() and (np.asarray(ev.pid[:, 1]) < 0).all()


def _per_event_derivative(gen, params, key, n, name):
    """σ̂ and ∂σ̂/∂θ with statistical errors, from per-event forward-mode derivatives ∂w_i/∂θ."""
    tangent = tangent_from_settings(params, {name: 1.0})

    def weights(p):
        return event_weights(gen.sample(p, key, n))

    w, dw = jax.jvp(weights, (params,), (tangent,))
    w, dw = np.asarray(w, float), np.asarray(dw, float)
    return w.mean(), dw.mean(), dw.std() / np.sqrt(n)


@pytest.mark.parametrize("name,sqrt_s", [("23:m0", 91.188), ("23:m0", 89.0), ("StandardModel:sin2thetaW", 91.188),
                                         ("StandardModel:sin2thetaWbar", 130.0), ("23:mWidth", 91.188),
                                         ("StandardModel:alphaEMmZ", 60.0)])
def test_gradient_matches_analytic_derivative(name, sqrt_s):
    gen = diffgen.presets.ee_mumu(sqrt_s)
    p = gen.default_params()
    # reverse mode on the MC estimate ...
    grad = jax.grad(lambda q: diffgen.cross_section(gen, q, jax.random.key(3), N)[0])(p)["hard"][name]
    # ... its statistical error from per-event derivatives ...
    _, dmean, derr = _per_event_derivative(gen, p, jax.random.key(3), N, name)
    assert float(grad) == pytest.approx(dmean, rel=1e-3, abs=1e-3 * abs(dmean) + 1e-6)
    # ... against the derivative of the closed-form σ, itself checked by a float64 finite difference
    with jax.enable_x64(True):
        h = {k: jnp.asarray(float(v), jnp.float64) for k, v in p["hard"].items()}
        exact = float(jax.grad(lambda q: ee_ffbar.sigma_total(q, 13, M_MU))(h)[name])
        step = 1e-5 * float(h[name])
        up = dict(h, **{name: h[name] + step})
        dn = dict(h, **{name: h[name] - step})
        fd = float((ee_ffbar.sigma_total(up, 13, M_MU) - ee_ffbar.sigma_total(dn, 13, M_MU)) / (2 * step))
    assert exact == pytest.approx(fd, rel=1e-5)
    assert abs(float(grad) - exact) < 3 * derr + 1e-4 * abs(exact), (float(grad), derr, exact)


def test_afb_gradient_via_expect():
    """∂A_FB/∂sin²θ̄_W: autodiff of the weighted-mean estimator vs the analytic derivative."""
    gen = diffgen.presets.ee_mumu(91.188)
    p = gen.default_params()
    name = "StandardModel:sin2thetaWbar"

    def afb_mc(q):
        ev = gen.sample(q, jax.random.key(9), N)
        return diffgen.forward_backward_asymmetry(ev)[0]

    g = float(jax.grad(afb_mc)(p)["hard"][name])
    exact = float(jax.grad(lambda q: ee_ffbar.afb(q, 13, M_MU))(p["hard"])[name])
    # error of the derivative estimate from two independent keys' spread (conservative, 4 keys)
    gs = [float(jax.grad(lambda q, k=k: diffgen.forward_backward_asymmetry(
        gen.sample(q, jax.random.key(k), N))[0])(p)["hard"][name]) for k in (20, 21, 22, 23)]
    spread = np.std(gs + [g], ddof=1)
    assert abs(g - exact) < 3 * spread + 0.02 * abs(exact), (g, exact, spread)


def test_z_width_as_pythia_recomputes_it():
    with jax.enable_x64(True):
        p = {k: jnp.asarray(float(v)) for k, v in diffgen.presets.ee_qq().default_params()["hard"].items()}
        assert float(ee_ffbar.z_width(p)) == pytest.approx(2.5041896, abs=2e-7)
        heavier = dict(p, **{"23:m0": jnp.asarray(92.0)})
        assert float(ee_ffbar.z_width(heavier)) > 1.008 * float(ee_ffbar.z_width(p))
