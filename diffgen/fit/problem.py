"""A validated fit problem and the simulated prediction it compares with its targets.

:func:`make_problem` checks everything a fit needs before any event is generated (generator, targets,
observables and their binning, free settings, bounds, start values, conditions) and groups the
targets by their *conditions*: one simulated sample per group. :func:`predict` gives the
normalised simulated histograms of every target at θ (traceable), :func:`whitened_residuals`
the residuals r_b = (sim − data)/√(σ_data² + s·σ_sim²) whose squares sum to χ².
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.expect import DEFAULT_SPLIT, check_variance_options, event_weights, sample_replicated_traced
from diffgen.fit.binning import BinnedPrediction, binned
from diffgen.fit.targets import BinnedTarget, as_observables, check_binning, evaluate
from diffgen.fit.transforms import BoundedTransform, bounded_transform
from diffgen.params import settings as flat_settings
from diffgen.params import with_settings

__all__ = ["Problem", "make_problem", "start_values", "predict", "whitened_residuals", "chi2_terms", "host_chi2"]


class Problem(NamedTuple):
    """A validated fit problem: generator, start params, targets grouped by conditions, transform."""

    gen: Any
    params: Any
    targets: tuple
    observables: dict
    transform: BoundedTransform
    groups: tuple  # tuple of (conditions dict, tuple of target indices)
    smoothing: float | None
    straight_through: bool
    flag_monitor: Any = None  #: a :class:`diffgen.flagged.FlagMonitor` that sees every sample's status, or None
    #: variance reduction of the score terms (:mod:`diffgen.expect`, *Sibling baselines*): hadronizations per
    #: upstream event, the score baseline, and the stage where the chain is split
    replicas: int = 1
    baseline: str = "mean"
    split: str = DEFAULT_SPLIT


def _freeze(conditions: Mapping) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in conditions.items()))


def make_problem(gen, params, targets, observables, free, bounds=None, smoothing: float | None = 0.25,
                 straight_through: bool = True, *, replicas: int = 1, baseline: str = "mean",
                 split: str = DEFAULT_SPLIT) -> Problem:
    """Validate everything a fit needs, before any event is generated (``ValueError`` naming the problem).

    ``replicas``, ``baseline``, ``split``: the variance reduction of the score terms (see
    :func:`diffgen.expect.sample_replicated`; ``replicas > 1`` needs a chain with a stage ``split``).
    """
    if not hasattr(gen, "sample_traced"):
        raise ValueError(f"gen must be a diffgen Generator, got {type(gen).__name__}")
    if isinstance(targets, BinnedTarget):
        targets = [targets]
    targets = tuple(targets)
    if not targets:
        raise ValueError("at least one target is needed")
    for t in targets:
        if not isinstance(t, BinnedTarget):
            raise ValueError(f"targets must be BinnedTarget objects, got {type(t).__name__}")
    names = [t.name for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"target names must be unique; repeated: {dup}")
    obs = as_observables(observables)
    for t in targets:
        if t.observable_name not in obs:
            raise ValueError(f"target {t.name!r} refers to observable {t.observable_name!r}, which is not among "
                             f"the observables {sorted(obs)}")
        check_binning(t, obs[t.observable_name])
    if smoothing is not None and not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing)
                                      and smoothing > 0):
        raise ValueError(f"smoothing must be a positive fraction of the bin width or None, got {smoothing!r}")
    transform = bounded_transform(free, bounds)
    present = set(flat_settings(params))
    for name in transform.names:
        if name not in present:
            raise ValueError(f"free parameter {name!r} is not used by this generator; its settings: {sorted(present)}")
    start = start_values(params, transform.names)
    transform.inverse(start)  # start inside the bounds
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(targets):
        for k in t.conditions:
            if k in transform.names:
                raise ValueError(f"target {t.name!r} fixes {k!r} in its conditions, but {k!r} is a free parameter")
        try:
            with_settings(params, dict(t.conditions))
        except ValueError as err:
            raise ValueError(f"target {t.name!r} conditions: {err}") from None
        groups.setdefault(_freeze(t.conditions), []).append(i)
    grouped = tuple((dict(k), tuple(v)) for k, v in groups.items())
    replicas = check_variance_options(baseline, replicas)
    if replicas > 1:
        from diffgen.expect import split_chain

        split_chain(gen, split)
    return Problem(gen, params, targets, obs, transform, grouped,
                   None if smoothing is None else float(smoothing), bool(straight_through),
                   replicas=replicas, baseline=baseline, split=split)


def predict(problem: Problem, theta, key, n: int, batches: int = 0):
    """Simulated, normalised bin contents for every target at θ (traceable; key per condition group).

    With ``batches = B > 1`` also returns, from the same events, the contents of every target in each
    of ``B`` disjoint batches of ``n // B`` events (normalised per batch): ``(preds, per_batch)`` with
    ``per_batch[i].contents`` of shape ``[B, bins]``. Their scatter estimates the statistical noise of
    the contents and of their derivatives (see :mod:`diffgen.fit.linear`).
    """
    changes = {name: theta[j] for j, name in enumerate(problem.transform.names)}
    preds: list[BinnedPrediction | None] = [None] * len(problem.targets)
    per_batch: list[BinnedPrediction | None] = [None] * len(problem.targets)
    k = problem.replicas
    if n % k:
        raise ValueError(f"the number of events ({n}) must be a multiple of replicas ({k})")
    size = (n // batches) // k * k if batches > 1 else 0  # whole parents per batch
    for g, (conditions, indices) in enumerate(problem.groups):
        p = with_settings(problem.params, {**changes, **conditions})
        if k > 1:
            rep = sample_replicated_traced(problem.gen, p, jax.random.fold_in(key, g), n, k, problem.split)
            ev, lw_down = rep.events, rep.events.log_weight - rep.upstream_log_weight
        else:
            ev, lw_down = problem.gen.sample_traced(p, jax.random.fold_in(key, g), n), None
        if problem.flag_monitor is not None:
            problem.flag_monitor.watch(ev)
        w_shape = event_weights(ev, normalise=True)
        w_sigma = None
        cache: dict[str, Any] = {}
        for i in indices:
            t = problem.targets[i]
            o = problem.observables[t.observable_name]
            if o.name not in cache:
                cache[o.name] = evaluate(o, ev)
            values, mask = cache[o.name]
            if t.normalisation == "sigma":
                w_sigma = event_weights(ev) if w_sigma is None else w_sigma
            w = w_sigma if t.normalisation == "sigma" else w_shape

            def one(v, ww, m, ld, _o=o, _t=t):
                return binned(v, ww, _o.bins, mask=m, normalisation=_t.normalisation,
                              smoothing=problem.smoothing, straight_through=problem.straight_through,
                              log_weight_down=ld, replicas=k, baseline=problem.baseline)

            preds[i] = one(values, w, mask, lw_down)
            if size:
                def split(x):
                    return None if x is None else x[:batches * size].reshape((batches, size) + x.shape[1:])
                per_batch[i] = jax.vmap(one)(split(values), split(w), split(mask), split(lw_down))
    return (preds, per_batch) if size else preds


def whitened_residuals(problem: Problem, preds, sim_variance_scale=1.0):
    """(sim − data)/√(σ_data² + s·σ_sim²) over all bins with σ_data > 0, concatenated over targets, and
    the χ² per target f[T]; σ_sim² (scaled by s = ``sim_variance_scale``) carries no gradient."""
    resid, terms = [], []
    for t, p in zip(problem.targets, preds):
        err = np.asarray(t.errors, float)
        valid = np.nonzero(err > 0)[0]
        var = jnp.asarray(err[valid] ** 2, p.contents.dtype) + sim_variance_scale * jax.lax.stop_gradient(
            p.variances[valid])
        r = (p.contents[valid] - jnp.asarray(t.contents[valid], p.contents.dtype)) / jnp.sqrt(var)
        resid.append(r)
        terms.append(jnp.sum(r * r))
    return jnp.concatenate(resid), jnp.stack(terms)


def chi2_terms(problem: Problem, preds, sim_variance_scale=1.0):
    """χ² per target, f[T] (see :func:`whitened_residuals`)."""
    return whitened_residuals(problem, preds, sim_variance_scale)[1]


def host_chi2(problem: Problem, contents, variances) -> dict:
    """``{target name: (χ², ndf)}`` from host histograms (contents and MC variances per target)."""
    out = {}
    for t, c, v in zip(problem.targets, contents, variances):
        ok = np.asarray(t.errors) > 0
        var = t.errors[ok] ** 2 + np.asarray(v, float)[ok]
        out[t.name] = (float(np.sum((np.asarray(c, float)[ok] - t.contents[ok]) ** 2 / var)), t.ndf)
    return out


def start_values(params, names) -> dict[str, float]:
    """``{name: θ0}``: the current values of the settings ``names`` in ``params`` (host floats)."""
    flat = flat_settings(params)
    return {n: float(np.asarray(flat[n])) for n in names}
