"""Surrogate matrix elements: a Flax network for the weight of a unit-cube process, kept exact by a correction.

A :class:`Surrogate` is an MLP ŝ(x[, θ]) fitted to log f(x), the log of a process's weight for flat x
(:func:`diffgen.unit_processes.integrand`: |M|² × flux × phase-space Jacobian), on points drawn from the
process's own map (where the weight is large), with an optional condition θ (physics parameters) as extra
inputs. f̂ = exp ŝ is cheap to evaluate; results stay **exact** by the two-stage unweighting of Danziger,
Janßen, Schumann, Siegert (arXiv:2109.11964):

1. sample x ∼ q, surrogate weight ŵ = f̂(x)/q(x); keep x with probability min(1, ŵ/ŵ_max);
2. only for kept points evaluate the exact f and give them the weight max(ŵ, ŵ_max) · f(x)/f̂(x).

E[keep · weight] = E[ŵ · f/f̂] = E[f/q] = σ for any surrogate: a poor surrogate costs efficiency, never bias.
The exact matrix element is evaluated on the kept fraction ⟨min(1, ŵ/ŵ_max)⟩ of the points only
(:func:`corrected_weights`). Without the correction, σ̂ = E[ŵ] is biased by the surrogate's error
(reported by the benchmark, ``benchmarks/surrogate_me.py``).

:func:`surrogate_process` puts a trained surrogate in place of the exact matrix element of a process whose
kinematics can be built without it (``ee_ww(..., matrix_element=False)``): a UnitProcess, so it is the
matrix-element stage of a generator (:func:`diffgen.unit_processes.as_stage`) like any other.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.flows.surrogate import surrogate
    >>> sur = surrogate(3, hidden=(16,))
    >>> p = sur.init(jax.random.key(0))
    >>> sur.log_f(p, jnp.full((2, 3), 0.5)).shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.checks import check_int

__all__ = ["Surrogate", "surrogate", "train_surrogate", "relative_errors", "corrected_weights", "surrogate_process"]


class _MLP(nn.Module):
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, z):
        for width in self.hidden:
            z = nn.gelu(nn.Dense(width)(z))
        return nn.Dense(1)(z)[..., 0]


class Surrogate(NamedTuple):
    """``init(key) -> params``; ``log_f(params, x[N, dim], cond=None) -> ŝ[N]`` (≈ log f); dim, cond_dim."""

    dim: int
    cond_dim: int
    init: Callable
    log_f: Callable


def surrogate(dim: int, hidden: Sequence[int] = (64, 64, 64), cond_dim: int = 0, fourier: int = 4,
              channel_map=None) -> Surrogate:
    """An MLP surrogate of log f on [0, 1]^dim (optionally conditioned on θ[cond_dim]).

    The inputs are x and its Fourier features sin(π k x), cos(π k x), k = 1..``fourier`` (smooth structure on
    the cube is learned faster); the output has a learned offset, set by :func:`train_surrogate` to the mean of
    the training targets before the first step. With ``channel_map`` M (e.g. ``process.mapping(params)``) the
    network sees z = M⁻¹(x) and learns the mapped weight log(f(x) |∂x/∂z|), from which the map's resonances and
    poles are gone: log f̂(x) = NN(z) + log|∂z/∂x|.
    """
    dim = check_int(dim, "surrogate dim", lo=1)
    cond_dim = check_int(cond_dim, "cond_dim", lo=0)
    if channel_map is not None and getattr(channel_map, "dim", None) != dim:
        raise ValueError(f"surrogate channel_map must be a ChannelMap of dim {dim}, got {channel_map!r}")
    fourier = check_int(fourier, "fourier", lo=0)
    hidden = tuple(check_int(h, "hidden layer width", lo=1) for h in hidden)
    net = _MLP(hidden)
    n_in = dim * (1 + 2 * fourier) + cond_dim

    def features(x, cond):
        parts = [x]
        for k in range(1, fourier + 1):
            parts += [jnp.sin(jnp.pi * k * x), jnp.cos(jnp.pi * k * x)]
        if cond_dim:
            c = jnp.broadcast_to(jnp.asarray(cond, x.dtype), (x.shape[0], cond_dim))
            parts.append(c)
        return jnp.concatenate(parts, axis=1)

    def init(key):
        return {"net": net.init(key, jnp.zeros((1, n_in)))["params"], "offset": jnp.zeros(())}

    def log_f(params, x, cond=None):
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"surrogate input must have shape [N, {dim}], got {x.shape}")
        if cond_dim and cond is None:
            raise ValueError(f"this surrogate is conditioned on {cond_dim} parameters; pass cond")
        log_jac = 0.0
        if channel_map is not None:
            x, log_jac = channel_map.inverse(x)
        return net.apply({"params": params["net"]}, features(x, cond)) + params["offset"] + log_jac

    return Surrogate(dim, cond_dim, init, log_f)


def train_surrogate(key, sur: Surrogate, x, log_f, steps: int = 2000, batch: int = 1024,
                    learning_rate: float = 3e-3, cond=None, params=None, progress: bool = False):
    """Fit ``sur`` to targets ``log_f[N]`` at points ``x[N, dim]`` (finite targets only; ``cond[N, cond_dim]`` for a
    conditioned surrogate) by Adam on the mean squared error of log f (a relative-error loss), cosine-decayed.
    Returns ``(params, history)`` with the per-step loss. Points are drawn with replacement per step."""
    steps = check_int(steps, "steps", lo=1)
    batch = check_int(batch, "batch", lo=1)
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    x = jnp.asarray(x)
    log_f = jnp.asarray(log_f)
    ok = np.asarray(jnp.isfinite(log_f))
    if x.ndim != 2 or x.shape[1] != sur.dim or log_f.shape != (x.shape[0],):
        raise ValueError(f"need x[N, {sur.dim}] and log_f[N], got {x.shape} and {log_f.shape}")
    if ok.sum() < batch:
        raise ValueError(f"need at least batch = {batch} finite targets, got {int(ok.sum())}")
    x, log_f = x[ok], log_f[ok]
    cond = None if cond is None else jnp.asarray(cond)[ok]
    k_init, k_steps = jax.random.split(key)
    if params is None:
        params = sur.init(k_init)
        start = sur.log_f(params, x[:4096], None if cond is None else cond[:4096])  # offset 0 at init
        params = {**params, "offset": jnp.mean(log_f[:4096] - start)}
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    state = opt.init(params)

    def loss(p, xb, yb, cb):
        return jnp.mean((sur.log_f(p, xb, cb) - yb) ** 2)

    @jax.jit
    def step(p, s, k):
        idx = jax.random.randint(k, (batch,), 0, x.shape[0])
        cb = None if cond is None else cond[idx]
        val, g = jax.value_and_grad(loss)(p, x[idx], log_f[idx], cb)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, val

    hist = np.zeros(steps)
    keys = jax.random.split(k_steps, steps)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="surrogate", unit="step")
    for i in it:
        params, state, val = step(params, state, keys[i])
        hist[i] = float(val) if (i % 50 == 0 or i == steps - 1) else np.nan
    return params, {"loss": hist}


def relative_errors(sur: Surrogate, params, x, f, cond=None):
    """f̂/f − 1 at points with f > 0 (NumPy), the surrogate's accuracy as a distribution."""
    f = np.asarray(f, np.float64)
    ok = f > 0
    f_hat = np.exp(np.asarray(jax.jit(sur.log_f)(params, jnp.asarray(x), cond), np.float64))
    return f_hat[ok] / f[ok] - 1.0


