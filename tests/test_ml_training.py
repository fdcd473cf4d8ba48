"""Training the ML hadronization layer: reference files, config validation, checkpoints, CLI, a short run (slow)."""

import json
import os

import jax
import numpy as np
import pytest

from diffgen.cli import main
from diffgen.hadronization.reference import load_reference
from diffgen.hadronization.train import (
    CHECKPOINT,
    CONFIG,
    REPORT_JSON,
    REPORT_PNG,
    TrainConfig,
    Trainer,
    histogram_chi2,
    load_checkpoint,
    save_checkpoint,
    train,
    trained_params,
)

SQRT_S = 91.188


def _back_to_back(n, p=2):
    """n events of two back-to-back massless pions at √s (GeV), as reference arrays."""
    e = SQRT_S / 2
    p4 = np.zeros((n, p, 4), np.float32)
    p4[:, 0] = [e, 0, 0, e]
    p4[:, 1] = [e, 0, 0, -e]
    pid = np.zeros((n, p), np.int32)
    pid[:, :2] = [211, -211]
    return p4, pid


def test_reference_npz_plain_arrays(tmp_path):
    p4, pid = _back_to_back(5, 3)
    path = tmp_path / "ref.npz"
    np.savez(path, p4=p4, pid=pid, weight=np.arange(1, 6, dtype=float))
    ref = load_reference(str(path), 4)
    assert ref.p4.shape == (4, 2, 4) and ref.mask.sum() == 8  # unused trailing slot dropped, first 4 events
    np.testing.assert_allclose(ref.weight, np.arange(1, 5) / 2.5, rtol=1e-6)


def test_reference_diffgen_npz(tmp_path):
    from diffgen.events import Events
    from diffgen.io import write_events

    p4, pid = _back_to_back(3)
    ev = Events.empty(3, 2).replace(p4=p4, pid=pid, mask=pid != 0)
    path = tmp_path / "ev.npz"
    write_events(str(path), ev)
    ref = load_reference(str(path), 10)
    assert ref.p4.shape == (3, 2, 4) and np.all(ref.weight == 1)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case, match", [
    ("missing_pid", r"needs arrays 'p4' \[N, P, 4\] and 'pid' \[N, P\]; missing \['pid'\]"),
    ("p4_shape", r"'p4' must have shape \[N, P, 4\]"),
    ("pid_shape", r"'pid' must have shape \(4, 2\)"),
    ("pid_float", r"'pid' must hold integer PDG codes"),
    ("nan", r"NaN or inf"),
    ("empty", r"no particles"),
    ("negative_energy", r"negative energies"),
    ("bad_mask", r"'mask' must be bool"),
    ("bad_weight", r"event weights must be a finite, non-negative array"),
    ("wrong_sqrt_s", r"√s ≈ 45.59 GeV .* √s = 91.188 GeV"),
    ("not_a_zip", r"is not a readable .npz archive"),
    ("suffix", r"unknown suffix; allowed: 'string' or .npz"),
    ("missing_file", r"does not exist"),
])
def test_malformed_reference_files_raise(tmp_path, case, match):
    p4, pid = _back_to_back(4)
    path = tmp_path / "ref.npz"
    if case == "missing_pid":
        name = _write(path, p4=p4)
    elif case == "p4_shape":
        name = _write(path, p4=p4[..., :3], pid=pid)
    elif case == "pid_shape":
        name = _write(path, p4=p4, pid=pid[:, :1])
    elif case == "pid_float":
        name = _write(path, p4=p4, pid=pid + 0.5)
    elif case == "nan":
        p4[1, 0, 2] = np.nan
        name = _write(path, p4=p4, pid=pid)
    elif case == "empty":
        name = _write(path, p4=p4, pid=np.zeros_like(pid))
    elif case == "negative_energy":
        p4[0, 0, 0] = -1.0
        name = _write(path, p4=p4, pid=pid)
    elif case == "bad_mask":
        name = _write(path, p4=p4, pid=pid, mask=np.ones_like(pid))
    elif case == "bad_weight":
        name = _write(path, p4=p4, pid=pid, weight=np.array([1.0, -1.0, 1.0, 1.0]))
    elif case == "wrong_sqrt_s":
        name = _write(path, p4=p4 / 2, pid=pid)
    elif case == "not_a_zip":
        path.write_text("p4,pid\n1,2\n")
        name = str(path)
    elif case == "suffix":
        name = str(tmp_path / "ref.csv")
    else:
        name = str(tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match=match):
        load_reference(name, 10)


