"""Training the learned detector surrogate on the parametric stage, and its checkpoint file.

Training data come from a **particle gun** passed through :func:`diffgen.detector.parametric`:
each step draws fresh particles (so there is no over-fitting and no data set to store), with

    ln E ~ U(ln 0.1, ln 50) GeV,  cos θ ~ U(−1, 1),  φ ~ U(−π, π),
    PDG code uniform over (211, −211, 321, 2212, 11, 13, 22, 22, 130, 2112)

(tracks, photons and neutral hadrons in roughly equal numbers over the whole range that e+e- → hadrons
at the Z pole populates). The loss is the negative log-likelihood per particle,

    L = ⟨ −ln p(r | c) ⟩_{detected}  +  ⟨ −[k ln σ(ℓ) + (1 − k) ln σ(−ℓ)] ⟩_{in acceptance},

summed over the three types (:mod:`diffgen.detector.learned` for r, c, ℓ), minimised with Adam.
Before training, ``scale`` (f[D] per type) is set to the residual r.m.s. of one large gun sample.

Checkpoint: a msgpack file (:func:`flax.serialization.msgpack_serialize`) holding
``{"format": "diffgen-learned-detector", "version": 1, "hidden": [...], "config": {...}, "weights": ...}``,
written to a temporary file in the same directory and renamed into place (atomic), read back
bit-exactly; anything else (missing or extra keys, wrong shapes or dtypes, not msgpack) is a
``ValueError`` naming the offending entry.

Example:
    >>> import jax, tempfile, os
    >>> from diffgen.detector.learned_train import train, save_checkpoint, load_checkpoint
    >>> model, losses = train(jax.random.key(0), steps=2, batch=256, hidden=(8,))
    >>> path = os.path.join(tempfile.mkdtemp(), "det.msgpack")
    >>> save_checkpoint(path, model)
    >>> load_checkpoint(path).hidden
    (8,)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from diffgen.detector.config import DetectorConfig, detector_config
from diffgen.detector.learned import (
    RESIDUAL_DIMS,
    TYPE_CODES,
    TYPES,
    LearnedDetectorModel,
    calo_residuals,
    check_hidden,
    conditional,
    init_model,
    track_residuals,
    truth_features,
)
from diffgen.detector.stage import acceptance, parametric
from diffgen.events import Events
from diffgen.fit.util import progress_bar
from diffgen.io.atomic import atomic_write
from diffgen.particles import mass

__all__ = ["particle_gun", "training_batch", "loss", "train", "save_checkpoint", "load_checkpoint", "GUN_PIDS"]

GUN_PIDS = (211, -211, 321, 2212, 11, 13, 22, 22, 130, 2112)
_FORMAT = "diffgen-learned-detector"
_VERSION = 1
_GUN_CAPACITY = 16


def particle_gun(key, n_particles: int, e_min: float = 0.1, e_max: float = 50.0, pids=GUN_PIDS) -> Events:
    """Random single particles packed ``16`` to an "event": an :class:`Events` of shape [n/16, 16].

    E log-uniform in [e_min, e_max] GeV (E ≥ m), isotropic direction, PDG code uniform over ``pids``.
    """
    if n_particles % _GUN_CAPACITY or n_particles <= 0:
        raise ValueError(f"n_particles = {n_particles!r}: need a positive multiple of {_GUN_CAPACITY}")
    if not (0 < e_min < e_max):
        raise ValueError(f"energy range ({e_min!r}, {e_max!r}) GeV: need 0 < e_min < e_max")
    k1, k2, k3, k4 = jax.random.split(key, 4)
    shape = (n_particles // _GUN_CAPACITY, _GUN_CAPACITY)
    pid = jnp.asarray(pids, jnp.int32)[jax.random.randint(k1, shape, 0, len(pids))]
    m = mass(pid)
    energy = jnp.maximum(jnp.exp(jax.random.uniform(k2, shape, minval=math.log(e_min), maxval=math.log(e_max))),
                         1.0001 * m)
    p = jnp.sqrt(energy ** 2 - m ** 2)
    cos = jax.random.uniform(k3, shape, minval=-1.0, maxval=1.0)
    sin = jnp.sqrt(1.0 - cos ** 2)
    phi = jax.random.uniform(k4, shape, minval=-jnp.pi, maxval=jnp.pi)
    p4 = jnp.stack([energy, p * sin * jnp.cos(phi), p * sin * jnp.sin(phi), p * cos], axis=-1)
    return Events.empty(*shape).replace(p4=p4, pid=pid, mask=jnp.ones(shape, bool))


def training_batch(key, detector_params, n_particles: int, config: DetectorConfig):
    """Gun particles through the parametric detector: per type ``(features, residuals, eligible, kept)``.

    Returns ``{type: (c f[M, 2], r f[M, D], eligible bool[M], kept bool[M])}`` with M = n_particles.
    """
    kg, kd = jax.random.split(key)
    truth = particle_gun(kg, n_particles)
    reco = parametric(config).apply(detector_params, kd, truth)
    kind, eligible = acceptance(truth, config)
    out = {}
    for t in TYPES:
        ok = eligible & (kind == TYPE_CODES[t])
        kept = ok & reco.mask
        if t == "track":
            r = track_residuals(truth.p4, reco.p4, kept)
        else:
            r = calo_residuals(truth.p4, reco.p4, kept)[..., None]
        c = truth_features(truth.p4, ok, t)
        out[t] = (c.reshape(-1, 2), r.reshape(-1, RESIDUAL_DIMS[t]), ok.reshape(-1), kept.reshape(-1))
    return out


def loss(weights, hidden, batch):
    """Negative log-likelihood per particle (module docstring), summed over the types; a scalar."""
    total = 0.0
    for t in TYPES:
        c, r, ok, kept = batch[t]
        w = weights[t]
        m, s, logit = conditional(hidden, w, c)
        u = (r / w["scale"] - m) * jnp.exp(-s)
        nll = jnp.sum(0.5 * u * u + s + jnp.log(w["scale"]) + 0.5 * math.log(2 * math.pi), axis=-1)
        total = total + jnp.sum(jnp.where(kept, nll, 0.0)) / jnp.maximum(jnp.sum(kept), 1)
        bce = -jnp.where(kept, jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit))
        total = total + jnp.sum(jnp.where(ok, bce, 0.0)) / jnp.maximum(jnp.sum(ok), 1)
    return total


def train(key, steps: int = 2000, batch: int = 4096, hidden=(32, 32), config="aleph", detector_params=None,
          learning_rate: float = 3e-3, progress: bool = False):
    """Fit the surrogate to ``parametric(config)`` with ``detector_params`` (default: its defaults).

    Args:
        key: PRNG key. steps: Adam steps. batch: gun particles per step (a multiple of 16).
        hidden: MLP widths. learning_rate: Adam's, with cosine decay to 0.1× over ``steps``.
        progress: show a tqdm bar.

    Returns:
        ``(model, losses)``: a :class:`~diffgen.detector.learned.LearnedDetectorModel` and f[steps] losses.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps = {steps!r}: need an integer >= 1")
    if not (isinstance(batch, int) and batch >= 16 and batch % 16 == 0):
        raise ValueError(f"batch = {batch!r}: need a positive multiple of 16")
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"learning_rate = {learning_rate!r}: need a finite value > 0")
    cfg = detector_config(config)
    hidden = check_hidden(hidden)
    det_params = parametric(cfg).init(None) if detector_params is None else dict(detector_params)
    k_init, k_scale, k_train = jax.random.split(key, 3)
    model = init_model(k_init, hidden, cfg)
    big = training_batch(k_scale, det_params, 16 * max(batch // 16, 1024), cfg)
    weights = {}
    for t in TYPES:
        _, r, _, kept = big[t]
        n_kept = jnp.maximum(jnp.sum(kept), 1)
        rms = jnp.sqrt(jnp.sum(jnp.where(kept[:, None], r * r, 0.0), axis=0) / n_kept)
        weights[t] = {"net": model.weights[t]["net"], "scale": jnp.maximum(rms, 1e-8).astype(jnp.float32)}
    nets = {t: weights[t]["net"] for t in TYPES}
    scales = {t: weights[t]["scale"] for t in TYPES}
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1))
    state = opt.init(nets)

    @jax.jit
    def step(nets, state, k):
        data = training_batch(k, det_params, batch, cfg)
        value, grads = jax.value_and_grad(
            lambda n: loss({t: {"net": n[t], "scale": scales[t]} for t in TYPES}, hidden, data))(nets)
        updates, state = opt.update(grads, state, nets)
        return optax.apply_updates(nets, updates), state, value

    losses = np.zeros(steps)
    bar = progress_bar(steps, "learned detector", "step", progress)
    for i in range(steps):
        nets, state, value = step(nets, state, jax.random.fold_in(k_train, i))
        losses[i] = float(value)
        if bar is not None:
            bar.update(1)
            if i % 50 == 0:
                bar.set_postfix(loss=f"{losses[i]:.4f}")
    if bar is not None:
        bar.close()
    weights = {t: {"net": nets[t], "scale": scales[t]} for t in TYPES}
    return LearnedDetectorModel(weights, hidden, cfg), losses


