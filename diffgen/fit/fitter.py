"""Gradient-based tuning of generator settings to binned targets.

:func:`fit` minimises L(φ) = Σ_targets χ²_t(θ(φ)) (:func:`diffgen.fit.losses.chi2`, soft-binned
simulation vs. target, σ² = σ_data² + σ_sim²) over the free settings θ = θ(φ)
(:mod:`diffgen.fit.transforms`: sigmoid bounds) with an optax optimiser. Each step generates
``n_events`` events for every distinct set of target *conditions* (e.g. one sample per √s), inside
one jitted step function (compiled once).

**Common vs. fresh random numbers.** With ``common_random_numbers=True`` (default) every step uses
the same keys: L(φ) is one deterministic, smooth function (the χ² of one fixed simulated sample), the
optimiser converges to its minimum quickly and the convergence test is meaningful; the answer
carries that sample's MC fluctuation, which the reported errors include (below). The best iterate
(lowest loss) is returned. With ``False`` every step draws new events: stochastic approximation,
the gradient is an unbiased estimate of the gradient of the expected χ² and no single sample's
fluctuation is fitted, but steps are noisier and the loss never settles (use a decaying learning
rate; set ``tol`` accordingly). The returned point is the Polyak average of φ over the last quarter
of the steps.

**Stopping.** After ``patience`` consecutive steps with |L_t − L_{t−1}| < ``tol`` · |L_{t−1}| the
fit stops with ``converged=True``; otherwise it runs ``steps`` steps. With common random numbers
the objective is deterministic, and up to ``newton_steps`` damped Newton steps (exact Hessian in φ,
k is small) then take the best iterate to the minimum; ``converged`` is also True when the Newton
decrement gᵀH⁻¹g/2 falls below 10⁻³ (in χ² units). Adam's steps have a fixed size in φ, which can
exceed a precisely measured parameter's error; the Newton stage removes that limit.

**Errors.** At the optimum a larger sample of ``covariance_events`` events (default 4 × n_events,
new keys) is generated and

    C_φ = H_φ⁻¹,   H_φ = ∂²(χ²/2)/∂φ²  (``jax.hessian`` in the unconstrained φ),
    C_θ = J C_φ Jᵀ, J = diag(dθ/dφ)    (exact at a stationary point, where ∂χ²/∂φ = 0),

with σ_sim² in χ² set to the MC variance of the *fit* sample (the large sample's variance × its
size / ``n_events``): the simulation's statistical error adds to the data error, and the fitted
point fluctuates with the fit sample, so the errors include both. The Gauss–Newton (Fisher)
matrix F = Σ_b (∂c_b/∂θ)(∂c_b/∂θ)ᵀ/σ_b² gives ``fisher_covariance`` = F⁻¹; it is used instead
(``covariance_method="fisher"``) if H_φ is not positive definite. ``chi2_before``/``chi2_after``
(per target, with its ndf) are evaluated on the large sample with the same keys.

Example:
    >>> import jax, numpy as np, diffgen
    >>> from diffgen.fit import targets, fit
    >>> gen = diffgen.presets.ee_mumu(94.0)
    >>> obs = [("cos_theta", targets.cos_theta, np.linspace(-1, 1, 11))]
    >>> truth = diffgen.with_settings(gen.default_params(), {"StandardModel:sin2thetaWbar": 0.236})
    >>> data = targets.from_events(gen.sample(truth, jax.random.key(1), 20000), obs)
    >>> res = fit(gen, gen.default_params(), data, obs, free=["StandardModel:sin2thetaWbar"],
    ...           bounds={"StandardModel:sin2thetaWbar": (0.2, 0.26)}, steps=60, n_events=5000,
    ...           key=jax.random.key(2), progress=False)
    >>> abs(res.settings["StandardModel:sin2thetaWbar"] - 0.236) < 4 * res.errors["StandardModel:sin2thetaWbar"]
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.checks import check_int
from diffgen.fit.problem import Problem, chi2_terms, host_chi2, make_problem, predict, start_values, whitened_residuals
from diffgen.fit.result import FitResult
from diffgen.fit.targets import BinnedTarget
from diffgen.fit.util import cov_to_corr, inverse_or_nan, progress_bar
from diffgen.flagged import DEFAULT_MAX_FLAGGED, FlagMonitor, check_flag_options
from diffgen.stage import check_key

__all__ = ["fit", "FitResult", "Problem", "make_problem"]


class _Options(NamedTuple):
    """The validated numeric options of :func:`fit`."""

    steps: int
    n_events: int
    patience: int
    covariance_events: int
    newton_steps: int
    tol: float


class _Trace(NamedTuple):
    """The optimiser's path: φ and total χ² at every accepted step, and why it stopped."""

    phis: list
    losses: list
    converged: bool
    message: str


