"""Event-file I/O: npz, Parquet, LHE and HepMC3 round trips (LHE read back by pylhe, HepMC3 by pyhepmc),
atomicity and failures."""

from __future__ import annotations

import gzip
import os
import stat
import zipfile

import jax.numpy as jnp
import numpy as np
import pyhepmc
import pylhe
import pytest

import diffgen
from diffgen.events import Events, Status
from diffgen.io import (
    SUFFIXES,
    EventWriter,
    atomic_write,
    check_writable,
    lhe,
    npz,
    parquet,
    read_events,
    read_hepmc,
    read_lhe,
    read_lhe_init,
    read_npz,
    read_parquet,
    write_events,
    write_hepmc,
    write_lhe,
    write_npz,
    write_parquet,
)
from diffgen.io.mass import file_mass, generated_mass, has_fixed_mass

SQRT_S = 91.188
M_MU = 0.1056584
SIGMA_PB, ERROR_PB = 1987.5, 3.25


def _pairs(rng, n, mass):
    """Back-to-back pairs at √s along random directions: p4 of shape [n, 2, 4]."""
    cos = rng.uniform(-1, 1, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    e = np.full(n, SQRT_S / 2)
    p = np.sqrt(e**2 - mass**2)
    sin = np.sqrt(1 - cos**2)
    k = np.stack([e, p * sin * np.cos(phi), p * sin * np.sin(phi), p * cos], axis=-1)
    return np.stack([k, k * np.array([1, -1, -1, -1])], axis=1)


def _sample(n=200, dtype=np.float64, seed=1):
    """n events, capacity 4: μ+μ- pairs (first half) and u ū pairs with colours (second half).

    Every 5th event uses slots 1 and 3 (holes in the mask), every 17th has a bad status.
    """
    rng = np.random.default_rng(seed)
    cap = 4
    p4 = np.zeros((n, cap, 4))
    pid = np.zeros((n, cap), np.int32)
    mask = np.zeros((n, cap), bool)
    colour = np.zeros((n, cap, 2), np.int32)
    half = n // 2
    pair = np.concatenate([_pairs(rng, half, M_MU), _pairs(rng, n - half, 0.33)])
    pids = np.array([[13, -13]] * half + [[2, -2]] * (n - half), np.int32)
    cols = np.zeros((n, 2, 2), np.int32)
    cols[half:, 0, 0] = rng.integers(1, 9, n - half)
    cols[half:, 1, 1] = cols[half:, 0, 0]
    for i in range(n):
        slots = [1, 3] if i % 5 == 0 else [0, 1]
        p4[i, slots], pid[i, slots], mask[i, slots], colour[i, slots] = pair[i], pids[i], True, cols[i]
    # a few three-body events so multiplicities differ
    p4[2::7, 2] = [0.0, 0.0, 0.0, 0.0]
    pid[2::7, 2], mask[2::7, 2] = 22, True
    p4_in = np.zeros((n, 2, 4))
    p4_in[:, 0] = [SQRT_S / 2, 0, 0, SQRT_S / 2]
    p4_in[:, 1] = [SQRT_S / 2, 0, 0, -SQRT_S / 2]
    status = np.zeros(n, np.uint32)
    status[::17] = int(Status.FAILED_KINEMATICS)
    status[5] |= int(Status.NONFINITE)
    return Events(
        p4=p4.astype(dtype), pid=pid, mask=mask, colour=colour,
        log_weight=(np.log(SIGMA_PB) + 0.3 * rng.standard_normal(n)).astype(dtype), status=status,
        p4_in=p4_in.astype(dtype), pid_in=np.tile(np.array([[11, -11]], np.int32), (n, 1)),
    )


def _compact(events):
    """Host arrays with occupied slots moved to the front, capacity = max multiplicity."""
    a = npz.host_arrays(events)
    n, counts = a["mask"].shape[0], a["mask"].sum(1)
    cap = int(counts.max()) if n else 0
    out = {k: a[k] for k in ("log_weight", "status", "p4_in", "pid_in")}
    for k, tail in (("p4", (4,)), ("pid", ()), ("colour", (2,)), ("mask", ())):
        dense = np.zeros((n, cap) + tail, a[k].dtype)
        for i in range(n):
            dense[i, : counts[i]] = a[k][i][a["mask"][i]]
        out[k] = dense
    return out


def _assert_exact(got: Events, want: dict):
    for k, v in want.items():
        g = np.asarray(getattr(got, k))
        assert g.dtype == v.dtype, k
        np.testing.assert_array_equal(g, v, err_msg=k)


META = {"sqrt_s": SQRT_S, "process": "ee>mumu,uu~", "seed": 7, "weighted": True, "note": None,
        "beams": (11, -11), "np_scalar": np.float32(0.5)}
META_BACK = dict(META, beams=[11, -11], np_scalar=0.5)


@pytest.fixture(scope="module")
def sample():
    return _sample()


# ----------------------------------------------------------------------------- npz and Parquet


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_npz_round_trip_exact(tmp_path, dtype):
    ev = _sample(dtype=dtype)
    path = tmp_path / "ev.npz"
    write_npz(path, ev, **META)
    got, meta = read_npz(path)
    _assert_exact(got, npz.host_arrays(ev))
    assert meta == META_BACK


def test_npz_accepts_jax_arrays(tmp_path, sample):
    ev = Events(**{k: jnp.asarray(getattr(sample, k)) for k in npz.FIELDS})
    write_npz(tmp_path / "ev.npz", ev)
    got, meta = read_npz(tmp_path / "ev.npz")
    _assert_exact(got, npz.host_arrays(ev))
    assert meta == {}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parquet_round_trip_exact(tmp_path, dtype):
    ev = _sample(dtype=dtype)
    path = tmp_path / "ev.parquet"
    write_parquet(path, ev, **META)
    got, meta = read_parquet(path)
    want = _compact(ev)
    assert got.capacity == 3  # max multiplicity, not the original capacity 4
    _assert_exact(got, want)
    assert meta == META_BACK
    assert np.allclose(np.asarray(got.total_p4()), np.asarray(ev.total_p4()), rtol=0, atol=1e-5)


def test_parquet_schema_one_row_per_event(tmp_path, sample):
    import pyarrow.parquet as pq

    write_parquet(tmp_path / "ev.parquet", sample)
    table = pq.read_table(tmp_path / "ev.parquet")
    assert table.num_rows == sample.n_events
    assert {"px", "py", "pz", "E", "pid", "colour", "anticolour", "weight", "log_weight", "status",
            "incoming"} <= set(table.column_names)
    lengths = [len(x) for x in table.column("pid").to_pylist()]
    assert lengths == list(np.asarray(sample.mask).sum(1))
    np.testing.assert_allclose(table.column("weight").to_numpy(), np.exp(sample.log_weight), rtol=1e-12)
    assert table.column("incoming").to_pylist()[0][1]["pid"] == -11


def test_empty_batch_round_trips(tmp_path):
    ev = Events.empty(0, 3)
    for suffix in (".npz", ".parquet"):
        write_events(tmp_path / f"e{suffix}", ev)
        got, _ = read_events(tmp_path / f"e{suffix}")
        assert got.n_events == 0


# ----------------------------------------------------------------------------- LHE


def test_lhe_round_trip_with_pylhe(tmp_path, sample):
    path = tmp_path / "ev.lhe"
    skipped = write_lhe(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, alpha_em=1 / 128.0)
    good = np.asarray(sample.status) == 0
    assert skipped == int(np.count_nonzero(~good)) > 0

    lhef = pylhe.LHEFile.fromfile(str(path))
    assert lhef.version == "3.0"
    assert f'<generator name="diffgen" version="{diffgen.__version__}">' in path.read_text()
    init = lhef.init
    assert init.procInfo[0].xSection == SIGMA_PB and init.procInfo[0].error == ERROR_PB
    assert init.initInfo.weightingStrategy == -4 and init.initInfo.numProcesses == 1
    assert (init.initInfo.beamA, init.initInfo.beamB) == (11, -11)
    assert init.initInfo.energyA == pytest.approx(SQRT_S / 2, rel=1e-10)
    events = list(lhef.events)
    assert len(events) == good.sum()

    a = _compact(sample[good])
    for i, event in enumerate(events):
        parts = event.particles
        assert [p.status for p in parts[:2]] == [-1, -1] and all(p.status == 1 for p in parts[2:])
        assert all((p.mother1, p.mother2) == (1, 2) for p in parts[2:])
        assert event.eventinfo.weight == pytest.approx(np.exp(a["log_weight"][i]), rel=1e-9)
        assert event.eventinfo.scale == pytest.approx(SQRT_S, rel=1e-9)
        assert event.eventinfo.aqed == pytest.approx(1 / 128.0)
        out = parts[2:]
        n_out = int(a["mask"][i].sum())
        assert len(out) == n_out
        np.testing.assert_allclose([[p.e, p.px, p.py, p.pz] for p in out], a["p4"][i, :n_out], rtol=1e-6,
                                   atol=1e-9)
        assert [p.id for p in out] == list(a["pid"][i, :n_out])
        want_col = np.where(a["colour"][i, :n_out] > 0, a["colour"][i, :n_out] + 500, 0)
        assert [[p.color1, p.color2] for p in out] == want_col.tolist()
        want_m = {13: M_MU, -13: M_MU, 2: 0.33, -2: 0.33, 22: 0.0}
        for p in out:
            assert p.m == pytest.approx(want_m[p.id], rel=1e-6, abs=1e-6)


def test_read_lhe_into_events(tmp_path, sample):
    path = tmp_path / "ev.lhe"
    write_lhe(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, weighted=False, process_id=7)
    got = read_lhe(path)
    want = _compact(sample[np.asarray(sample.status) == 0])
    np.testing.assert_array_equal(got.pid, want["pid"])
    np.testing.assert_array_equal(got.mask, want["mask"])
    np.testing.assert_array_equal(got.colour, want["colour"])
    np.testing.assert_array_equal(got.pid_in, want["pid_in"])
    np.testing.assert_allclose(got.p4, want["p4"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.p4_in, want["p4_in"], rtol=1e-6)
    np.testing.assert_allclose(got.log_weight, want["log_weight"], rtol=0, atol=1e-9)
    assert not np.any(got.status)
    init = read_lhe_init(path)
    assert init["sigma_pb"] == SIGMA_PB and init["error_pb"] == ERROR_PB
    assert init["idwtup"] == 3 and init["weighted"] is False and init["process_id"] == 7
    assert init["max_weight_pb"] == pytest.approx(np.exp(want["log_weight"]).max(), rel=1e-9)


def test_lhe_gz_via_dispatch_keeps_metadata(tmp_path, sample):
    path = tmp_path / "ev.lhe.gz"
    skipped = write_events(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, beam_energies=(50.0, 50.0),
                           run="a<b & c")
    assert skipped == int(np.count_nonzero(np.asarray(sample.status)))
    with gzip.open(path, "rt") as f:
        assert f.readline().startswith("<LesHouchesEvents")
    got, meta = read_events(path)
    assert got.n_events == sample.n_events - skipped
    assert meta["run"] == "a<b & c" and meta["sigma_pb"] == SIGMA_PB and meta["beam_energies"] == [50.0, 50.0]


# ----------------------------------------------------------------------------- masses in LHE and HepMC3

#: a hadronic final state in float32, as diffgen's stages leave it: hadrons, a photon, a gluon, a code the
#: particle table does not know (Pythia's 9900441, a c c̄ octet state), a hole in the mask (slot 3)
MASS_PIDS = np.array([[211, -211, 111, 0, 321, 2212, -3122, 22, 21, 9900441]], np.int32)


def _float32_hadrons():
    """One event of MASS_PIDS with 20–45 GeV momenta in float32: E from the table mass in float64, then rounded."""
    from diffgen import particles

    rng = np.random.default_rng(3)
    n = MASS_PIDS.shape[1]
    direction = rng.normal(size=(n, 3))
    p3 = direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.uniform(20, 45, (n, 1))
    m = np.asarray(particles.host_mass(MASS_PIDS[0])[0])
    m[MASS_PIDS[0] == 21] = 0.7  # an off-shell gluon: its mass is its momentum's
    m[MASS_PIDS[0] == 9900441] = 3.2
    p4 = np.concatenate([np.sqrt(m**2 + (p3**2).sum(1))[:, None], p3], axis=1)
    mask = MASS_PIDS != 0
    ev = Events.empty(1, n, np.float32).replace(
        p4=np.where(mask[..., None], p4[None], 0).astype(np.float32), pid=MASS_PIDS, mask=mask,
        log_weight=np.zeros(1, np.float32), status=np.zeros(1, np.uint32), colour=np.zeros((1, n, 2), np.int32),
        p4_in=np.array([[[SQRT_S / 2, 0, 0, SQRT_S / 2], [SQRT_S / 2, 0, 0, -SQRT_S / 2]]], np.float32),
        pid_in=np.array([[11, -11]], np.int32))
    want = {211: 0.13957039, -211: 0.13957039, 111: 0.1349768, 321: 0.493677, 2212: 0.93827209,
            -3122: 1.115683, 22: 0.0, 11: 0.000510999, -11: 0.000510999}
    return ev, want


def test_file_masses_come_from_the_pdg_table(tmp_path):
    """Hadrons, photons and the beams carry the table's mass in HepMC3 (read back by pyhepmc) and LHE (by
    pylhe), not the float32 momentum's; gluons and unknown codes carry their momentum's mass."""
    ev, want = _float32_hadrons()
    p4 = np.asarray(ev.p4, np.float64)[0]
    from_momentum = dict(zip(MASS_PIDS[0].tolist(), generated_mass(p4)))
    # the problem: float32 momenta of 20-45 GeV pions give a mass off by far more than 1e-9
    assert abs(from_momentum[211] - 0.13957039) > 1e-5
    write_hepmc(tmp_path / "m.hepmc3", ev)
    write_lhe(tmp_path / "m.lhe", ev, sigma_pb=1.0, error_pb=0.0)
    with pyhepmc.open(tmp_path / "m.hepmc3") as f:
        (hep,) = list(f)
    (lh,) = list(pylhe.LHEFile.fromfile(str(tmp_path / "m.lhe")).events)
    got_hepmc = [(p.pid, p.generated_mass) for p in hep.particles]
    got_lhe = [(int(p.id), p.m) for p in lh.particles]
    assert [pid for pid, _ in got_hepmc] == [pid for pid, _ in got_lhe] == [11, -11, 211, -211, 111, 321, 2212,
                                                                          -3122, 22, 21, 9900441]
    for got, tol in ((got_hepmc, 1e-12), (got_lhe, 1e-9)):  # LHE writes 11 significant digits
        for pid, m in got:
            expected = want.get(pid, from_momentum.get(pid))
            assert m == pytest.approx(expected, rel=tol, abs=tol), (pid, m, expected)
    assert dict(got_hepmc)[21] == pytest.approx(0.7, rel=1e-3) and dict(got_hepmc)[9900441] == pytest.approx(3.2, 1e-4)


def test_file_mass_rules():
    pid = np.array([211, 22, 13, 2, -5, 21, 2101, 3122, 23, 0, 9900441])
    assert has_fixed_mass(pid).tolist() == [True, True, True, False, False, False, False, True, True, False,
                                            False]
    p4 = np.zeros((len(pid), 4))
    p4[:, 0] = 2.0  # at rest: the momentum's mass is 2 GeV
    m = file_mass(p4, pid)
    assert m[0] == 0.13957039 and m[1] == 0.0 and m[2] == 0.1056584 and m[7] == 1.115683
    assert np.all(m[[3, 4, 5, 6, 9, 10]] == 2.0)


# ----------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".lhe", ".hepmc3"])
def test_dispatch_by_suffix(tmp_path, sample, suffix):
    path = tmp_path / f"ev{suffix}"
    write_events(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, tag="x")
    got, meta = read_events(path)
    assert meta["tag"] == "x" and meta["sigma_pb"] == SIGMA_PB
    readers = {".npz": read_npz, ".parquet": read_parquet, ".lhe": lambda p: (read_lhe(p), None),
               ".hepmc3": read_hepmc}
    np.testing.assert_array_equal(readers[suffix](path)[0].pid, got.pid)


def test_unknown_suffix(tmp_path, sample):
    with pytest.raises(ValueError, match=r"\.npz, \.parquet, \.lhe, \.lhe\.gz, \.hepmc3, \.hepmc"):
        write_events(tmp_path / "ev.root", sample)
    with pytest.raises(ValueError, match="allowed"):
        read_events(tmp_path / "ev.csv")
    assert SUFFIXES == (".npz", ".parquet", ".lhe", ".lhe.gz", ".hepmc3", ".hepmc", ".hepmc3.gz", ".hepmc.gz")
    assert os.listdir(tmp_path) == []


def test_lhe_needs_cross_section(tmp_path, sample):
    with pytest.raises(ValueError, match="sigma_pb"):
        write_events(tmp_path / "ev.lhe", sample)
    with pytest.raises(ValueError, match="sigma_pb"):
        write_lhe(tmp_path / "ev.lhe", sample, sigma_pb=float("nan"), error_pb=1.0)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- failures


def _writers():
    return [
        lambda p, ev: write_npz(p, ev),
        lambda p, ev: write_parquet(p, ev),
        lambda p, ev: write_lhe(p, ev, sigma_pb=1.0, error_pb=0.1),
        lambda p, ev: write_hepmc(p, ev, sigma_pb=1.0, error_pb=0.1),
    ]


def test_check_writable(tmp_path):
    check_writable(tmp_path / "ok.npz")
    (tmp_path / "exists.npz").write_bytes(b"old")
    check_writable(tmp_path / "exists.npz")  # replacing is fine
    with pytest.raises(ValueError, match="does not exist") as err:
        check_writable(tmp_path / "missing" / "ev.npz")
    assert "missing" in str(err.value)
    with pytest.raises(ValueError, match="is a directory"):
        check_writable(tmp_path)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        check_writable(tmp_path / "afile" / "ev.npz")
    with pytest.raises(ValueError, match="not a directory"):
        check_writable(tmp_path / "afile" / "sub" / "ev.npz")
    with pytest.raises(ValueError, match="empty"):
        check_writable("")
    assert sorted(os.listdir(tmp_path)) == ["afile", "exists.npz"]  # no probe left behind


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_check_writable_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ValueError, match="permission"):
            check_writable(ro / "ev.npz")
    finally:
        ro.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("which", range(4))
def test_writers_reject_unwritable_paths(tmp_path, sample, which):
    write = _writers()[which]
    (tmp_path / "afile").write_text("")
    for bad in (tmp_path / "missing" / "ev.x", tmp_path / "afile" / "ev.x", tmp_path):
        with pytest.raises(ValueError, match="cannot write"):
            write(bad, sample)
    assert os.listdir(tmp_path) == ["afile"]


def test_malformed_npz(tmp_path, sample):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        read_npz(bad)
    arrays = npz.host_arrays(sample)
    del arrays["colour"]
    np.savez(tmp_path / "nocolour.npz", **arrays, metadata=np.array("{}"))
    with pytest.raises(ValueError, match=r"nocolour\.npz.*'colour'"):
        read_npz(tmp_path / "nocolour.npz")
    arrays = npz.host_arrays(sample)
    arrays["pid"] = arrays["pid"][:, :2]
    np.savez(tmp_path / "shape.npz", **arrays, metadata=np.array("{}"))
    with pytest.raises(ValueError, match="'pid' has shape"):
        read_npz(tmp_path / "shape.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(ValueError, match="single.npz"):
        read_npz(tmp_path / "single.npz")
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "absent.npz")


def test_malformed_parquet(tmp_path, sample):
    import pyarrow.parquet as pq

    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(ValueError, match="garbage.parquet"):
        read_parquet(tmp_path / "garbage.parquet")
    table = parquet.to_table(sample).drop_columns(["anticolour"])
    pq.write_table(table, tmp_path / "nocol.parquet")
    with pytest.raises(ValueError, match="'anticolour'"):
        read_parquet(tmp_path / "nocol.parquet")


@pytest.mark.parametrize("cut", [0.5, 0.999, 0.05])
def test_truncated_lhe(tmp_path, sample, cut):
    path = tmp_path / "ev.lhe"
    write_lhe(path, sample, sigma_pb=1.0, error_pb=0.1)
    text = path.read_bytes()
    bad = tmp_path / "cut.lhe"
    bad.write_bytes(text[: int(len(text) * cut)])
    with pytest.raises(ValueError, match="cut.lhe"):
        read_lhe(bad)
    with pytest.raises(ValueError, match="cut.lhe"):
        read_events(bad)


def test_malformed_lhe(tmp_path):
    (tmp_path / "junk.lhe").write_text("not xml at all")
    with pytest.raises(ValueError, match="junk.lhe"):
        read_lhe(tmp_path / "junk.lhe")
    (tmp_path / "noinit.lhe").write_text('<LesHouchesEvents version="3.0">\n</LesHouchesEvents>\n')
    with pytest.raises(ValueError, match="noinit.lhe"):
        read_lhe_init(tmp_path / "noinit.lhe")


# ----------------------------------------------------------------------------- atomicity


def test_atomic_write_success_and_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with atomic_write(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass


def _boom(*args, **kwargs):
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".lhe", ".lhe.gz", ".hepmc3", ".hepmc3.gz"])
def test_writer_failure_midway_leaves_nothing(tmp_path, sample, monkeypatch, suffix):
    path = tmp_path / f"ev{suffix}"
    if suffix == ".npz":
        def half(f, **arrays):  # write some bytes, then fail
            f.write(b"PK\x03\x04 partial")
            _boom()
        monkeypatch.setattr(npz.np, "savez_compressed", half)
    elif suffix == ".parquet":
        real = parquet.pq.write_table

        def half(table, f):
            real(table.slice(0, 10), f)
            _boom()
        monkeypatch.setattr(parquet.pq, "write_table", half)
    elif ".hepmc" in suffix:
        calls = []
        real_event = pyhepmc.GenEvent

        def event(*args):  # fail after 50 events were written
            calls.append(1)
            if len(calls) > 50:
                _boom()
            return real_event(*args)
        monkeypatch.setattr(pyhepmc, "GenEvent", event)
    else:
        calls = []
        real_line = lhe._particle_line

        def line(*args):  # fail after ~50 events were written
            calls.append(1)
            if len(calls) > 200:
                _boom()
            return real_line(*args)
        monkeypatch.setattr(lhe, "_particle_line", line)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_events(path, sample, sigma_pb=1.0, error_pb=0.1)
    assert os.listdir(tmp_path) == []
    # an existing file survives a failed overwrite
    path.write_bytes(b"previous run")
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_events(path, sample, sigma_pb=1.0, error_pb=0.1)
    assert path.read_bytes() == b"previous run" and os.listdir(tmp_path) == [path.name]