def _to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def save_checkpoint(path, model: LearnedDetectorModel) -> None:
    """Write ``model`` to ``path`` (msgpack, atomically: a temporary file in the same directory, then rename)."""
    if not isinstance(model, LearnedDetectorModel):
        raise ValueError(f"save_checkpoint needs a LearnedDetectorModel, got {type(model).__name__}")
    cfg = model.config
    payload = {"format": _FORMAT, "version": _VERSION, "hidden": list(model.hidden),
               "config": {f: getattr(cfg, f) for f in DetectorConfig._fields},
               "weights": _to_numpy(serialization.to_state_dict(model.weights))}
    data = serialization.msgpack_serialize(payload)
    with atomic_write(path, "wb") as fh:  # temporary file, renamed on success
        fh.write(data)


def _check_tree(got, want, where: str):
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            have = sorted(got) if isinstance(got, dict) else type(got).__name__
            raise ValueError(f"checkpoint: {where or 'weights'} has keys {have}, expected {sorted(want)}")
        for k in want:
            _check_tree(got[k], want[k], f"{where}/{k}")
        return
    if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype != want.dtype:
        desc = f"{got.dtype}{list(got.shape)}" if isinstance(got, np.ndarray) else type(got).__name__
        raise ValueError(f"checkpoint: {where} is {desc}, expected {want.dtype}{list(want.shape)}")