class _Estimate(NamedTuple):
    """The point estimate φ̂ after the optimiser (and any Newton steps)."""

    phi: jax.Array
    converged: bool
    message: str
    n_evals: int  # loss evaluations of the Newton stage
    curvature: object  # the Newton stage's compiled curvature function (reused when possible), or None


class _Errors(NamedTuple):
    """χ² and histograms before/after on the large sample, and the covariance at φ̂."""

    before: tuple  # (contents, variances) per target at φ0
    after: tuple  # (contents, variances) per target at φ̂
    covariance: np.ndarray
    fisher_covariance: np.ndarray
    method: str
    message: str


def _curvature_fn(problem: Problem, n: int):
    """Jitted (φ, key, s) ↦ (χ², ∇χ², ∇²χ², ∂r/∂φ, contents, variances) for ``n`` events per group.

    One forward-over-reverse pass: ``jacfwd`` of [∇χ², r] gives the Hessian and the Jacobian of the
    whitened residuals r together (k tangents), so a single compilation serves Newton steps,
    covariance and Fisher matrix.
    """
    k = len(problem.transform.names)

    def parts(phi, key, scale):
        preds = predict(problem, problem.transform.forward(phi), key, n)
        resid, terms = whitened_residuals(problem, preds, scale)
        return jnp.sum(terms), (resid, [p.contents for p in preds], [p.variances for p in preds])

    def inner(phi, key, scale):
        (value, (resid, contents, variances)), grad = jax.value_and_grad(parts, has_aux=True)(phi, key, scale)
        return jnp.concatenate([grad, resid]), (value, grad, contents, variances)

    @jax.jit
    def curvature(phi, key, scale):
        jac, (value, grad, contents, variances) = jax.jacfwd(inner, has_aux=True)(phi, key, scale)
        return value, grad, jac[:k], jac[k:], contents, variances

    return curvature


def _check_options(steps, n_events, patience, covariance_events, newton_steps, tol) -> _Options:
    newton_steps = check_int(newton_steps, "newton_steps", lo=0)
    steps, n_events, patience = (check_int(v, label) for label, v in
                                 (("steps", steps), ("n_events", n_events), ("patience", patience)))
    covariance_events = check_int(4 * n_events if covariance_events is None else covariance_events,
                                  "covariance_events")
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    return _Options(steps, n_events, patience, covariance_events, newton_steps, tol)


