"""Kinked Lund strings (diffgen.hadronization.kinked): conservation, mass shell, reduction to the straight
string, the string effect, infrared safety, gradients, compile-once; mini-strings
(diffgen.hadronization.ministring).

All stage calls use N_EVENTS events × 4 parton slots, so the kinked and the straight-piece stages are
compiled once each for the forward pass (and once more for ``jacfwd`` in the slow gradient test).
"""

import jax
import jax.numpy as jnp
import lep_reference
import numpy as np
import pytest

from diffgen import Events, Status, particles
from diffgen.hadronization import quark_content, string_fragmentation
from diffgen.hadronization.flavour import break_flavour_probs, sample_bundle, species_probs, vector_ratios
from diffgen.hadronization.ministring import SIGMA_MIN
from diffgen.hadronization.string import M_JOIN, build_chains
from diffgen.params import SETTINGS

SQRT_S = 91.2
CAPACITY = 64
N_EVENTS = 3000
KINKED = string_fragmentation(capacity=CAPACITY)
STRAIGHT = string_fragmentation(capacity=CAPACITY, kinked=False)
FWD_K = jax.jit(KINKED.diagnose)
FWD_S = jax.jit(STRAIGHT.diagnose)
MASS = {p.pid: p.mass for p in particles.TABLE}


def _planar(energies, angles):
    """Massless partons in the x–z plane with the given energies and polar angles (need not balance)."""
    return np.array([[e, e * np.sin(t), 0.0, e * np.cos(t)] for e, t in zip(energies, angles)])


def _qgq(e_g, theta_g):
    """u g ū with the quark along +z, a gluon of energy e_g at angle theta_g, the antiquark balancing."""
    g = _planar([e_g], [theta_g])[0]
    rest = SQRT_S - e_g
    e_q = (rest ** 2 - g[1] ** 2 - g[3] ** 2) / (2.0 * (rest + g[3]))
    q = np.array([e_q, 0.0, 0.0, e_q])
    qb = np.array([rest - e_q, -g[1], 0.0, -(e_q + g[3])])
    return np.stack([q, g, qb, np.zeros(4)]), [2, 21, -2, 0], [[101, 0], [102, 101], [0, 102], [0, 0]]


def _mercedes():
    """u g ū at 120° to each other, E = √s/3 each (the string-effect configuration)."""
    p4 = _planar([SQRT_S / 3] * 3, [0.0, 2.0 * np.pi / 3, 4.0 * np.pi / 3])
    return np.concatenate([p4, np.zeros((1, 4))]), [2, 21, -2, 0], [[101, 0], [102, 101], [0, 102], [0, 0]]


def _qggq():
    """d g g d̄ (two kinks): d, g, g in the x–z plane, d̄ balancing the three-momentum (all massless)."""
    p4 = _planar([30.0, 15.0, 20.0], [0.0, 1.4, 2.6])
    qb3 = -p4[:, 1:].sum(axis=0)
    p4 = np.concatenate([p4, [[np.linalg.norm(qb3), *qb3]]])
    return p4, [1, 21, 21, -1], [[101, 0], [102, 101], [103, 102], [0, 103]]


def _collinear_ends():
    """u g g ū with a gluon collinear with each quark: g (5 GeV, θ = 0.15) next to u, g (10 GeV, θ = π − 0.15)
    next to ū, the quarks back to back in the rest frame of what the gluons leave (benchmarks/kinked_qgq.py
    "qggq collinear"). Both end regions are boosted (masses ≈ 1.6 and 2.2 GeV at ≈ 45 GeV)."""
    g = _planar([5.0, 10.0], [0.15, np.pi - 0.15])
    rest = np.array([SQRT_S, 0.0, 0.0, 0.0]) - g.sum(axis=0)
    m, beta = np.sqrt(rest[0] ** 2 - rest[1:] @ rest[1:]), rest[1:] / rest[0]
    gamma, quarks = 1.0 / np.sqrt(1.0 - beta @ beta), []
    for pz in (m / 2, -m / 2):
        p = np.array([m / 2, 0.0, 0.0, pz])
        bp = beta @ p[1:]
        quarks.append(np.concatenate([[gamma * (p[0] + bp)], p[1:] + ((gamma - 1) * bp / (beta @ beta) + gamma * p[0])
                                      * beta]))
    return (np.stack([quarks[0], g[0], g[1], quarks[1]]), [2, 21, 21, -2],
            [[101, 0], [102, 101], [103, 102], [0, 103]])


