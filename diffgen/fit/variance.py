"""Variance report: the statistical noise of a simulated Jacobian, and the events a tune needs (issue 17).

A linearised tune (:func:`diffgen.fit.linear.fit_linearized`) needs the Jacobian J = ∂h/∂θ of the
simulated, normalised bin contents h. The score-function terms of the shower and string choices make
the estimate Ĵ = J + δJ noisy; the noise of column j, measured in units of the bin errors,

    r_j = ‖δJ_j‖ / ‖Ĵ_j‖,   ‖x‖² = Σ_b x_b² / σ_b²,

falls as 1/√n with the number of events n, so ``n · (r_j / target)²`` events give a target ratio.
(σ_b² = σ_data,b² + σ_sim,b² with targets, the simulation's σ_sim,b² alone otherwise.) The noise
covariance Cov(δJ_b) is estimated from ``batches`` disjoint batches of the same sample (whole
parents for replicated samples), as in ``fit_linearized`` (so r_j here equals its
``FitResult.jacobian_noise`` for the same sample and estimator).

:func:`variance_report` also gives the *simulation-limited parameter error* σ_j: the error of θ_j
from a fit to perfectly known data with this sample's σ_sim alone, √[(Jᵀ V_sim⁻¹ J)⁻¹]_jj. It also
falls as 1/√n: ``n · (σ_j / target)²`` events make the simulation's contribution to a tune's error
smaller than ``target``.

Example:
    >>> import jax, numpy as np, diffgen
    >>> from diffgen.fit.variance import variance_report
    >>> gen = diffgen.presets.ee_mumu(94.0)
    >>> obs = [("cos_theta", diffgen.fit.targets.cos_theta, np.linspace(-1, 1, 11))]
    >>> rep = variance_report(gen, gen.default_params(), obs, ["StandardModel:sin2thetaWbar"],
    ...                       key=jax.random.key(0), n_events=4000)
    >>> rep.noise["StandardModel:sin2thetaWbar"] < 0.5  # pathwise gradients only: little noise
    True
    >>> rep.events_for_noise(0.01)["StandardModel:sin2thetaWbar"] > 0
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.expect import DEFAULT_SPLIT, resolve_variance_options
from diffgen.fit.problem import make_problem, predict, start_values
from diffgen.fit.targets import BinnedTarget, as_observables, from_arrays
from diffgen.fit.util import inverse_or_nan
from diffgen.stage import check_key

__all__ = ["VarianceReport", "variance_report", "jacobian_noise_ratio", "DEFAULT_BATCHES"]

#: Batches of one sample whose scatter estimates the Jacobian's noise.
DEFAULT_BATCHES = 10


class VarianceReport(NamedTuple):
    """The Jacobian noise of one sample of ``n_events`` (see the module docstring).

    Attributes:
        names: the free settings, in column order.
        n_events: events of the sample.
        noise: ``{name: ‖δJ_j‖/‖Ĵ_j‖}``.
        param_error: ``{name: σ_j}``, the simulation-limited parameter error at ``n_events``.
        jacobian: Ĵ, f[M, k] over the bins with σ_b > 0 (concatenated over observables).
        jacobian_error: √Cov(δJ_b)_jj, f[M, k].
        contents, sim_variances: h and σ_sim² of those bins, f[M].
        replicas, baseline: the estimator (:func:`diffgen.expect.sample_replicated`).
    """

    names: tuple
    n_events: int
    noise: dict
    param_error: dict
    jacobian: np.ndarray
    jacobian_error: np.ndarray
    contents: np.ndarray
    sim_variances: np.ndarray
    replicas: int
    baseline: str

    def events_for_noise(self, target: float) -> dict:
        """``{name: events}`` for which ‖δJ_j‖/‖J_j‖ falls to ``target`` (> 0): n · (r_j / target)²."""
        target = _positive(target, "target Jacobian noise ratio")
        return {n: int(np.ceil(self.n_events * (r / target) ** 2)) for n, r in self.noise.items()}

    def events_for_error(self, target) -> dict:
        """``{name: events}`` for which the simulation-limited error σ_j falls to ``target`` (a number in
        the parameter's units, or ``{name: number}``): n · (σ_j / target_j)²."""
        out = {}
        for n, e in self.param_error.items():
            t = target[n] if isinstance(target, Mapping) else target
            t = _positive(t, f"target error of {n}")
            out[n] = int(np.ceil(self.n_events * (e / t) ** 2)) if np.isfinite(e) else None
        return out

    def table(self, target: float = 0.1) -> str:
        """A text table: noise ratio, events for noise ``target``, simulation-limited error."""
        need = self.events_for_noise(target)
        width = max(len(n) for n in self.names)
        lines = [f"{'parameter':<{width}}  ‖δJ‖/‖J‖ at {self.n_events}  events for {target:g}  σ_sim(θ)",
                 f"(estimator: replicas={self.replicas}, baseline={self.baseline!r})"]
        for n in self.names:
            lines.append(f"{n:<{width}}  {self.noise[n]:>10.3f}  {need[n]:>16d}  {self.param_error[n]:.3g}")
        return "\n".join(lines)


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
            np.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def jacobian_noise_ratio(jac, jac_batches, weights):
    """‖δJ_j‖/‖Ĵ_j‖ per column from ``B`` batch Jacobians ``jac_batches`` f[B, M, k] of the sample whose
    Jacobian is ``jac`` f[M, k] (the batch scatter / B is the noise of their mean), with bin weights
    1/σ_b² ``weights`` f[M]. Returns (ratio f[k], √Cov(δJ_b)_jj f[M, k])."""
    jac_batches = np.asarray(jac_batches, float)
    b = jac_batches.shape[0]
    dj = jac_batches - jac_batches.mean(0)
    var = np.einsum("bmj,bmj->mj", dj, dj) / (b - 1) / b
    signal = np.sqrt(np.einsum("m,mj->j", weights, np.asarray(jac, float) ** 2))
    noise = np.sqrt(np.einsum("m,mj->j", weights, var))
    return noise / np.where(signal > 0, signal, np.inf), np.sqrt(var)


def _dummy_targets(observables) -> list[BinnedTarget]:
    out = []
    for o in as_observables(observables).values():
        edges = np.asarray(o.bins, float)
        out.append(from_arrays(o.name, np.zeros(edges.size - 1), np.ones(edges.size - 1), edges, observable=o.name))
    return out


def variance_report(gen, params, observables, free: Sequence[str], *, key, n_events: int = 20000, targets=None,
                    replicas: int | None = None, baseline: str | None = None, split: str = DEFAULT_SPLIT,
                    batches: int = DEFAULT_BATCHES, smoothing: float | None = 0.25,
                    straight_through: bool = True) -> VarianceReport:
    """Measure the Jacobian noise of the binned ``observables`` in the ``free`` settings at ``params``.

    One sample of ``n_events`` events and ``len(free)`` forward-mode derivatives, histogrammed as
    :func:`diffgen.fit.linear.fit_linearized` does (normalisation ``events``, or the targets').

    Args:
        gen, params: the generator and the expansion point.
        observables: ``(name, fn, bins)`` list or :class:`~diffgen.fit.targets.Observable` list.
        free: the settings to differentiate.
        key, n_events: the sample.
        targets: optional :class:`~diffgen.fit.targets.BinnedTarget` list (data): bins are then weighted
            by 1/(σ_data² + σ_sim²) and normalised like the targets; without them by 1/σ_sim².
        replicas, baseline, split: the estimator (:func:`diffgen.expect.sample_replicated`); ``None``: the
            default of :func:`diffgen.expect.resolve_variance_options`, as in ``fit_linearized``.
        batches: batches of the sample for the noise estimate (≥ 2; more batches, less noise on the noise).
        smoothing, straight_through: soft binning as in the fits.

    Returns:
        a :class:`VarianceReport`.
    """
    check_key(key)
    n_events = check_int(n_events, "n_events")
    batches = check_int(batches, "batches (for the Jacobian noise)", lo=2)
    free = list(free)
    if not free:
        raise ValueError("variance_report needs at least one free setting")
    tgts = _dummy_targets(observables) if targets is None else list(targets)
    replicas, baseline = resolve_variance_options(gen, replicas, baseline, split, n_events)
    problem = make_problem(gen, params, tgts, observables, free, None, smoothing, straight_through,
                           replicas=replicas, baseline=baseline, split=split)
    if n_events % problem.replicas:
        raise ValueError(f"n_events ({n_events}) must be a multiple of replicas ({problem.replicas})")
    if (n_events // batches) // problem.replicas < 1:
        raise ValueError(f"n_events ({n_events}) is too small for {batches} batches of whole parents "
                         f"(replicas {problem.replicas})")
    valid = [np.nonzero(np.asarray(t.errors, float) > 0)[0] for t in tgts]
    names = problem.transform.names
    theta = jnp.asarray([start_values(params, names)[n] for n in names], jnp.result_type(float))

    def contents(th):
        preds, per_batch = predict(problem, th, key, n_events, batches)
        c = jnp.concatenate([p.contents[v] for p, v in zip(preds, valid)])
        cb = jnp.concatenate([p.contents[:, v] for p, v in zip(per_batch, valid)], axis=1)
        var = jnp.concatenate([p.variances[v] for p, v in zip(preds, valid)])
        return (c, cb), (var, c)

    (jac, jac_b), (var, h) = jax.jit(jax.jacfwd(contents, has_aux=True))(theta)  # jac_b: [B, M, k]
    jac, jac_b, var = np.asarray(jac, float), np.asarray(jac_b, float), np.asarray(var, float)
    if targets is None:
        v_tot = var
    else:
        v_tot = var + np.concatenate([np.asarray(t.errors, float)[v] ** 2 for t, v in zip(tgts, valid)])
    w = np.where(v_tot > 0, 1.0 / np.where(v_tot > 0, v_tot, 1.0), 0.0)
    ratio, jerr = jacobian_noise_ratio(jac, jac_b, w)
    w_sim = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
    cov = inverse_or_nan(jac.T @ (jac * w_sim[:, None]))
    perr = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return VarianceReport(tuple(names), n_events, {n: float(ratio[j]) for j, n in enumerate(names)},
                          {n: float(perr[j]) for j, n in enumerate(names)}, jac, jerr,
                          np.asarray(h, float), var, problem.replicas, problem.baseline)
