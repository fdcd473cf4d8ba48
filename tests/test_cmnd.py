"""Pythia-style settings: .cmnd files, 'Group:name = value' strings, and the structure switches."""

import os
import types

import jax
import numpy as np
import pytest

import diffgen
from diffgen import presets
from diffgen.cli import main
from diffgen.params import SETTINGS, parse_settings, stage_switches


def _same_events(a, b) -> bool:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b))


def _same_value(a, b) -> bool:
    """The same setting value: the same shortest text in its own precision and the same float32 (what jit
    sees; default string parameters are Python floats, set ones float32 arrays)."""
    return diffgen.cmnd.plain_value(a) == diffgen.cmnd.plain_value(b) and np.float32(a) == np.float32(b)


def _stage_names(gen):
    return list(gen.default_params())


def test_cmnd_round_trip_gives_identical_settings_and_events(tmp_path):
    gen, params = presets.configure("ee-mumu", {"Beams:eCM": 89.5, "23:m0": 91.3, "23:mWidth": 2.4952})
    path = tmp_path / "run.cmnd"
    diffgen.write_settings(path, diffgen.settings(params), header="round trip\nsecond line")
    text = path.read_text()
    assert text.startswith("! round trip\n! second line\n") and "Beams:eCM = 89.5\n" in text
    back = diffgen.read_settings(path)
    assert "23:m0 = 91.3\n" in text  # shortest text of the float32 value
    assert set(back) == set(diffgen.settings(params))
    gen2, params2 = presets.configure("ee-mumu", back)
    for name, value in diffgen.settings(params).items():
        assert np.asarray(diffgen.settings(params2)[name]).tobytes() == np.asarray(value).tobytes(), name
    key = jax.random.key(7)
    assert _same_events(gen.sample(params, key, 256), gen2.sample(params2, key, 256))


def test_pythia_file_syntax(tmp_path):
    path = tmp_path / "pythia.cmnd"
    path.write_text("! a comment\n# another\n\n  stringz:alund = 0.7   ! lower case, trailing comment\n"
                    "StringZ:bLund 0.9\nStringZ:aLund = 0.75\nhadronlevel:decay = Off\nPartonLevel:FSR = 1\n")
    assert diffgen.read_settings(path) == {"StringZ:aLund": 0.75, "StringZ:bLund": 0.9,
                                           "HadronLevel:Decay": False, "PartonLevel:FSR": True}


def test_unknown_names_are_all_listed_or_skipped_with_a_warning(tmp_path):
    path = tmp_path / "main.cmnd"
    path.write_text("Main:numberOfEvents = 1000\nBeams:idA = 11\nStringZ:aLund = 0.7\nStringZ:bLnd = 1.0\n")
    with pytest.raises(ValueError) as err:
        diffgen.read_settings(path)
    msg = str(err.value)
    assert all(n in msg for n in ("'Main:numberOfEvents'", "'Beams:idA'", "'StringZ:bLnd'", "main.cmnd"))
    assert "StringZ:bLund" in msg  # the close match is suggested
    with pytest.warns(UserWarning, match="Main:numberOfEvents"):
        assert diffgen.read_settings(path, ignore_unknown=True) == {"StringZ:aLund": 0.7}


@pytest.mark.parametrize("text,match", [
    ("StringZ:aLund = lots", "not a number"),
    ("HadronLevel:Decay = maybe", "on/off"),
    ("StringZ:aLund =", "malformed"),
    ("aLund = 0.7", "malformed"),
    ("StringZ:aLund = nan", "finite"),
])
def test_bad_lines_name_the_line(tmp_path, text, match):
    path = tmp_path / "bad.cmnd"
    path.write_text("! ok\n" + text + "\n")
    with pytest.raises(ValueError, match=match) as err:
        diffgen.read_settings(path)
    assert "line 2" in str(err.value)


def test_read_settings_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        diffgen.read_settings(tmp_path / "nope.cmnd")


def test_with_settings_accepts_strings_and_matching_switches():
    gen = presets.ee_mumu()
    p0 = gen.default_params()
    from_map = diffgen.with_settings(p0, {"23:m0": 91.25, "23:mWidth": 2.6})
    from_list = diffgen.with_settings(p0, ["23:m0 = 91.25", "23:mwidth=2.6 ! comment"])
    from_text = diffgen.with_settings(p0, "23:m0 = 91.25\n23:mWidth = 2.6\n")
    assert diffgen.settings(from_list) == diffgen.settings(from_map) == diffgen.settings(from_text)
    # switches that agree with the stages are accepted (ee-mumu has no shower or hadron level) ...
    same = diffgen.with_settings(p0, ["PartonLevel:FSR = off", "HadronLevel:all = on", "23:m0 = 91.25"])
    assert float(diffgen.settings(same)["23:m0"]) == 91.25
    # ... and ones that would add or remove a stage are refused, pointing to presets.make
    with pytest.raises(ValueError, match="presets.make"):
        diffgen.with_settings(p0, ["PartonLevel:FSR = on"])
    hadrons = {"hard": {}, "shower": {}, "hadronization": {}, "decays": {}}
    assert stage_switches(hadrons) == {"PartonLevel:FSR": True, "HadronLevel:all": True,
                                       "HadronLevel:Hadronize": True, "HadronLevel:Decay": True}
    with pytest.raises(ValueError, match="HadronLevel:Decay=off"):
        diffgen.with_settings(hadrons, {"HadronLevel:Decay": "off"})


