"""Training a sampler on an integrand: weight variance or KL divergence, online and buffered samples (MadNIS).

For an integrand f ≥ 0 on [0, 1]^d with integral I = ∫ f, a sampler q (params φ) and points x drawn from a
*sampling* density g (the sampler when the points were made, stored with log g(x)):

* ``"variance"``: L = E_g[f² / (q g)] / Î² — equal to E_q[w²]/I² = 1 + Var_q(w)/I² with w = f/q, whose
  gradient −E_g[(f²/(q g)) ∇log q]/Î² is the gradient of the weight variance (i-flow, MadNIS);
* ``"kl"``: L = −E_g[(f/g) log q] / Î — the KL divergence KL(f/I ‖ q) up to a φ-independent constant.

Î = mean(f/g) over the batch is a stop-gradient normalisation, so the losses are O(1) for any scale of f.
When g = q (online samples) both are the textbook losses; with g ≠ q (older samples) the factor q/g makes
them unbiased — this is what lets MadNIS reuse samples. :func:`train` alternates one **online** step on
``batch`` fresh points (integrand calls) with ``buffered_steps`` steps on random batches of a ring buffer
of the last ``buffer_size`` points (no integrand calls), the scheme of Heimel et al. arXiv:2311.01548.

The whole state is a :class:`TrainState` (params, optimiser state, buffer, key, counters): saving and
reloading it (:mod:`diffgen.flows.checkpoint`) continues training bit for bit.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.flows import flow_sampler, spline_flow, train
    >>> sampler = flow_sampler(spline_flow(2, bins=8, hidden=(16,)))
    >>> f = lambda x: 4.0 * x[:, 0] * x[:, 1]           # integral 1
    >>> state, history = train(jax.random.key(0), sampler, f, steps=30, batch=256, progress=False)
    >>> int(history["calls"][-1]), bool(history["rel_std"][-1] < history["rel_std"][0])
    (7680, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.checks import check_int
from diffgen.flows.sampler import Sampler

__all__ = ["TrainState", "init_train_state", "train", "loss_fn", "LOSSES", "make_optimizer"]

LOSSES = ("variance", "kl")


class TrainState(NamedTuple):
    """Everything training needs to continue: a pytree (checkpointable with flax serialization)."""

    params: Any
    opt_state: Any
    buffer_x: jax.Array  #: f[B, dim] stored points
    buffer_f: jax.Array  #: f[B] integrand values
    buffer_log_g: jax.Array  #: f[B] log density of the sampler that drew them
    buffer_fill: jax.Array  #: i32 number of valid entries
    buffer_pos: jax.Array  #: i32 next write position (ring)
    key: jax.Array  #: PRNG key data (u32[2])
    step: jax.Array  #: i32 online steps done
    calls: jax.Array  #: i32 integrand calls so far (online points)


def loss_fn(kind: str):
    """The loss ``(log_q, f, log_g) -> scalar`` of the module docstring; ``kind`` in :data:`LOSSES`."""
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")

    def variance(log_q, f, log_g):
        w_g = f * jnp.exp(-log_g)
        norm = jax.lax.stop_gradient(jnp.mean(w_g))
        return jnp.mean(w_g * f * jnp.exp(-log_q)) / (norm * norm)

    def kl(log_q, f, log_g):
        w_g = f * jnp.exp(-log_g)
        norm = jax.lax.stop_gradient(jnp.mean(w_g))
        return -jnp.mean(w_g * log_q) / norm

    return variance if kind == "variance" else kl


def make_optimizer(learning_rate: float, steps: int):
    """Adam with a cosine decay of the learning rate to 1 % over the total number of gradient steps."""
    if not (learning_rate > 0 and np.isfinite(learning_rate)):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
    return optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=0.01))


def init_train_state(key, sampler: Sampler, optimizer, buffer_size: int, params=None, dtype=None) -> TrainState:
    """A fresh :class:`TrainState` (params from ``sampler.init`` unless given, empty buffer)."""
    dtype = dtype or jnp.result_type(float)
    k_init, k_run = jax.random.split(key)
    params = sampler.init(k_init) if params is None else params
    b = max(int(buffer_size), 1)
    return TrainState(params, optimizer.init(params), jnp.zeros((b, sampler.dim), dtype), jnp.zeros(b, dtype),
                      jnp.zeros(b, dtype), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                      jax.random.key_data(k_run), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _make_step(sampler, integrand, optimizer, loss, batch, buffered_steps):
    loss_of = loss_fn(loss)

    def grad_step(params, opt_state, x, f, log_g, cond):
        def objective(p):
            return loss_of(sampler.log_prob(p, x, cond), f, log_g)

        value, grads = jax.value_and_grad(objective)(params)
        grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    @jax.jit
    def step(state: TrainState, cond):
        key = jax.random.wrap_key_data(state.key)
        key, k_u, k_buf = jax.random.split(key, 3)
        u = jax.random.uniform(k_u, (batch, sampler.n_uniforms), state.buffer_f.dtype)
        x, log_g = jax.lax.stop_gradient(sampler.sample(state.params, u, cond))
        f = jnp.asarray(integrand(x), state.buffer_f.dtype)
        f = jnp.where(jnp.isfinite(f) & (f > 0), f, 0.0)
        w = f * jnp.exp(-log_g)
        params, opt_state, _ = grad_step(state.params, state.opt_state, x, f, log_g, cond)
        # store the fresh points in the ring buffer
        size = state.buffer_f.shape[0]
        pos = (state.buffer_pos + jnp.arange(batch)) % size
        bx = state.buffer_x.at[pos].set(x)
        bf = state.buffer_f.at[pos].set(f)
        bg = state.buffer_log_g.at[pos].set(log_g)
        fill = jnp.minimum(state.buffer_fill + batch, size)

        def buffered(carry, k):
            p, o = carry
            idx = jax.random.randint(k, (batch,), 0, fill)
            p, o, _ = grad_step(p, o, bx[idx], bf[idx], bg[idx], cond)
            return (p, o), None

        if buffered_steps:
            (params, opt_state), _ = jax.lax.scan(buffered, (params, opt_state),
                                                  jax.random.split(k_buf, buffered_steps))
        new = TrainState(params, opt_state, bx, bf, bg, fill, (state.buffer_pos + batch) % size,
                         jax.random.key_data(key), state.step + 1, state.calls + batch)
        mean = jnp.mean(w)
        return new, {"sigma": mean, "rel_std": jnp.std(w) / mean, "eff": mean / jnp.max(w)}

    return step


def train(key, sampler: Sampler, integrand: Callable, steps: int = 200, batch: int = 1024,
          buffered_steps: int = 0, buffer_size: int | None = None, loss: str = "variance",
          learning_rate: float = 3e-3, state: TrainState | None = None, cond=None, progress: bool = True,
          callback: Callable | None = None, schedule_steps: int | None = None):
    """Train ``sampler`` on ``integrand`` (``f(x[N, dim]) -> f[N] ≥ 0``, jittable).

    Each of ``steps`` online steps draws ``batch`` points (``batch`` integrand calls) and takes one gradient
    step on them, then ``buffered_steps`` steps on random batches of the ring buffer of the last
    ``buffer_size`` points (default ``4 * batch``). ``state`` continues an earlier run (e.g. a checkpoint);
    ``callback(state, info)`` runs after every step on the host. The learning rate decays over
    ``schedule_steps`` online steps (default: this call's plus the state's earlier ones): give the planned total
    to continue a run from a checkpoint exactly as if it had not stopped. Returns ``(state, history)`` with per-step
    NumPy arrays ``sigma`` (online estimate of ∫f), ``rel_std`` (std(w)/mean(w)), ``eff`` (mean/max weight)
    and ``calls`` (cumulative integrand calls).
    """
    steps = check_int(steps, "steps", lo=1)
    batch = check_int(batch, "batch", lo=2)
    buffered_steps = check_int(buffered_steps, "buffered_steps", lo=0)
    buffer_size = check_int(4 * batch if buffer_size is None else buffer_size, "buffer_size", lo=batch)
    if not isinstance(sampler, Sampler):
        raise ValueError(f"train needs a Sampler (flow_sampler, multichannel), got {sampler!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if schedule_steps is None:
        schedule_steps = steps + (0 if state is None else int(state.step))
    total = check_int(schedule_steps, "schedule_steps", lo=1) * (1 + buffered_steps)
    make_optimizer(learning_rate, total)  # validates learning_rate before anything runs
    config = (sampler, integrand, loss, batch, buffered_steps, float(learning_rate), total)
    try:
        step, optimizer = _cached_step(*config)  # resuming with the same configuration does not recompile
    except TypeError:  # an unhashable integrand: build (and compile) afresh
        step, optimizer = _build_step(*config)
    if state is None:
        state = init_train_state(key, sampler, optimizer, buffer_size)
    elif state.buffer_f.shape[0] != buffer_size:
        raise ValueError(f"state's buffer holds {state.buffer_f.shape[0]} points, buffer_size is {buffer_size}")
    from diffgen.fit.util import progress_bar

    bar = progress_bar(steps, "training flow", "step", progress)
    hist = {"sigma": [], "rel_std": [], "eff": [], "calls": []}
    for _ in range(steps):
        state, info = step(state, cond)
        info = {k: float(v) for k, v in info.items()}
        for k in ("sigma", "rel_std", "eff"):
            hist[k].append(info[k])
        hist["calls"].append(int(state.calls))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(sigma=f"{info['sigma']:.4g}", rel_std=f"{info['rel_std']:.3f}")
        if callback is not None:
            callback(state, info)
    if bar is not None:
        bar.close()
    return state, {k: np.asarray(v) for k, v in hist.items()}


def _build_step(sampler, integrand, loss, batch, buffered_steps, learning_rate, total):
    optimizer = make_optimizer(learning_rate, total)
    return _make_step(sampler, integrand, optimizer, loss, batch, buffered_steps), optimizer


_cached_step = functools.lru_cache(maxsize=16)(_build_step)
