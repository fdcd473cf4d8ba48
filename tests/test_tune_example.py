"""The documented tune file (docs/tuning.md) is examples/tune/tune.toml and runs as written on its
shipped pseudo-data (made by examples/make_tune_data.py)."""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from diffgen.cli import main
from diffgen.fit import tune_file
from diffgen.io import read_events
from diffgen.io.yoda import read_histogram

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tune" / "tune.toml"


def _documented_toml(doc: Path) -> str:
    blocks = re.findall(r"```toml\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, f"{doc} should show exactly one tune file"
    return blocks[0]


@pytest.mark.parametrize("doc", ["tuning.md", "from_pythia.md"])
def test_the_documented_tune_file_is_the_shipped_example(doc):
    assert _documented_toml(ROOT / "docs" / doc) == EXAMPLE.read_text(encoding="utf-8")


def test_the_example_validates_with_its_pseudo_data(tmp_path):
    cfg = tune_file.load(EXAMPLE, out_dir=tmp_path / "out")  # reads and checks every data file
    assert [t.name for t in cfg.targets] == ["thrust", "n_charged", "n_kaons"]
    assert cfg.free == ("StringZ:aLund", "StringZ:bLund", "StringFlav:probStoUD") or list(cfg.free) == [
        "StringZ:aLund", "StringZ:bLund", "StringFlav:probStoUD"]
    text = (EXAMPLE.parent / "data" / "thrust.yoda").read_text()
    assert text.startswith("# PSEUDO-DATA, not a measurement")
    h = read_histogram(EXAMPLE.parent / "data" / "thrust.yoda")
    np.testing.assert_allclose(h.edges, np.linspace(0.7, 1.0, 16))
    events, meta = read_events(EXAMPLE.parent / "data" / "reference_91.npz")
    assert meta["pseudo_data"] is True and meta["truth"]["StringZ:aLund"] == 0.8 and events.n_events == 2000


@pytest.mark.slow
def test_the_shipped_pseudo_data_are_what_the_script_makes(tmp_path):
    """examples/make_tune_data.py regenerates the shipped files (same seeds: the same events)."""
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_tune_data
    finally:
        sys.path.pop(0)
    yoda, npz = make_tune_data.make(str(tmp_path), 2000)
    shipped = read_histogram(EXAMPLE.parent / "data" / "thrust.yoda")
    again = read_histogram(yoda)
    np.testing.assert_allclose(again.contents, shipped.contents, rtol=1e-6)
    a, _ = read_events(npz)
    b, _ = read_events(EXAMPLE.parent / "data" / "reference_91.npz")
    np.testing.assert_array_equal(np.asarray(a.pid), np.asarray(b.pid))


@pytest.mark.slow
def test_the_documented_tune_runs_as_written(tmp_path, capsys):
    """`diffgen tune tune.toml` in a copy of examples/tune (100 steps of 2000 hadron events: 33 min, 2 cores)."""
    work = tmp_path / "tune"
    shutil.copytree(EXAMPLE.parent, work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(["tune", "tune.toml", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "wrote " in out and (work / "hadron-tune" / "report.md").is_file()
    assert tune_file.load(work / "tune.toml").out_dir.endswith("hadron-tune")  # still valid after its run
    cmnd = (work / "hadron-tune" / "tune.cmnd").read_text()
    rows = re.findall(r"^(\S+)\s*=\s*([-0-9.e+]+)\s*!\s*\+-\s*([0-9.e+-]+)", cmnd, flags=re.M)
    fitted = {name: (float(v), float(e)) for name, v, e in rows}
    assert set(fitted) == {"StringZ:aLund", "StringZ:bLund", "StringFlav:probStoUD"}
    # closure: the pseudo-data's truth (examples/make_tune_data.py) within 3 errors of each fitted value
    # (the errors include the 2000-event pseudo-data and the fit sample; measured 2026-12-06:
    # a = 0.758 +- 0.108, b = 0.860 +- 0.088, s/u = 0.258 +- 0.012 for 0.8, 0.9, 0.25)
    truth = {"StringZ:aLund": 0.8, "StringZ:bLund": 0.9, "StringFlav:probStoUD": 0.25}
    for name, (value, error) in fitted.items():
        assert 0 < error and abs(value - truth[name]) < 3 * error, (name, value, error)