def test_npz_is_a_plain_zip(tmp_path, sample):
    write_npz(tmp_path / "ev.npz", sample)
    with zipfile.ZipFile(tmp_path / "ev.npz") as z:
        assert {f"{k}.npy" for k in npz.FIELDS} | {"metadata.npy", "format.npy"} == set(z.namelist())


def test_bad_metadata_rejected_before_writing(tmp_path, sample):
    with pytest.raises(ValueError, match="'obj'"):
        write_npz(tmp_path / "ev.npz", sample, obj=object())
    with pytest.raises(ValueError, match="'arr'"):
        write_parquet(tmp_path / "ev.parquet", sample, arr=np.zeros(3))
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- HepMC3


def test_hepmc_round_trip_with_pyhepmc(tmp_path, sample):
    path = tmp_path / "ev.hepmc3"
    skipped = write_hepmc(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, **META)
    good = np.asarray(sample.status) == 0
    assert skipped == int(np.count_nonzero(~good)) > 0
    a = _compact(sample[good])
    with pyhepmc.open(path) as f:
        events = list(f)
    assert len(events) == good.sum()
    for i, ev in enumerate(events):
        assert ev.momentum_unit == pyhepmc.Units.GEV and ev.length_unit == pyhepmc.Units.MM
        assert [(b.pid, b.status) for b in ev.beams] == [(11, 4), (-11, 4)]
        np.testing.assert_allclose([[b.momentum.e, b.momentum.pz] for b in ev.beams],
                                   [[SQRT_S / 2, SQRT_S / 2], [SQRT_S / 2, -SQRT_S / 2]], rtol=1e-15)
        out = [p for p in ev.particles if p.status == 1]
        n_out = int(a["mask"][i].sum())
        assert len(out) == n_out == len(ev.particles) - 2
        assert [p.pid for p in out] == list(a["pid"][i, :n_out])
        # full double precision: exact for float64 input
        np.testing.assert_array_equal([[p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz] for p in out],
                                      a["p4"][i, :n_out])
        for p in out:  # one vertex: every final-state particle comes from the two beams
            assert sorted(q.pid for q in p.parents) == [-11, 11]
        want_m = {13: M_MU, -13: M_MU, 2: 0.33, -2: 0.33, 22: 0.0}
        assert [p.generated_mass for p in out] == pytest.approx([want_m[p.pid] for p in out], rel=1e-9, abs=1e-9)
        assert ev.weights == pytest.approx([np.exp(a["log_weight"][i])], rel=1e-15)
        assert (ev.cross_section.xsec(), ev.cross_section.xsec_err()) == (SIGMA_PB, ERROR_PB)
        assert [(t.name, t.version) for t in ev.run_info.tools] == [("diffgen", diffgen.__version__)]
        assert list(ev.run_info.weight_names) == ["Default"]


