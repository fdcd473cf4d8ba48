"""The full event record (``ee_hadrons(record=True)``, ``--record full``): decays stage bookkeeping, the
HepMC3 vertex graph read back by pyhepmc, and π0 / K_S / Λ counts against Pythia 8's own full record."""

import jax
import jax.numpy as jnp
import numpy as np
import pyhepmc
import pytest

from diffgen import Events, particles
from diffgen.cli import main as cli_main
from diffgen.decays import hadron_decays, record_partons
from diffgen.events import FROM_BEAMS, FROM_STRINGS, RECORD_DECAYED, RECORD_FINAL, RECORD_PARTON
from diffgen.io.hepmc import write_hepmc

#: primaries with long decay chains: B+ (→ D → K …), D0, Λ (→ p π), K_S, η, π0, Σ0 (→ Λ γ), Ξ-, ρ0, π+
PRIMARIES = [521, 421, 3122, 310, 221, 111, 3212, 3312, 113, 211]
N = 400


def _primaries(n=N):
    """``n`` events of the PRIMARIES (alternating signs where they have antiparticles), random momenta."""
    rng = np.random.default_rng(1)
    pid = np.array([PRIMARIES] * n, np.int32)
    pid = np.where((np.arange(n)[:, None] % 2 == 1) & np.isin(np.abs(pid), [521, 421, 3122, 3212, 3312, 211]),
                   -pid, pid)
    p = rng.normal(0.0, 3.0, size=pid.shape + (3,))
    m = np.asarray(particles.mass(jnp.asarray(pid)), np.float64)
    e = np.sqrt(m ** 2 + (p ** 2).sum(-1))
    p4 = np.concatenate([e[..., None], p], axis=-1)
    return Events.empty(n, len(PRIMARIES)).replace(p4=jnp.asarray(p4, jnp.float32), pid=jnp.asarray(pid),
                                                   mask=jnp.ones(pid.shape, bool))


@pytest.fixture(scope="module")
def recorded():
    ev = _primaries()
    partons = Events.empty(N, 2).replace(
        p4=jnp.tile(jnp.asarray([[45.6, 0, 0, 45.6], [45.6, 0, 0, -45.6]], jnp.float32), (N, 1, 1)),
        pid=jnp.tile(jnp.asarray([2, -2], jnp.int32), (N, 1)), mask=jnp.ones((N, 2), bool))
    rec = record_partons().apply({}, jax.random.key(0), partons).record
    key = jax.random.key(7)
    plain = hadron_decays(capacity=96).apply({}, key, ev)
    full = hadron_decays(capacity=96, record=True).apply({}, key, ev.replace(record=rec))
    return plain, full


def test_record_keeps_the_final_state_and_links_every_decay(recorded):
    plain, full = recorded
    # the final state is the same with and without the record, bit for bit
    np.testing.assert_array_equal(np.asarray(full.pid), np.asarray(plain.pid))
    np.testing.assert_array_equal(np.asarray(full.p4), np.asarray(plain.p4))
    assert np.all(np.asarray(full.status) == 0)
    r = full.record
    st, pid, par = (np.asarray(x) for x in (r.status, r.pid, r.parent))
    p4 = np.asarray(r.p4, np.float64)
    assert set(np.unique(st)) == {0, RECORD_FINAL, RECORD_DECAYED, RECORD_PARTON}
    for i in range(N):
        # status 1 = the final state, momentum for momentum
        fin = st[i] == RECORD_FINAL
        mask = np.asarray(full.mask[i])
        order = lambda q, k: np.lexsort((q[:, 3], q[:, 0], k))  # noqa: E731
        a = order(p4[i][fin], pid[i][fin])
        b = order(np.asarray(full.p4[i], np.float64)[mask], np.asarray(full.pid[i])[mask])
        np.testing.assert_array_equal(pid[i][fin][a], np.asarray(full.pid[i])[mask][b])
        np.testing.assert_allclose(p4[i][fin][a], np.asarray(full.p4[i], np.float64)[mask][b], atol=1e-6)
        # partons first, from the beams; the ten primaries from the strings; decay products after their mother
        assert np.all(par[i][st[i] == RECORD_PARTON] == FROM_BEAMS)
        assert np.sum(par[i] == FROM_STRINGS) - np.sum(st[i] == 0) == len(PRIMARIES)
        kids = np.flatnonzero(par[i] >= 0)
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
        by_status = {s: [p for p in ev.particles if p.status == s] for s in (1, 2, 4, RECORD_PARTON)}
        assert len(by_status[4]) == 2 and len(by_status[RECORD_PARTON]) == 2
        assert len(by_status[1]) == np.count_nonzero(st == RECORD_FINAL)
        for p in by_status[2]:  # a decayed particle ends in a vertex whose outgoing momenta add up to it
            assert p.end_vertex is not None and len(p.end_vertex.particles_out) >= 1
            out = np.sum([[q.momentum.e, q.momentum.px, q.momentum.py, q.momentum.pz]
                          for q in p.end_vertex.particles_out], axis=0)
            np.testing.assert_allclose(out, [p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz],
                                       atol=2e-4 * max(1.0, p.momentum.e))
        for p in by_status[1]:
            assert p.end_vertex is None and p.production_vertex is not None
            assert p.generated_mass == pytest.approx(float(particles.mass(jnp.asarray(p.pid))), abs=1e-6)
        # the hadronization vertex: the two partons in, the ten primaries out
        strings = by_status[RECORD_PARTON][0].end_vertex
        assert len(strings.particles_in) == 2 and len(strings.particles_out) == len(PRIMARIES)


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


