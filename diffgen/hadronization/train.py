"""Adversarial training of the ML hadronization layer against reference hadron-level events.

Set-up (HADML v2, Chan et al. arXiv:2305.17169, adapted to references without a cluster record):

* **Generator**: the stage :func:`~diffgen.hadronization.ml.ml_hadronization` followed by
  :func:`~diffgen.decays.hadron_decays` (``decays=True``, default), applied to a fixed pool of parton-level
  events (e+e- → q q̄ + the shower at √s, sampled once). Free: the network weights and, optionally, the
  physical settings named in ``train_settings`` (e.g. ``ClusterFission:maxMass``; their gradients are
  the score terms in ``log_weight``, their values are clipped into their allowed range after each step).
* **Event-level discriminator** D_E: a Deep Sets network (:class:`~.networks.DeepSetsDiscriminator`) on
  the final-state particles (x_p, log x_p, |cos θ| and p_T about the thrust axis, charge) and the event
  features (n/40, n_ch/20, thrust, sphericity). It is the main discriminator: permutation invariant,
  and it sees correlations (multiplicity ↔ spectra ↔ event shape) that no single-object classifier sees.
* **Local discriminator** D_P (:class:`~.networks.ParticleDiscriminator`) on single final-state
  particles. HADML's cluster-level discriminator compares each generated cluster decay with the
  reference's cluster decay; a string-model or Pythia reference has no clusters, so here the local
  discriminator compares the single-particle distributions instead (the per-object marginal that the
  cluster decays shape most directly). Its loss enters with weight ``particle_weight``.

Losses (non-saturating GAN, weighted events): with normalised generated weights w̃_i (the events'
``exp(log_weight)`` — their value carries the hard-process weight, their gradient the score terms) and
reference weights v_j,

    L_D = Σ_i w̃_i softplus(D_E(x_i)) + Σ_j ṽ_j softplus(−D_E(y_j)) + λ [same for D_P, averaged over particles]
    L_G = Σ_i w̃_i softplus(−D_E(x_i)) + λ Σ_i w̃_i ⟨softplus(−D_P)⟩_particles of i

Each step: one batch of partons is hadronized (fresh keys), D takes one Adam step on it and a reference
batch, then G one Adam step on the same events (regenerated under ``grad``).

Outputs in ``out_dir``: ``checkpoint.msgpack`` (Flax serialization of the whole training state: weights,
optimiser states, step, loss history; reloads bit-exactly), ``config.json``, ``report.png`` (loss
curves and histograms of n_ch, x_p, thrust and sphericity: reference, untrained and trained layer),
``report.json`` (χ²/ndf of each histogram). Every file is written to a temporary name and renamed.

Recommendation: the adversarial set-up is the one implemented; a likelihood-trained conditional flow
(MLhad, arXiv:2311.09296) needs the per-cluster decay angles as training data, which only a cluster
model (Herwig) records, so against string or Pythia events the adversarial route is the one available.

Example (small; the CLI ``diffgen train-hadronization`` wraps :func:`train`):
    >>> cfg = TrainConfig(steps=2, batch=16, n_partons=32, n_reference=32)
    >>> cfg.steps, cfg.train_settings
    (2, ())
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from diffgen.checks import check_int
from diffgen.hadronization.ml import ML_SETTING_NAMES, ml_hadronization
from diffgen.hadronization.networks import DeepSetsDiscriminator, ParticleDiscriminator
from diffgen.hadronization.reference import (
    N_EVENT_FEATURES,
    N_PARTICLE_FEATURES,
    Reference,
    features,
    load_reference,
    reference_events,
)
from diffgen.params import DEFAULT_SQRT_S, SETTINGS, check_value
from diffgen.stage import event_keys, fold_keys

__all__ = ["TrainConfig", "Trainer", "train", "parton_generator", "save_checkpoint", "load_checkpoint",
           "trained_params",
           "CHECKPOINT", "CONFIG", "REPORT_PNG", "REPORT_JSON", "histogram_chi2", "OBSERVABLE_BINS"]

CHECKPOINT = "checkpoint.msgpack"
CONFIG = "config.json"
REPORT_PNG = "report.png"
REPORT_JSON = "report.json"
#: report histograms: name -> bin edges
OBSERVABLE_BINS = {"n_ch": np.arange(-0.5, 50.5, 2.0), "x_p": np.linspace(0.0, 1.0, 26),
                   "thrust": np.linspace(0.6, 1.0, 21), "sphericity": np.linspace(0.0, 0.8, 21)}


def _positive(value, name):
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (validated on construction: ``ValueError`` naming the value and its range)."""

    steps: int = 300  #: generator/discriminator update pairs
    batch: int = 128  #: events per step (generated and reference)
    n_partons: int = 4096  #: parton-level events in the pool
    n_reference: int = 4096  #: reference events used
    lr_gen: float = 1e-3  #: Adam learning rate of the network
    lr_disc: float = 1e-3  #: Adam learning rate of the discriminators
    lr_settings: float = 0.02  #: Adam learning rate of the free physical settings
    hidden: int = 64  #: width of the generator network
    depth: int = 2  #: hidden layers of the generator network
    noise_dim: int = 4  #: noise inputs of the generator network
    disc_hidden: int = 64  #: width of the discriminators
    particle_weight: float = 0.5  #: λ, weight of the per-particle discriminator loss
    train_settings: tuple = ()  #: physical settings trained with the network (names in ML_SETTING_NAMES)
    decays: bool = True  #: compare after hadron decays (final state); False: primary hadrons
    sqrt_s: float = DEFAULT_SQRT_S  #: GeV
    seed: int = 0
    checkpoint_every: int = 100  #: steps between checkpoints
    n_eval: int = 2048  #: events per sample in the report histograms

    def __post_init__(self):
        for name, lo in (("steps", 1), ("batch", 2), ("n_partons", 2), ("n_reference", 2), ("hidden", 1),
                         ("depth", 1), ("disc_hidden", 1), ("checkpoint_every", 1), ("n_eval", 1)):
            check_int(getattr(self, name), name, lo=lo)
        check_int(self.noise_dim, "noise_dim", lo=0, hi=256)
        check_int(self.seed, "seed", lo=0, hi=2**31 - 1)
        for name in ("lr_gen", "lr_disc", "lr_settings", "sqrt_s"):
            _positive(getattr(self, name), name)
        if not (math.isfinite(float(self.particle_weight)) and float(self.particle_weight) >= 0):
            raise ValueError(f"particle_weight must be a finite number >= 0, got {self.particle_weight!r}")
        names = tuple(self.train_settings)
        bad = [n for n in names if n not in ML_SETTING_NAMES]
        if bad:
            raise ValueError(f"train_settings {bad} are not settings of the ML layer; "
                             f"allowed: {', '.join(ML_SETTING_NAMES)}")
        object.__setattr__(self, "train_settings", names)
        if not isinstance(self.decays, bool):
            raise ValueError(f"decays must be a bool, got {self.decays!r}")

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "train_settings": list(self.train_settings)}, indent=1)

    @staticmethod
    def from_json(text: str) -> TrainConfig:
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"training config has unknown keys {unknown}; known: {sorted(known)}")
        return TrainConfig(**{**d, "train_settings": tuple(d.get("train_settings", ()))})