def test_read_hepmc_into_events(tmp_path, sample):
    path = tmp_path / "ev.hepmc3"
    write_hepmc(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, **META)
    got, meta = read_hepmc(path)
    want = _compact(sample[np.asarray(sample.status) == 0])
    for k in ("pid", "mask", "pid_in"):
        np.testing.assert_array_equal(getattr(got, k), want[k], err_msg=k)
    np.testing.assert_array_equal(got.p4, want["p4"])
    np.testing.assert_array_equal(got.p4_in, want["p4_in"])
    np.testing.assert_allclose(got.log_weight, want["log_weight"], rtol=0, atol=1e-13)
    assert not np.any(got.status) and not np.any(got.colour)  # HepMC final states carry no colour here
    assert meta == dict(META_BACK, sigma_pb=SIGMA_PB, error_pb=ERROR_PB)
    with pytest.raises(ValueError, match="more than capacity=2"):
        read_hepmc(path, capacity=2)
    assert read_hepmc(path, capacity=6)[0].p4.shape[1] == 6
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"capacity must be None or an integer >= 1 \(particle slots per event\)"):
            read_hepmc(path, capacity=bad)


def test_hepmc_gz_via_dispatch_and_as_fit_target(tmp_path, sample):
    from diffgen.fit import targets

    path = tmp_path / "ev.hepmc3.gz"
    skipped = write_events(path, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, run="a<b & c")
    assert skipped == int(np.count_nonzero(np.asarray(sample.status)))
    with gzip.open(path, "rt") as f:
        assert f.readline().startswith("HepMC::Version")
    got, meta = read_events(path)
    assert got.n_events == sample.n_events - skipped and meta["run"] == "a<b & c"
    # without a cross-section the file still works; the target built from the file equals the one built
    # from the same events in memory
    write_events(tmp_path / "plain.hepmc", sample)
    assert "sigma_pb" not in read_events(tmp_path / "plain.hepmc")[1]
    good = sample[np.asarray(sample.status) == 0]
    obs = [("n", lambda ev: jnp.sum(ev.mask, axis=-1).astype(float), np.array([0.5, 1.5, 2.5, 3.5]))]
    from_file = targets.from_events(str(path), obs)[0]
    from_memory = targets.from_events(good, obs)[0]
    np.testing.assert_allclose(from_file.contents, from_memory.contents, rtol=1e-12)
    np.testing.assert_allclose(from_file.errors, from_memory.errors, rtol=1e-12)


