"""Merging job-array task files (``diffgen merge``): two tasks generated with offsets 0 and n/2 merge
into the file of one run of n events; incompatible inputs are refused."""

from __future__ import annotations

import argparse

import jax
import numpy as np
import pytest

import diffgen
from diffgen.io import read_events, write_events
from diffgen.io.merge import add_merge_subcommand, cmd_merge, combine_cross_sections, merge_event_files

N = 400
SEED = 11


@pytest.fixture(scope="module")
def runs():
    """A one-run sample of N events and the two task samples (offsets 0 and N/2) of the same run."""
    gen = diffgen.presets.ee_mumu()
    params, key = gen.default_params(), jax.random.key(SEED)
    full = gen.sample(params, key, N)
    tasks = [(off, gen.sample(params, key, N // 2, offset=off)) for off in (0, N // 2)]
    return full, tasks


def _sigma(events):
    """σ ± std(w)/√N in pb, in float64 on the host as ``diffgen generate`` computes them."""
    w = np.where(np.asarray(events.status) == 0, np.exp(np.asarray(events.log_weight, np.float64)), 0.0)
    n, mean = w.size, w.mean()
    return float(mean), float(np.sqrt(max((w * w).mean() - mean**2, 0.0) / n))


def _write(path, events, offset, n, **extra):
    sigma, error = _sigma(events)
    write_events(path, events, process="ee-mumu", seed=SEED, sqrt_s=91.188, event_offset=offset,
                 n_generated=n, sigma_pb=sigma, error_pb=error, **extra)
    return sigma, error


@pytest.mark.parametrize("suffix", [".npz", ".lhe", ".lhe.gz"])
def test_two_tasks_merge_into_the_one_run_file(tmp_path, runs, suffix):
    full, tasks = runs
    one = tmp_path / f"one{suffix}"
    sigma, error = _write(one, full, 0, N)
    inputs = []
    for k, (off, ev) in reversed(list(enumerate(tasks))):  # given out of order: sorted by event_offset
        inputs.append(tmp_path / f"task{k}{suffix}")
        _write(inputs[-1], ev, off, N // 2)
    out = tmp_path / f"merged{suffix}"
    res = merge_event_files(inputs, out)
    assert (res.n_events, res.n_generated) == (N, N)
    # float64 rounding only (npz), or the 11 significant digits that LHE stores σ_k and δ_k with
    rtol = 1e-12 if suffix == ".npz" else 1e-10
    np.testing.assert_allclose([res.sigma_pb, res.error_pb], [sigma, error], rtol=rtol)
    ev_one, meta_one = read_events(one)
    ev_merged, meta_merged = read_events(out)
    for name in ("p4", "pid", "mask", "colour", "log_weight", "status", "p4_in", "pid_in"):
        np.testing.assert_array_equal(getattr(ev_merged, name), getattr(ev_one, name), err_msg=name)
    for key in ("sigma_pb", "error_pb"):
        np.testing.assert_allclose(meta_merged.pop(key), meta_one.pop(key), rtol=rtol)
    assert meta_merged == meta_one
    if suffix == ".lhe":  # the event blocks are copied verbatim: the text after <init> is the same
        body = [p.read_text().split("</init>\n", 1)[1] for p in (one, out)]
        assert body[0] == body[1]


def test_merged_cross_section_is_the_one_run_estimator(runs):
    full, tasks = runs
    parts = [_sigma(ev) for _, ev in tasks]
    sigma, error = combine_cross_sections([p[0] for p in parts], [p[1] for p in parts], [N // 2, N // 2])
    np.testing.assert_allclose([sigma, error], _sigma(full), rtol=1e-12)
    # not the naive mean of the two errors: the formula does something
    assert abs(error - np.mean([p[1] for p in parts])) > 1e-6 * error


def test_bad_merges_are_refused(tmp_path, runs):
    _, tasks = runs
    (o0, e0), (o1, e1) = tasks
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    _write(a, e0, o0, N // 2)
    _write(b, e1, o1, N // 2)
    with pytest.raises(ValueError, match="overlap"):
        _write(tmp_path / "c.npz", e1, o1 - 1, N // 2)
        merge_event_files([a, tmp_path / "c.npz"], tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"metadata 'seed' differs \(12 vs 11\)"):
        write_events(tmp_path / "d.npz", e1, process="ee-mumu", seed=12, sqrt_s=91.188, event_offset=o1,
                     n_generated=N // 2, sigma_pb=1.0, error_pb=0.1)
        merge_event_files([a, tmp_path / "d.npz"], tmp_path / "m.npz")
    with pytest.raises(ValueError, match="is also an input"):
        merge_event_files([a, b], a)
    with pytest.raises(ValueError, match="more than once"):
        merge_event_files([a, a], tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"is not a \.parquet file like the output"):
        merge_event_files([a, b], tmp_path / "m.parquet")
    with pytest.raises(ValueError, match="at least one input"):
        merge_event_files([], tmp_path / "m.npz")
    with pytest.raises(ValueError, match="not supported"):
        merge_event_files([tmp_path / "x.hepmc3"], tmp_path / "m.hepmc3")
    assert not (tmp_path / "m.npz").exists()


def test_merge_subcommand(tmp_path, runs, capsys):
    _, tasks = runs
    inputs = []
    for k, (off, ev) in enumerate(tasks):
        inputs.append(str(tmp_path / f"t{k}.parquet"))
        _write(inputs[-1], ev, off, N // 2)
    parser = argparse.ArgumentParser(prog="diffgen")
    add_merge_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["merge", str(tmp_path / "all.parquet"), *inputs])
    assert cmd_merge(args) == 0
    assert f"{N} events from 2 files" in capsys.readouterr().out
    assert read_events(tmp_path / "all.parquet")[0].n_events == N
    # an existing OUT needs --force (as generate --out): refused before reading anything, file untouched
    before = (tmp_path / "all.parquet").read_bytes()
    with pytest.raises(ValueError, match="exists; use --force"):
        cmd_merge(parser.parse_args(["merge", str(tmp_path / "all.parquet"), *inputs]))
    assert (tmp_path / "all.parquet").read_bytes() == before
    assert cmd_merge(parser.parse_args(["merge", "--force", str(tmp_path / "all.parquet"), *inputs])) == 0