def _qqbar():
    e = SQRT_S / 2
    return (np.array([[e, 0, 0, e], [e, 0, 0, -e], [0, 0, 0, 0], [0, 0, 0, 0]]), [2, -2, 0, 0],
            [[101, 0], [0, 101], [0, 0], [0, 0]])


def _events(config):
    p4, pid, col = config
    pid = np.asarray(pid, np.int32)
    return Events.empty(N_EVENTS, 4).replace(
        p4=jnp.tile(jnp.asarray(p4, jnp.float32), (N_EVENTS, 1, 1)), pid=jnp.tile(jnp.asarray(pid), (N_EVENTS, 1)),
        mask=jnp.tile(jnp.asarray(pid != 0), (N_EVENTS, 1)), colour=jnp.tile(jnp.asarray(col, jnp.int32),
                                                                             (N_EVENTS, 1, 1)))


def _run(stage_fn, stage, config, seed=11):
    ev = _events(config)
    out, info = stage_fn(stage.init(None), jax.random.key(seed), ev)
    return ev, out, info


@pytest.fixture(scope="module")
def qgq_hard():
    return _run(FWD_K, KINKED, _qgq(20.0, 2.0))


def _n(out):
    return np.asarray(out.mask).sum(axis=1).astype(np.float64)


def _mean_err(x):
    return x.mean(), x.std() / np.sqrt(len(x))


# ----------------------------------------------------------------------------- structure and arguments

def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mJoin"):
        string_fragmentation(m_join=0.1)
    with pytest.raises(ValueError, match="mJoin"):
        string_fragmentation(m_join=True)
    with pytest.raises(ValueError, match="kinked"):
        string_fragmentation(kinked=1)
    with pytest.raises(ValueError, match=r"mStringMin .* \[0.5, 1.5\]"):
        string_fragmentation(m_string_min=0.3)


def test_chain_regions_sum_to_the_partons_and_soft_gluons_are_joined():
    p4, pid, col = _qggq()
    chains, regions, bad, overflow, _ = build_chains(jnp.asarray(p4, jnp.float32), jnp.asarray(pid), jnp.asarray(
        np.asarray(pid) != 0), jnp.asarray(col), 4)
    assert not bool(bad) and not bool(overflow)
    assert int(chains.active.sum()) == 1 and int(chains.n_reg[0]) == 3
    total = np.asarray(regions.pos + regions.neg).sum(axis=0)
    np.testing.assert_allclose(total, p4.sum(axis=0), atol=1e-4)
    m2 = lambda v: v[..., 0] ** 2 - (v[..., 1:] ** 2).sum(-1)  # noqa: E731
    assert np.all(np.abs(m2(np.asarray(regions.pos))) < 1e-2) and np.all(np.abs(m2(np.asarray(regions.neg))) < 1e-2)
    # a 1 MeV gluon: the (q, g/2) pair mass is far below mJoin, so the chain becomes q q̄ (one region)
    p4s, pids, cols = _qgq(1e-3, 2.0)
    chains, regions, _, _, _ = build_chains(jnp.asarray(p4s, jnp.float32), jnp.asarray(pids),
                                            jnp.asarray(np.asarray(pids) != 0), jnp.asarray(cols), 4, M_JOIN)
    assert int(chains.n_reg[0]) == 1
    np.testing.assert_allclose(np.asarray(chains.p_total[0]), p4s.sum(axis=0), atol=1e-4)


