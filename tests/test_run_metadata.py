"""Event files say how they were made (issue 18, item 2): √s, every setting, version, seed — in all four formats."""

import gzip

import jax
import numpy as np
import pytest

import diffgen
from diffgen.cli import main
from diffgen.io import read_events, read_lhe_init


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("meta")
    paths = {s: d / f"ev{s}" for s in (".npz", ".parquet", ".lhe", ".hepmc3.gz")}
    for p in paths.values():
        assert main(["generate", "--events", "300", "--seed", "17", "--offset", "1000", "--sqrt-s", "90.5",
                     "--set", "23:mWidth = 2.6", "--quiet", "--out", str(p)]) == 0
    return paths


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".lhe", ".hepmc3.gz"])
def test_metadata_in_every_format(files, suffix):
    _, meta = read_events(files[suffix])
    assert meta["generator"] == "diffgen" and meta["diffgen_version"] == diffgen.__version__
    assert meta["process"] == "ee-mumu" and meta["sqrt_s"] == 90.5
    assert meta["seed"] == 17 and meta["event_offset"] == 1000 and meta["n_generated"] == 300
    every = set(diffgen.settings(diffgen.presets.ee_mumu().default_params()))
    assert set(meta["settings"]) == every
    assert meta["settings"]["23:mWidth"] == pytest.approx(2.6) and meta["settings"]["Beams:eCM"] == 90.5
    assert meta["switches"] == {"PartonLevel:FSR": "off", "HadronLevel:all": "off",
                                "HadronLevel:Hadronize": "off", "HadronLevel:Decay": "off"}
    assert meta["unweighted"] is False and meta["overweight_cap"] is None and meta["record"] == "final"


@pytest.mark.parametrize("suffix", [".npz", ".lhe", ".hepmc3"])
def test_metadata_records_unweighting_and_the_overweight_cap(tmp_path, suffix):
    path = tmp_path / f"u{suffix}"
    assert main(["generate", "--events", "300", "--seed", "3", "--unweighted", "--overweight-cap", "0.01",
                 "--quiet", "--out", str(path)]) == 0
    _, meta = read_events(path)
    assert meta["unweighted"] is True and meta["overweight_cap"] == 0.01 and meta["record"] == "final"
    if suffix == ".hepmc3":
        head = path.read_text().split("E 0", 1)[0]
        assert "A unweighted true" in head and "A overweight_cap 0.01" in head and "A record final" in head


def test_cli_run_metadata_records_the_full_record_option():
    import argparse

    from diffgen.cli import run_metadata

    _, params = diffgen.presets.configure("ee-hadrons")
    args = argparse.Namespace(process="ee-hadrons", seed=1, offset=0, events=10, unweighted=False,
                              overweight_cap=None, record="full")
    meta = run_metadata(args, params)
    assert meta["record"] == "full" and meta["switches"]["HadronLevel:Decay"] == "on"


def test_lhe_and_hepmc3_headers_carry_version_and_run_attributes(files):
    lhe_head = files[".lhe"].read_text().split("<event>", 1)[0]
    assert f'<generator name="diffgen" version="{diffgen.__version__}">' in lhe_head
    assert "<header>" in lhe_head and '"seed": 17' in lhe_head and '"sqrt_s": 90.5' in lhe_head
    assert read_lhe_init(files[".lhe"])["sigma_pb"] > 0
    head = gzip.open(files[".hepmc3.gz"], "rt").read(20000).split("E 0", 1)[0]
    for line in ("A sqrt_s 90.5", "A seed 17", "A process ee-mumu", f"A diffgen_version {diffgen.__version__}",
                 "A settings.23:mWidth 2.6", "A switches.PartonLevel:FSR off", "A event_offset 1000"):
        assert line in head, line
    assert f"T diffgen\\|{diffgen.__version__}\\|" in head  # the HepMC3 tool record


def test_npz_file_regenerates_from_its_metadata(files):
    events, meta = read_events(files[".npz"])
    settings = {**meta["settings"], **meta["switches"]}
    gen, params = diffgen.presets.configure(meta["process"], settings)
    again = diffgen.generate(gen, params, jax.random.key(meta["seed"]), meta["n_generated"],
                             offset=meta["event_offset"], progress=False)
    for field in ("p4", "pid", "log_weight", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(again, field)), np.asarray(getattr(events, field)))
