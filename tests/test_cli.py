"""The CLI end to end: σ, A_FB, text histogram, event files and plots."""

import os
import re

import numpy as np
import pytest

import diffgen
from diffgen.amplitudes import ee_ffbar
from diffgen.cli import main, parse_set, text_histogram
from diffgen.io import read_events


def _number(pattern, text):
    m = re.search(pattern, text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("suffix", [".lhe", ".npz", ".parquet", ".hepmc3"])
def test_generate_prints_sigma_afb_and_writes_file(tmp_path, capsys, suffix):
    out = tmp_path / f"ev{suffix}"
    rc = main(["generate", "--process", "ee-mumu", "--sqrt-s", "91.188", "--events", "20000", "--seed", "1",
               "--set", "23:m0=91.2", "--out", str(out), "--quiet", "--chunk", "7000", "--histograms"])
    assert rc == 0
    text = capsys.readouterr().out
    sigma, err = _number(r"sigma = ([0-9.e+-]+) \+- ([0-9.e+-]+) pb", text)
    afb, afb_err = _number(r"A_FB  = ([0-9.e+-]+) \+- ([0-9.e+-]+)", text)
    p = diffgen.with_settings(diffgen.presets.ee_mumu().default_params(), {"23:m0": 91.2})["hard"]
    assert abs(sigma - float(ee_ffbar.sigma_total(p, 13, 0.1056584))) < 3 * err
    assert abs(afb - float(ee_ffbar.afb(p, 13, 0.1056584))) < 3 * afb_err
    assert text.count("|#") >= 15  # --histograms: the full text histogram has its bars
    events, meta = read_events(str(out))
    assert events.p4.shape[0] == 20000
    np.testing.assert_allclose(np.asarray(events.p4)[:, :2].sum(axis=1)[:, 0], 91.188, rtol=1e-5)


def test_generate_plot_and_settings_listing(tmp_path, capsys):
    png = tmp_path / "cos.png"
    assert main(["generate", "--events", "5000", "--quiet", "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["settings", "--process", "ee-qq"]) == 0
    listing = capsys.readouterr().out
    assert "SigmaProcess:alphaSvalue" in listing and "23:mWidth" in listing


def test_helpers():
    assert parse_set(["23:m0=91.2", "StandardModel:sin2thetaW = 0.23"]) == {
        "23:m0": 91.2, "StandardModel:sin2thetaW": 0.23}
    txt = text_histogram([1.0, 2.0], [0.1, 0.2], [0.0, 0.5, 1.0], width=10)
    assert txt.splitlines()[1].endswith("#" * 10)


def test_closed_stdout_pipe_stops_quietly_after_writing_the_file(tmp_path):
    """`diffgen generate ... | head`: the reader goes away; no traceback, the event file is complete."""
    import subprocess
    import sys

    out = tmp_path / "ev.hepmc3"
    proc = subprocess.Popen([sys.executable, "-m", "diffgen.cli", "generate", "--events", "3000", "--quiet",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    events, _ = read_events(str(out))
    assert events.p4.shape[0] == 3000


def test_compilation_cache_dir_from_env_and_flag(tmp_path):
    from diffgen.cli import cache_dir

    assert cache_dir(environ={"DIFFGEN_CACHE_DIR": str(tmp_path)}) == str(tmp_path)
    assert cache_dir(environ={"DIFFGEN_CACHE_DIR": ""}) is None
    assert cache_dir(True, environ={"DIFFGEN_CACHE_DIR": str(tmp_path)}) is None
    assert cache_dir(environ={"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "diffgen" / "jax")
    assert cache_dir(environ={}).endswith(os.path.join(".cache", "diffgen", "jax"))


def test_generate_fills_the_persistent_compilation_cache(tmp_path):
    """Two runs in fresh interpreters with DIFFGEN_CACHE_DIR: compiled programs land in that directory."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    # every compilation is cached (the CLI's default keeps only those over 1 s, too few on a small run)
    env = dict(os.environ, DIFFGEN_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cmd = [sys.executable, "-m", "diffgen.cli", "generate", "--events", "2000", "--quiet"]
    counts = []
    for _ in range(2):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        assert "sigma = " in out.stdout
        counts.append(sum(1 for p in cache.rglob("*") if p.is_file()))
    assert counts[0] > 0, "no cache entries written"
    assert counts[1] >= counts[0]
    # --no-cache leaves a new directory alone
    other = tmp_path / "other"
    out = subprocess.run(cmd + ["--no-cache"], capture_output=True, text=True, timeout=300,
                         env=dict(env, DIFFGEN_CACHE_DIR=str(other)))
    assert out.returncode == 0, out.stderr
    assert not other.exists()
