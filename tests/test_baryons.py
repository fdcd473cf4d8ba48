"""Baryons in Lund strings: flavour tables against an independent simulation of Pythia's algorithm,
baryon codes, conservation laws in fragmentation and decays, settings, and the probQQtoQ gradient."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen import Events, particles
from diffgen.decays import branching_table, hadron_decays
from diffgen.hadronization import flavour as fl
from diffgen.hadronization import quark_content, string_fragmentation
from diffgen.hadronization.lund_z import diquark_shape
from diffgen.hadronization.stage import BARYON_SETTING_NAMES
from diffgen.params import SETTINGS

SQRT_S = 91.188
MONASH = {"rho": 0.217, "qq": 0.081, "sq": 0.915, "q1": 0.0275, "dec": 1.0, "v_ud": 0.5}


# ------------------------------------------------------- an independent transcription of Pythia 8.3's algorithm

_UD0, _UD1, _UU1, _US0, _SU0, _US1, _SU1, _SS1 = range(8)  # Pythia's diquark types (first quark = popcorn quark)


def _pythia_weights(rho, sq, q1, dec):
    """The pieces of Pythia 8.3's StringFlav::init shared by all cases, in plain floats (no diffgen code): SU(6)
    sums cg and pair maxima mx, the largest SU(6) weight by diquark type (bar_max), the half-pair tunnelling
    factors (qbb) and spin × vertex × half tunnelling (qbm)."""
    oct_ = [0.75, 0.5, 0.0, 0.1667, 0.0833, 0.1667]
    dcp = [0.0, 0.0, 1.0, 0.3333, 0.6667, 0.3333]
    cg = [o + dec * d for o, d in zip(oct_, dcp)]
    mx = [max(cg[0], cg[1])] * 2 + [max(cg[2], cg[3])] * 2 + [max(cg[4], cg[5])] * 2
    bar_max = [mx[0], mx[4], mx[2], mx[0], mx[0], mx[4], mx[4], mx[2]]
    qbb = [1.0] * 8
    qbb[_UD1] = qbb[_UU1] = math.sqrt(q1)
    qbb[_US0] = math.sqrt(sq)
    qbb[_SU0] = math.sqrt(rho) * math.sqrt(sq)
    qbb[_US1] = math.sqrt(q1) * qbb[_US0]
    qbb[_SU1] = math.sqrt(q1) * qbb[_SU0]
    qbb[_SS1] = math.sqrt(rho) * sq * math.sqrt(q1)
    qbm = [1.0, 3 * qbb[_UD1], 6 * qbb[_UU1], rho * qbb[_US0], qbb[_SU0], rho * 3 * qbb[_US1], 3 * qbb[_SU1],
           rho * 6 * qbb[_SS1]]
    return cg, mx, bar_max, qbb, qbm


def _pythia_ratios(w):
    """dWT[case][0..6] from weights by diquark type (Pythia's "Recombine diquark weights")."""
    return [(2 * (w[_SU0] + w[_SU1]) + w[_SS1]) / (1 + w[_UD1] + w[_UU1] + w[_US0] + w[_US1]),
            2 * (w[_US0] + w[_US1]) / (1 + w[_UD1] + w[_UU1]), w[_SS1] / (w[_SU0] + w[_SU1]),
            w[_UU1] / (1 + w[_UD1] + w[_UU1]), w[_SU1] / w[_SU0], w[_US1] / w[_US0], w[_UD1]]


def _pythia_dwt(rho, sq, q1, dec):
    """dWT[0][0..6] (case q → B B̄) from Pythia 8.3's StringFlav::init, with the SU(6) sums and maxima."""
    cg, mx, bar_max, qbb, qbm = _pythia_weights(rho, sq, q1, dec)
    for i in range(1, 8):
        qbb[i] *= qbm[i] * bar_max[i] / bar_max[0]
    return _pythia_ratios(qbb), cg, mx


def _pythia_popcorn(rho, sq, q1, dec, rate, spair, smeson):
    """dWT[1], dWT[2] (entry 0 of dWT[1] times scbBM[0]·popcornSpair, as pickGauss uses it) and popFrac, written
    out from Pythia 8.3's StringFlav::init in plain floats (no diffgen code)."""
    cg, _, bar_max, qbb, qbm = _pythia_weights(rho, sq, q1, dec)
    dmb = [2 * cg[0] + rho * cg[1], 2 * cg[4] + rho * cg[5], cg[2] + (1 + rho) * cg[3], (1 + rho) * cg[0] + cg[1],
           (1 + rho) * cg[0] + cg[1], (1 + rho) * cg[4] + cg[5], (1 + rho) * cg[4] + cg[5], rho * cg[2] + 2 * cg[3]]
    dmb = [x / dmb[0] for x in dmb]
    for i in range(1, 8):
        qbb[i] *= qbm[i]
    for i in (_US0, _US1, _SS1):
        qbm[i] *= smeson
    u_norm = 1 + qbm[_UD1] + qbm[_UU1] + qbm[_US0] + qbm[_US1]
    scb0 = (2 * (qbm[_SU0] + qbm[_SU1]) + qbm[_SS1]) / u_norm
    for i in range(1, 8):
        dmb[i] *= qbm[i]
    for i in range(1, 8):
        qbm[i] *= bar_max[i] / bar_max[0]
        qbb[i] *= bar_max[i] / bar_max[0]
    pop_frac = (u_norm * rate / 3 * (1 + qbm[_UD1] + qbm[_UU1] + qbm[_US0] + qbm[_US1]
                                     + scb0 * spair * (qbm[_SU0] + qbm[_SU1] + 0.5 * qbm[_SS1]))
                / (1 + qbb[_UD1] + qbb[_UU1] + 2 * (qbb[_US0] + qbb[_US1]) + 0.5 * qbb[_SS1]))
    d1 = _pythia_ratios(qbm)
    d1[0] *= scb0 * spair
    return d1, _pythia_ratios(dmb), pop_frac


def _pick3(rng, weight_s):
    r = (2.0 + weight_s) * rng.random()
    return 1 if r <= 1.0 else 2 if r <= 2.0 else 3


def _pythia_diquark(rng, dwt):
    """StringFlav::pickGauss, case 0 (no popcorn), for a new diquark: its code."""
    pop, vtx, spin = _pythia_pop_vtx(rng, dwt)
    return 1000 * max(vtx, pop) + 100 * min(vtx, pop) + spin


def _pythia_pop_vtx(rng, dwt, pop=None):
    """StringFlav::pickGauss for a new diquark: (popcorn quark, vertex quark, 2s+1); ``pop`` given for case 2."""
    if pop is None:
        pop = _pick3(rng, dwt[0])
    vtx = _pick3(rng, dwt[1] if pop < 3 else dwt[2])
    if pop < 3 and vtx < 3:
        vtx = pop if rng.random() <= dwt[3] else 3 - pop
    spin = 3
    if vtx != pop:
        w = dwt[4] if pop >= 3 else dwt[5] if vtx == 3 else dwt[6]
        if (1.0 + w) * rng.random() < 1.0:
            spin = 1
    return pop, vtx, spin


def _pythia_baryon(rng, q, dq, cg, mx):
    """StringFlav::combine for quark q + diquark dq: the baryon code, or 0 when SU(6) rejects it."""
    oct_ = [0.75, 0.5, 0.0, 0.1667, 0.0833, 0.1667]
    q1, q2, s = dq // 1000, (dq // 100) % 10, dq % 10
    f = s - 1
    if f == 2 and q1 != q2:
        f = 4
    if q != q1 and q != q2:
        f += 1
    if cg[f] < rng.random() * mx[f]:
        return 0
    o1, o3 = max(q, q1, q2), min(q, q1, q2)
    o2 = q + q1 + q2 - o1 - o3
    spin_bar = 2 if cg[f] * rng.random() < oct_[f] else 4
    lam = False
    if spin_bar == 2 and o1 > o2 > o3:
        lam = s == 1
        if o1 != q and s == 1:
            lam = rng.random() < 0.25
        elif o1 != q:
            lam = rng.random() < 0.75
    return 1000 * o1 + 100 * o3 + 10 * o2 + spin_bar if lam else 1000 * o1 + 100 * o2 + 10 * o3 + spin_bar


def _pythia_step_from_u(rng, dwt, cg, mx, p, popcorn=None):
    """One hadron from a u-quark string end (Pythia's pick/combine loop, re-picked on any rejection).

    ``popcorn = (dWT[1], popFrac)``: a new diquark is a popcorn one with odds popFrac (then drawn from dWT[1]);
    returns (hadron, 1 if popcorn diquark else 0) for baryons; mesons are −1 either way."""
    sin2 = math.sin(math.radians(90.0 - (-15.0 + 54.7))) ** 2
    while True:
        if (1.0 + p["qq"]) * rng.random() > 1.0:
            n_pop = 0
            if popcorn is not None and (1.0 + popcorn[1]) * rng.random() > 1.0:
                n_pop = 1
            if n_pop:
                pp, vv, sp = _pythia_pop_vtx(rng, popcorn[0])
                dq = 1000 * max(pp, vv) + 100 * min(pp, vv) + sp
            else:
                dq = _pythia_diquark(rng, dwt)
            h = _pythia_baryon(rng, 2, dq, cg, mx)
            if h:
                return (h, n_pop) if popcorn is not None else h
            continue
        qn = _pick3(rng, p["rho"])
        if qn != 2:
            return -1  # a non-diagonal meson (never rejected)
        if (1.0 + p["v_ud"]) * rng.random() > 1.0:
            return -1  # vector: ρ0 / ω / φ, kept
        r = rng.random()
        code = 111 if r < 0.5 else 221 if r < 0.5 * (1.0 + sin2) else 331
        acc = {111: 1.0, 221: 0.60, 331: 0.12}[code]
        if rng.random() < acc:
            return -1


def _pythia_baryon_from_diquark(rng, dq, cg, mx, rho):
    """The (anti)baryon that completes a diquark end: quark 1 : 1 : probStoUD, SU(6) rejection re-picks."""
    while True:
        h = _pythia_baryon(rng, _pick3(rng, rho), dq, cg, mx)
        if h:
            return h


def _diffgen_outcomes(f_pos, n=200_000):
    """Outcome frequencies of sample_bundle from the quark end (f_pos, f_neg = d̄) on a grid of u."""
    p = MONASH
    sp = fl.species_probs(jnp.array([p["v_ud"], 0.55, fl.MESON_CVECTOR, fl.MESON_BVECTOR]), p["dec"])
    fp = fl.break_flavour_probs(p["rho"], p["qq"], p["sq"], p["q1"], p["dec"])
    u = (jnp.arange(n) + 0.5) / n
    b = jax.jit(jax.vmap(lambda u_: fl.sample_bundle(u_, True, f_pos, 1, sp, fp)))(u)
    return np.asarray(b.pid_h), np.asarray(b.q_new), np.asarray(b.pid_c), np.asarray(b.log_prob)


def test_flavour_probabilities_sum_to_one():
    p = MONASH
    pd = np.asarray(fl.diquark_probs(p["rho"], p["sq"], p["q1"], p["dec"]), np.float64)
    assert pd.sum() == pytest.approx(1.0, abs=1e-6) and np.all(pd > 0)
    fp = np.asarray(fl.break_flavour_probs(p["rho"], p["qq"], p["sq"], p["q1"], p["dec"]), np.float64)
    assert fp.sum() == pytest.approx(1.0, abs=1e-6)
    assert fp[3:].sum() == pytest.approx(p["qq"] / (1 + p["qq"]), rel=1e-6)
    # the outcomes of one step (new flavour, hadron, closing hadron) from a u end: on a grid of 2·10^5 u's
    # each outcome's frequency equals its probability exp(log_prob) (inverse CDF), and they sum to one
    n = 200_000
    pid, q_new, pid_c, lp = _diffgen_outcomes(2, n)
    keys = np.stack([pid, q_new, pid_c], axis=1)
    uniq, idx, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    prob = np.exp(lp[idx].astype(np.float64))
    np.testing.assert_allclose(counts / n, prob, atol=3.0 / n + 2e-6 * prob.max(), rtol=1e-3)
    assert prob.sum() == pytest.approx(1.0, abs=2e-3)  # outcomes below 1/n may be missed by the grid
    assert np.any(uniq[:, 1] > 5)  # diquarks are among them


def test_flavour_probabilities_finite_at_range_edges():
    for rho in (0.0, 1.0):
        fp = fl.break_flavour_probs(rho, 0.081, 0.915, 0.0275, 1.0)
        assert np.all(np.isfinite(np.asarray(fp))) and float(jnp.sum(fp)) == pytest.approx(1.0, abs=1e-6)
        g = jax.jacfwd(lambda x: fl.break_flavour_probs(x[0], x[1], x[2], x[3], x[4]))(
            jnp.array([rho, 0.081, 0.915, 0.0275, 1.0]))
        assert np.all(np.isfinite(np.asarray(g)))
        assert float(jnp.sum(g[:, 1])) == pytest.approx(0.0, abs=1e-5)  # normalisation is kept
    assert float(jnp.sum(fl.break_flavour_probs(0.217, 0.0)[3:])) == 0.0  # probQQtoQ = 0: no diquarks


def test_diquark_weights_match_independent_transcription():
    p = MONASH
    dwt, _, _ = _pythia_dwt(p["rho"], p["sq"], p["q1"], p["dec"])
    ours = [float(x) for x in fl._diquark_weights(p["rho"], p["sq"], p["q1"], p["dec"])]
    np.testing.assert_allclose(ours, dwt, rtol=1e-5)
    # and the diquark probabilities against a simulation of Pythia's pick (10^5 draws)
    rng = np.random.default_rng(1)
    n = 100_000
    codes = [_pythia_diquark(rng, dwt) for _ in range(n)]
    freq = np.array([codes.count(d) for d in fl.DIQUARKS]) / n
    exact = np.asarray(fl.diquark_probs(p["rho"], p["sq"], p["q1"], p["dec"]), np.float64)
    err = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(freq - exact) < 4 * err + 1e-12), (freq, exact)