def test_malformed_hepmc(tmp_path, sample):
    bad = tmp_path / "bad.hepmc3"
    bad.write_text("garbage\n1 2 3\n")
    with pytest.raises(ValueError, match="not a HepMC ASCII file"):
        read_events(bad)
    empty = tmp_path / "empty.hepmc3"
    all_bad = sample.replace(status=np.ones_like(np.asarray(sample.status)))
    assert write_events(empty, all_bad) == sample.n_events
    with pytest.raises(ValueError, match="empty.hepmc3"):
        read_events(empty)
    with pytest.raises(FileNotFoundError):
        read_hepmc(tmp_path / "missing.hepmc3")
    with pytest.raises(ValueError, match="sigma_pb must be finite"):
        write_hepmc(tmp_path / "x.hepmc3", sample, sigma_pb=float("nan"))
    with pytest.raises(ValueError, match="error_pb given without sigma_pb"):
        write_hepmc(tmp_path / "x.hepmc3", sample, error_pb=1.0)
    with pytest.raises(ValueError, match="'obj'"):
        write_hepmc(tmp_path / "x.hepmc3", sample, obj=object())
    assert sorted(os.listdir(tmp_path)) == ["bad.hepmc3", "empty.hepmc3"]


# ----------------------------------------------------------------------------- streaming output


