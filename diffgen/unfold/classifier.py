"""Weighted classifiers and regressors trained with optax: the engine of OmniFold, DCTR and SALLY.

**Classification** (``loss="bce"``). Samples A (label 0, weights w_A) and B (label 1, weights w_B) are
rescaled to equal total weight and a network with logit output s(x) minimises the weighted binary
cross-entropy

    L = Σ_i w_i [y_i log(1 + e^{−s_i}) + (1 − y_i) log(1 + e^{s_i})] / Σ_i w_i.

The minimiser is s(x) = log p_B(x)/p_A(x) (normalised densities), so the likelihood ratio of the two
samples is r(x) = e^{s(x)} = f/(1 − f) with f the classifier output.

**Regression** (``loss="mse"``): L = Σ_i w_i |y_i − s(x_i)|² / Σ_i w_i, minimised by s(x) = E[y | x]
(used by SALLY to regress the joint score).

Training: inputs are standardised (:mod:`diffgen.unfold.networks`), a fraction of the events is held
out for validation (split by the key), the rest is padded with zero-weight rows to a whole number of
batches, and each epoch runs Adam over shuffled batches in jitted ``lax.scan`` calls of fixed shape. Training stops when
the validation loss has not improved for ``patience`` epochs; the weights of the best epoch are
returned. A :class:`Trainer` compiles once per input shape: OmniFold reuses one per step across
iterations, warm-starting from the previous weights.

Example:
    >>> import jax, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(0.0, 1.0, 4000), rng.normal(0.5, 1.0, 4000)
    >>> clf, info = fit_classifier(jax.random.key(0), mlp(hidden=(16,)), a, None, b, None,
    ...                            TrainConfig(epochs=30, batch_size=512))
    >>> r = np.asarray(clf.log_ratio(np.array([[0.25]])))  # exact log ratio at x = 0.25 is 0
    >>> bool(abs(r[0]) < 0.15)
    True
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.checks import check_int
from diffgen.unfold.inputs import ParticleSet, as_features, as_weights, concat_rows, n_rows, take_rows
from diffgen.unfold.networks import Network, mlp, standardise, standardiser

__all__ = ["TrainConfig", "TrainInfo", "Trainer", "Classifier", "make_trainer", "train", "fit_classifier",
           "fit_regressor", "predict", "weighted_bce"]


class TrainConfig(NamedTuple):
    """Training hyperparameters (static configuration).

    Attributes:
        epochs: maximum number of passes over the training split.
        batch_size: events per Adam step (fewer if the sample is smaller).
        learning_rate: Adam step size.
        patience: stop after this many epochs without a validation improvement.
        validation_fraction: fraction of events held out for early stopping, in (0, 0.5].
        min_delta: an improvement smaller than this (absolute, in loss units) does not count.
        ema: decay per step of the exponential moving average of the weights (Polyak averaging),
            which is what is validated and returned; 0 turns it off. Averaging removes most of
            the step-to-step noise of the stochastic gradient, which otherwise shows up as a bias
            of the unfolded moments of a few per cent of their statistical error per 0.1 in ε.
    """

    epochs: int = 50
    batch_size: int = 2048
    learning_rate: float = 5e-3
    patience: int = 8
    validation_fraction: float = 0.2
    min_delta: float = 0.0
    ema: float = 0.99

    def checked(self) -> TrainConfig:
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_int(self.patience, "patience")
        if not 0.0 < float(self.validation_fraction) <= 0.5:
            raise ValueError(f"validation_fraction must be in (0, 0.5], got {self.validation_fraction!r}")
        if not 0.0 <= float(self.ema) < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        return self


class TrainInfo(NamedTuple):
    """What one training did: epochs run, the best epoch, its losses, whether it stopped early."""

    epochs: int
    best_epoch: int
    train_loss: float
    val_loss: float
    stopped_early: bool


class Classifier(NamedTuple):
    """A trained network with its input standardisation. ``log_ratio(x)`` = s(x), f[N] (or f[N, K])."""

    network: Network
    weights: object
    standardiser: object
    batch_size: int = 8192

    def output(self, x):
        """Network output on (unstandardised) inputs, in chunks of ``batch_size`` events: f[N, n_out]."""
        return predict(self.network, self.weights, self.standardiser, x, self.batch_size)

    def log_ratio(self, x):
        """s(x) = log p_B(x)/p_A(x) for a classifier (f[N]); the regression E[y|x] for a regressor."""
        out = self.output(x)
        return out[:, 0] if out.shape[1] == 1 else out


def weighted_bce(logits, labels, weights):
    """Σ w [y softplus(−s) + (1 − y) softplus(s)] / Σ w (weighted binary cross-entropy on logits)."""
    per = labels * jax.nn.softplus(-logits) + (1.0 - labels) * jax.nn.softplus(logits)
    return jnp.sum(weights * per) / jnp.maximum(jnp.sum(weights), 1e-30)


def _mse(out, targets, weights):
    per = jnp.sum((out - targets) ** 2, axis=-1)
    return jnp.sum(weights * per) / jnp.maximum(jnp.sum(weights), 1e-30)


def _std_tree(x, s):
    if isinstance(x, tuple) and not isinstance(x, ParticleSet):
        return tuple(standardise(a, b) for a, b in zip(x, s))
    return standardise(x, s)


def _make_std(x):
    if isinstance(x, tuple) and not isinstance(x, ParticleSet):
        return tuple(standardiser(a) for a in x)
    return standardiser(x)


class Trainer(NamedTuple):
    """Jitted pieces for one network, loss and configuration (compile once per input shape)."""

    network: Network
    config: TrainConfig
    loss: str
    optimizer: optax.GradientTransformation
    epoch: object


def _net_apply(network, weights, x):
    if isinstance(x, tuple) and not isinstance(x, ParticleSet):
        return network.apply(weights, *x)
    return network.apply(weights, x)


@functools.lru_cache(maxsize=32)
def make_trainer(network: Network, config: TrainConfig = TrainConfig(), loss: str = "bce") -> Trainer:
    """The jitted training step for ``network`` (cached: the same arguments give the same compiled code).

    ``epoch(weights, opt_state, xb, yb, wb)`` runs Adam over ``STEPS_PER_CALL`` batches of
    ``config.batch_size`` rows in one ``lax.scan``; a batch with zero total weight (padding) leaves
    the weights and the optimiser state unchanged. Shapes are fixed by the batch size and the
    feature shape, so every sample size and every OmniFold iteration reuses one compilation.
    """
    config = config.checked()
    if loss not in ("bce", "mse"):
        raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
    optimizer = optax.adam(float(config.learning_rate))

    def batch_loss(weights, x, y, w):
        out = _net_apply(network, weights, x)
        return weighted_bce(out[:, 0], y, w) if loss == "bce" else _mse(out, y, w)

    decay = float(config.ema)

    @jax.jit
    def epoch(weights, opt_state, xb, yb, wb):
        """``weights`` = (raw, averaged); ``opt_state`` Adam's state."""

        def step(carry, data):
            (params, ema), state = carry
            value, grads = jax.value_and_grad(batch_loss)(params, *data)
            updates, new_state = optimizer.update(grads, state, params)
            active = jnp.sum(data[2]) > 0
            keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
            new_params = optax.apply_updates(params, updates)
            new_ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema, new_params)
            params = jax.tree_util.tree_map(keep, new_params, params)
            ema = jax.tree_util.tree_map(keep, new_ema, ema)
            state = jax.tree_util.tree_map(keep, new_state, state)
            return ((params, ema), state), value

        (weights, opt_state), losses = jax.lax.scan(step, (weights, opt_state), (xb, yb, wb))
        return weights, opt_state, losses

    return Trainer(network, config, loss, optimizer, epoch)