def test_step_from_u_end_matches_simulated_pythia_algorithm():
    """Hadron species from a u end (the full re-pick loop: mesons with η/η′ rejection, diquarks with SU(6)
    survival) against 2·10^5 draws of an independent transcription of Pythia 8.3's pick/combine."""
    p = MONASH
    dwt, cg, mx = _pythia_dwt(p["rho"], p["sq"], p["q1"], p["dec"])
    rng = np.random.default_rng(7)
    n = 200_000
    sim = np.array([_pythia_step_from_u(rng, dwt, cg, mx, p) for _ in range(n)])
    pid = _diffgen_outcomes(2)[0]
    ours = np.where(np.abs(pid) > 1000, pid, -1)
    for code in sorted(set(sim) | set(ours)):
        f_sim, f_ours = np.mean(sim == code), np.mean(ours == code)
        err = math.sqrt(max(f_ours * (1 - f_ours), 1e-6) / n)
        assert abs(f_sim - f_ours) < 4 * err, (code, f_sim, f_ours)
    assert 0.07 < np.mean(ours > 1000) < 0.09  # P(baryon) per step from a u end ≈ 7.6 %


@pytest.mark.parametrize("dq", [2101, 2103, 2203, 3101, 3303])
def test_baryon_from_diquark_end_matches_simulated_pythia(dq):
    p = MONASH
    _, cg, mx = _pythia_dwt(p["rho"], p["sq"], p["q1"], p["dec"])
    rng = np.random.default_rng(dq)
    n = 50_000
    sim = np.array([_pythia_baryon_from_diquark(rng, dq, cg, mx, p["rho"]) for _ in range(n)])
    code = fl.N_QUARK + 1 + fl.DIQUARKS.index(dq)
    sp = fl.species_probs(jnp.array([0.5, 0.55, fl.MESON_CVECTOR, fl.MESON_BVECTOR]), p["dec"])
    fp = fl.break_flavour_probs(p["rho"], p["qq"], p["sq"], p["q1"], p["dec"])
    u = (jnp.arange(n) + 0.5) / n
    # the antidiquark at the quark end of a string (other end d̄): it must make an antibaryon
    b = jax.jit(jax.vmap(lambda u_: fl.sample_bundle(u_, True, code, 1, sp, fp)))(u)
    ours = -np.asarray(b.pid_h)
    assert np.all(np.asarray(b.q_new) <= 3)
    for c in sorted(set(sim) | set(ours)):
        f_sim, f_ours = np.mean(sim == c), np.mean(ours == c)
        assert abs(f_sim - f_ours) < 4 * math.sqrt(max(f_ours * (1 - f_ours), 1e-5) / n), (c, f_sim, f_ours)