def _optimise(problem: Problem, optimizer, phi0, key_fit, opts: _Options, common_random_numbers: bool,
              progress: bool, start: dict) -> _Trace:
    """Run the optax optimiser from φ0 until the relative-change rule holds or ``opts.steps`` steps."""

    def loss_fn(phi, k, n):
        terms = chi2_terms(problem, predict(problem, problem.transform.forward(phi), k, n))
        return jnp.sum(terms), terms

    @jax.jit
    def step(phi, opt_state, index):
        k = key_fit if common_random_numbers else jax.random.fold_in(key_fit, index)
        (loss, terms), grad = jax.value_and_grad(loss_fn, has_aux=True)(phi, k, opts.n_events)
        updates, opt_state = optimizer.update(grad, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, loss, grad

    phi, opt_state = phi0, optimizer.init(phi0)
    phis, losses = [], []
    converged, quiet, message = False, 0, ""
    bar = progress_bar(opts.steps, "fit", "step", progress)
    try:
        for t in range(opts.steps):
            new_phi, new_state, loss, grad = step(phi, opt_state, jnp.asarray(t, jnp.uint32))
            loss_v = float(loss)
            if not (math.isfinite(loss_v) and bool(jnp.all(jnp.isfinite(grad)))):
                if t == 0:
                    raise ValueError(f"the loss or its gradient is not finite at the start values {start} "
                                     f"(loss = {loss_v}); check that the generator produces events with "
                                     "positive weight in every target's conditions")
                message = f"Stopped at step {t}: non-finite loss or gradient. "
                break
            phis.append(np.asarray(phi))
            losses.append(loss_v)
            phi, opt_state = new_phi, new_state
            if bar is not None:  # the χ² of every step (drawn at tqdm's refresh rate)
                bar.set_postfix(chi2=f"{loss_v:.4g}", refresh=False)
                bar.update(1)
            if t > 0:
                rel = abs(losses[-1] - losses[-2]) / max(abs(losses[-2]), 1e-30)
                quiet = quiet + 1 if rel < opts.tol else 0
                if quiet >= opts.patience:
                    converged = True
                    message = (f"Converged after {t + 1} steps (relative loss change < {opts.tol:g} "
                               f"for {opts.patience} steps). ")
                    break
    finally:
        if bar is not None:
            bar.close()
    if not message:
        message = f"Optimizer not converged within {opts.steps} steps. "
    return _Trace(phis, losses, converged, message)


def _estimate(problem: Problem, trace: _Trace, key_fit, opts: _Options, common_random_numbers: bool,
              progress: bool | None = False) -> _Estimate:
    """φ̂: the best iterate polished by Newton steps (common random numbers, with their own progress bar),
    else a Polyak average."""
    converged, message = trace.converged, trace.message
    if not common_random_numbers:
        tail = max(1, len(trace.phis) // 4)
        phi_hat = jnp.asarray(np.mean(trace.phis[-tail:], axis=0))
        message += f"Result: Polyak average of the last {tail} steps (fresh random numbers). "
        return _Estimate(phi_hat, converged, message, 0, None)
    phi_hat = jnp.asarray(trace.phis[int(np.argmin(trace.losses))])
    curv_fit, n_evals = None, 0
    if opts.newton_steps:
        curv_fit = _curvature_fn(problem, opts.n_events)
        bar = progress_bar(opts.newton_steps, "fit: Newton polish", "step", progress)
        try:
            phi_hat, n_newton, newton_converged, n_evals = _newton_polish(
                lambda p: curv_fit(p, key_fit, 1.0)[:3], phi_hat, opts.newton_steps, bar=bar)
        finally:
            if bar is not None:
                bar.close()
        converged = converged or newton_converged
        message += f"Newton polishing: {n_newton} step(s){', converged' if newton_converged else ''}. "
    message += "Result: minimum of the common-random-number objective. "
    return _Estimate(phi_hat, converged, message, n_evals, curv_fit)


def _errors(problem: Problem, phi0, est: _Estimate, key_final, opts: _Options,
            progress: bool | None = False) -> _Errors:
    """χ² before/after on the large final sample, and the Hessian (or Fisher) covariance at φ̂.

    σ_sim² in the curvature is the MC variance of the *fit* sample: the large sample's × n_cov/n.
    The two evaluations (start values, result with its Hessian) have their own progress bar.
    """
    scale = opts.covariance_events / opts.n_events
    curv = est.curvature if est.curvature is not None and opts.covariance_events == opts.n_events \
        else _curvature_fn(problem, opts.covariance_events)
    bar = progress_bar(2, "fit: covariance", "sample", progress)
    try:
        chi2_0, _, _, _, c0, v0 = curv(phi0, key_final, 1.0)
        if bar is not None:
            bar.set_postfix(chi2_start=f"{float(chi2_0):.4g}", refresh=False)
            bar.update(1)
        chi2_1, _, h_phi, jr_phi, c1, v1 = curv(est.phi, key_final, scale)
        if bar is not None:
            bar.set_postfix(chi2_start=f"{float(chi2_0):.4g}", chi2=f"{float(chi2_1):.4g}", refresh=False)
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    h_phi = 0.5 * np.asarray(h_phi, float)  # Hessian of χ²/2
    h_phi = 0.5 * (h_phi + h_phi.T)
    jac = np.asarray(problem.transform.jacobian(est.phi), float)
    jr = np.asarray(jr_phi, float) / jac[None, :]  # ∂r/∂θ
    fisher_cov = inverse_or_nan(jr.T @ jr)
    if np.all(np.isfinite(h_phi)) and np.all(np.linalg.eigvalsh(h_phi) > 0):
        return _Errors((c0, v0), (c1, v1), jac[:, None] * np.linalg.inv(h_phi) * jac[None, :], fisher_cov,
                       "hessian", "")
    return _Errors((c0, v0), (c1, v1), fisher_cov, fisher_cov, "fisher",
                   "Hessian of chi2/2 not positive definite at the result: covariance from the Fisher matrix. ")


def _result(problem: Problem, trace: _Trace, est: _Estimate, err: _Errors, opts: _Options, start: dict) -> FitResult:
    names, tg = problem.transform.names, problem.targets
    n_groups = len(problem.groups)
    (c0, v0), (c1, v1) = err.before, err.after
    errors = np.sqrt(np.clip(np.diag(err.covariance), 0.0, None))
    theta_hat = np.asarray(problem.transform.forward(est.phi), float)
    return FitResult(
        settings={n: float(theta_hat[j]) for j, n in enumerate(names)},
        errors={n: float(errors[j]) for j, n in enumerate(names)},
        covariance=err.covariance, correlation=cov_to_corr(err.covariance),
        loss_history=np.asarray(trace.losses), param_history=problem.transform.forward_host(trace.phis),
        chi2_before=host_chi2(problem, c0, v0),
        chi2_after=host_chi2(problem, c1, v1),
        n_events_total=(len(trace.losses) + est.n_evals) * n_groups * opts.n_events
        + 2 * n_groups * opts.covariance_events,
        converged=est.converged, free=names, fisher_covariance=err.fisher_covariance,
        covariance_method=err.method,
        histograms_before={t.name: (np.asarray(c0[i]), np.sqrt(np.asarray(v0[i]))) for i, t in enumerate(tg)},
        histograms_after={t.name: (np.asarray(c1[i]), np.sqrt(np.asarray(v1[i]))) for i, t in enumerate(tg)},
        start=start, message=(est.message + err.message).strip(),
    )


def fit(gen, params, targets: Sequence[BinnedTarget], observables, free: Sequence[str], *, bounds=None,
        steps: int = 200, n_events: int = 20000, optimizer: optax.GradientTransformation | None = None,
        common_random_numbers: bool = True, key, tol: float = 1e-6, patience: int = 10, progress: bool | None = None,
        smoothing: float | None = 0.25, straight_through: bool = True,
        covariance_events: int | None = None, newton_steps: int = 5, max_flagged: float = DEFAULT_MAX_FLAGGED,
        on_flagged: str = "warn") -> FitResult:
    """Fit the settings ``free`` of ``gen`` (starting from ``params``) to ``targets``.

    Args:
        gen: a :class:`diffgen.Generator`; params: its start parameters (also fixes everything not free).
        targets: :class:`~diffgen.fit.targets.BinnedTarget` list; each names its observable and conditions.
        observables: ``(name, fn, bins)`` list or :class:`~diffgen.fit.targets.Observable` list.
        free: setting names to fit; bounds: ``{name: (lo, hi)}`` inside the physical ranges (default:
            the physical ranges).
        steps: maximum optimiser steps; n_events: events per condition group per step.
        optimizer: an optax transformation in φ-space (default ``optax.adam(0.02)``).
        common_random_numbers: same events' random numbers every step (module docstring).
        key: PRNG key (required). tol, patience: stopping rule.
        progress: tqdm bars on stderr (``None``, the default: only when stderr is a terminal): the optimiser's steps
            with the current χ² as postfix, then the Newton polish and the final covariance step,
            each with its own bar.
        smoothing: soft-binning kernel width as a fraction of the bin width, the meaning it has in
            :func:`diffgen.histogram` too (:func:`diffgen.expect.kernel_widths`; None: hard bins, weight
            gradients only).
        straight_through: hard-bin values with kernel gradients (see :mod:`diffgen.fit.losses`).
        covariance_events: events per group for the final χ² and covariance (default 4 × n_events).
        newton_steps: with common random numbers, at most this many damped Newton steps on the
            (deterministic) loss after the optimiser, so the result is its minimum (0: none).
        max_flagged, on_flagged: when, in any evaluation of the fit, more than ``max_flagged`` of the
            events carry status flags (zero weight), warn (``"warn"``), raise (``"raise"``, after the
            fit) or not (``"ignore"``), naming the flags (:mod:`diffgen.flagged`).

    Raises:
        ValueError: before any event is generated, for unknown or unused settings, bounds outside the
            physical range, a start value outside the bounds, mismatched binning, unknown observables,
            non-positive steps/events; after the first step if the loss is not finite.
    """
    opts = _check_options(steps, n_events, patience, covariance_events, newton_steps, tol)
    check_key(key)
    optimizer = optax.adam(0.02) if optimizer is None else optimizer
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer must be an optax GradientTransformation, got {optimizer!r}")
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    problem = make_problem(gen, params, targets, observables, free, bounds, smoothing, straight_through)
    monitor = FlagMonitor() if on_flagged != "ignore" else None
    problem = problem._replace(flag_monitor=monitor)
    start = start_values(params, problem.transform.names)
    phi0 = problem.transform.inverse(start)
    key_fit, key_final = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    trace = _optimise(problem, optimizer, phi0, key_fit, opts, common_random_numbers, progress, start)
    est = _estimate(problem, trace, key_fit, opts, common_random_numbers, progress)
    err = _errors(problem, phi0, est, key_final, opts, progress)
    if monitor is not None:
        monitor.check(max_flagged, on_flagged, where="fit")
    return _result(problem, trace, est, err, opts, start)


def _newton_polish(value_grad_hessian, phi, max_steps: int, decrement_tol: float = 1e-3, bar=None):
    """Damped Newton steps on a deterministic loss, from ``phi``.

    ``value_grad_hessian(φ)`` returns (L, ∇L, ∇²L). Each step solves H δ = −g and halves δ up to 6
    times until the loss does not increase. Converged when the Newton decrement gᵀH⁻¹g/2 (the
    predicted remaining decrease of L, in χ² units) is below ``decrement_tol``. Stops early if H is
    not positive definite or no step decreases the loss.

    ``bar`` (a tqdm bar or None) advances by one per accepted step, its postfix the loss (χ²).

    Returns (φ, accepted steps, converged, number of loss evaluations).
    """
    value, grad, hess = (np.asarray(a, float) for a in value_grad_hessian(phi))
    evaluations = 1
    for accepted in range(max_steps + 1):
        h = 0.5 * (hess + hess.T)
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(grad)) and np.all(np.linalg.eigvalsh(h) > 0)):
            return phi, accepted, False, evaluations
        delta = -np.linalg.solve(h, grad)
        if -0.5 * float(grad @ delta) < decrement_tol:
            return phi, accepted, True, evaluations
        if accepted == max_steps:
            break
        for _half in range(7):
            cand = phi + jnp.asarray(delta, phi.dtype)
            v2, g2, h2 = (np.asarray(a, float) for a in value_grad_hessian(cand))
            evaluations += 1
            if np.isfinite(v2) and v2 <= value:
                break
            delta = 0.5 * delta
        else:
            return phi, accepted, False, evaluations
        phi, value, grad, hess = cand, float(v2), g2, h2
        if bar is not None:
            bar.set_postfix(chi2=f"{value:.4g}", refresh=False)
            bar.update(1)
    return phi, max_steps, False, evaluations
