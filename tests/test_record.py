"""The full event record (``ee_hadrons(record=True)``, ``--record full``): the record stages' bookkeeping (hard
process, partons, decays), the HepMC3 vertex graph read back by pyhepmc with four-momentum balanced at every
vertex, and π0 / K_S / Λ counts in diffgen's HepMC3 files against Pythia 8's own full record."""

import jax
import jax.numpy as jnp
import numpy as np
import pyhepmc
import pytest

from diffgen import Events, particles
from diffgen.cli import main as cli_main
from diffgen.decays import hadron_decays, record_hard_process, record_partons
from diffgen.events import (
    FROM_BEAMS,
    FROM_SHOWER,
    FROM_STRINGS,
    RECORD_DECAYED,
    RECORD_FINAL,
    RECORD_HARD_PARTON,
    RECORD_HARD_RESONANCE,
    RECORD_PARTON,
)
from diffgen.io.hepmc import write_hepmc
from diffgen.phasespace import rambo
from diffgen.processes import ee_to_ffbar

#: primaries with long decay chains: B+ (→ D → K …), D0, Λ (→ p π), K_S, η, π0, Σ0 (→ Λ γ), Ξ-, ρ0, π+
PRIMARIES = [521, 421, 3122, 310, 221, 111, 3212, 3312, 113, 211]
N = 400
SQRT_S = 91.188
#: the toy shower's gluon takes this fraction of the quark's momentum
X_GLUON = 0.3


def _toy_shower(ev):
    """One collinear gluon off the quark, q → (1 − x) q + x g, in a third slot: four-momentum conserved to
    rounding, colours ignored (the record keeps none). Stands in for the shower, whose compilation (~20 s) the
    slow test below pays; its vertex balance on real events is checked there."""
    q = ev.p4[:, 0]
    p4 = jnp.stack([(1 - X_GLUON) * q, ev.p4[:, 1], X_GLUON * q], axis=1)
    pid = jnp.concatenate([ev.pid, jnp.full((ev.n_events, 1), 21, jnp.int32)], axis=1)
    return ev.replace(p4=p4, pid=pid, mask=jnp.ones(pid.shape, bool), colour=jnp.zeros(pid.shape + (2,), jnp.int32))


def _primaries(n=N):
    """``n`` events of the PRIMARIES (alternating signs where they have antiparticles) from flat phase space at
    √s (RAMBO): they add up to the partons' (√s, 0, 0, 0), as the strings' hadrons do."""
    pid = np.array([PRIMARIES] * n, np.int32)
    pid = np.where((np.arange(n)[:, None] % 2 == 1) & np.isin(np.abs(pid), [521, 421, 3122, 3212, 3312, 211]),
                   -pid, pid)
    u = jax.random.uniform(jax.random.key(1), (n, rambo.n_random(len(PRIMARIES))))
    p4, _ = rambo.massive(u, SQRT_S, particles.mass(jnp.asarray(PRIMARIES)))
    return jnp.asarray(p4, jnp.float32), jnp.asarray(pid)


@pytest.fixture(scope="module")
def recorded():
    """e+e- → γ*/Z → u ū (the real hard-process stage) → the toy shower → the PRIMARIES → diffgen's decays, with
    and without the record stages."""
    key = jax.random.key(7)
    hard = ee_to_ffbar((2,), SQRT_S)
    ev = hard.apply(hard.init(None), key, Events.empty(N, 0))
    ev = record_partons().apply({}, key, _toy_shower(record_hard_process().apply({}, key, ev)))
    p4, pid = _primaries()
    ev = ev.replace(p4=p4, pid=pid, mask=jnp.ones(pid.shape, bool), colour=jnp.zeros(pid.shape + (2,), jnp.int32))
    plain = hadron_decays(capacity=96).apply({}, key, ev.replace(record=None))
    full = hadron_decays(capacity=96, record=True).apply({}, key, ev)
    return plain, full


def _balance_tol(e):
    """float32 rounding of sums of a few momenta of energy ``e`` (GeV): 2e-6 e, some 30 float32 epsilons."""
    return 2e-6 * np.maximum(1.0, e)