#: batches per call of the jitted training scan (fixed, so the compiled shape does not depend on N)
STEPS_PER_CALL = 8
#: events per call of the jitted prediction
PREDICT_CHUNK = 8192


@functools.partial(jax.jit, static_argnums=0)
def _predict_chunk(network, weights, std, x):
    return _net_apply(network, weights, _std_tree(x, std))


def _pad_rows(x, n_to):
    def pad(a):
        a = np.asarray(a)
        extra = n_to - a.shape[0]
        return a if extra == 0 else np.concatenate([a, np.zeros((extra,) + a.shape[1:], a.dtype)], axis=0)

    return jax.tree_util.tree_map(pad, x)


def _batch_for(n: int, batch_size: int) -> int:
    return int(min(batch_size, max(8, 1 << (int(n) - 1).bit_length())))


def predict(network: Network, weights, std, x, batch_size: int = PREDICT_CHUNK):
    """Network output on ``x`` (standardised with ``std`` inside) in fixed chunks: NumPy f[N, n_out].

    One compilation per (network, chunk, feature shape): the last chunk is padded.
    """
    n = n_rows(x)
    chunk = _batch_for(n, batch_size)
    outs = []
    for lo in range(0, n, chunk):
        part = _pad_rows(take_rows(x, slice(lo, lo + chunk)), chunk)
        outs.append(np.asarray(_predict_chunk(network, weights, std, part), np.float64))
    return np.concatenate(outs, axis=0)[:n]