POPCORN_POINTS = ((0.217, 0.915, 0.0275, 1.0, 0.5, 0.9, 0.5), (0.3, 0.7, 0.05, 0.8, 1.2, 0.6, 0.3))


@pytest.mark.parametrize("point", POPCORN_POINTS)
def test_popcorn_weights_match_independent_transcription(point):
    d1, d2, pf = _pythia_popcorn(*point)
    o1, o2, opf = fl.popcorn_weights(*point)
    np.testing.assert_allclose([float(x) for x in o1], d1, rtol=1e-5)
    np.testing.assert_allclose([float(x) for x in o2], d2, rtol=1e-5)
    assert float(opf) == pytest.approx(pf, rel=1e-5)
    if point[4] == 0.5:  # Pythia's manual: B M B̄ / all ≈ popcornRate/(0.5 + popcornRate) = 0.5 "roughly"
        assert 0.4 < pf / (1 + pf) < 0.55
    # the quark-end row of the flavour table against 10^5 simulated Pythia diquark picks: plain (dWT[0]) or
    # popcorn (odds popFrac, dWT[1]) and its (popcorn quark, vertex quark, spin)
    rho, sq, q1, dec, *_ = point
    dwt0, _, _ = _pythia_dwt(rho, sq, q1, dec)
    rng = np.random.default_rng(11)
    n = 100_000
    sim = []
    for _ in range(n):
        if (1.0 + pf) * rng.random() > 1.0:
            sim.append(fl.N_QUARK + fl.N_DIQUARK + 1 + fl.POPCORN.index(_pythia_pop_vtx(rng, d1)))
        else:
            sim.append(fl.N_QUARK + 1 + fl.DIQUARKS.index(_pythia_diquark(rng, dwt0)))
    sim = np.array(sim)
    row = np.asarray(fl.flavour_table(rho, 0.081, sq, q1, dec, *point[4:])[1], np.float64)  # a u end
    exact = row[3:] / row[3:].sum()
    freq = np.array([np.mean(sim == c) for c in fl.NEW_CODES[3:]])
    err = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(freq - exact) < 4 * err + 1e-12), np.c_[freq, exact]