def test_record_keeps_the_final_state_and_links_every_decay(recorded):
    plain, full = recorded
    # the final state is the same with and without the record, bit for bit
    np.testing.assert_array_equal(np.asarray(full.pid), np.asarray(plain.pid))
    np.testing.assert_array_equal(np.asarray(full.p4), np.asarray(plain.p4))
    assert np.all(np.asarray(full.status) == 0)
    r = full.record
    st, pid, par = (np.asarray(x) for x in (r.status, r.pid, r.parent))
    p4 = np.asarray(r.p4, np.float64)
    assert set(np.unique(st)) == {0, RECORD_FINAL, RECORD_DECAYED, RECORD_HARD_RESONANCE, RECORD_HARD_PARTON,
                                  RECORD_PARTON}
    for i in range(N):
        # status 1 = the final state, momentum for momentum
        fin = st[i] == RECORD_FINAL
        mask = np.asarray(full.mask[i])
        order = lambda q, k: np.lexsort((q[:, 3], q[:, 0], k))  # noqa: E731
        a = order(p4[i][fin], pid[i][fin])
        b = order(np.asarray(full.p4[i], np.float64)[mask], np.asarray(full.pid[i])[mask])
        np.testing.assert_array_equal(pid[i][fin][a], np.asarray(full.pid[i])[mask][b])
        np.testing.assert_allclose(p4[i][fin][a], np.asarray(full.p4[i], np.float64)[mask][b], atol=1e-6)
        # the hard process first: γ*/Z from the beams, its u ū; then the partons from the shower vertex
        assert (pid[i, 0], st[i, 0], par[i, 0]) == (23, RECORD_HARD_RESONANCE, FROM_BEAMS)
        hard, partons = st[i] == RECORD_HARD_PARTON, st[i] == RECORD_PARTON
        assert pid[i][hard].tolist() == [2, -2] and np.all(par[i][hard] == 0)
        assert pid[i][partons].tolist() == [2, -2, 21] and np.all(par[i][partons] == FROM_SHOWER)
        np.testing.assert_allclose(p4[i, 0], [SQRT_S, 0, 0, 0], atol=_balance_tol(SQRT_S))
        for group in (hard, partons):
            np.testing.assert_allclose(p4[i][group].sum(axis=0), p4[i, 0], atol=_balance_tol(SQRT_S))
        # the ten primaries from the strings, adding up to the partons
        prim = (par[i] == FROM_STRINGS) & (st[i] != 0)
        assert prim.sum() == len(PRIMARIES)
        np.testing.assert_allclose(p4[i][prim].sum(axis=0), p4[i][partons].sum(axis=0), atol=_balance_tol(SQRT_S))
        # a mother precedes its daughters; decay products come from decayed entries
        kids = np.flatnonzero((par[i] >= 0) & ~hard)
        assert np.all(par[i][kids] < kids) and np.all(st[i][par[i][kids]] == RECORD_DECAYED)
        # every decayed entry has daughters that add up to it; nothing final has daughters
        for j in np.flatnonzero(st[i] == RECORD_DECAYED):
            d = par[i] == j
            assert d.any()
            np.testing.assert_allclose(p4[i][d].sum(axis=0), p4[i][j], atol=2e-4 * max(1.0, p4[i][j, 0]))
        assert not np.isin(np.flatnonzero(st[i] == RECORD_FINAL), par[i]).any()
    # what an analysis looks for: every primary π0, K_S, Λ decayed and is in the record; B+ chains reach D
    assert np.sum(np.abs(pid) == 421) >= N  # the primary D0 plus those of B+ decays
    assert np.all(st[np.isin(np.abs(pid), [111, 310, 3122])] == RECORD_DECAYED)