def parton_generator(sqrt_s: float = DEFAULT_SQRT_S):
    """The parton-level generator of the training pool: e+e- → γ*/Z → q q̄ (u..b) + the final-state shower."""
    from diffgen.processes import ee_to_ffbar
    from diffgen.shower import final_state_shower
    from diffgen.stage import Generator, chain

    return Generator(chain(("hard", ee_to_ffbar((1, 2, 3, 4, 5), sqrt_s)), ("shower", final_state_shower())),
                     name="ee-partons")


class Trainer:
    """The models, optimisers and jitted steps of one :class:`TrainConfig` (no state of its own)."""

    def __init__(self, config: TrainConfig):
        from diffgen.decays import hadron_decays

        self.config = config
        self.stage = ml_hadronization(hidden=config.hidden, depth=config.depth, noise_dim=config.noise_dim)
        self.decays = hadron_decays() if config.decays else None
        self.disc_event = DeepSetsDiscriminator(hidden=config.disc_hidden)
        self.disc_particle = ParticleDiscriminator(hidden=config.disc_hidden)
        self.opt_gen = optax.adam(config.lr_gen, b1=0.5)
        self.opt_disc = optax.adam(config.lr_disc, b1=0.5)
        self.opt_settings = optax.adam(config.lr_settings)
        self.base = self.stage.init(jax.random.key(config.seed))
        self.decay_params = self.decays.init(None) if self.decays else None
        self.step = jax.jit(self._step)
        self.generate = jax.jit(self._generate)

    # -- state -------------------------------------------------------------------------------------------
    def init_state(self) -> dict[str, Any]:
        """The initial training state (a pytree of arrays; ``step`` 0, empty loss history)."""
        key = jax.random.key(self.config.seed)
        part = jnp.zeros((1, 2, N_PARTICLE_FEATURES))
        disc = {"event": self.disc_event.init(jax.random.fold_in(key, 1), part, jnp.ones((1, 2), bool),
                                              jnp.zeros((1, N_EVENT_FEATURES)))["params"],
                "particle": self.disc_particle.init(jax.random.fold_in(key, 2), part)["params"]}
        net = self.base["net"]
        settings = {n: jnp.asarray(self.base[n]) for n in self.config.train_settings}
        steps = self.config.steps
        return self.as_device({"step": np.zeros((), np.int32), "net": net, "settings": settings, "disc": disc,
                "opt_gen": self.opt_gen.init(net), "opt_settings": self.opt_settings.init(settings),
                "opt_disc": self.opt_disc.init(disc),
                "history": {"d_loss": np.zeros(steps, np.float32), "g_loss": np.zeros(steps, np.float32),
                            "d_accuracy": np.zeros(steps, np.float32)}})

    @staticmethod
    def as_device(state):
        """The state as JAX arrays: a jitted step given NumPy leaves would compile a second time for
        its own (device-array) outputs."""
        return jax.tree_util.tree_map(jnp.asarray, state)

    def stage_params(self, state) -> dict[str, Any]:
        """``params["hadronization"]`` for the ML layer with the state's weights and settings."""
        return {**self.base, **state["settings"], "net": state["net"]}

    # -- the model ---------------------------------------------------------------------------------------
    def _generate(self, net, settings, key, partons):
        n = partons.n_events
        keys = event_keys(key, n)
        ev = self.stage.apply({**self.base, **settings, "net": net}, fold_keys(keys, 1), partons)
        if self.decays is not None:
            ev = self.decays.apply(self.decay_params, fold_keys(keys, 2), ev)
        return ev

    def _logits(self, disc, part, mask, event):
        le = self.disc_event.apply({"params": disc["event"]}, part, mask, event)
        lp = self.disc_particle.apply({"params": disc["particle"]}, part)
        return le, lp

    def _losses(self, le, lp, mask, w, label):
        """Weighted BCE of event and particle logits for ``label`` (1 reference, 0 generated); w sums to 1."""
        sign = -1.0 if label else 1.0
        ev_term = jnp.sum(w * jax.nn.softplus(sign * le))
        m = mask.astype(lp.dtype)
        per = jnp.sum(m * jax.nn.softplus(sign * lp), axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
        return ev_term + self.config.particle_weight * jnp.sum(w * per)

    @staticmethod
    def _gen_weights(ev):
        ok = ev.status == 0
        lw = jnp.where(ok, ev.log_weight, -jnp.inf)
        w = jnp.where(ok, jnp.exp(lw - jax.lax.stop_gradient(jnp.max(lw))), 0.0)
        return w / jax.lax.stop_gradient(jnp.maximum(jnp.sum(w), 1e-30))

    def _step(self, state, key, partons, ref_part, ref_mask, ref_event, ref_w):
        cfg = self.config
        ev = self._generate(state["net"], state["settings"], key, partons)
        part, mask, event = jax.lax.stop_gradient(features(ev, cfg.sqrt_s))
        w_gen = jax.lax.stop_gradient(self._gen_weights(ev))
        w_ref = ref_w / jnp.sum(ref_w)

        def d_loss(disc):
            le_g, lp_g = self._logits(disc, part, mask, event)
            le_r, lp_r = self._logits(disc, ref_part, ref_mask, ref_event)
            acc = 0.5 * (jnp.sum(w_gen * (le_g < 0)) + jnp.sum(w_ref * (le_r > 0)))
            return self._losses(le_g, lp_g, mask, w_gen, 0) + self._losses(le_r, lp_r, ref_mask, w_ref, 1), acc

        (ld, acc), gd = jax.value_and_grad(d_loss, has_aux=True)(state["disc"])
        upd, opt_disc = self.opt_disc.update(gd, state["opt_disc"], state["disc"])
        disc = optax.apply_updates(state["disc"], upd)

        def g_loss(net, settings):
            ev_g = self._generate(net, settings, key, partons)
            p, m, e = features(ev_g, cfg.sqrt_s)
            le, lp = self._logits(disc, p, m, e)
            return self._losses(le, lp, m, self._gen_weights(ev_g), 1)

        lg, (g_net, g_set) = jax.value_and_grad(g_loss, argnums=(0, 1))(state["net"], state["settings"])
        upd, opt_gen = self.opt_gen.update(g_net, state["opt_gen"], state["net"])
        net = optax.apply_updates(state["net"], upd)
        upd, opt_settings = self.opt_settings.update(g_set, state["opt_settings"], state["settings"])
        settings = optax.apply_updates(state["settings"], upd)
        settings = {n: jnp.clip(v, SETTINGS[n].lo + 1e-3 * (SETTINGS[n].hi - SETTINGS[n].lo), SETTINGS[n].hi)
                    for n, v in settings.items()}
        i = state["step"]
        hist = {"d_loss": state["history"]["d_loss"].at[i].set(ld), "g_loss": state["history"]["g_loss"].at[i].set(lg),
                "d_accuracy": state["history"]["d_accuracy"].at[i].set(acc)}
        return {"step": i + 1, "net": net, "settings": settings, "disc": disc, "opt_gen": opt_gen,
                "opt_settings": opt_settings, "opt_disc": opt_disc, "history": hist}


# -- checkpoints ---------------------------------------------------------------------------------------------
def save_checkpoint(path, state) -> None:
    """Write the training state with Flax serialization (msgpack), atomically (temp file, then rename)."""
    from diffgen.io.atomic import atomic_write

    data = serialization.to_bytes(jax.device_get(state))
    with atomic_write(path, "wb") as f:
        f.write(data)


def load_checkpoint(path, template) -> dict[str, Any]:
    """Read a state written by :func:`save_checkpoint`; ``template`` is a state of the same config
    (:meth:`Trainer.init_state`). Bit-exact. ``ValueError`` if the file does not match the template."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"checkpoint {name!r} does not exist")
    with open(name, "rb") as f:
        data = f.read()
    template = jax.device_get(template)
    try:
        state = serialization.from_bytes(template, data)
    except Exception as err:  # msgpack and structure errors have many types
        raise ValueError(f"checkpoint {name!r} does not match this training configuration: {err}") from None
    want, tree_t = jax.tree_util.tree_flatten(template)
    got, tree_g = jax.tree_util.tree_flatten(state)
    if tree_t != tree_g or any(np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.asarray(b).dtype
                               for a, b in zip(want, got)):
        raise ValueError(f"checkpoint {name!r} does not match this training configuration "
                         "(different network shapes, settings or number of steps)")
    return state


def trained_params(out_dir) -> dict[str, Any]:
    """``params["hadronization"]`` from a training directory, for ``presets.ee_hadrons(hadronization="ml")``
    (whose network has the default shape; train with the default ``hidden``, ``depth`` and ``noise_dim``)."""
    config = TrainConfig.from_json(open(os.path.join(out_dir, CONFIG), encoding="utf-8").read())
    trainer = Trainer(config)
    state = load_checkpoint(os.path.join(out_dir, CHECKPOINT), trainer.init_state())
    return trainer.stage_params(state)


# -- report --------------------------------------------------------------------------------------------------
def _observables(ev, weight, sqrt_s):
    from diffgen.observables import charged_multiplicity, sphericity, thrust

    mask = np.asarray(ev.mask)
    p = np.asarray(ev.p4)
    x_p = 2.0 * np.linalg.norm(p[..., 1:], axis=-1) / sqrt_s
    obs = jax.jit(lambda e: (charged_multiplicity(e), thrust(e), sphericity(e)))(ev)
    n_ch, t, s = (np.asarray(o) for o in obs)
    w_part = np.broadcast_to(weight[:, None], mask.shape)[mask]
    return {"n_ch": (n_ch, weight), "x_p": (x_p[mask], w_part), "thrust": (t, weight), "sphericity": (s, weight)}


def _hist(values, weights, edges):
    c, _ = np.histogram(values, edges, weights=weights)
    c2, _ = np.histogram(values, edges, weights=weights ** 2)
    norm = np.sum(weights) * np.diff(edges)
    return c / norm, np.sqrt(c2) / norm


def histogram_chi2(a, b, edges) -> tuple[float, int]:
    """χ² and ndf between two weighted samples ``a = (values, weights)`` and ``b`` on ``edges``:
    Σ (h_a − h_b)² / (σ_a² + σ_b²) over bins where either is filled (normalised densities)."""
    ha, ea = _hist(*a, edges)
    hb, eb = _hist(*b, edges)
    var = ea ** 2 + eb ** 2
    ok = var > 0
    return float(np.sum((ha - hb)[ok] ** 2 / var[ok])), int(np.count_nonzero(ok))


def _eval_sample(trainer, state, partons, key, n):
    from diffgen.events import Events

    b = trainer.config.batch
    parts, weights = [], []
    for i in range(-(-n // b)):
        idx = (np.arange(i * b, (i + 1) * b)) % partons.n_events
        ev = trainer.generate(state["net"], state["settings"], jax.random.fold_in(key, i), partons[idx])
        ev = jax.device_get(ev)
        parts.append(ev)
        weights.append(np.asarray(trainer._gen_weights(ev)))
    ev = Events.concatenate(parts)[:n]
    w = np.concatenate(weights)[:n]
    return ev, w / np.mean(w[w > 0])


def write_report(out_dir, trainer, state, partons, reference: Reference) -> dict[str, Any]:
    """Histograms of the reference and of the untrained and trained layer; report.png and report.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffgen.io.atomic import atomic_write

    cfg = trainer.config
    n = min(cfg.n_eval, len(reference.p4))
    key = jax.random.fold_in(jax.random.key(cfg.seed), 777)
    ref_ev = reference_events(reference.p4[:n], reference.pid[:n], reference.mask[:n])
    samples = {"reference": _observables(ref_ev, reference.weight[:n], cfg.sqrt_s)}
    untrained = trainer.init_state()
    for label, st in (("untrained", untrained), ("trained", state)):
        ev, w = _eval_sample(trainer, st, partons, key, n)
        samples[label] = _observables(ev, w, cfg.sqrt_s)
    chi2 = {label: {} for label in ("untrained", "trained")}
    for label in chi2:
        for obs, edges in OBSERVABLE_BINS.items():
            c, ndf = histogram_chi2(samples[label][obs], samples["reference"][obs], edges)
            chi2[label][obs] = {"chi2": c, "ndf": ndf, "chi2_per_ndf": c / max(ndf, 1)}
    steps = int(state["step"])
    hist = {k: np.asarray(v)[:steps].tolist() for k, v in state["history"].items()}
    report = {"reference": reference.source, "steps": steps, "chi2": chi2, "history": hist,
              "settings": {k: float(v) for k, v in state["settings"].items()}, "n_eval": n}

    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    ax = axes[0, 0]
    ax.plot(hist["d_loss"], label="discriminator")
    ax.plot(hist["g_loss"], label="generator")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax2 = axes[1, 0]
    ax2.plot(hist["d_accuracy"], color="k")
    ax2.axhline(0.5, ls=":", color="grey")
    ax2.set_xlabel("step")
    ax2.set_ylabel("discriminator accuracy")
    for a, (obs, edges) in zip([axes[0, 1], axes[0, 2], axes[1, 1], axes[1, 2]], OBSERVABLE_BINS.items()):
        for label, colour, line in (("reference", "k", "-"), ("untrained", "C1", "--"), ("trained", "C0", "-")):
            h, _ = _hist(*samples[label][obs], edges)
            extra = "" if label == "reference" else f" (χ²/ndf {chi2[label][obs]['chi2_per_ndf']:.2f})"
            a.stairs(h, edges, color=colour, linestyle=line, label=label + extra)
        a.set_xlabel(obs)
        if obs == "x_p":
            a.set_yscale("log")
        a.legend(fontsize=8)
    fig.suptitle(f"ML hadronization vs {os.path.basename(reference.source)}: {steps} steps")
    fig.tight_layout()
    with atomic_write(os.path.join(out_dir, REPORT_PNG), "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    with atomic_write(os.path.join(out_dir, REPORT_JSON), "w") as f:
        f.write(json.dumps(report, indent=1))
    return report


# -- the loop ------------------------------------------------------------------------------------------------
def train(config: TrainConfig, reference: str | Reference, out_dir, progress: bool = True,
          resume: bool = False) -> dict[str, Any]:
    """Train the ML layer (module docstring); returns the report dict. ``reference``: ``"string"``, a
    file path or a loaded :class:`~diffgen.hadronization.reference.Reference`.

    ``ValueError`` (before any training) for a bad config, an unusable output directory or a malformed
    reference; ``resume=True`` continues from ``out_dir``'s checkpoint if its config is the same.
    """
    from diffgen.fit.util import progress_bar
    from diffgen.io.atomic import atomic_write, check_writable

    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output directory {out_dir!r} is a file")
    os.makedirs(out_dir, exist_ok=True)
    check_writable(os.path.join(out_dir, CHECKPOINT))
    for name in config.train_settings:
        check_value(name, SETTINGS[name].default)
    if not isinstance(reference, Reference):
        reference = load_reference(reference, config.n_reference, jax.random.key(config.seed + 1), config.sqrt_s,
                                   progress=progress)
    trainer = Trainer(config)
    state = trainer.init_state()
    ckpt = os.path.join(out_dir, CHECKPOINT)
    if resume and os.path.isfile(ckpt):
        old = TrainConfig.from_json(open(os.path.join(out_dir, CONFIG), encoding="utf-8").read())
        if old != config:
            raise ValueError(f"cannot resume: {out_dir!r} was trained with a different configuration")
        state = trainer.as_device(load_checkpoint(ckpt, state))
    with atomic_write(os.path.join(out_dir, CONFIG), "w") as f:
        f.write(config.to_json())

    gen = parton_generator(config.sqrt_s)
    partons = gen.sample(gen.default_params(), jax.random.key(config.seed + 2), config.n_partons)
    good = np.nonzero(np.asarray(partons.status) == 0)[0]
    partons = partons[good]
    ref_ev = reference_events(reference.p4, reference.pid, reference.mask)
    ref_part, ref_mask, ref_event = jax.jit(lambda e: features(e, config.sqrt_s))(ref_ev)
    ref_w = jnp.asarray(reference.weight)
    key = jax.random.key(config.seed + 3)
    bar = progress_bar(config.steps, "training ML hadronization", "step", progress)
    start = int(state["step"])
    if bar is not None:
        bar.update(start)
    b = config.batch
    for i in range(start, config.steps):
        rng = np.random.default_rng((config.seed, i))  # batch i depends on (seed, i) only: resumable
        pi = rng.integers(0, partons.n_events, b)
        ri = rng.integers(0, len(reference.p4), b)
        state = trainer.step(state, jax.random.fold_in(key, i), partons[pi], ref_part[ri], ref_mask[ri],
                             ref_event[ri], ref_w[ri])
        if bar is not None:
            bar.update(1)
            if (i + 1) % 10 == 0:
                bar.set_postfix(d=f"{float(state['history']['d_loss'][i]):.3f}",
                                g=f"{float(state['history']['g_loss'][i]):.3f}")
        if (i + 1) % config.checkpoint_every == 0 or i + 1 == config.steps:
            save_checkpoint(ckpt, state)
    if bar is not None:
        bar.close()
    if start >= config.steps:
        save_checkpoint(ckpt, state)
    return write_report(out_dir, trainer, state, partons, reference)
