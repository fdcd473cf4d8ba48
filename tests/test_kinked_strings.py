"""Kinked Lund strings (diffgen.hadronization.kinked): conservation, mass shell, reduction to the straight
string, the string effect, infrared safety, gradients, compile-once.

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