def test_record_stages_without_the_hard_process():
    """``record_partons`` alone starts the record (partons from the beams), as before the hard process was kept."""
    ev = Events.empty(2, 3).replace(p4=jnp.ones((2, 3, 4)), pid=jnp.array([[1, -1, 0], [2, 21, -2]]),
                                    mask=jnp.array([[True, True, False], [True, True, True]]))
    rec = record_partons().apply({}, jax.random.key(0), ev).record
    assert rec.status.tolist() == [[71, 71, 0], [71, 71, 71]] and np.all(np.asarray(rec.parent) == FROM_BEAMS)
    hard = record_hard_process().apply({}, jax.random.key(0), ev).record
    assert hard.pid.tolist() == [[23, 1, -1, 0], [23, 2, 21, -2]]
    assert hard.status.tolist() == [[22, 23, 23, 0], [22, 23, 23, 23]]
    np.testing.assert_allclose(np.asarray(hard.p4[:, 0]), [[2, 2, 2, 2], [3, 3, 3, 3]])
    empty = record_hard_process().apply({}, jax.random.key(0), Events.empty(1, 2)).record
    assert np.all(np.asarray(empty.status) == 0) and np.all(np.asarray(empty.pid) == 0)


def test_record_stages_change_nothing_but_the_record():
    """The record stages sit where ``ee_hadrons(record=True)`` puts them and pass the events through: with the
    stage keys folded by name, the rest of the chain sees the same events and keys, so the final state of the
    whole chain is bit-identical with and without the record (the slow test's chain is the same code)."""
    from diffgen import presets
    from diffgen.stage import chain

    names = [name for name, _ in presets.ee_hadrons(record=True).stage.parts]
    assert names == ["hard", "record_hard", "shower", "record", "hadronization", "decays"]
    names = [name for name, _ in presets.ee_hadrons(record=True, shower=False).stage.parts]
    assert names == ["hard", "record_hard", "record", "hadronization", "decays"]
    hard = ee_to_ffbar((1, 2, 3, 4, 5), SQRT_S)
    plain = chain(("hard", hard))
    full = chain(("hard", hard), ("record_hard", record_hard_process()), ("record", record_partons()))
    key = jax.random.key(3)
    a = plain.apply(plain.init(None), key, Events.empty(64, 0))
    b = full.apply(full.init(None), key, Events.empty(64, 0))
    assert a.record is None and b.record is not None
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b.replace(record=None)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _p4(p):
    return np.array([p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz])