@pytest.mark.parametrize("suffix", [".lhe", ".lhe.gz", ".hepmc3", ".hepmc3.gz", ".npz", ".parquet"])
def test_event_writer_chunks_equal_one_shot(tmp_path, sample, suffix):
    whole = tmp_path / f"whole{suffix}"
    streamed = tmp_path / f"streamed{suffix}"
    meta = {"process": "test", "seed": 3}
    skipped = write_events(whole, sample, sigma_pb=SIGMA_PB, error_pb=ERROR_PB, **meta)
    with EventWriter(streamed, **meta) as out:
        total = 0
        for lo, hi in ((0, 1), (1, 77), (77, 77), (77, sample.n_events)):  # uneven, with an empty chunk
            total += out.write(sample[lo:hi], sigma_pb=SIGMA_PB, error_pb=ERROR_PB)
        assert out.close(sigma_pb=SIGMA_PB, error_pb=ERROR_PB) == total == skipped
    assert sorted(os.listdir(tmp_path)) == sorted([whole.name, streamed.name])  # no temporaries left
    if suffix in (".npz", ".parquet"):  # containers with timestamps: compare the content
        (a, ma), (b, mb) = read_events(whole), read_events(streamed)
        assert ma == mb
        for k in npz.FIELDS:
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    elif suffix.endswith(".gz"):  # the gzip header names the inner file, which differs
        assert gzip.decompress(whole.read_bytes()) == gzip.decompress(streamed.read_bytes())
    else:
        assert whole.read_bytes() == streamed.read_bytes()