def corrected_weights(key, w_hat, w_max, exact_ratio: Callable):
    """Two-stage unweighting (module docstring). ``w_hat[N]``: surrogate weights f̂/q; ``w_max``: the first stage's
    maximum; ``exact_ratio(indices) -> f/f̂`` evaluated only at the kept points. Returns
    ``(kept_indices, weights)``: the kept points and their exact weights max(ŵ, ŵ_max) · f/f̂, whose sum over the
    N trials estimates N σ without bias (weights of the points not kept are 0)."""
    w_hat = np.asarray(w_hat, np.float64)
    if not (np.isfinite(w_max) and w_max > 0):
        raise ValueError(f"w_max must be a positive number, got {w_max}")
    u = np.asarray(jax.random.uniform(key, w_hat.shape), np.float64)
    kept = np.nonzero(u * w_max < w_hat)[0]
    ratio = np.asarray(exact_ratio(kept), np.float64)
    return kept, np.maximum(w_hat[kept], w_max) * ratio


def surrogate_process(kinematics, sur: Surrogate, sur_params, name: str | None = None, cond_names=()):
    """A UnitProcess with the surrogate as its matrix element: ``kinematics`` is the process built without its
    matrix element (e.g. ``ee_ww(sqrt_s, matrix_element=False)``), whose events give the momenta; their
    ``log_weight`` becomes ŝ(x) (the surrogate of the full weight for flat x). ``cond_names``: the settings fed
    as the condition θ of a conditioned surrogate, in order. The map is the original's."""
    from diffgen.unit_processes.base import UnitProcess

    cond_names = tuple(cond_names)
    if len(cond_names) != sur.cond_dim:
        raise ValueError(f"the surrogate takes {sur.cond_dim} condition values, got names {cond_names}")

    def events(params, x):
        ev = kinematics.events(params, x)
        cond = jnp.stack([params[n] for n in cond_names]) if cond_names else None
        log_w = sur.log_f(sur_params, x, cond)
        return ev.replace(log_weight=jnp.where(ev.status == 0, log_w, -jnp.inf))

    return UnitProcess(name or f"{kinematics.name} (surrogate ME)", kinematics.dim, kinematics.init, events,
                       kinematics.mapping)
