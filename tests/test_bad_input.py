"""Bad input raises a clear ValueError before anything runs, and leaves no partial file."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen.cli import main


@pytest.fixture(scope="module")
def gen():
    return diffgen.presets.ee_mumu(91.188)


@pytest.mark.parametrize("changes,match", [
    ({"23:mWidth": -1.0}, r"23:mWidth.*outside its allowed range \(0, 100\]"),
    ({"23:m0": 0.0}, r"23:m0.*outside its allowed range"),
    ({"StandardModel:sin2thetaW": 0.0}, r"sin2thetaW.*\(0, 0.999\]"),
    ({"StandardModel:sin2thetaW": 1.0}, r"sin2thetaW.*outside its allowed range \(0, 0.999\]"),
    ({"StandardModel:alphaEMmZ": float("nan")}, r"alphaEMmZ.*outside"),
    ({"Beams:eCM": -91.0}, r"Beams:eCM.*outside"),
    ({"23:mo": 91.0}, r"unknown setting name '23:mo'.*Did you mean '23:m0'"),
    ({"StringZ:aLund": 0.7}, r"not used by this generator"),
    ({"23:m0": "heavy"}, r"must be a real number"),
    ({"23:m0": np.array([91.0, 92.0])}, r"must be a scalar"),
])
def test_with_settings_rejects(gen, changes, match):
    with pytest.raises(ValueError, match=match):
        diffgen.with_settings(gen.default_params(), changes)


def test_with_settings_needs_a_mapping(gen):
    with pytest.raises(ValueError, match="mapping"):
        diffgen.with_settings(gen.default_params(), [("23:m0", 91.0)])


@pytest.mark.parametrize("n", [0, -5, 1.5, "10", True, 2**32 + 1])
def test_sample_rejects_bad_n(gen, n):
    with pytest.raises(ValueError, match=r"must be an integer in \[1, 4294967296\]"):
        gen.sample(gen.default_params(), jax.random.key(0), n)


@pytest.mark.parametrize("offset", [-1, 2**32 - 5, 0.5])
def test_sample_rejects_offsets_that_would_repeat_event_keys(gen, offset):
    # event indices are uint32: offset + n beyond 2**32 would wrap round and repeat events
    with pytest.raises(ValueError, match="offset"):
        gen.sample(gen.default_params(), jax.random.key(0), 10, offset=offset)


def test_sample_rejects_non_key(gen):
    with pytest.raises(ValueError, match="PRNG key"):
        gen.sample(gen.default_params(), 42, 10)


def test_sample_rejects_params_edited_by_hand(gen):
    p = gen.default_params()
    p["hard"]["23:mWidth"] = jnp.asarray(-2.0)
    with pytest.raises(ValueError, match="23:mWidth"):
        gen.sample(p, jax.random.key(0), 10)


def test_presets_reject_unphysical_configuration():
    with pytest.raises(ValueError, match="below the threshold"):
        diffgen.presets.ee_mumu(sqrt_s=0.15)
    with pytest.raises(ValueError, match="Beams:eCM"):
        diffgen.presets.ee_mumu(sqrt_s=-1.0)
    with pytest.raises(ValueError, match="quark PDG codes"):
        diffgen.presets.ee_qq(flavours=(1, 6))
    with pytest.raises(ValueError, match="distinct"):
        diffgen.processes.ee_to_ffbar((13, 13))
    with pytest.raises(ValueError, match="unknown process"):
        diffgen.presets.make("pp-ttbar", 13000.0)


def test_chain_and_histogram_reject_malformed_input():
    ident = diffgen.Stage(lambda k: {}, lambda p, k, e: e)
    with pytest.raises(ValueError, match="unique"):
        diffgen.chain(("a", ident), ("a", ident))
    with pytest.raises(ValueError, match=r"\(name, Stage\)"):
        diffgen.chain(("a", lambda x: x))
    with pytest.raises(ValueError, match="number of bins must be an integer >= 1, got 0"):
        diffgen.histogram(jnp.zeros(3), 0, range=(0, 1))
    with pytest.raises(ValueError, match="hi > lo"):
        diffgen.histogram(jnp.zeros(3), 4, range=(1, 0))
    with pytest.raises(ValueError, match="strictly increasing"):
        diffgen.histogram(jnp.zeros(3), [0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="needs range"):
        diffgen.histogram(jnp.zeros(3), 4)
    with pytest.raises(ValueError, match="finite with hi > lo"):
        diffgen.histogram(jnp.zeros(3), 4, range=(0.0, float("inf")))
    for h in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="smoothing"):
            diffgen.histogram(jnp.zeros(3), 4, range=(0, 1), smoothing=h)
    # a NumPy integer is a number of bins, not a 0-d array of edges
    assert diffgen.histogram(jnp.array([0.1, 0.6]), np.int64(2), range=(0, 1)).contents.tolist() == [1.0, 1.0]


def test_generate_rejects_bad_chunk(gen):
    with pytest.raises(ValueError, match=r"chunk \(events per chunk\) must be an integer in \[1, 4294967296\]"):
        diffgen.generate(gen, gen.default_params(), jax.random.key(0), 100, chunk=0)


CLI_CASES = [
    (["--set", "23:m0"], "malformed --set"),
    (["--set", "23:m0=abc"], "not a number"),
    (["--set", "m0=91"], "Group:name"),
    (["--set", "23:m0=inf"], "finite"),
    (["--set", "23:mWidth=-1"], "outside its allowed range"),
    (["--set", "TimeShower:alphaSvalue=0.12"], "not used by this generator"),
    (["--process", "ee-tautau-ish"], "unknown process"),
    (["--events", "0"], "--events must be an integer >= 1"),
    (["--sqrt-s", "-3"], "--sqrt-s must be a positive"),
    (["--sqrt-s", "0.1"], "below the threshold"),
    (["--chunk", "0"], "--chunk"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**63)], "[0, 2**63)"),
    (["--set", "Beams:eCM=0.1"], "below the threshold"),
    (["--sqrt-s", "91", "--set", "Beams:eCM=92"], "two collision energies"),
    (["--set", "Main:numberOfEvents=10"], "unknown setting name"),
    (["--set", "PartonLevel:FSR=on"], "has no shower"),
    (["--set", "HadronLevel:Decay=maybe"], "on/off"),
    (["--events", "2.5"], "whole number"),
    (["--events", "ten"], "positive integer"),
    (["--process", "ee-hadrons", "--sqrt-s", "0.2"], "hadron-production threshold"),
    (["--process", "ee-qq", "--sqrt-s", "0.2"], "hadron-production threshold of ee-qq"),
    (["--process", "ee-qq", "--sqrt-s", "0.01"], "allowed sqrt_s > 0.28 GeV"),
    (["--process", "ee-qq", "--sqrt-s", "0.3", "--set", "SigmaProcess:alphaSvalue=0.14"],
     "Landau pole of alpha_s (0.3693 GeV for SigmaProcess:alphaSvalue = 0.14)"),
    (["--process", "ee-hadrons", "--sqrt-s", "1", "--set", "SigmaProcess:alphaSvalue=0.22"], "allowed: sqrt_s > 2.34"),
]


@pytest.mark.parametrize("extra,match", CLI_CASES)
def test_cli_rejects_before_running_and_writes_nothing(tmp_path, capsys, extra, match):
    out = tmp_path / "events.lhe"
    rc = main(["generate", "--events", "100", "--quiet", "--out", str(out), "--plot", str(tmp_path / "p.png")] + extra)
    assert rc == 2
    assert match in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path_kind,match", [
    ("missing_dir", "does not exist"),
    ("is_dir", "is a directory"),
    ("bad_suffix", "unknown suffix"),
    ("under_file", "does not exist"),
])
def test_cli_rejects_unwritable_outputs(tmp_path, capsys, path_kind, match):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    path = {"missing_dir": tmp_path / "nope" / "ev.lhe", "is_dir": tmp_path / "adir",
            "bad_suffix": tmp_path / "ev.root", "under_file": tmp_path / "afile" / "ev.lhe"}[path_kind]
    before = sorted(os.listdir(tmp_path))
    rc = main(["generate", "--events", "100", "--quiet", "--out", str(path)])
    assert rc == 2
    assert match in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(tmp_path / "adir") == []


def test_durham_orders_must_be_positive_integers():
    from diffgen.observables import jets

    ev = diffgen.Events.empty(2, 4)
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"n must be an integer >= 1 \(jets\), got"):
            jets.durham_yn(ev, bad)
        with pytest.raises(ValueError, match="n_max must be an integer >= 1, got"):
            jets.durham_merge_scales(ev, bad)


@pytest.mark.parametrize("alpha_s_mz", [0.1, 0.13, 0.2, 0.25])
def test_alpha_s_landau_pole_is_where_alpha_s_diverges(alpha_s_mz):
    from diffgen.amplitudes.couplings import alpha_s_landau_pole, alpha_s_one_loop

    pole = alpha_s_landau_pole(alpha_s_mz)
    assert np.isinf(float(alpha_s_one_loop((pole * 0.999) ** 2, alpha_s_mz)))
    assert np.isfinite(float(alpha_s_one_loop((pole * 1.001) ** 2, alpha_s_mz)))


def test_ee_qq_refuses_sqrt_s_below_its_threshold():
    for sqrt_s in (0.2, 0.01, 0.25):
        with pytest.raises(ValueError, match=r"hadron-production threshold of ee-qq.*allowed sqrt_s > 0.28 GeV"):
            diffgen.presets.ee_qq(sqrt_s)
    with pytest.raises(ValueError, match=r"allowed sqrt_s > 3.74 GeV"):  # c cbar: D Dbar, not 2 m_c
        diffgen.presets.ee_qq(3.5, flavours=(4,))
    assert diffgen.presets.ee_qq(0.3).info["sqrt_s"] == 0.3  # u, d, s just above the threshold are fine


def test_cli_exits_non_zero_and_writes_nothing_when_every_event_is_flagged(tmp_path, capsys, monkeypatch):
    # without the build-time check, alpha_s's pole at 3.53 GeV (alphaSvalue 0.25) flags every event in jit
    from diffgen import presets

    monkeypatch.setattr(presets, "check_alpha_s_pole", lambda sqrt_s, alpha_s_mz: None)
    monkeypatch.setattr(diffgen.processes, "check_alpha_s_pole", lambda sqrt_s, alpha_s_mz: None)
    out = tmp_path / "events.lhe"
    rc = main(["generate", "--events", "50", "--chunk", "50", "--quiet", "--process", "ee-qq", "--sqrt-s", "3",
               "--set", "SigmaProcess:alphaSvalue=0.25", "--out", str(out), "--plot", str(tmp_path / "p.png")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "all 50 generated events were flagged" in err and "BELOW_THRESHOLD (50)" in err
    assert os.listdir(tmp_path) == []