@pytest.mark.peers
def test_pi0_ks_lambda_counts_match_pythias_full_record():
    """Pythia 8's primary hadrons (decays off) decayed by diffgen with the record on, against the π0, K_S and
    Λ + Λ̄ that Pythia's own full record holds with its decays on (independent events, 3000 each, errors ≈
    1 %, 2 %, 4 %). diffgen's decay tables and its record must agree with Pythia's to 4σ + 3 % (the decay
    stage's measured −1.6 % in ⟨n_final⟩ on Pythia's primaries). Measured 2026-12-07: π0 9.42 vs 9.69
    (−2.8 %), K_S 1.048 vs 1.130 (−7 %, 2.9σ), Λ + Λ̄ 0.317 vs 0.349 (−9 %, 1.9σ); traced mother by mother
    to B decays without s s̄ or baryon pairs (B+/B0 → K0 X 0.52 against PDG's 0.64, no Λ). With those
    channels (later the same day): π0 9.38 (−3.2 %), K_S 1.086 (−3.9 %, 1.5σ), Λ + Λ̄ 0.333 (−4.6 %, 0.9σ);
    the rest of the K_S gap is Pythia's B and D tables carrying more kaons than PDG's inclusive rates."""
    import pythia_peer as py8

    n = 3000
    py = py8._pythia(py8._hadrons_lines(91.188), 5)
    counts = {111: [], 310: [], 3122: []}
    failed = [0]
    for _ in range(n):
        py8._next(py, failed, n)
        ids = np.array([abs(p.id()) for p in py.event])
        for c in counts:
            counts[c].append(np.count_nonzero(ids == c))
    prim = py8.ee_hadrons_events(91.188, n, seed=6, settings={"HadronLevel:Decay": "off"}, max_multiplicity=80)
    ev = Events.empty(n, 80).replace(p4=jnp.asarray(prim["p4"], jnp.float32), pid=jnp.asarray(prim["pid"]),
                                     mask=jnp.asarray(prim["mask"]))
    out = jax.jit(hadron_decays(record=True).apply)({}, jax.random.key(2), ev)
    ok = np.asarray(out.status) == 0
    pid = np.abs(np.asarray(out.record.pid))[ok] * (np.asarray(out.record.status)[ok] != 0)
    for c, label in ((111, "pi0"), (310, "K0S"), (3122, "Lambda")):
        dg = (pid == c).sum(axis=1)
        p8 = np.asarray(counts[c])
        err = np.hypot(dg.std() / np.sqrt(len(dg)), p8.std() / np.sqrt(n))
        print(label, dg.mean(), p8.mean(), "+-", err)
        assert abs(dg.mean() - p8.mean()) < 4 * err + 0.03 * p8.mean(), (label, dg.mean(), p8.mean())


@pytest.mark.slow  # compiles the whole chain with the record (~80 s)
def test_generate_record_full_writes_a_graph_rivet_can_walk(tmp_path):
    path = tmp_path / "full.hepmc3"
    assert cli_main(["generate", "--process", "ee-hadrons", "--events", "40", "--record", "full", "--out",
                     str(path), "--quiet", "--no-cache"]) == 0
    with pyhepmc.open(path) as f:
        events = list(f)
    assert len(events) >= 38  # a flagged event is skipped, as without the record
    n_pi0 = [sum(1 for p in ev.particles if p.pid == 111) for ev in events]
    assert np.mean(n_pi0) > 5  # ≈ 9.5 per event
    for ev in events:
        assert all(p.end_vertex is not None for p in ev.particles if p.status == 2)
        assert sum(1 for p in ev.particles if p.status == 4) == 2