def test_last_attempt_keeps_only_each_chains_final_attempt():
    """Synthetic output tags (chain · stride + attempt): chain 0 restarted once, chain 1 twice, chain 2 never;
    invalid (padding) entries stay invalid whatever their tag."""
    from diffgen.hadronization.kinked import _ATTEMPT_STRIDE, _last_attempt

    s = _ATTEMPT_STRIDE
    tag = np.array([0, 0, 1, 1, 1, s, s + 1, s + 2, s + 2, 2 * s, 2 * s, 0, 0], np.int32)
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    keep = np.asarray(_last_attempt(jnp.asarray(tag), jnp.asarray(valid), 4))
    np.testing.assert_array_equal(keep, [0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0])


# ----------------------------------------------------------------------------- conservation and mass shell

@pytest.mark.parametrize("name", ["qgq_hard", "qggq"])
def test_four_momentum_flavour_and_mass_shell(name, qgq_hard):
    ev, out, info = qgq_hard if name == "qgq_hard" else _run(FWD_K, KINKED, _qggq())
    if name == "qgq_hard":  # conservation also holds for strings fragmented again after a restart
        assert int(np.asarray(info["restarts"]).sum()) > 0
    good = np.asarray(out.status) == 0
    # the stage flags (FAILED_KINEMATICS, weight 0) the rare event with a hadron off its mass shell, a known
    # kinked-string defect (≈ 1e-3 of e+e- events; more often in these fixed hard q g g q̄ configurations)
    assert good.mean() > 0.97 and set(np.unique(np.asarray(out.status))) <= {0, int(Status.FAILED_KINEMATICS)}
    m = np.asarray(out.mask) & good[:, None]
    p = np.asarray(out.p4, np.float64)
    # float32 (eps 1.2e-7): ~100 rounding steps (boosts, region solves, the final exact-momentum match) of
    # momenta up to √s leave ≲ 1e-5 √s per component; 1e-4 √s as in tests/test_hadronization.py
    dp = (p * m[..., None]).sum(axis=1) - np.asarray(ev.total_p4(), np.float64)
    assert np.max(np.abs(dp[good])) / SQRT_S < 1e-4
    pid = np.asarray(out.pid)[m]
    pm = p[m]
    m2 = pm[:, 0] ** 2 - (pm[:, 1:] ** 2).sum(-1)
    pdg = np.array([MASS[abs(int(c))] for c in pid])
    # |p² − m²| ≤ 8 eps₃₂ (√s/2)²: the momenta are built at the event's scale, so float32 rounding of
    # E and p⃗ is relative to √s/2, not to E (the bound of tests/test_ee_hadrons.py)
    assert np.max(np.abs(m2 - pdg ** 2)) < 8 * np.finfo(np.float32).eps * (SQRT_S / 2) ** 2
    assert np.all(np.asarray(out.log_weight)[good] == 0.0)  # score terms have value 0
    content = np.asarray(quark_content(out.pid)) * m[..., None]
    np.testing.assert_array_equal(content.sum(axis=1)[good], _parton_content(ev)[good])


def _parton_content(ev):
    pid = np.asarray(ev.pid)
    out = np.zeros(pid.shape[:1] + (5,), int)
    for f in range(1, 6):
        out[:, f - 1] = (pid == f).sum(axis=1) - (pid == -f).sum(axis=1)
    return out


def test_q_qbar_chain_matches_pythia_string():
    """One region (q q̄, no gluon, mesons only): the primary multiplicity against Pythia 8.317's u ū string
    (``strings_only/uubar`` of tests/data/pythia_reference.json, benchmarks/pythia_reference.py, 5·10⁴
    events, FSR off, decays off, probQQtoQ = 0). z is the fraction of the end's own unused light-cone
    momentum (Pythia's ``xDirOld``), drawn from the whole Lund function, and the string restarts when it
    falls outside the window where the hadron fits (Pythia's restart). Measured 2026-12-07: 12.23 ± 0.04
    vs 12.19 (+0.4 %; benchmarks/kinked_qgq.py at 10⁴ events: 12.22 vs 12.15). Truncating z to the window
    without the restart made it +2.0 %, z as a fraction of the remainder between the two vertices +3.3 %;
    the bound (1 % + 4σ, σ ≈ 0.37 %) fails the second and any error in the Γ recursion (which moves ⟨n⟩
    by several hadrons). A string runs out of restarts (and ends in the straight view) in ≈ 1 % of events."""
    ref, ref_err = lep_reference.load()["strings_only"]["uubar"]["n_hadrons"]
    p = KINKED.init(None)
    p["StringFlav:probQQtoQ"] = jnp.float32(0.0)
    ev = _events(_qqbar())
    out, info = FWD_K(p, jax.random.key(5), ev)
    n, err = _mean_err(_n(out))
    print("kinked q qbar", n, "+-", err, "Pythia", ref, "+-", ref_err)
    assert abs(n / ref - 1.0) < 0.01 + 4 * np.hypot(err, ref_err) / ref
    assert float(np.asarray(info["fallbacks"]).mean()) < 0.03


