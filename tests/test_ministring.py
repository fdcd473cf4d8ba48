"""Mini-strings (diffgen.hadronization.ministring): a colour singlet below ``HadronLevel:mStringMin`` becomes
two hadrons as in Pythia 8.3's ``MiniStringFragmentation::ministring2two``, or one after ``nTry = 2`` failed
flavour draws.

The references are analytic: Pythia's accept-reject (cos θ uniform on [0, 1], accepted with
``exp(−p⊥²/σ_had²)``) gives ``cos θ`` the density ∝ exp(k c²), k = p²/σ_had², whose CDF is computed here by
quadrature; the forward/backward swap has probability ``1/(1 + exp(2 b W |p_z|))`` given the drawn
kinematics; the one-hadron fraction is ``P(draw does not fit)²`` with that probability measured on the
flavour sampler alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import Events, particles
from diffgen.hadronization import quark_content, string_fragmentation
from diffgen.hadronization.flavour import break_flavour_probs, sample_bundle, species_probs, vector_ratios
from diffgen.hadronization.ministring import SIGMA_MIN
from diffgen.params import SETTINGS

N_EVENTS = 4000
W = 1.2  # GeV: u ū with mass excess 1.2 − 2·0.325 = 0.55 < mStringMin
STAGE = string_fragmentation(capacity=16)  # every test uses N_EVENTS × 4 input slots: one compilation
FWD = jax.jit(STAGE.diagnose)
MASS = {p.pid: p.mass for p in particles.TABLE}


def _events(p4, pid, col, n=N_EVENTS):
    pid = np.asarray(pid, np.int32)
    return Events.empty(n, len(pid)).replace(
        p4=jnp.tile(jnp.asarray(p4, jnp.float32), (n, 1, 1)), pid=jnp.tile(jnp.asarray(pid), (n, 1)),
        mask=jnp.tile(jnp.asarray(pid != 0), (n, 1)), colour=jnp.tile(jnp.asarray(col, jnp.int32), (n, 1, 1)))


def _uubar_at_rest(n=N_EVENTS):
    e = W / 2
    return _events([[e, 0, 0, e], [e, 0, 0, -e], [0, 0, 0, 0], [0, 0, 0, 0]], [2, -2, 0, 0],
                   [[101, 0], [0, 101], [0, 0], [0, 0]], n)


def _boosted_ugu():
    """u g ū of mass ≈ 1.5 GeV moving at β ≈ 0.9 (mass excess < 1 GeV: a mini-string with a kink)."""
    p = np.array([[0.5, 0.0, 0.0, 0.5], [0.3, 0.3, 0.0, 0.0], [0.6, -0.3, 0.0, -0.52]])
    p[2, 3] = -np.sqrt(p[2, 0] ** 2 - p[2, 1] ** 2)  # massless
    beta = np.array([0.0, 0.6, 0.65])
    g = 1.0 / np.sqrt(1 - beta @ beta)
    bp = p[:, 1:] @ beta
    boosted = np.concatenate([(g * (p[:, 0] + bp))[:, None],
                              p[:, 1:] + ((g - 1) * bp / (beta @ beta) + g * p[:, 0])[:, None] * beta], axis=1)
    return _events(np.concatenate([boosted, np.zeros((1, 4))]), [2, 21, -2, 0],
                   [[101, 0], [102, 101], [0, 102], [0, 0]])


@pytest.fixture(scope="module")
def uubar():
    ev = _uubar_at_rest()
    out, info = FWD(STAGE.init(None), jax.random.key(3), ev)
    return ev, out, info


def _conserved(ev, out):
    m = np.asarray(out.mask)
    p4 = np.asarray(out.p4, np.float64)
    total = (p4 * m[..., None]).sum(axis=1)
    np.testing.assert_allclose(total, np.asarray(ev.p4, np.float64).sum(axis=1), atol=2e-5)
    pid = np.asarray(out.pid)[m]
    m2 = p4[m][:, 0] ** 2 - (p4[m][:, 1:] ** 2).sum(axis=1)
    mass = np.array([MASS[abs(int(x))] for x in pid])
    np.testing.assert_allclose(m2, mass ** 2, atol=2e-5)
    content = np.asarray(quark_content(out.pid) * out.mask[..., None]).sum(axis=1)
    assert np.all(content == 0)  # the inputs are flavour-neutral (u ū, u g ū)


def test_mini_strings_make_two_hadrons_conserving_momentum_flavour_and_mass(uubar):
    ev, out, info = uubar
    assert np.all(np.asarray(out.status) == 0)
    n = np.asarray(out.mask).sum(axis=1)
    assert np.all(n == 2), np.unique(n)  # no other string to take a single hadron's recoil: always two
    assert np.all(np.asarray(info["ministrings"]) == 1)
    _conserved(ev, out)
    ev2 = _boosted_ugu()
    out2, info2 = FWD(STAGE.init(None), jax.random.key(4), ev2)
    assert np.all(np.asarray(out2.status) == 0)
    assert np.all(np.asarray(out2.mask).sum(axis=1) == 2)
    _conserved(ev2, out2)


def test_one_hadron_only_after_two_failed_flavour_draws():
    """Pythia's nTry = 2: with another string in the event to take the recoil, the one-hadron fraction is
    P(fail)², P(fail) the probability that one flavour draw's two hadrons are heavier than W (measured on the
    flavour sampler alone, 2·10⁵ draws: its error is negligible). nTry = 1 would give P(fail), unlimited
    retries 0. (Without a partner string (test_mini_strings_make_two_hadrons…) every mini-string
    ends as two hadrons: Pythia's last resort.)"""
    e = W / 2
    ev = _events([[e, 0, 0, e], [e, 0, 0, -e], [2.5, 2.5, 0, 0], [2.5, -2.5, 0, 0]], [2, -2, 1, -1],
                 [[101, 0], [0, 101], [102, 0], [0, 102]])
    out, info = FWD(STAGE.init(None), jax.random.key(5), ev)  # same shapes as the other tests: one compilation
    assert np.all(np.asarray(out.status) == 0)
    theta = {n: jnp.float32(SETTINGS[n].default) for n in SETTINGS}
    sp = species_probs(vector_ratios(theta), theta["StringFlav:decupletSup"])
    fl = break_flavour_probs(*(theta[n] for n in ("StringFlav:probStoUD", "StringFlav:probQQtoQ",
                                                  "StringFlav:probSQtoQQ", "StringFlav:probQQ1toQQ0",
                                                  "StringFlav:decupletSup")))
    u = jax.random.uniform(jax.random.key(9), (200_000, 2))
    b = jax.vmap(lambda x: sample_bundle(x[1], x[0] < 0.5, 2, 2, sp, fl))(u)
    p_fail = float(jnp.mean(b.mass_h + b.mass_c >= W))
    assert 0.1 < p_fail < 0.9, p_fail  # the check has power
    one = (np.asarray(info["ministrings"]) == 0).astype(np.float64)
    err = np.sqrt(p_fail ** 2 * (1 - p_fail ** 2) / N_EVENTS)
    print("one-hadron fraction", one.mean(), "expected", p_fail ** 2, "±", err)
    assert abs(one.mean() - p_fail ** 2) < 4 * err


def _two_body(out):
    """(m1, m2, |p_z|, p, positive-hadron-goes-backward, charged-pair) of the two-hadron events (rest frame, z axis)."""
    m = np.asarray(out.mask)
    two = m.sum(axis=1) == 2
    p4 = np.asarray(out.p4, np.float64)[two][:, :2]
    pid = np.asarray(out.pid)[two][:, :2]
    mass = np.vectorize(lambda x: MASS[abs(int(x))])(pid)
    pz = np.abs(p4[:, 0, 3])
    p = np.sqrt((p4[:, 0, 1:] ** 2).sum(axis=1))
    charge = np.asarray(particles.charge3(jnp.asarray(pid)))
    charged = (charge[:, 0] * charge[:, 1]) < 0
    pos = np.where(charge[:, 0] > 0, 0, 1)
    backward = p4[np.arange(len(p4)), pos, 3] < 0
    return mass, pz, p, backward, charged


def _cos_cdf(c, k):
    """CDF of the density ∝ exp(k c²) on [0, 1] at c (quadrature, per element)."""
    t = np.linspace(0.0, 1.0, 4001)
    out = []
    for ci, ki in zip(c, k):
        f = np.exp(ki * (t ** 2 - 1.0))
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(t))])
        out.append(np.interp(ci, t, cum) / cum[-1])
    return np.array(out)