def walk_hepmc_graph(ev, n_primaries=None, shower_tol=None, strings_tol=None):
    """Check one full-record HepMC3 event as Rivet would walk it: beams (4) → γ*/Z (22) → hard q q̄ (23) →
    one shower vertex → partons (71) → one hadronization vertex → primary hadrons → a vertex per decay (mother
    status 2) → final state (1); four-momentum in = out at every vertex. Returns the particles by status."""
    by_status = {}
    for p in ev.particles:
        by_status.setdefault(p.status, []).append(p)
    assert set(by_status) <= {1, 2, 4, RECORD_HARD_RESONANCE, RECORD_HARD_PARTON, RECORD_PARTON}
    beams, (z,), hard, partons = by_status[4], by_status[22], by_status[23], by_status[71]
    sqrt_s = z.momentum.e
    tol = {"z": _balance_tol(sqrt_s), "shower": shower_tol or _balance_tol(sqrt_s),
           "strings": strings_tol or _balance_tol(sqrt_s)}
    assert len(beams) == 2 and all(b.production_vertex is None or not b.production_vertex.particles_in
                                   for b in beams)
    # beams → γ*/Z
    assert beams[0].end_vertex is beams[1].end_vertex is z.production_vertex
    assert list(z.production_vertex.particles_out) == [z]
    np.testing.assert_allclose(_p4(beams[0]) + _p4(beams[1]), _p4(z), atol=tol["z"])
    assert z.generated_mass == pytest.approx(sqrt_s, rel=1e-6)
    # γ*/Z → q q̄
    assert sorted(p.pid for p in z.end_vertex.particles_out) == sorted(p.pid for p in hard)
    assert len(hard) == 2 and hard[0].pid == -hard[1].pid and 1 <= abs(hard[0].pid) <= 5
    np.testing.assert_allclose(_p4(hard[0]) + _p4(hard[1]), _p4(z), atol=tol["z"])
    # q q̄ → shower → partons
    shower = hard[0].end_vertex
    assert shower is hard[1].end_vertex and shower is not None
    assert {p.id for p in shower.particles_in} == {p.id for p in hard}
    assert {p.id for p in shower.particles_out} == {p.id for p in partons}
    np.testing.assert_allclose(sum(_p4(p) for p in partons), sum(_p4(p) for p in hard), atol=tol["shower"])
    # partons → strings → primary hadrons
    strings = partons[0].end_vertex
    assert strings is not None and all(p.end_vertex is strings for p in partons)
    assert {p.id for p in strings.particles_in} == {p.id for p in partons}
    primaries = list(strings.particles_out)
    assert all(p.status in (1, 2) for p in primaries)
    if n_primaries is not None:
        assert len(primaries) == n_primaries
    np.testing.assert_allclose(sum(_p4(p) for p in primaries), sum(_p4(p) for p in partons), atol=tol["strings"])
    # decays: a decayed particle ends in a vertex of its own whose outgoing momenta add up to it
    for p in by_status.get(2, []):
        v = p.end_vertex
        assert v is not None and list(v.particles_in) == [p] and len(v.particles_out) >= 1
        np.testing.assert_allclose(sum(_p4(q) for q in v.particles_out), _p4(p), atol=2e-4 * max(1.0, p.momentum.e))
    # final state: no end vertex; PDG masses (float64), partons the mass of their momentum
    for p in by_status[1]:
        assert p.end_vertex is None and p.production_vertex is not None
        assert p.generated_mass == pytest.approx(particles.host_mass(p.pid)[0], abs=1e-12)
    for p in hard + partons:
        m2 = p.momentum.e ** 2 - p.momentum.px ** 2 - p.momentum.py ** 2 - p.momentum.pz ** 2
        assert p.generated_mass == pytest.approx(np.sqrt(max(m2, 0.0)), abs=1e-9)
    # every particle is reached from the beams
    seen, todo = set(), list(beams)
    while todo:
        p = todo.pop()
        if p.id in seen:
            continue
        seen.add(p.id)
        if p.end_vertex is not None:
            todo.extend(p.end_vertex.particles_out)
    assert seen == {p.id for p in ev.particles}
    return by_status


def test_record_as_a_hepmc3_graph(tmp_path, recorded):
    _, full = recorded
    path = tmp_path / "full.hepmc3"
    assert write_hepmc(path, full[:20]) == 0
    r = full.record
    with pyhepmc.open(path) as f:
        events = list(f)
    assert len(events) == 20
    for i, ev in enumerate(events):
        st = np.asarray(r.status[i])
        assert len(ev.particles) == 2 + np.count_nonzero(st)
        by_status = walk_hepmc_graph(ev, n_primaries=len(PRIMARIES))
        assert len(by_status[RECORD_PARTON]) == 3 and len(by_status[1]) == np.count_nonzero(st == RECORD_FINAL)
        # vertices: beams → Z, Z → q q̄, the shower, the strings, one per decay
        assert len(ev.vertices) == 4 + np.count_nonzero(st == RECORD_DECAYED)


def test_record_cli_errors(tmp_path, capsys):
    for argv, msg in ((["--process", "ee-mumu", "--record", "full", "--out", str(tmp_path / "a.hepmc3")],
                       "process ee-hadrons"),
                      (["--process", "ee-hadrons", "--record", "full", "--out", str(tmp_path / "a.npz")],
                       "HepMC3"),
                      (["--process", "ee-hadrons", "--record", "full", "--detector", "aleph",
                        "--out", str(tmp_path / "a.hepmc3")], "--detector")):
        assert cli_main(["generate", "--events", "10", *argv]) != 0
        assert msg in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def count_per_event(path, codes=(111, 310, 3122)):
    """Per event of a HepMC3 file, read by pyhepmc: the number of particles with each |PDG code| in ``codes``,
    any status (a K_S that decayed is status 2, a Λ̄ counts as a Λ). Returns ``{code: i[N]}``."""
    out = {c: [] for c in codes}
    with pyhepmc.open(path) as f:
        for ev in f:
            pid = np.abs(np.asarray(ev.numpy.particles.pid))
            for c in codes:
                out[c].append(np.count_nonzero(pid == c))
    return {c: np.asarray(v) for c, v in out.items()}