# ----------------------------------------------------------------------------- physics

def _azimuth_in_plane(p4):
    return np.arctan2(p4[..., 1], p4[..., 3]) % (2 * np.pi)


def test_string_effect_fewer_hadrons_between_q_and_qbar():
    """Mercedes u g ū: hadrons in the 120° wedge between q and q̄ (no string there) are depleted relative
    to the q–g wedge (Lund string effect), as for the straight-piece model; a q q̄ string of the same
    total momentum has no such asymmetry. Counts are per event, errors from the event-to-event spread."""
    counts = {}
    for label, fn, stage in (("kinked", FWD_K, KINKED), ("straight", FWD_S, STRAIGHT)):
        _, out, _ = _run(fn, stage, _mercedes())
        m = np.asarray(out.mask)
        phi = _azimuth_in_plane(np.asarray(out.p4, np.float64))
        # wedges (partons at 0 = q, 120° = g, 240° = q̄): q–g is (0°, 120°), q̄–q is (240°, 360°)
        qg = ((phi > 0) & (phi < 2 * np.pi / 3) & m).sum(axis=1).astype(float)
        qq = ((phi > 4 * np.pi / 3) & m).sum(axis=1).astype(float)
        counts[label] = (_mean_err(qg), _mean_err(qq))
        (n_qg, e_qg), (n_qq, e_qq) = counts[label]
        print(label, "q-g wedge", n_qg, "+-", e_qg, "q-qbar wedge", n_qq, "+-", e_qq)
        assert n_qq < n_qg - 5 * np.hypot(e_qg, e_qq)
    ratio_k = counts["kinked"][1][0] / counts["kinked"][0][0]
    ratio_s = counts["straight"][1][0] / counts["straight"][0][0]
    assert ratio_k < 0.9 and ratio_s < 0.9


@pytest.mark.parametrize("e_g", [0.005, 0.05])
def test_infrared_safety_soft_gluon_reproduces_q_qbar(e_g):
    """A gluon of vanishing energy leaves the primary multiplicity of the q q̄ string unchanged within 4
    standard errors (3000 events each); Pythia 8.317 likewise (12.19 ± 0.03 at 5 MeV, 12.19 at 50 MeV vs
    12.22 ± 0.03 for q q̄). This failed (−0.5 hadrons at 5 and 50 MeV) while the view's transverse axes
    followed the polar angles of the remainder's axis (kinked._view)."""
    _, out_g, _ = _run(FWD_K, KINKED, _qgq(e_g, 2.0), seed=21)
    _, out_q, _ = _run(FWD_K, KINKED, _qqbar(), seed=22)
    assert np.all(np.asarray(out_g.status) == 0)
    (n_g, e_g_err), (n_q, e_q_err) = _mean_err(_n(out_g)), _mean_err(_n(out_q))
    print("soft gluon", n_g, "+-", e_g_err, "q qbar", n_q, "+-", e_q_err)
    assert abs(n_g - n_q) < 4 * np.hypot(e_g_err, e_q_err)


#: Pythia 8.317, primary hadrons, mesons only, u g ū with a 1 GeV gluon at 2 rad minus u ū
#: (benchmarks/kinked_qgq.py, 10⁴ events each: 12.755 ± 0.03 and 12.220 ± 0.03)
PYTHIA_SOFT_GLUON_SHIFT = (0.535, 0.042)