@pytest.mark.parametrize("suffix", [".lhe", ".hepmc3.gz", ".npz"])
def test_event_writer_leaves_nothing_on_failure(tmp_path, sample, suffix):
    path = tmp_path / f"ev{suffix}"
    with pytest.raises(RuntimeError, match="disk on fire"):
        with EventWriter(path) as out:
            out.write(sample[:50], sigma_pb=1.0, error_pb=0.1)
            _boom()
    assert os.listdir(tmp_path) == []
    with EventWriter(path) as out:  # leaving the block without close() writes nothing either
        out.write(sample[:50])
    assert os.listdir(tmp_path) == []
    path.write_bytes(b"previous run")  # an existing file survives a failed overwrite
    with pytest.raises(RuntimeError, match="disk on fire"):
        with EventWriter(path) as out:
            out.write(sample, sigma_pb=1.0, error_pb=0.1)
            _boom()
    assert path.read_bytes() == b"previous run" and os.listdir(tmp_path) == [path.name]


def test_event_writer_bad_use(tmp_path, sample):
    with pytest.raises(ValueError, match="needs sigma_pb and error_pb"):
        with EventWriter(tmp_path / "ev.lhe") as out:
            out.write(sample)
            out.close()
    with pytest.raises(ValueError, match="pass sigma_pb to close"):
        EventWriter(tmp_path / "ev.npz", sigma_pb=1.0)
    with pytest.raises(ValueError, match="unknown event-file suffix"):
        EventWriter(tmp_path / "ev.root")
    with pytest.raises(ValueError, match="cannot write"):
        EventWriter(tmp_path / "missing" / "ev.lhe")
    with pytest.raises(ValueError, match="'obj'"):
        EventWriter(tmp_path / "ev.hepmc3", obj=object())
    assert os.listdir(tmp_path) == []
    out = EventWriter(tmp_path / "ev.npz")
    out.write(sample)
    out.close()
    with pytest.raises(ValueError, match="is closed"):
        out.write(sample)
    assert os.listdir(tmp_path) == ["ev.npz"]