def test_flavour_table_rows_and_no_popcorn_limit():
    t = np.asarray(fl.flavour_table(0.217, 0.081, 0.915, 0.0275, 1.0, 0.5, 0.9, 0.5), np.float64)
    assert t.shape == (fl.N_FLAV, len(fl.NEW_CODES))
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-6)
    assert np.all(t[5:14, 3:] == 0)  # a plain diquark end makes a quark
    for j, (pp, _, _) in enumerate(fl.POPCORN):  # a popcorn end makes a plain diquark holding its popcorn quark
        row = t[14 + j]
        assert np.all(row[:3] == 0) and np.all(row[12:] == 0)
        for i, dq in enumerate(fl.DIQUARKS):
            assert (row[3 + i] > 0) == (pp in (dq // 1000, (dq // 100) % 10))
    t0 = np.asarray(fl.flavour_table(0.217, 0.081, 0.915, 0.0275, 1.0, 0.0, 0.9, 0.5), np.float64)
    np.testing.assert_allclose(t0[1], np.asarray(fl.break_flavour_probs(0.217, 0.081, 0.915, 0.0275, 1.0)),
                               atol=1e-7)
    # finite values and gradients at the range edges (safe square roots, 0/0 ratios)
    for x in ((0.0, 0.081, 0.915, 0.0275, 1.0, 0.5, 0.9, 0.5), (0.217, 0.081, 0.915, 0.0275, 1.0, 2.0, 0.0, 0.0),
              (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0)):
        g = jax.jacfwd(lambda v: fl.flavour_table(*v))(jnp.array(x))
        assert np.all(np.isfinite(np.asarray(g))) and np.all(np.isfinite(np.asarray(fl.flavour_table(*x))))


def test_step_from_u_end_with_popcorn_matches_simulated_pythia():
    """Hadron species and the popcorn flag of the new diquark from a u end with popcornRate = 0.5 against
    2·10^5 draws of the transcription of Pythia's pickGauss/combine loop."""
    p = MONASH
    dwt, cg, mx = _pythia_dwt(p["rho"], p["sq"], p["q1"], p["dec"])
    d1, _, pf = _pythia_popcorn(p["rho"], p["sq"], p["q1"], p["dec"], 0.5, 0.9, 0.5)
    rng = np.random.default_rng(17)
    n = 200_000
    sim = [_pythia_step_from_u(rng, dwt, cg, mx, p, popcorn=(d1, pf)) for _ in range(n)]
    sim = np.array([h if h == -1 else h[0] * 10 + h[1] for h in sim])
    sp = fl.species_probs(jnp.array([p["v_ud"], 0.55, fl.MESON_CVECTOR, fl.MESON_BVECTOR]), p["dec"])
    table = fl.flavour_table(p["rho"], p["qq"], p["sq"], p["q1"], p["dec"], 0.5, 0.9, 0.5)
    u = (jnp.arange(n) + 0.5) / n
    b = jax.jit(jax.vmap(lambda u_: fl.sample_bundle(u_, True, 2, 1, sp, table)))(u)
    pid, q_new = np.asarray(b.pid_h), np.asarray(b.q_new)
    ours = np.where(np.abs(pid) > 1000, pid * 10 + (q_new > fl.N_QUARK + fl.N_DIQUARK), -1)
    for code in sorted(set(sim) | set(ours)):
        f_sim, f_ours = np.mean(sim == code), np.mean(ours == code)
        assert abs(f_sim - f_ours) < 4 * math.sqrt(max(f_ours * (1 - f_ours), 1e-6) / n), (code, f_sim, f_ours)
    assert 0.4 < np.mean(ours % 10 == 1) / np.mean(ours > 0) < 0.55  # B M B̄ share of the baryons


def _pythia_popcorn_meson(rng, v_old, v_new, v_ud, v_s):
    """StringFlav::combine of an antidiquark end (id < 0, vertex quark v_old) with a new diquark (id > 0,
    vertex quark v_new): the popcorn meson code, or 0 when η/η′ suppression rejects it."""
    hi, lo = max(v_old, v_new), min(v_old, v_new)
    vec = v_ud if hi < 3 else v_s
    spin = 1 if (1.0 + vec) * rng.random() > 1.0 else 0
    code = 100 * hi + 10 * lo + (3 if spin else 1)
    if hi != lo:
        sign = 1 if hi % 2 == 0 else -1
        if hi == v_old:  # flav1.id < 0
            sign = -sign
        return sign * code
    theta = 36.0 if spin else -15.0
    alpha = theta + 54.7 if spin else 90.0 - (theta + 54.7)
    r = rng.random()
    if hi < 3:
        mix = 110 if r < 0.5 else 220 if r < 0.5 * (1 + math.sin(math.radians(alpha)) ** 2) else 330
    else:
        mix = 220 if r < math.cos(math.radians(alpha)) ** 2 else 330
    code = mix + (3 if spin else 1)
    if (code == 221 and rng.random() > 0.60) or (code == 331 and rng.random() > 0.12):
        return 0
    return code


@pytest.mark.parametrize("pending", [(2, 1, 1), (2, 3, 3), (3, 2, 1), (1, 1, 3)])
def test_popcorn_meson_step_matches_simulated_pythia(pending):
    """From a popcorn antidiquark at the colour end (popcorn quark, vertex quark, 2s+1): the popcorn meson of the
    two vertex quarks and the new plain diquark (dWT[2], same popcorn quark), against 10^5 draws of Pythia's
    pickGauss case 2 and combine, re-picked when η/η′ suppression rejects."""
    p = MONASH
    _, d2, _ = _pythia_popcorn(p["rho"], p["sq"], p["q1"], p["dec"], 0.5, 0.9, 0.5)
    rng = np.random.default_rng(sum(pending))
    n = 100_000
    sim = []
    for _ in range(n):
        while True:
            pp, vv, sp_ = _pythia_pop_vtx(rng, d2, pop=pending[0])
            h = _pythia_popcorn_meson(rng, pending[1], vv, p["v_ud"], 0.55)
            if h:
                sim.append(h * 100_000 + 1000 * max(pp, vv) + 100 * min(pp, vv) + sp_)
                break
    sim = np.array(sim)
    code = fl.N_QUARK + fl.N_DIQUARK + 1 + fl.POPCORN.index(pending)
    sp = fl.species_probs(jnp.array([p["v_ud"], 0.55, fl.MESON_CVECTOR, fl.MESON_BVECTOR]), p["dec"])
    table = fl.flavour_table(p["rho"], p["qq"], p["sq"], p["q1"], p["dec"], 0.5, 0.9, 0.5)
    u = (jnp.arange(n) + 0.5) / n
    b = jax.jit(jax.vmap(lambda u_: fl.sample_bundle(u_, True, code, 1, sp, table)))(u)
    q_new = np.asarray(b.q_new)
    assert np.all((q_new > fl.N_QUARK) & (q_new <= fl.N_QUARK + fl.N_DIQUARK))  # a plain diquark
    ours = np.asarray(b.pid_h).astype(np.int64) * 100_000 + np.array(fl.DIQUARKS)[q_new - fl.N_QUARK - 1]
    assert np.all(np.abs(np.asarray(b.pid_h)) < 1000)  # a meson
    for c in sorted(set(sim) | set(ours)):
        f_sim, f_ours = np.mean(sim == c), np.mean(ours == c)
        assert abs(f_sim - f_ours) < 4 * math.sqrt(max(f_ours * (1 - f_ours), 1e-5) / n), (c, f_sim, f_ours)
    # the closing hadron with the d̄ end is the baryon of the new diquark (two diquark codes never close)
    assert np.all(np.abs(np.asarray(b.pid_c)) > 1000)


# ----------------------------------------------------------------------------------------- codes and tables

def test_baryon_codes_and_tables():
    assert [fl.baryon_pid(2, 2101), fl.baryon_pid(1, 2101), fl.baryon_pid(3, 2101), fl.baryon_pid(2, 2203)] == \
        [2212, 2112, 3122, 2224]
    assert [fl.baryon_pid(1, 3201, 0), fl.baryon_pid(1, 3201, 1), fl.baryon_pid(3, 3303)] == [3212, 3122, 3334]
    heavy = [fl.baryon_pid(4, 2101), fl.baryon_pid(4, 3201, 1), fl.baryon_pid(4, 3201, 0), fl.baryon_pid(5, 1103, 0)]
    assert heavy == [4122, 4232, 4322, 5112]
    known = {p.pid for p in particles.TABLE}
    for q in range(1, 6):
        for i, dq in enumerate(fl.DIQUARKS + fl.POPCORN_DIQUARK):  # a popcorn code makes its plain diquark's
            code = fl.N_QUARK + 1 + i
            for a, b, sign in ((q, code, 1), (code, q, -1)):
                pids = [int(x) for x in fl._PID[a - 1, b - 1] if x != 0]
                assert pids and all(abs(x) in known and np.sign(x) == sign for x in pids)
                # the quark content of every baryon is the quark plus the diquark's two quarks
                want = np.zeros(5, int)
                for f in (q, dq // 1000, (dq // 100) % 10):
                    want[f - 1] += sign
                for x in pids:
                    np.testing.assert_array_equal(np.asarray(quark_content(jnp.array(x))), want)
                    assert x in branching_table() or -x in branching_table() or abs(x) in (2212, 2112)
    # two plain (or two popcorn) diquark codes make nothing; a popcorn code P = (popcorn p, vertex v) and a
    # plain diquark R holding p make the popcorn meson of v and R's other quark v′: [P, R] = v′ v̄, [R, P] = v v̄′
    n_plain = fl.N_QUARK + fl.N_DIQUARK
    assert not np.any(fl._PID[fl.N_QUARK:n_plain, fl.N_QUARK:n_plain])
    assert not np.any(fl._PID[n_plain:, n_plain:])
    for j, (pp, vv, _) in enumerate(fl.POPCORN):
        for i, dq in enumerate(fl.DIQUARKS):
            q1, q2 = dq // 1000, (dq // 100) % 10
            for a, b, sign in ((n_plain + j, fl.N_QUARK + i, 1), (fl.N_QUARK + i, n_plain + j, -1)):
                pids = [int(x) for x in fl._PID[a, b] if x != 0]
                if pp not in (q1, q2):
                    assert not pids
                    continue
                want = np.zeros(5, int)
                want[q1 + q2 - pp - 1] += sign
                want[vv - 1] -= sign
                assert pids and all(100 < abs(x) < 1000 for x in pids)
                for x in pids:
                    np.testing.assert_array_equal(np.asarray(quark_content(jnp.array(x))), want)
    sp = np.asarray(fl.species_probs(jnp.array([0.5, 0.55, 0.88, 2.2]), 1.0))
    assert np.all(sp[fl._PID == 0] == 0) and np.all(sp[fl._PID != 0] > 0) and np.all(sp <= 1.0 + 1e-6)
    # diquark constituent masses are the sums of the quarks' (Pythia: ud 0.65, us 0.825, ss 1.0 GeV)
    assert fl.CONSTITUENT_MASS[fl.N_QUARK + fl.DIQUARKS.index(3303)] == pytest.approx(1.0)


def test_diquark_shape_monash_convention():
    a, alpha = diquark_shape(0.68, 0.97, jnp.array([False, True, False]), jnp.array([False, False, True]), 1.0)
    np.testing.assert_allclose(np.asarray(a), [0.68, 1.65, 0.68], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(alpha), [1.0, 0.03, 1.97], rtol=1e-6)


# ---------------------------------------------------------------------------------------- the string stage

def _qqbar_events(flavours, n):
    rows = []
    for i in range(n):
        q = flavours[i % len(flavours)]
        m = 4.8 if q == 5 else 1.5 if q == 4 else 0.0
        e = SQRT_S / 2
        pz = math.sqrt(e * e - m * m)
        rows.append(([[e, 0, 0, pz], [e, 0, 0, -pz]], [q, -q]))
    p4 = jnp.asarray(np.array([r[0] for r in rows]), jnp.float32)
    pid = jnp.asarray(np.array([r[1] for r in rows]), jnp.int32)
    col = jnp.tile(jnp.array([[101, 0], [0, 101]], jnp.int32), (n, 1, 1))
    return Events.empty(n, 2).replace(p4=p4, pid=pid, mask=jnp.ones((n, 2), bool), colour=col)


STAGE = string_fragmentation(capacity=48)
FWD = jax.jit(STAGE.apply)


@pytest.fixture(scope="module")
def strings_out():
    ev = _qqbar_events([1, 2, 3, 4, 5], 2000)
    return ev, FWD(STAGE.init(None), jax.random.key(3), ev)


@pytest.mark.slow  # compiling the stage takes ≈ 70 s on the shared CPU (test_hadronization checks the same at default)
def test_baryon_number_charge_flavour_and_mass_shell(strings_out):
    ev, out = strings_out
    assert np.all(np.asarray(out.status) == 0)
    mask, pid = np.asarray(out.mask), np.asarray(out.pid)
    a = np.abs(pid)
    is_b = mask & (a > 1000) & (a < 10000)
    assert 0.6 < is_b.sum(1).mean() < 2.0  # Pythia 8.317 (no FSR, no decays, d…b): 1.03
    assert np.all(np.sum(np.where(is_b, np.sign(pid), 0), axis=1) == 0)  # baryon number, exactly
    assert np.all(np.sum(np.where(mask, np.asarray(particles.charge3(out.pid)), 0), axis=1) == 0)
    content = np.sum(np.where(mask[..., None], np.asarray(quark_content(out.pid)), 0), axis=1)
    assert np.all(content == 0)
    dp = np.asarray(out.total_p4() - ev.total_p4(), np.float64)
    assert np.max(np.abs(dp)) / SQRT_S < 1e-4
    p4 = np.asarray(out.p4, np.float64)
    m2 = p4[..., 0] ** 2 - np.sum(p4[..., 1:] ** 2, axis=-1)
    m_pdg = np.asarray(particles.mass(out.pid), np.float64)
    rel = np.abs(m2 - m_pdg ** 2) / np.maximum(p4[..., 0] ** 2, 1.0)
    assert np.max(np.where(is_b, rel, 0.0)) < 1e-5
    seen = set(np.unique(a[is_b]))
    assert {2212, 2112, 3122, 2224, 3222, 3212}.issubset(seen)
    assert seen & {4122, 4222, 4212, 4112, 4224, 4214, 4114, 4232, 4132} and seen & {5122, 5232, 5132}


@pytest.mark.slow
def test_probqqtoq_zero_gives_mesons_only(strings_out):
    ev = strings_out[0]
    p = diffgen.with_settings(STAGE.init(None), {"StringFlav:probQQtoQ": 0.0})
    out = FWD(p, jax.random.key(4), ev)
    a = np.abs(np.asarray(out.pid))[np.asarray(out.mask)]
    assert np.all((a > 100) & (a < 1000))


def test_settings_registered_and_range_checked(capsys):
    for name, default in (("StringFlav:probQQtoQ", 0.081), ("StringFlav:probSQtoQQ", 0.915),
                          ("StringFlav:probQQ1toQQ0", 0.0275), ("StringFlav:decupletSup", 1.0),
                          ("StringZ:aExtraDiquark", 0.97), ("StringFlav:popcornRate", 0.5),
                          ("StringFlav:popcornSpair", 0.9), ("StringFlav:popcornSmeson", 0.5)):
        assert SETTINGS[name].default == default and name in BARYON_SETTING_NAMES
        assert SETTINGS[name].doc
    gen = diffgen.presets.ee_hadrons(SQRT_S)
    s = diffgen.settings(gen.default_params())
    assert float(s["StringFlav:probQQtoQ"]) == pytest.approx(0.081)
    with pytest.raises(ValueError, match="probQQtoQ"):
        diffgen.with_settings(gen.default_params(), {"StringFlav:probQQtoQ": 1.5})
    with pytest.raises(ValueError, match="probQQ1toQQ0"):
        diffgen.with_settings(gen.default_params(), {"StringFlav:probQQ1toQQ0": 0.0})
    with pytest.raises(ValueError, match="aExtraDiquark"):
        diffgen.with_settings(gen.default_params(), {"StringZ:aExtraDiquark": -0.1})
    with pytest.raises(ValueError, match="popcornRate"):
        diffgen.with_settings(gen.default_params(), {"StringFlav:popcornRate": 2.5})
    from diffgen.cli import main

    assert main(["settings", "--process", "ee-hadrons"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in BARYON_SETTING_NAMES)


# ------------------------------------------------------------------------------------------------- decays

NEW_BARYONS = (3224, 3214, 3114, 3324, 3314, 4122, 4222, 4212, 4112, 4224, 4214, 4114, 4232, 4132, 4322, 4312,
               4324, 4314, 4332, 4334, 5122, 5222, 5212, 5112, 5224, 5214, 5114, 5132, 5232, 5312, 5322, 5314,
               5324, 5332, 5334, 3122, 3222, 3212, 3112, 3322, 3312, 3334)


@pytest.mark.slow  # ≈ 30 s (compile); test_decays' big batch covers every code with charge and baryon number
def test_new_baryon_decays_conserve_momentum_charge_and_baryon_number():
    codes = [c for b in NEW_BARYONS for c in (b, -b)]
    n = 40 * len(codes)
    rng = np.random.default_rng(5)
    pid = np.array([codes[i % len(codes)] for i in range(n)])[:, None]
    p3 = rng.normal(size=(n, 1, 3)) * 5.0
    m = np.asarray(particles.mass(jnp.asarray(pid)), np.float64)
    e = np.sqrt(np.sum(p3 ** 2, -1) + m ** 2)
    ev = Events.empty(n, 1).replace(
        p4=jnp.asarray(np.concatenate([e[..., None], p3], -1), jnp.float32), pid=jnp.asarray(pid, jnp.int32),
        mask=jnp.ones((n, 1), bool))
    out = jax.jit(hadron_decays().apply)({}, jax.random.key(9), ev)
    assert np.all(np.asarray(out.status) == 0)
    mask, opid = np.asarray(out.mask), np.asarray(out.pid)
    a = np.abs(opid)
    bnum = np.sum(np.where(mask & (a > 1000) & (a < 10000), np.sign(opid), 0), axis=1)
    np.testing.assert_array_equal(bnum, np.sign(pid[:, 0]))
    charge = np.sum(np.where(mask, np.asarray(particles.charge3(out.pid)), 0), axis=1)
    np.testing.assert_array_equal(charge, np.asarray(particles.charge3(jnp.asarray(pid[:, 0]))))
    dp = np.asarray(out.total_p4(), np.float64) - np.concatenate([e[..., None], p3], -1)[:, 0]
    assert np.max(np.abs(dp) / np.maximum(e, 1.0)) < 2e-4
    # only the default stable particles are left (p, n, π±, K±, K_L, γ, leptons)
    assert set(np.unique(a[mask])) <= {11, 12, 13, 14, 16, 22, 130, 211, 321, 2112, 2212}


# ------------------------------------------------------------------------------------------------ gradient

@pytest.mark.slow
@pytest.mark.parametrize("name, x0, step, decuplet", [
    ("StringFlav:probQQtoQ", 0.081, 0.02, False),  # all baryons
    # spin-3/2 baryons: B M B̄ draws its diquarks from dWT[1], where spin 1 is ≈ 6× more frequent
    # (0.20 per event at popcornRate = 0, 0.37 at 0.5, 0.43 at 1)
    ("StringFlav:popcornRate", 0.5, 0.2, True),
])
def test_baryon_count_gradient_matches_finite_differences(name, x0, step, decuplet):
    """d⟨n⟩/dθ of primary baryon counts on u ū strings at 91.2 GeV: autodiff (score terms of every flavour choice)
    against the central difference of two independent 10^4-event samples at θ ± step, with their errors."""
    ev = _qqbar_events([2], 10_000)
    base = STAGE.init(None)

    def run(x, key):
        out = STAGE.apply({**base, name: x}, key, ev)
        a = jnp.abs(out.pid)
        sel = (a > 1000) & (a < 10000) & ((a % 10 == 4) | (not decuplet))
        n_b = jnp.sum(out.mask & sel, axis=1).astype(jnp.float32)
        return n_b, out.log_weight

    x0 = jnp.float32(x0)
    (n_b, lw), (dn, dlw) = jax.jit(lambda q: jax.jvp(lambda x: run(x, jax.random.key(1)), (q,), (1.0,)))(x0)
    n_b, dn, dlw = (np.asarray(x, np.float64) for x in (n_b, dn, dlw))
    per = dn + (n_b - n_b.mean()) * dlw
    grad, grad_err = per.mean(), per.std() / np.sqrt(len(per))
    fwd = jax.jit(run)
    plus = np.asarray(fwd(x0 + step, jax.random.key(2))[0], np.float64)
    minus = np.asarray(fwd(x0 - step, jax.random.key(3))[0], np.float64)
    fd = (plus.mean() - minus.mean()) / (2 * step)
    fd_err = math.hypot(plus.std(), minus.std()) / math.sqrt(len(plus)) / (2 * step)
    print(f"d<n>/d {name}: AD {grad:.3f} ± {grad_err:.3f}, FD {fd:.3f} ± {fd_err:.3f}")
    assert abs(grad - fd) < 3.0 * math.hypot(grad_err, fd_err)
    assert abs(fd) > 5 * fd_err  # the count visibly moves