def pythia_full_record_counts(n, seed, codes=(111, 310, 3122)):
    """Per event of Pythia 8's own full record (e+e- → hadrons at 91.188 GeV, Monash, decays on): the number
    of entries with each |PDG code| in ``codes`` (hadrons appear once in Pythia's record: no copies)."""
    import pythia_peer as py8

    py = py8._pythia(py8._hadrons_lines(91.188), seed)
    counts = {c: [] for c in codes}
    failed = [0]
    for _ in range(n):
        py8._next(py, failed, n)
        ids = np.array([abs(p.id()) for p in py.event])
        for c in codes:
            counts[c].append(np.count_nonzero(ids == c))
    return {c: np.asarray(v) for c, v in counts.items()}


def _compare_counts(diffgen_counts, pythia_counts, allowance):
    """|⟨n⟩_diffgen − ⟨n⟩_Pythia| < 4σ + allowance[code] · ⟨n⟩_Pythia for each code (σ: both samples' errors)."""
    for c, label in ((111, "pi0"), (310, "K0S"), (3122, "Lambda")):
        dg, p8 = diffgen_counts[c], pythia_counts[c]
        err = np.hypot(dg.std() / np.sqrt(len(dg)), p8.std() / np.sqrt(len(p8)))
        print(label, dg.mean(), p8.mean(), "+-", err)
        assert abs(dg.mean() - p8.mean()) < 4 * err + allowance[c] * p8.mean(), (label, dg.mean(), p8.mean(), err)


@pytest.mark.peers
def test_pi0_ks_lambda_counts_in_a_hepmc3_file_match_pythias_full_record(tmp_path):
    """Pythia 8's primary hadrons (decays off) decayed by diffgen with the record on and written to a HepMC3
    file with ``write_hepmc``; the π0, K_S and Λ + Λ̄ per event counted in that file by pyhepmc (any status),
    against those that Pythia's own full record holds with its decays on (independent events, 3000 each,
    errors ≈ 1 %, 2 %, 4 %). diffgen's decay tables and its record must agree with Pythia's to 4σ + 3 % (the
    decay stage's measured −1.6 % in ⟨n_final⟩ on Pythia's primaries). Measured 2026-12-07: π0 9.42 vs 9.69
    (−2.8 %), K_S 1.048 vs 1.130 (−7 %, 2.9σ), Λ + Λ̄ 0.317 vs 0.349 (−9 %, 1.9σ); traced mother by mother
    to B decays without s s̄ or baryon pairs (B+/B0 → K0 X 0.52 against PDG's 0.64, no Λ). With those
    channels (later the same day): π0 9.38 (−3.2 %), K_S 1.086 (−3.9 %, 1.5σ), Λ + Λ̄ 0.333 (−4.6 %, 0.9σ);
    the rest of the K_S gap is Pythia's B and D tables carrying more kaons than PDG's inclusive rates. The
    file holds exactly the record's counts (checked entry for entry)."""
    import pythia_peer as py8

    n = 3000
    pythia = pythia_full_record_counts(n, 5)
    prim = py8.ee_hadrons_events(SQRT_S, n, seed=6, settings={"HadronLevel:Decay": "off"}, max_multiplicity=80)
    beams = jnp.asarray([[SQRT_S / 2, 0, 0, SQRT_S / 2], [SQRT_S / 2, 0, 0, -SQRT_S / 2]], jnp.float32)
    ev = Events.empty(n, 80).replace(p4=jnp.asarray(prim["p4"], jnp.float32), pid=jnp.asarray(prim["pid"]),
                                     mask=jnp.asarray(prim["mask"]), p4_in=jnp.broadcast_to(beams, (n, 2, 4)),
                                     pid_in=jnp.broadcast_to(jnp.asarray([11, -11], jnp.int32), (n, 2)))
    out = jax.jit(hadron_decays(record=True).apply)({}, jax.random.key(2), ev)
    path = tmp_path / "decayed.hepmc3"
    skipped = write_hepmc(path, out)
    ok = np.asarray(out.status) == 0
    assert skipped == np.count_nonzero(~ok) < n // 100
    diffgen = count_per_event(path)
    pid = np.abs(np.asarray(out.record.pid))[ok] * (np.asarray(out.record.status)[ok] != 0)
    for c, v in diffgen.items():
        np.testing.assert_array_equal(v, (pid == c).sum(axis=1))
    _compare_counts(diffgen, pythia, {111: 0.03, 310: 0.03, 3122: 0.03})