@pytest.mark.parametrize("switches,kwargs", [
    ({"HadronLevel:Decay": False}, {"decays": False}),
    ({"PartonLevel:FSR": False}, {"shower": False}),
    ({"HadronLevel:Hadronize": False}, {"hadronize": False}),
    ({"HadronLevel:all": False}, {"hadronize": False}),
    ({"HadronLevel:all": True, "HadronLevel:Decay": True}, {}),
    ({"PartonLevel:FSR": "off", "HadronLevel:Decay": "off"}, {"shower": False, "decays": False}),
])
def test_switches_build_the_preset_of_the_keyword_arguments(switches, kwargs):
    """Same stages, same static configuration and same params: the same program (events: slow test below)."""
    gen, params = presets.configure("ee-hadrons", switches)
    ref = presets.ee_hadrons(**kwargs)
    assert _stage_names(gen) == _stage_names(ref)
    assert gen.info == ref.info
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref.default_params())
    assert diffgen.settings(params) == diffgen.settings(ref.default_params())


def _program(gen, params) -> str:
    """The traced program of 8 events (jaxpr text): equal programs give bit-identical events."""
    from diffgen.stage import apply_indices

    return str(jax.make_jaxpr(lambda p, k: apply_indices(gen, p, k, jax.numpy.arange(8)))(params, jax.random.key(0)))


@pytest.mark.parametrize("text,kwargs", [
    ("HadronLevel:Decay = off", {"decays": False}),
    ("PartonLevel:FSR = off\nHadronLevel:all = off", {"shower": False, "hadronize": False}),
])
def test_switches_trace_to_the_program_of_the_keyword_arguments(text, kwargs):
    gen, params = presets.configure("ee-hadrons", text)
    ref = presets.ee_hadrons(**kwargs)
    assert _program(gen, params) == _program(ref, ref.default_params())


def test_switches_that_cannot_apply_and_energy_conflicts():
    with pytest.raises(ValueError, match="has no shower"):
        presets.configure("ee-qq", ["PartonLevel:FSR = on"])
    gen, _ = presets.configure("ee-qq", ["PartonLevel:FSR = off", "HadronLevel:all = off"])
    assert _stage_names(gen) == ["hard"]
    gen, params = presets.configure("ee-mumu", "Beams:eCM = 50")
    assert float(diffgen.settings(params)["Beams:eCM"]) == 50.0 and gen.info["sqrt_s"] == 50.0
    with pytest.raises(ValueError, match="two collision energies"):
        presets.configure("ee-mumu", "Beams:eCM = 50", sqrt_s=60.0)
    with pytest.raises(ValueError, match="hadron-production threshold"):
        presets.configure("ee-hadrons", "Beams:eCM = 0.2")
    with pytest.raises(ValueError, match=r"outside its allowed range"):
        presets.configure("ee-hadrons", "StringZ:bLund = 5")


def test_tune_cmnd_reproduces_the_tuned_configuration(tmp_path):
    """The tune.cmnd that `diffgen tune` writes (tune_report) holds √s, the switches, the fixed [generator]
    settings and the fitted values; read_settings + configure rebuild exactly the tuned generator."""
    from diffgen.fit.tune_report import _cmnd_text

    # as the tune file [generator] process = "ee-hadrons", sqrt_s = 50, settings = {Decay = off, bLund = 0.9}
    gen, params = presets.configure("ee-hadrons", {"HadronLevel:Decay": False, "StringZ:bLund": 0.9}, 50.0)
    cfg = types.SimpleNamespace(process="ee-hadrons", sqrt_s=50.0, params=params)
    result = types.SimpleNamespace(free=("StringZ:aLund", "StringFlav:probStoUD"),
                                   settings={"StringZ:aLund": 0.712345678912, "StringFlav:probStoUD": 0.25},
                                   errors={"StringZ:aLund": 0.01, "StringFlav:probStoUD": 0.02})
    path = tmp_path / "tune.cmnd"
    path.write_text(_cmnd_text(result, cfg))
    text = path.read_text()
    assert "StringZ:aLund = 0.712345678912  ! +- 0.01\n" in text and "HadronLevel:Decay = off\n" in text
    back = diffgen.read_settings(path)
    assert back["Beams:eCM"] == 50.0 and back["StringZ:bLund"] == 0.9 and back["StringZ:aLund"] == 0.712345678912
    gen2, params2 = presets.configure("ee-hadrons", back)
    assert _stage_names(gen2) == _stage_names(gen) and stage_switches(params2) == stage_switches(params)
    want = diffgen.with_settings(params, {n: result.settings[n] for n in result.free})
    assert set(diffgen.settings(params2)) == set(diffgen.settings(want))
    for name, value in diffgen.settings(want).items():
        assert _same_value(diffgen.settings(params2)[name], value), name