def test_pt_and_direction_follow_pythias_ministring_distributions(uubar):
    _, out, _ = uubar
    mass, pz, p, backward, charged = _two_body(out)
    sigma = SETTINGS["StringPT:sigma"].default
    b = SETTINGS["StringZ:bLund"].default
    k = p ** 2 / (2.0 * max(SIGMA_MIN, sigma) ** 2)
    # probability integral transform of cos θ = |p_z|/p: uniform if the density is ∝ exp(k c²)
    pit = _cos_cdf(pz / p, k)
    n = len(pit)
    assert n > 1000
    print("PIT mean", pit.mean(), "±", 1 / np.sqrt(12 * n), "k range", k.min(), k.max())
    assert abs(pit.mean() - 0.5) < 4 / np.sqrt(12 * n)
    hist = np.histogram(pit, bins=10, range=(0, 1))[0]
    chi2 = ((hist - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 30.0, hist  # 9 dof: p ≈ 4·10⁻⁴
    # the isotropic draw without the Gaussian suppression (plausible wrong model) is visibly different
    assert abs(_cos_cdf(pz / p, np.zeros_like(k)).mean() - 0.5) > 8 / np.sqrt(12 * n)
    # swap: the positive hadron (carrying the u end) goes backward with probability 1/(1 + exp(2 b W |p_z|))
    expect = 1.0 / (1.0 + np.exp(2.0 * b * W * pz[charged]))
    got = backward[charged].astype(np.float64)
    err = np.sqrt(np.sum(expect * (1 - expect))) / len(expect)
    print("swap fraction", got.mean(), "expected", expect.mean(), "±", err)
    assert abs(got.mean() - expect.mean()) < 4 * err
    assert expect.mean() > 0.15  # the swap is frequent enough here for the check to bite


def _mean_pt2(mass, sigma):
    """E[p⊥² | m₁, m₂] of the mini-string decay at rest (W), by quadrature of the cos θ density ∝ exp(k c²)."""
    p2 = 0.25 * ((W ** 2 - mass[:, 0] ** 2 - mass[:, 1] ** 2) ** 2 - (2 * mass[:, 0] * mass[:, 1]) ** 2) / W ** 2
    c = np.linspace(0.0, 1.0, 4001)
    f = np.exp(p2[:, None] / (2 * max(SIGMA_MIN, sigma) ** 2) * (c[None] ** 2 - 1.0))
    return p2 * np.trapezoid(f * (1 - c[None] ** 2), c, axis=1) / np.trapezoid(f, c, axis=1)


@pytest.mark.slow  # one jacfwd compilation of the kinked stage (~2 min)
def test_ministring_gradients_match_finite_differences():
    """d⟨p⊥²⟩/dσ and d⟨forward fraction⟩/db (pathwise + the accept/swap/flavour scores) vs central finite
    differences (the ± pair on common random numbers, independent of the autodiff sample), within 3σ.
    2·10⁴ mini-strings."""
    ev = _uubar_at_rest(20_000)
    names = ("StringPT:sigma", "StringZ:bLund")

    def obs(theta, key):
        p = dict(STAGE.init(None))
        p.update({n: theta[i] for i, n in enumerate(names)})
        out = STAGE.apply(p, key, ev)
        two = jnp.sum(out.mask, axis=1) == 2
        pt2 = jnp.where(two, jnp.sum(out.p4[:, 0, 1:3] ** 2, axis=1), 0.0)
        c3 = particles.charge3(out.pid[:, :2])
        pos = jnp.where(c3[:, 0] > 0, 0, 1)
        pz_pos = jnp.take_along_axis(out.p4[:, :2, 3], pos[:, None], axis=1)[:, 0]
        fwd = jnp.where(two & (c3[:, 0] * c3[:, 1] < 0) & (pz_pos > 0), 1.0, 0.0)
        return jnp.stack([pt2, fwd], axis=-1), out.log_weight

    theta0 = jnp.array([SETTINGS[n].default for n in names], jnp.float32)
    jac_o, jac_lw = jax.jit(jax.jacfwd(obs))(theta0, jax.random.key(1))
    o, _ = jax.jit(obs)(theta0, jax.random.key(1))
    o, jac_o, jac_lw = (np.asarray(x, np.float64) for x in (o, jac_o, jac_lw))
    # σ step small enough that the curvature of ⟨p⊥²⟩(σ) is negligible (0.06 biases the central difference by
    # +0.008 of 0.145, quadrature below)
    steps = (0.03, 0.15)
    for i, (name, step) in enumerate(zip(names, steps)):
        j = i  # observable i goes with parameter i
        per = jac_o[:, j, i] + (o[:, j] - o[:, j].mean()) * jac_lw[:, i]
        grad, grad_err = per.mean(), per.std() / np.sqrt(len(per))
        # the pair shares its random numbers (keys independent of the autodiff sample): per-event differences
        plus, _ = jax.jit(obs)(theta0.at[i].add(step), jax.random.key(10 + i))
        minus, _ = jax.jit(obs)(theta0.at[i].add(-step), jax.random.key(10 + i))
        diff = (np.asarray(plus, np.float64)[:, j] - np.asarray(minus, np.float64)[:, j]) / (2 * step)
        fd, fd_err = diff.mean(), diff.std() / np.sqrt(len(diff))
        print(name, "AD", grad, "±", grad_err, "FD", fd, "±", fd_err)
        assert abs(grad - fd) < 3 * np.hypot(grad_err, fd_err)
        assert abs(fd) > 3 * fd_err  # the parameter visibly moves the observable
        if name == "StringPT:sigma":
            # sharper: the exact d⟨p⊥²⟩/dσ given each event's two hadron masses (which σ does not move), by
            # quadrature of the density ∝ exp(k c²) (k = p²/2σ²), a central difference at 10⁻⁴
            pid = np.asarray(jax.jit(lambda t, k: STAGE.apply(
                {**STAGE.init(None), **{n: t[q] for q, n in enumerate(names)}}, k, ev).pid[:, :2])(
                    theta0, jax.random.key(1)))
            mass = np.vectorize(lambda x: MASS[abs(int(x))])(pid)
            s0 = float(theta0[0])
            exact = np.mean((_mean_pt2(mass, s0 + 1e-4) - _mean_pt2(mass, s0 - 1e-4)) / 2e-4)
            print("  exact given the masses", exact)
            assert abs(grad - exact) < 3 * grad_err