def _val_loss(loss, out, y, w):
    out = np.asarray(out, np.float64)
    if loss == "bce":
        s = out[:, 0]
        per = y * np.logaddexp(0.0, -s) + (1.0 - y) * np.logaddexp(0.0, s)
    else:
        per = np.sum((out - y) ** 2, axis=-1)
    return float(np.sum(w * per) / max(np.sum(w), 1e-300))


def train(key, trainer: Trainer, x, y, w, std=None, init_weights=None) -> tuple[Classifier, TrainInfo]:
    """Train ``trainer.network`` on inputs ``x`` (N rows), targets ``y`` and weights ``w`` f[N].

    ``y`` is f[N] labels for ``"bce"`` or f[N, K] targets for ``"mse"``. Rows with zero weight carry
    no information. Returns the best-validation-epoch :class:`Classifier` and a :class:`TrainInfo`.
    """
    cfg = trainer.config
    n = n_rows(x)
    std = _make_std(x) if std is None else std
    k_split, k_init, k_epochs = jax.random.split(key, 3)
    perm = np.asarray(jax.random.permutation(k_split, n))
    n_val = max(1, int(round(cfg.validation_fraction * n)))
    if n - n_val < 1:
        raise ValueError(f"too few events to train ({n}); need at least 2")
    val, tr = perm[:n_val], perm[n_val:]
    batch = _batch_for(len(tr), cfg.batch_size)
    per_call = batch * STEPS_PER_CALL
    n_pad = -(-len(tr) // per_call) * per_call
    x_tr = jax.tree_util.tree_map(np.asarray, _std_np(take_rows(x, tr), std))
    y_tr = np.asarray(y, np.float32)[tr]
    w_tr = np.asarray(w, np.float32)[tr]
    x_val, y_val, w_val = take_rows(x, val), np.asarray(y, np.float64)[val], np.asarray(w, np.float64)[val]
    if init_weights is None:
        sample = jax.tree_util.tree_map(lambda a: jnp.asarray(a[:2]), x_tr)
        init_weights = (trainer.network.init(k_init, *sample) if isinstance(sample, tuple)
                        and not isinstance(sample, ParticleSet) else trainer.network.init(k_init, sample))
    weights, opt_state = (init_weights, init_weights), trainer.optimizer.init(init_weights)
    best = (np.inf, init_weights, 0, np.nan)
    waited, epoch = 0, 0
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_epochs)).ravel())
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(len(tr))
        xs, ys, ws = _pad_rows((take_rows(x_tr, order), y_tr[order], w_tr[order]), n_pad)
        losses = []
        for lo in range(0, n_pad, per_call):
            def cut(a, lo=lo):
                return a[lo:lo + per_call].reshape((STEPS_PER_CALL, batch) + a.shape[1:])

            xb, yb, wb = jax.tree_util.tree_map(cut, (xs, ys, ws))
            weights, opt_state, part = trainer.epoch(weights, opt_state, xb, yb, wb)
            losses.append(part)
        train_loss = float(np.mean(np.concatenate([np.asarray(p) for p in losses])))
        out = predict(trainer.network, weights[1], std, x_val)
        loss = _val_loss(trainer.loss, out, y_val, w_val)
        if loss < best[0] - cfg.min_delta:
            best, waited = (loss, weights[1], epoch, train_loss), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    stopped = epoch < cfg.epochs
    info = TrainInfo(epoch, best[2], best[3], float(best[0]), stopped)
    return Classifier(trainer.network, best[1], std), info