def test_malformed_hepmc_raises(tmp_path):
    path = tmp_path / "ref.hepmc3"
    path.write_text("this is not a HepMC file\n")
    with pytest.raises(ValueError):
        load_reference(str(path), 10)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"batch": 1}, "batch"), ({"lr_gen": -1.0}, "lr_gen"),
    ({"train_settings": ("StringZ:aLund",)}, "not settings of the ML layer"), ({"decays": 1}, "decays"),
    ({"particle_weight": float("nan")}, "particle_weight"),
])
def test_bad_training_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_config_json_round_trip():
    cfg = TrainConfig(steps=7, train_settings=("ClusterFission:maxMass",))
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_json(json.dumps({"stepz": 3}))


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    trainer = Trainer(TrainConfig(steps=5, hidden=8, disc_hidden=8, train_settings=("ClusterFission:pSplit",)))
    state = trainer.init_state()
    leaves, treedef = jax.tree_util.tree_flatten(state)
    rng = np.random.default_rng(0)
    # random bits in every float leaf (the initial generator's last layer is all zeros)
    leaves = [rng.standard_normal(np.shape(x)).astype(np.asarray(x).dtype) if np.asarray(x).dtype.kind == "f"
              else np.asarray(x) + 3 for x in leaves]
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, state)
    back = load_checkpoint(path, trainer.init_state())
    a, ta = jax.tree_util.tree_flatten(jax.device_get(state))
    b, tb = jax.tree_util.tree_flatten(back)
    assert ta == tb
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary file left
    other = Trainer(TrainConfig(steps=5, hidden=16, disc_hidden=8))
    with pytest.raises(ValueError, match="does not match this training configuration"):
        load_checkpoint(path, other.init_state())


def test_histogram_chi2_of_identical_samples_is_zero_and_of_shifted_ones_large():
    x = np.random.default_rng(1).normal(size=4000)
    w = np.ones_like(x)
    edges = np.linspace(-3, 3, 13)
    assert histogram_chi2((x, w), (x, w), edges) == (0.0, 12)
    chi2, ndf = histogram_chi2((x, w), (x + 0.5, w), edges)
    assert chi2 / ndf > 10


def test_cli_train_hadronization_rejects_malformed_reference(tmp_path, capsys):
    path = _write(tmp_path / "ref.npz", p4=np.zeros((2, 2, 3)), pid=np.zeros((2, 2), int))
    rc = main(["train-hadronization", "--reference", path, "--steps", "2", "--out", str(tmp_path / "out"),
               "--quiet", "--no-cache"])
    assert rc == 2
    assert "'p4' must have shape [N, P, 4]" in capsys.readouterr().err
    rc = main(["train-hadronization", "--reference", "string", "--steps", "0", "--out", str(tmp_path / "o2"),
               "--quiet"])
    assert rc == 2
    assert "steps must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_short_training_run_writes_checkpoint_report_and_resumes(tmp_path):
    """Six steps against a Monte-Carlo reference from the layer's own parton pool (file route)."""
    from diffgen.hadronization.reference import Reference

    ref = load_reference("string", 64, jax.random.key(3))
    cfg = TrainConfig(steps=4, batch=16, n_partons=32, n_reference=64, n_eval=32, hidden=8, disc_hidden=8,
                      checkpoint_every=2, train_settings=("ClusterFission:maxMass",))
    out = tmp_path / "run"
    report = train(cfg, ref, out, progress=False)
    for name in (CHECKPOINT, CONFIG, REPORT_PNG, REPORT_JSON):
        assert (out / name).is_file()
    assert report["steps"] == 4 and np.all(np.isfinite(report["history"]["d_loss"]))
    assert set(report["chi2"]["trained"]) == {"n_ch", "x_p", "thrust", "sphericity"}
    p = trained_params(out)
    assert "net" in p and float(p["ClusterFission:maxMass"]) != 3.35  # the setting moved
    # resuming a finished run changes nothing
    again = train(cfg, Reference(*ref), out, progress=False, resume=True)
    assert again["history"] == report["history"]
    assert os.path.getsize(out / REPORT_PNG) > 10_000