def load_checkpoint(path) -> LearnedDetectorModel:
    """Read a checkpoint of :func:`save_checkpoint` (bit-exact); ``ValueError`` naming what is malformed."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot read learned-detector checkpoint {path!r}: {e}") from e
    try:
        payload = serialization.msgpack_restore(raw)
    except Exception as e:  # msgpack raises several types for garbage
        raise ValueError(f"{path!r} is not a learned-detector checkpoint (not msgpack: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path!r}: format {fmt!r}, expected {_FORMAT!r}")
    if payload.get("version") != _VERSION:
        raise ValueError(f"{path!r}: version {payload.get('version')!r}, this diffgen reads version {_VERSION}")
    missing = {"hidden", "config", "weights"} - set(payload)
    if missing:
        raise ValueError(f"{path!r}: checkpoint lacks {sorted(missing)}")
    hidden_raw = payload["hidden"]
    if isinstance(hidden_raw, dict):  # msgpack_restore turns lists into {"0": ..}
        hidden_raw = [hidden_raw[k] for k in sorted(hidden_raw, key=int)]
    hidden = check_hidden(tuple(int(h) if isinstance(h, (int, np.integer)) else h for h in hidden_raw))
    cfg_raw = payload["config"]
    if not isinstance(cfg_raw, dict) or set(cfg_raw) != set(DetectorConfig._fields):
        raise ValueError(f"{path!r}: config {cfg_raw!r} needs the fields {list(DetectorConfig._fields)}")
    cfg = detector_config(DetectorConfig(**{f: cfg_raw[f] if f == "name" else float(cfg_raw[f])
                                            for f in DetectorConfig._fields}))
    template = _to_numpy(init_model(jax.random.key(0), hidden, cfg).weights)
    _check_tree(payload["weights"], template, "")
    weights = jax.tree_util.tree_map(jnp.asarray, payload["weights"])
    for t in TYPES:
        if not np.all(np.isfinite(np.asarray(weights[t]["scale"]))) or np.any(np.asarray(weights[t]["scale"]) <= 0):
            raise ValueError(f"{path!r}: weights/{t}/scale = {np.asarray(weights[t]['scale'])} must be finite and > 0")
    return LearnedDetectorModel(weights, hidden, cfg)