def test_one_gev_gluon_adds_what_pythia_adds():
    """A 1 GeV gluon at 2 rad adds ≈ 0.5 primary hadrons to the u ū string in Pythia; diffgen's shift (same
    keys for both configurations, mesons only, 3000 events) agrees within 4 combined standard errors. The
    transverse-axis defect fixed in kinked._view made this shift ≈ 0."""
    p = KINKED.init(None)
    p["StringFlav:probQQtoQ"] = jnp.float32(0.0)
    n_g = _n(FWD_K(p, jax.random.key(21), _events(_qgq(1.0, 2.0)))[0])
    n_q = _n(FWD_K(p, jax.random.key(22), _events(_qqbar()))[0])
    shift, err = n_g.mean() - n_q.mean(), np.hypot(n_g.std(), n_q.std()) / np.sqrt(len(n_g))
    ref, ref_err = PYTHIA_SOFT_GLUON_SHIFT
    print("1 GeV gluon shift", shift, "+-", err, "Pythia", ref, "+-", ref_err)
    assert abs(shift - ref) < 4 * np.hypot(err, ref_err)


def test_hard_gluon_adds_hadrons_and_fallbacks_are_rare(qgq_hard):
    _, out, info = qgq_hard
    _, out_q, _ = _run(FWD_K, KINKED, _qqbar(), seed=22)
    n, e = _mean_err(_n(out))
    nq, eq = _mean_err(_n(out_q))
    assert n > nq + 5.0  # a 20 GeV gluon at 115° adds ~6 primary hadrons (Pythia 8.317: +6.6, benchmarks/kinked_qgq.py)
    # the straight-view fallback (module docstring) happens in a minority of strings
    assert float(np.asarray(info["fallbacks"]).mean()) < 0.25


#: Pythia 8.317, primary hadrons, mesons only, the u g g ū of _collinear_ends: <n> and the event-to-event
#: standard deviation of n (benchmarks/kinked_qgq.py "qggq collinear", 10⁴ events, seed 5)
PYTHIA_COLLINEAR_ENDS = {"mean": (13.868, 0.023), "sd": (2.285, 0.016)}


def test_boosted_end_regions_keep_pythias_multiplicity_distribution():
    """Gluons collinear with their quarks make boosted string regions, where a transverse unit vector carries
    an energy of γ (≈ 30 here). Each string break's pT must then be given to one hadron and taken back from
    the next in the same region's basis (Pythia's ``StringRegion`` axes), else the difference drains energy
    of γ·pT from the remainder at random. With the basis following the view of the remainder, diffgen's
    multiplicity here had an sd of 2.92 (Pythia 2.285), and strings of Pythia's showered partons had 4×
    Pythia's share of events with ≤ 10 primaries. Measured 2026-12-07: 13.96 ± 0.04, sd 2.37 ± 0.03 (10⁴ events:
    13.93, sd 2.29). The sd must agree within 4 combined errors (sd/√(2N)), the mean within 1 % + 4σ (the
    q q̄ string's bound, test above)."""
    p = KINKED.init(None)
    p["StringFlav:probQQtoQ"] = jnp.float32(0.0)
    out, info = FWD_K(p, jax.random.key(31), _events(_collinear_ends()))
    n = _n(out)
    (ref, ref_err), (ref_sd, ref_sd_err) = PYTHIA_COLLINEAR_ENDS["mean"], PYTHIA_COLLINEAR_ENDS["sd"]
    mean, err = _mean_err(n)
    sd, sd_err = n.std(), n.std() / np.sqrt(2 * len(n))
    print("collinear ends: n", mean, "+-", err, "sd", sd, "+-", sd_err, "Pythia", ref, ref_sd,
          "restarts/event", float(np.asarray(info["restarts"]).mean()))
    assert abs(sd - ref_sd) < 4 * np.hypot(sd_err, ref_sd_err)
    assert abs(mean / ref - 1.0) < 0.01 + 4 * np.hypot(err, ref_err) / ref
    assert float(np.asarray(info["fallbacks"]).mean()) < 0.03


