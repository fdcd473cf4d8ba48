"""The CLI's sharp edges (issue 18, item 8): overwriting, Ctrl-C, progress bars, help, alignment, tune files."""

import os
import re

import pytest

import diffgen
from diffgen.cli import build_parser, main, parse_count
from diffgen.fit import tune_file


def test_out_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "ev.npz"
    out.write_bytes(b"precious")
    assert main(["generate", "--events", "500", "--quiet", "--out", str(out)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious" and os.listdir(tmp_path) == ["ev.npz"]
    assert main(["generate", "--events", "500", "--quiet", "--out", str(out), "--force"]) == 0
    assert diffgen.io.read_events(out)[0].n_events == 500


def test_ctrl_c_exits_130_without_traceback_or_partial_file(tmp_path, capsys, monkeypatch):
    calls = []

    def interrupted(gen, params, key, n, on_chunk=None, **kw):
        calls.append(n)
        on_chunk(diffgen.Events.empty(100, 2))  # one chunk reaches the writer, then the user presses Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(diffgen, "generate", interrupted)
    for suffix in (".hepmc3", ".lhe", ".npz"):
        out = tmp_path / f"ev{suffix}"
        assert main(["generate", "--events", "1000", "--quiet", "--out", str(out)]) == 130
        err = capsys.readouterr().err
        assert "interrupted" in err and "Traceback" not in err
        assert os.listdir(tmp_path) == []  # no partial file, no temporary
    assert calls == [1000, 1000, 1000]


def test_progress_bar_only_on_a_terminal(capsys):
    assert main(["generate", "--events", "500"]) == 0  # no --quiet; pytest's stderr is not a terminal
    assert "ev/s" not in capsys.readouterr().err


def test_events_accepts_scientific_notation():
    assert parse_count("1e5") == 100_000 and parse_count("100_000") == 100_000 and parse_count(7) == 7
    for bad, match in (("1.5", "whole number"), ("0", ">= 1"), ("-1e3", ">= 1"), ("lots", "positive integer")):
        with pytest.raises(ValueError, match=match):
            parse_count(bad)


def test_help_shows_every_option_with_help_and_defaults(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "generate" in a.choices).choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"diffgen {name} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    assert "(default: ee-mumu)" in text and "(default: 20)" in text and "(default: 100000)" in text


def test_settings_listing_is_aligned(capsys):
    assert main(["settings", "--process", "ee-hadrons"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("setting") and "HadronLevel:Decay" in lines[-1]
    starts = {re.search(r"\S+\s+(\S)", line).start(1) for line in lines}  # where the value column starts
    assert len(starts) == 1, lines


_TUNE = """
[generator]
process = "ee-mumu"
{generator}
[fit]
free = {free}
steps = {steps}
[[target]]
observable = "cos_theta"
edges = [-1.0, 0.0, 1.0]
contents = [0.45, 0.55]
errors = [0.01, 0.01]
[[target]]
observable = "{observable}"
edges = [-1.0, 0.0, 1.0]
contents = [0.45, 0.55]
errors = [0.01, 0.01]
"""


def _tune(tmp_path, generator="", free='["23:m0"]', steps=4, observable="cos_theta"):
    path = tmp_path / "t.toml"
    path.write_text(_TUNE.format(generator=generator, free=free, steps=steps, observable=observable))
    return path


def test_tune_file_refuses_settings_that_cannot_be_fitted(tmp_path):
    with pytest.raises(ValueError, match=r"'Beams:eCM' cannot be fitted: the collision energy is a condition"):
        tune_file.load(_tune(tmp_path, free='["Beams:eCM"]'))


def test_tune_file_reports_all_its_problems_at_once(tmp_path):
    path = _tune(tmp_path, generator='[generator.settings]\n"23:mWidth" = -1.0\n"23:m0" = 1e9',
                 free='["Beams:eCM", "23:mZero"]', steps=0, observable="cos_phi")
    with pytest.raises(ValueError) as err:
        tune_file.load(path)
    msg = str(err.value)
    assert msg.startswith(f"tune file {str(path)!r} has 6 problems:"), msg
    for part in ("generator.settings.'23:mWidth'", "generator.settings.'23:m0'", "'Beams:eCM' cannot be fitted",
                 "unknown setting name '23:mZero'", "fit.steps must be an integer >= 1",
                 "unknown observable 'cos_phi'"):
        assert part in msg, part


def test_tune_file_generator_settings_from_a_cmnd_file(tmp_path):
    (tmp_path / "fixed.cmnd").write_text("23:mWidth = 2.4952  ! PDG\n")
    cfg = tune_file.load(_tune(tmp_path, generator='settings = "fixed.cmnd"'))
    assert float(diffgen.settings(cfg.params)["23:mWidth"]) == pytest.approx(2.4952)


def test_tune_refuses_to_overwrite_a_previous_report_without_force(tmp_path, monkeypatch, capsys):
    path = _tune(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("previous tune")

    def boom(*a, **k):
        raise AssertionError("the tune ran")

    monkeypatch.setattr(tune_file, "run", boom)
    assert main(["tune", str(path), "--out", str(out)]) == 2
    assert "report.md; use --force" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "previous tune"
    with pytest.raises(AssertionError, match="the tune ran"):  # --force goes on to the fit
        main(["tune", str(path), "--out", str(out), "--force"])
