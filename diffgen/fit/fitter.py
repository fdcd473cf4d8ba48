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
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.expect import event_weights
from diffgen.fit.losses import BinnedPrediction, binned
from diffgen.fit.targets import BinnedTarget, as_observables, check_binning, evaluate
from diffgen.fit.transforms import BoundedTransform, bounded_transform
from diffgen.params import settings as flat_settings
from diffgen.params import with_settings
from diffgen.stage import check_key

__all__ = ["fit", "FitResult", "Problem", "make_problem"]


class FitResult(NamedTuple):
    """Outcome of :func:`fit`. Vectors and matrices are in the order of ``free``.

    Attributes:
        settings: fitted values ``{name: θ̂}``.
        errors: ``{name: √C_jj}``.
        covariance: C_θ f[k, k] (see module docstring; ``covariance_method`` says which matrix).
        correlation: C_ij/√(C_ii C_jj).
        loss_history: total χ² at each step's parameters, f[steps_run].
        param_history: θ at each step, f[steps_run, k] (row t belongs to loss_history[t]).
        chi2_before, chi2_after: ``{target name: (χ², ndf)}`` on the large final sample.
        n_events_total: events generated in all (fit steps and final samples).
        converged: the relative-change criterion was met.
        free: the fitted setting names.
        fisher_covariance: F⁻¹, the Gauss–Newton covariance.
        covariance_method: ``"hessian"`` or ``"fisher"``.
        histograms_before, histograms_after: ``{target name: (contents, errors)}`` of the simulation.
        start: start values ``{name: θ0}``.
        message: why the fit stopped and anything worth knowing.
        data_covariance: the part of ``covariance`` due to the data's errors alone (the rest is the
            simulated sample's); set by :func:`diffgen.fit.linear.fit_linearized`, else None.
    """

    settings: dict
    errors: dict
    covariance: np.ndarray
    correlation: np.ndarray
    loss_history: np.ndarray
    param_history: np.ndarray
    chi2_before: dict
    chi2_after: dict
    n_events_total: int
    converged: bool
    free: tuple = ()
    fisher_covariance: np.ndarray | None = None
    covariance_method: str = "hessian"
    histograms_before: dict | None = None
    histograms_after: dict | None = None
    start: dict | None = None
    message: str = ""
    data_covariance: np.ndarray | None = None

    @property
    def ndf(self) -> int:
        """Σ ndf of the targets minus the number of fitted parameters."""
        return sum(v[1] for v in self.chi2_after.values()) - len(self.free)

    def summary(self) -> str:
        """A short text table of the fitted values and χ²."""
        lines = [f"{'setting':32s} {'start':>12s} {'fitted':>12s} {'error':>10s}"]
        for n in self.free:
            s0 = (self.start or {}).get(n, float("nan"))
            lines.append(f"{n:32s} {s0:12.6g} {self.settings[n]:12.6g} {self.errors[n]:10.3g}")
        b = sum(v[0] for v in self.chi2_before.values())
        a = sum(v[0] for v in self.chi2_after.values())
        lines.append(f"chi2 before {b:.2f}, after {a:.2f}, ndf {self.ndf}; converged={self.converged}")
        return "\n".join(lines)


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


def _freeze(conditions: Mapping) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in conditions.items()))


def make_problem(gen, params, targets, observables, free, bounds=None, smoothing: float | None = 0.25,
                 straight_through: bool = True) -> Problem:
    """Validate everything a fit needs, before any event is generated (``ValueError`` naming the problem)."""
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
    start = {n: float(np.asarray(flat_settings(params)[n])) for n in transform.names}
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
    return Problem(gen, params, targets, obs, transform, grouped,
                   None if smoothing is None else float(smoothing), bool(straight_through))


def predict(problem: Problem, theta, key, n: int) -> list[BinnedPrediction]:
    """Simulated, normalised bin contents for every target at θ (traceable; key per condition group)."""
    changes = {name: theta[j] for j, name in enumerate(problem.transform.names)}
    preds: list[BinnedPrediction | None] = [None] * len(problem.targets)
    for g, (conditions, indices) in enumerate(problem.groups):
        p = with_settings(problem.params, {**changes, **conditions})
        ev = problem.gen.sample_traced(p, jax.random.fold_in(key, g), n)
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
            preds[i] = binned(values, w, o.bins, mask=mask, normalisation=t.normalisation,
                              smoothing=problem.smoothing, straight_through=problem.straight_through)
    return preds


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