@pytest.mark.slow  # a second compilation (~40 s); the stage-level compile-once checks of tests/test_core.py are fast
def test_compiles_once():
    f = jax.jit(KINKED.apply)
    ev = _events(_mercedes())[:16]
    p = KINKED.init(None)
    f(p, jax.random.key(0), ev)
    p2 = dict(p, **{"StringZ:bLund": 0.9})
    f(p2, jax.random.key(1), ev)
    assert f._cache_size() == 1


# ----------------------------------------------------------------------------- gradients

def _obs(theta, key, ev):
    p = KINKED.init(None)
    p["StringZ:bLund"] = theta
    out = KINKED.apply(p, key, ev)
    return jnp.sum(out.mask, axis=1).astype(out.p4.dtype), out.log_weight


@pytest.mark.slow  # compiles the derivative (lax.scan) path (~40 s)
def test_restarted_strings_agree_between_scheduler_and_derivative_paths():
    """Values come from the slot scheduler, derivatives from the equivalent lax.scan: with string restarts
    (a restarted attempt's hadrons dropped after the fact) both must give the same hadrons."""
    ev = _events(_qgq(20.0, 2.0))[:256]
    p = KINKED.init(None)
    key = jax.random.key(5)
    out, info = FWD_K(p, key, ev)
    assert int(np.asarray(info["restarts"]).sum()) > 0  # the sample exercises restarts

    def p4_of(b):
        o = KINKED.apply({**p, "StringZ:bLund": b}, key, ev)
        return o.p4, o.mask

    (p4_s, mask_s), (dp4, _) = jax.jvp(p4_of, (p["StringZ:bLund"],), (jnp.ones_like(p["StringZ:bLund"]),))
    # The two programs round differently (float32) and fragmentation amplifies it: momenta typically agree
    # to ≈ 20 MeV (median), and an event whose string sits on a decision boundary (stop, fit, restart) can
    # branch differently — 5 of these 256 events before restarts, 7 with them (2026-12-07). Same
    # distribution, not the same bits: the derivative is that of the scan's own (equally valid) sample.
    same = np.all(np.asarray(mask_s) == np.asarray(out.mask), axis=1)
    assert same.mean() > 0.95
    dp = np.abs(np.asarray(p4_s) - np.asarray(out.p4)).max(axis=(1, 2))
    assert np.median(dp) < 0.05
    n_scan, n_pool = np.asarray(mask_s).sum(1), np.asarray(out.mask).sum(1)
    assert abs(n_scan.mean() - n_pool.mean()) < 0.1  # ±0.5 hadrons in ≤ 5 % of events
    assert np.all(np.isfinite(np.asarray(dp4)))


@pytest.mark.slow
def test_d_multiplicity_d_bLund_matches_finite_differences():
    """d⟨n⟩/db (b = StringZ:bLund) of the weighted mean Σ w n / Σ w on q g q̄ events: forward-mode autodiff
    (pathwise + score, per-event mean and error) against finite differences of independent samples."""
    ev = _events(_qgq(20.0, 2.0))
    b0 = jnp.float32(SETTINGS["StringZ:bLund"].default)
    n, _ = jax.jit(_obs)(b0, jax.random.key(3), ev)
    dn, dlw = jax.jit(jax.jacfwd(_obs))(b0, jax.random.key(3), ev)
    n, dn, dlw = (np.asarray(x, np.float64) for x in (n, dn, dlw))
    per_event = dn + (n - n.mean()) * dlw
    grad, grad_err = per_event.mean(), per_event.std() / np.sqrt(len(n))
    step = 0.15
    run = jax.jit(_obs)
    plus = np.asarray(run(b0 + step, jax.random.key(101), ev)[0], np.float64)
    minus = np.asarray(run(b0 - step, jax.random.key(202), ev)[0], np.float64)
    fd = (plus.mean() - minus.mean()) / (2 * step)
    fd_err = np.sqrt(plus.var() / len(plus) + minus.var() / len(minus)) / (2 * step)
    print("AD", grad, "+-", grad_err, "FD", fd, "+-", fd_err)
    assert np.all(np.isfinite([grad, grad_err]))
    assert abs(grad - fd) < 3.0 * np.hypot(grad_err, fd_err)
    assert abs(fd) > 3 * fd_err  # b visibly moves the multiplicity: the check is not 0 = 0