@pytest.mark.parametrize("process,changes", [
    ("ee-hadrons", {"HadronLevel:Decay": False, "StringZ:aLund": 0.7}),
    ("ee-hadrons", {"PartonLevel:FSR": False, "HadronLevel:all": False, "Beams:eCM": 30.0}),
    ("ee-hadrons", {"HadronLevel:Hadronize": False}),
    ("ee-mumu", {"23:m0": 91.3}),
])
def test_write_settings_of_params_keeps_the_switches(tmp_path, process, changes):
    """Pythia's writeFile: write_settings(path, params) -> read_settings -> the same settings and stages."""
    gen, params = presets.configure(process, changes)
    path = tmp_path / "out.cmnd"
    diffgen.write_settings(path, params)
    back = diffgen.read_settings(path)
    assert {k: back[k] for k in stage_switches(params)} == stage_switches(params)
    gen2, params2 = presets.configure(process, back)
    assert _stage_names(gen2) == _stage_names(gen) and stage_switches(params2) == stage_switches(params)
    assert set(diffgen.settings(params2)) == set(diffgen.settings(params))
    for name, value in diffgen.settings(params).items():
        assert _same_value(diffgen.settings(params2)[name], value), name
    # the flat mapping alone has no stages to describe: written as given, without switches
    diffgen.write_settings(path, diffgen.settings(params))
    assert not set(diffgen.read_settings(path)) & set(stage_switches(params))


def test_every_setting_is_writable_and_readable():
    values = {name: spec.default for name, spec in SETTINGS.items()}
    assert parse_settings(diffgen.cmnd.format_settings(values)) == values


def test_cli_settings_file_and_set_override(tmp_path, capsys):
    cmnd = tmp_path / "run.cmnd"
    cmnd.write_text("Beams:eCM = 88.0\n23:m0 = 91.3  ! heavier Z\nMain:numberOfEvents = 10\n")
    out = tmp_path / "ev.npz"
    assert main(["generate", "--settings", str(cmnd), "--events", "2000", "--quiet", "--out", str(out)]) == 2
    assert "Main:numberOfEvents" in capsys.readouterr().err and not out.exists()
    rc = main(["generate", "--settings", str(cmnd), "--ignore-unknown", "--set", "23:m0 = 91.0",
               "--events", "1e3", "--quiet", "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "note:" in captured.err and "Main:numberOfEvents" in captured.err
    assert "sqrt(s) = 88 GeV" in captured.out
    events, meta = diffgen.io.read_events(out)
    assert events.n_events == 1000 and meta["sqrt_s"] == 88.0 and meta["settings"]["23:m0"] == 91.0


@pytest.mark.slow
@pytest.mark.parametrize("text,kwargs", [
    ("HadronLevel:Decay = off", {"decays": False}),
    ("PartonLevel:FSR = off\nHadronLevel:all = off", {"shower": False, "hadronize": False}),
])
def test_switches_give_bit_identical_events(text, kwargs):
    gen, params = presets.configure("ee-hadrons", text)
    ref = presets.ee_hadrons(**kwargs)
    key = jax.random.key(11)
    assert _same_events(gen.sample(params, key, 64), ref.sample(ref.default_params(), key, 64))


@pytest.mark.slow
def test_cli_set_switch_runs(tmp_path, capsys):
    out = tmp_path / "ev.npz"
    rc = main(["generate", "--process", "ee-hadrons", "--set", "HadronLevel:Decay = off", "--events", "200",
               "--quiet", "--out", str(out)])
    assert rc == 0
    ev, meta = diffgen.io.read_events(out)
    assert meta["switches"]["HadronLevel:Decay"] == "off"
    pids = np.asarray(ev.pid)[np.asarray(ev.mask)]
    assert np.count_nonzero(pids == 111) > 100  # undecayed pi0: the decays stage is off
    assert os.listdir(tmp_path) == ["ev.npz"]


def test_set_accepts_pythias_name_value_form():
    from diffgen.cli import parse_set

    assert parse_set(["StringZ:aLund 0.7", "HadronLevel:Decay off"]) == {"StringZ:aLund": 0.7,
                                                                         "HadronLevel:Decay": False}
    assert parse_set(["StringZ:aLund 0.7"]) == parse_set(["StringZ:aLund = 0.7"])
    for bad in ("StringZ:aLund", "StringZ:aLund 0.7 0.8", "0.7 StringZ:aLund"):
        with pytest.raises(ValueError, match="malformed --set|setting"):
            parse_set([bad])