@pytest.fixture(scope="module")
def generated_full_record(tmp_path_factory):
    """``diffgen generate --process ee-hadrons --record full`` of 1000 events (~2.5 min on 2 CPU cores, most of
    it compiling the chain with the record)."""
    path = tmp_path_factory.mktemp("full") / "full.hepmc3"
    assert cli_main(["generate", "--process", "ee-hadrons", "--events", "1000", "--record", "full", "--seed", "3",
                     "--out", str(path), "--quiet", "--no-cache"]) == 0
    return path


@pytest.mark.slow
def test_generate_record_full_writes_a_graph_rivet_can_walk(generated_full_record):
    """The whole chain's record as Rivet walks it, every event: beams → γ*/Z → q q̄ → shower → partons → strings
    → hadrons → decays, with four-momentum balanced at every vertex. The shower's recoil is local to each
    dipole, so its vertex balances to float32 rounding over the emissions: allowed 1e-5 √s, measured at most
    1.1e-4 GeV (1.2e-6 √s) in 2997 events (2026-12, seeds 3 and 4). The strings accept a hadron on its mass
    shell to float32 precision (8 eps (√s/2)² in m², CHANGELOG), which moves energies, not momenta: allowed
    2e-5 √s, measured at most 1.9e-4 GeV in these 1000 events and 6.9e-4 GeV (7.6e-6 √s, in E only; the
    next largest 2.1e-4) in the 2997."""
    with pyhepmc.open(generated_full_record) as f:
        events = list(f)
    assert len(events) >= 990  # a flagged event is skipped, as without the record
    for ev in events:
        walk_hepmc_graph(ev, shower_tol=1e-5 * SQRT_S, strings_tol=2e-5 * SQRT_S)
    n_pi0 = [sum(1 for p in ev.particles if p.pid == 111) for ev in events]
    assert np.mean(n_pi0) > 5  # ≈ 9.5 per event


@pytest.mark.slow
@pytest.mark.peers
def test_pi0_ks_lambda_counts_of_the_whole_chain_against_pythias_full_record(generated_full_record):
    """The π0, K_S and Λ + Λ̄ per event in the HepMC3 file of ``diffgen generate --record full`` (the whole
    chain: shower, strings, decays; 1000 events), counted by pyhepmc, against Pythia 8's full record (6000
    events). Here the models differ, not only the decay tables. Measured 2026-12 (diffgen 2997 events in two
    runs, seeds 3 and 4; Pythia 6000, seed 11): π0 9.23 ± 0.07 vs 9.56 ± 0.05 (−3.5 %), K_S 1.093 ± 0.021 vs
    1.137 ± 0.015 (−3.9 %), Λ + Λ̄ 0.429 ± 0.014 vs 0.356 ± 0.009 (+21 %). The π0 and K_S gaps are those of
    the decay tables alone (the test above: −3.2 % and −3.9 % on Pythia's primaries); the Λ excess is the
    strings' (no popcorn, and more baryons per string than Pythia, docs/physics/ee_hadrons.md#baryons),
    less the decays' −5 %. Allowed: 4σ + 8 % (π0, K_S) and 4σ + 30 % (Λ), the measured gaps with room for
    a model change; a record that lost a species (no decayed π0 in the file, no K_S from K0 → K_S) still
    fails."""
    diffgen = count_per_event(generated_full_record)
    pythia = pythia_full_record_counts(6000, 11)
    _compare_counts(diffgen, pythia, {111: 0.08, 310: 0.08, 3122: 0.30})