# ----------------------------------------------------------------------------- mini-strings
# Mini-strings (diffgen.hadronization.ministring): a colour singlet below HadronLevel:mStringMin becomes two
# hadrons as in Pythia 8.3's MiniStringFragmentation::ministring2two, or one after nTry = 2 failed flavour draws.
# The references are analytic: Pythia's accept-reject (cos θ uniform on [0, 1], accepted with exp(−p⊥²/σ_had²))
# gives cos θ the density ∝ exp(k c²), k = p²/σ_had², whose CDF is computed here by quadrature; the
# forward/backward swap has probability 1/(1 + exp(2 b W |p_z|)) given the drawn kinematics; the one-hadron
# fraction is P(draw does not fit)² with that probability measured on the flavour sampler alone.
# (In this module so that they share the kinked stage's compilation: N_EVENTS events × 4 slots.)

W = 1.2  # GeV: u ū with mass excess 1.2 − 2·0.325 = 0.55 < mStringMin


def _mini_events(p4, pid, col, n=N_EVENTS):
    pid = np.asarray(pid, np.int32)
    return Events.empty(n, len(pid)).replace(
        p4=jnp.tile(jnp.asarray(p4, jnp.float32), (n, 1, 1)), pid=jnp.tile(jnp.asarray(pid), (n, 1)),
        mask=jnp.tile(jnp.asarray(pid != 0), (n, 1)), colour=jnp.tile(jnp.asarray(col, jnp.int32), (n, 1, 1)))


def _uubar_at_rest(n=N_EVENTS):
    e = W / 2
    return _mini_events([[e, 0, 0, e], [e, 0, 0, -e], [0, 0, 0, 0], [0, 0, 0, 0]], [2, -2, 0, 0],
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
    return _mini_events(np.concatenate([boosted, np.zeros((1, 4))]), [2, 21, -2, 0],
                   [[101, 0], [102, 101], [0, 102], [0, 0]])


@pytest.fixture(scope="module")
def mini_uubar():
    ev = _uubar_at_rest()
    out, info = FWD_K(KINKED.init(None), jax.random.key(3), ev)
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


def test_mini_strings_make_two_hadrons_conserving_momentum_flavour_and_mass(mini_uubar):
    ev, out, info = mini_uubar
    assert np.all(np.asarray(out.status) == 0)
    n = np.asarray(out.mask).sum(axis=1)
    assert np.all(n == 2), np.unique(n)  # no other string to take a single hadron's recoil: always two
    assert np.all(np.asarray(info["ministrings"]) == 1)
    _conserved(ev, out)
    ev2 = _boosted_ugu()
    out2, info2 = FWD_K(KINKED.init(None), jax.random.key(4), ev2)
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
    ev = _mini_events([[e, 0, 0, e], [e, 0, 0, -e], [2.5, 2.5, 0, 0], [2.5, -2.5, 0, 0]], [2, -2, 1, -1],
                 [[101, 0], [0, 101], [102, 0], [0, 102]])
    out, info = FWD_K(KINKED.init(None), jax.random.key(5), ev)  # same shapes as the other tests: one compilation
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


def test_pt_and_direction_follow_pythias_ministring_distributions(mini_uubar):
    _, out, _ = mini_uubar
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
        p = dict(KINKED.init(None))
        p.update({n: theta[i] for i, n in enumerate(names)})
        out = KINKED.apply(p, key, ev)
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
            pid = np.asarray(jax.jit(lambda t, k: KINKED.apply(
                {**KINKED.init(None), **{n: t[q] for q, n in enumerate(names)}}, k, ev).pid[:, :2])(
                    theta0, jax.random.key(1)))
            mass = np.vectorize(lambda x: MASS[abs(int(x))])(pid)
            s0 = float(theta0[0])
            exact = np.mean((_mean_pt2(mass, s0 + 1e-4) - _mean_pt2(mass, s0 - 1e-4)) / 2e-4)
            print("  exact given the masses", exact)
            assert abs(grad - exact) < 3 * grad_err