def _host_chi2(problem: Problem, contents, variances) -> dict:
    out = {}
    for t, c, v in zip(problem.targets, contents, variances):
        ok = np.asarray(t.errors) > 0
        var = t.errors[ok] ** 2 + np.asarray(v, float)[ok]
        out[t.name] = (float(np.sum((np.asarray(c, float)[ok] - t.contents[ok]) ** 2 / var)), t.ndf)
    return out


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


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="step", file=sys.stderr)


def _cov_to_corr(cov):
    d = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(d, d)
    return np.where(np.outer(d, d) > 0, corr, np.nan)


def fit(gen, params, targets: Sequence[BinnedTarget], observables, free: Sequence[str], *, bounds=None,
        steps: int = 200, n_events: int = 20000, optimizer: optax.GradientTransformation | None = None,
        common_random_numbers: bool = True, key, tol: float = 1e-6, patience: int = 10, progress: bool = True,
        smoothing: float | None = 0.25, straight_through: bool = True,
        covariance_events: int | None = None, newton_steps: int = 5) -> FitResult:
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
        key: PRNG key (required). tol, patience: stopping rule. progress: a tqdm bar on stderr.
        smoothing: soft-binning kernel width in bin widths (None: hard bins, weight gradients only).
        straight_through: hard-bin values with kernel gradients (see :mod:`diffgen.fit.losses`).
        covariance_events: events per group for the final χ² and covariance (default 4 × n_events).
        newton_steps: with common random numbers, at most this many damped Newton steps on the
            (deterministic) loss after the optimiser, so the result is its minimum (0: none).

    Raises:
        ValueError: before any event is generated, for unknown or unused settings, bounds outside the
            physical range, a start value outside the bounds, mismatched binning, unknown observables,
            non-positive steps/events; after the first step if the loss is not finite.
    """
    if isinstance(newton_steps, bool) or not isinstance(newton_steps, (int, np.integer)) or newton_steps < 0:
        raise ValueError(f"newton_steps must be an integer >= 0, got {newton_steps!r}")
    for label, v in (("steps", steps), ("n_events", n_events), ("patience", patience)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    if covariance_events is None:
        covariance_events = 4 * int(n_events)
    if isinstance(covariance_events, bool) or not isinstance(covariance_events, (int, np.integer)) \
            or covariance_events <= 0:
        raise ValueError(f"covariance_events must be a positive integer, got {covariance_events!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    check_key(key)
    optimizer = optax.adam(0.02) if optimizer is None else optimizer
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer must be an optax GradientTransformation, got {optimizer!r}")
    problem = make_problem(gen, params, targets, observables, free, bounds, smoothing, straight_through)
    names = problem.transform.names
    steps, n_events, covariance_events = int(steps), int(n_events), int(covariance_events)
    start = {n: float(np.asarray(flat_settings(params)[n])) for n in names}
    phi0 = problem.transform.inverse(start)
    key_fit, key_final = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    n_groups = len(problem.groups)

    def loss_fn(phi, k, n):
        terms = chi2_terms(problem, predict(problem, problem.transform.forward(phi), k, n))
        return jnp.sum(terms), terms

    @jax.jit
    def step(phi, opt_state, index):
        k = key_fit if common_random_numbers else jax.random.fold_in(key_fit, index)
        (loss, terms), grad = jax.value_and_grad(loss_fn, has_aux=True)(phi, k, n_events)
        updates, opt_state = optimizer.update(grad, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, loss, grad

    phi, opt_state = phi0, optimizer.init(phi0)
    phis, losses = [], []
    converged, quiet, message = False, 0, ""
    bar = _progress(steps, progress)
    try:
        for t in range(steps):
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
            if bar is not None:
                bar.update(1)
                if t % 10 == 0:
                    bar.set_postfix(chi2=f"{loss_v:.4g}")
            if t > 0:
                rel = abs(losses[-1] - losses[-2]) / max(abs(losses[-2]), 1e-30)
                quiet = quiet + 1 if rel < tol else 0
                if quiet >= patience:
                    converged = True
                    message = f"Converged after {t + 1} steps (relative loss change < {tol:g} for {patience} steps). "
                    break
    finally:
        if bar is not None:
            bar.close()
    if not message:
        message = f"Optimizer not converged within {steps} steps. "
    n_newton = n_evals = 0
    if common_random_numbers:
        best = int(np.argmin(losses))
        phi_hat = jnp.asarray(phis[best])
        if newton_steps:
            curv_fit = _curvature_fn(problem, n_events)
            phi_hat, n_newton, newton_converged, n_evals = _newton_polish(
                lambda p: curv_fit(p, key_fit, 1.0)[:3], phi_hat, newton_steps)
            converged = converged or newton_converged
            message += f"Newton polishing: {n_newton} step(s){', converged' if newton_converged else ''}. "
        message += "Result: minimum of the common-random-number objective. "
    else:
        tail = max(1, len(phis) // 4)
        phi_hat = jnp.asarray(np.mean(phis[-tail:], axis=0))
        message += f"Result: Polyak average of the last {tail} steps (fresh random numbers). "
    steps_run = len(losses)

    # ---- final large sample: χ² before/after, Hessian and Fisher covariance ------------------
    # σ_sim² in the curvature is the MC variance of the *fit* sample: the large sample's × n_cov/n.
    scale = covariance_events / n_events
    curv = _curvature_fn(problem, covariance_events) if covariance_events != n_events or not newton_steps \
        or not common_random_numbers else curv_fit
    _, _, _, _, c0, v0 = curv(phi0, key_final, 1.0)
    _, _, h_phi, jr_phi, c1, v1 = curv(phi_hat, key_final, scale)
    h_phi = 0.5 * np.asarray(h_phi, float)  # Hessian of χ²/2
    h_phi = 0.5 * (h_phi + h_phi.T)
    jac = np.asarray(problem.transform.jacobian(phi_hat), float)
    jr = np.asarray(jr_phi, float) / jac[None, :]  # ∂r/∂θ
    fisher_cov = _inverse(jr.T @ jr)
    method = "hessian"
    if np.all(np.isfinite(h_phi)) and np.all(np.linalg.eigvalsh(h_phi) > 0):
        cov = jac[:, None] * np.linalg.inv(h_phi) * jac[None, :]
    else:
        method = "fisher"
        cov = fisher_cov
        message += "Hessian of chi2/2 not positive definite at the result: covariance from the Fisher matrix. "
    errors = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    theta_hat = np.asarray(problem.transform.forward(phi_hat), float)
    tg = problem.targets
    theta_hist = problem.transform.forward_host(phis)
    return FitResult(
        settings={n: float(theta_hat[j]) for j, n in enumerate(names)},
        errors={n: float(errors[j]) for j, n in enumerate(names)},
        covariance=cov, correlation=_cov_to_corr(cov),
        loss_history=np.asarray(losses), param_history=theta_hist,
        chi2_before=_host_chi2(problem, c0, v0),
        chi2_after=_host_chi2(problem, c1, v1),
        n_events_total=(steps_run + n_evals) * n_groups * n_events + 2 * n_groups * covariance_events,
        converged=converged, free=names, fisher_covariance=fisher_cov, covariance_method=method,
        histograms_before={t.name: (np.asarray(c0[i]), np.sqrt(np.asarray(v0[i]))) for i, t in enumerate(tg)},
        histograms_after={t.name: (np.asarray(c1[i]), np.sqrt(np.asarray(v1[i]))) for i, t in enumerate(tg)},
        start=start, message=message.strip(),
    )


def _inverse(m):
    try:
        return np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return np.full_like(m, np.nan)


def _newton_polish(value_grad_hessian, phi, max_steps: int, decrement_tol: float = 1e-3):
    """Damped Newton steps on a deterministic loss, from ``phi``.

    ``value_grad_hessian(φ)`` returns (L, ∇L, ∇²L). Each step solves H δ = −g and halves δ up to 6
    times until the loss does not increase. Converged when the Newton decrement gᵀH⁻¹g/2 (the
    predicted remaining decrease of L, in χ² units) is below ``decrement_tol``. Stops early if H is
    not positive definite or no step decreases the loss.

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
    return phi, max_steps, False, evaluations