def _std_np(x, std):
    out = _std_tree(jax.tree_util.tree_map(jnp.asarray, x), std)
    return jax.tree_util.tree_map(np.asarray, out)


def _balanced(w_a, w_b):
    """Rescale both samples to total weight (n_a + n_b)/2 each (equal class priors, mean weight ~1)."""
    half = 0.5 * (len(w_a) + len(w_b))
    return w_a * (half / np.sum(w_a)), w_b * (half / np.sum(w_b))


def fit_classifier(key, network: Network, x_a, w_a, x_b, w_b, config: TrainConfig = TrainConfig(),
                   trainer: Trainer | None = None, init_weights=None, std=None):
    """Train a classifier of sample B (label 1) against sample A (label 0): s(x) → log p_B(x)/p_A(x).

    Args:
        key: PRNG key (split, initialisation, shuffling).
        network: a :class:`~diffgen.unfold.networks.Network` with one output.
        x_a, x_b: features f[N_A, F] and f[N_B, F] (or ParticleSets, or tuples (features, context)).
        w_a, w_b: weights f[N_A], f[N_B] or None; each sample is normalised to the same total.
        config: :class:`TrainConfig`; trainer: a prebuilt :class:`Trainer` (reuses compilations).

    Returns:
        (:class:`Classifier`, :class:`TrainInfo`).
    """
    if not isinstance(x_a, tuple) or isinstance(x_a, ParticleSet):
        x_a, x_b = as_features(x_a, "x_a"), as_features(x_b, "x_b")
    n_a, n_b = n_rows(x_a), n_rows(x_b)
    w_a, w_b = _balanced(as_weights(w_a, n_a, "w_a"), as_weights(w_b, n_b, "w_b"))
    x = concat_rows([x_a, x_b])
    y = np.concatenate([np.zeros(n_a), np.ones(n_b)])
    trainer = trainer or make_trainer(network, config, "bce")
    return train(key, trainer, x, y, np.concatenate([w_a, w_b]), std=std, init_weights=init_weights)


def fit_regressor(key, network: Network, x, targets, weights=None, config: TrainConfig = TrainConfig(),
                  trainer: Trainer | None = None):
    """Weighted least-squares regression s(x) → E[targets | x] (targets f[N, K]); returns (Classifier, info)."""
    x = as_features(x, "x")
    n = n_rows(x)
    t = np.asarray(targets, np.float64)
    t = t[:, None] if t.ndim == 1 else t
    if t.shape[0] != n:
        raise ValueError(f"targets must have {n} rows (one per event), got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("targets has non-finite values")
    w = as_weights(weights, n, "weights")
    w = w * (n / np.sum(w))
    trainer = trainer or make_trainer(network, config, "mse")
    return train(key, trainer, x, t, w)


__all__ += ["mlp"]
