"""Gauss–Newton fits on the forward-mode linearisation: few simulations, many datasets.

:func:`fit_linearized` is the tuner's fast path. Each *iteration* generates one sample of
``n_events`` events (per condition group) at an expansion point θ_e and computes, in forward mode
(``jax.jacfwd``, one JVP per free setting), the simulated bin contents h(θ_e) and their Jacobian
J = ∂h/∂θ. The surrogate

    h(θ) ≈ h(θ_e) + J (θ − θ_e)

is then fitted to each dataset by minimising

    χ²_d(θ) = Σ_b (h_b(θ) − y_db)² / (σ_db² + σ_sim,b²)

over θ = θ(φ) inside the bounds (the same sigmoid transform as :func:`diffgen.fit.fit`; the
surrogate is minimised to convergence by Levenberg–Marquardt in φ, no events needed). Every
expansion point uses the same random numbers (common random numbers), so the iteration converges
on one deterministic objective. The next expansion point is the new estimate (for several
datasets: the mean of their estimates), so with one dataset this is plain Gauss–Newton with an
exact, noise-free Jacobian of the common-random-number objective. It stops when the expansion
point moves by less than ``tol`` of every parameter's error, or after ``iterations``.

This is Professor's idea (a cheap surrogate of the generator per bin, then χ² minimisation) with
the polynomial fitted to a grid of runs replaced by the exact local expansion from one run: 1 +
k JVPs of one sample instead of O(k²) samples. Many pseudo-datasets (pull studies, bootstrap
replicas) share the simulation: each costs a few microseconds of linear algebra.

**Pooling** (``pool > 1``, fresh random numbers). The Jacobian of a hadron-level histogram carries
the score-function terms of every accept/reject and discrete choice of the shower and the strings;
for ``StringZ:aLund``, ``StringZ:bLund`` and ``StringPT:sigma`` its statistical noise at 2·10⁴
events is as large as the signal (measured: ‖δJ‖ ≈ ‖J‖ in units of the bin errors), and a noisy J
makes Fisher errors too small and lets the expansion point wander along the a–b valley. With
``common_random_numbers=False`` and ``pool = m``, the surrogate is the mean of the last m local
linear models, (1/m) Σ_i [h_i + J_i (θ − θ_i)], with σ_sim² / m, taken over the iterations whose
expansion points lie within ``pool_radius`` errors of the current one: the samples of the last
iterations, near convergence, are reused instead of discarded, so the Jacobian noise falls as
1/√m at no extra cost per iteration.

**Variance reduction** (``replicas``, ``baseline``; issue 17). For a chain with a ``hadronization``
stage the default samples each showered event twice through hadronization and decays and gives
the string choices' score terms the cross-fitted sibling baseline (:mod:`diffgen.expect`,
*Sibling baselines*); with the score-function strings (the default of
:func:`diffgen.hadronization.string_fragmentation`) ‖δJ‖/‖J‖ at 2·10⁴ events is 0.32, 0.20, 0.30, 0.47,
0.10 for α_s, a, b, σ_pT, s/u (docs/gradients.md). ``replicas=1, baseline="mean"`` is the plain
estimator. σ_sim² sums the residuals of a parent's replicas.

**Trust region** (issue 17 item 4). Far from the minimum, or along a curved valley, the Gauss–Newton
step trusts the local model further than it holds: the LEP tune to Pythia went 6 steps down the a–b
valley to a point whose simulated χ² (320/54) was worse than the start's (311/59) while its linear
prediction read 119. Every sample is therefore also a test of the step that led to it: with Σ_d χ²_d
measured on the new sample and on the sample at the centre (the last accepted expansion point), a step
is *rejected* when the measured fall is below ``TRUST_ACCEPT`` (¼) of the fall its model predicted,
allowing two standard deviations of the two samples' statistical noise (none with common random
numbers, where the objective is deterministic). After a rejection the centre stays, the radius
shrinks to ``TRUST_SHRINK`` (¼) of the rejected step, and the next expansion point is the minimum of
the centre's (pooled) surrogate on that sphere (a Levenberg step: the ridge μ |(θ − θ_c)/s|² with μ
found by bisection; s = the first sample's errors, fixed units); a step limited by the radius that
delivered ≥ ``TRUST_GROW`` (¾) of its promise doubles it. The radius starts infinite (a plain
Gauss–Newton step), so a fit whose steps all deliver behaves as before. The final estimates are the
unconstrained minima of the last centre's surrogate — moved together, when the fit ends unconverged with
the radius limiting the last step, so that their mean is that trust-region step (the surrogate is not
trusted beyond it; their spread is kept) — and convergence is a proposed move from the centre below ``tol``
errors. ``FitResult.message`` counts the rejected steps; ``loss_history`` holds
the χ² measured at every sample, rejected ones included.

**Jacobian noise** (``jacobian_noise="correct"``, experimental; the default is ``"ignore"``). A Jacobian
estimated from a finite sample is J + δJ, and E[(J + δJ)ᵀ W (J + δJ)] = Jᵀ W J + Σ_b w_b Cov(δJ_b): the
noise *adds* Fisher information. Where it is comparable with the signal (the a–b valley) the plain
Gauss–Newton step is diluted — it moves only a fraction S/(S + N) of the way, and h and J from the same
events are correlated, which biases it further — so the iteration stops short of (or drifts away from) the
minimum, while F⁻¹ describes only the scatter of that shrunk step, not its bias (errors-in-variables
regression dilution; issue 17 item 4). On a toy with the noise twice the valley's signal
(``tests/test_fit.py``) the plain step is biased by ≈ 1.8 of its own errors. Each sample is therefore also
histogrammed in ``NOISE_BATCHES`` batches (from the same events: no extra simulation); the batches' scatter
estimates Cov(δJ_b) and Cov(δJ_b, δh_b), which ``"correct"`` subtracts from the Gauss–Newton matrix and the
surrogate χ² (the corrected χ² is the true local model's χ² in expectation). Signal fractions below
``NOISE_FLOOR`` are kept at it. The corrected step is unbiased and its covariance is the sandwich F_c⁻¹ (Jᵀ
V⁻¹ J) F_c⁻¹ (toy: pulls of unit width), which also sets the scale of ``tol`` and ``pool_radius``. Neither
mode is good enough at the noise of the LEP tune: with one pseudo-dataset at a truth moved ≈ 10 % in all
five parameters, 5000 events per observable, 12 iterations of 2·10⁴ events pooled by 4, ‖δJ‖/‖J‖ ≈ 0.8–1.0
for α_s, a, b and σ_pT, the plain fit ended 7.5σ, 8.4σ and 13σ from the truth in α_s, a and σ_pT (errors
understated, not converged), and the corrected one jumped along the valley (a 0.68 → 0.93 → 0.28; its
batch estimate of the noise is itself noisy) and ended 6.5σ off in b (``benchmarks/RESULTS.md``). A fit
therefore warns (:func:`noise_warning`, also in ``FitResult.message``) when the pooled noise of some
parameter exceeds ``NOISE_WARN``, with the events that bring it to ``NOISE_TARGET``.
``FitResult.jacobian_noise`` reports ‖δJ_j‖/‖J_j‖ (in units of the bin errors) for one sample of
``n_events``; it falls as 1/√n, so ``n_events · (noise/target)²`` events reach a target ratio.

**Errors** (``covariance_method = "fisher"``): C = (J̃ᵀ V⁻¹ J̃)⁻¹ with J̃ the Jacobian at the last
expansion point and V = σ_data² + σ_sim² — the Gauss–Newton (Fisher) matrix of the χ², which
includes the simulated sample's statistical error. For several datasets the simulation is common:
its fluctuation shifts every dataset's estimate by the same amount. ``data_covariance`` =
A V_data Aᵀ (A = C J̃ᵀ V⁻¹) is the part of C from the data alone: over datasets the estimates
scatter with ``data_covariance``, and C − ``data_covariance`` is their common shift.

**χ² after** is the surrogate's χ² at θ̂ (the linear prediction from the last expansion point),
which equals the simulated χ² at θ̂ within the linearisation's validity (see
:meth:`diffgen.fit.variations.LinearizedHistograms.validity`); ``chi2_before`` is simulated.

Example:
    >>> import jax, numpy as np, diffgen
    >>> from diffgen.fit import targets
    >>> from diffgen.fit.linear import fit_linearized
    >>> gen = diffgen.presets.ee_mumu(94.0)
    >>> obs = [("cos_theta", targets.cos_theta, np.linspace(-1, 1, 11))]
    >>> truth = diffgen.with_settings(gen.default_params(), {"StandardModel:sin2thetaWbar": 0.236})
    >>> data = targets.from_events(gen.sample(truth, jax.random.key(1), 20000), obs)
    >>> res = fit_linearized(gen, gen.default_params(), data, obs, ["StandardModel:sin2thetaWbar"],
    ...                      bounds={"StandardModel:sin2thetaWbar": (0.2, 0.26)}, n_events=20000,
    ...                      key=jax.random.key(2), progress=False)
    >>> abs(res.settings["StandardModel:sin2thetaWbar"] - 0.236) < 4 * res.errors["StandardModel:sin2thetaWbar"]
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.expect import DEFAULT_SPLIT, resolve_variance_options
from diffgen.fit.problem import Problem, make_problem, predict, start_values
from diffgen.fit.result import FitResult
from diffgen.fit.targets import BinnedTarget
from diffgen.fit.util import cov_to_corr, inverse_or_nan, progress_bar
from diffgen.flagged import DEFAULT_MAX_FLAGGED, FlagMonitor, check_flag_options
from diffgen.stage import check_key

__all__ = ["fit_linearized", "noise_warning", "NOISE_FLOOR", "NOISE_WARN", "NOISE_TARGET"]

#: Smallest signal fraction kept when the Jacobian noise is subtracted from the Gauss–Newton matrix
#: (see :func:`_fisher`): along directions that the noise dominates further the correction stops.
NOISE_FLOOR = 0.1

#: Events are split into this many batches to estimate the Jacobian's noise (``jacobian_noise``).
NOISE_BATCHES = 10

#: fit_linearized warns when the surrogate's Jacobian noise ‖δJ_j‖/‖J_j‖ of some parameter exceeds this
#: (issue 17 item 4: at ≈ 0.5 after pooling four samples of ≈ 1, a five-parameter LEP fit ended 7–13σ from
#: the truth), and names the events that bring it to ``NOISE_TARGET``.
NOISE_WARN = 0.3
NOISE_TARGET = 0.2

#: Trust region of the expansion point (module docstring, *Trust region*): a step is rejected when the
#: χ² measured at its end fell by less than ``TRUST_ACCEPT`` of what the local model promised (allowing two
#: standard deviations of the samples' noise); the radius then shrinks to ``TRUST_SHRINK`` of the step, and
#: doubles after a step limited by it that delivered more than ``TRUST_GROW`` of its promise.
TRUST_ACCEPT = 0.25
TRUST_GROW = 0.75
TRUST_SHRINK = 0.25


class _Data(NamedTuple):
    """The datasets as vectors over the bins with σ_data > 0, concatenated over targets."""

    valid: list  # per target: indices of the bins with σ_data > 0 (the same for every dataset)
    ys: np.ndarray  # f[D, M] contents
    vd: np.ndarray  # f[D, M] σ_data²
    splits: np.ndarray  # where one target's bins end in the concatenation


class _Iterations(NamedTuple):
    """The Gauss–Newton iterations: expansion points, surrogate at the last one, estimates."""

    history_theta: np.ndarray  # f[I, k] expansion points
    history_chi2: list  # per iteration: f[D] χ² of the surrogate at the expansion point
    thetas: np.ndarray  # f[D, k] the estimates
    h: np.ndarray  # surrogate contents at the last expansion point, f[M]
    jac: np.ndarray  # its Jacobian f[M, k]
    v_sim: np.ndarray  # σ_sim² of the surrogate, f[M]
    jcov: np.ndarray | None  # noise covariance of the surrogate's Jacobian per bin, f[M, k, k]
    jhcov: np.ndarray | None  # noise covariance of its Jacobian with its contents per bin, f[M, k]
    noise: np.ndarray | None  # ‖δJ_j‖/‖J_j‖ of one sample, f[k]
    first: tuple  # (contents, variances) per target at the first expansion point (χ² before)
    converged: bool
    m_pool: int
    theta_c: np.ndarray  # f[k] the expansion point of the final surrogate (the last accepted one)
    accepted: np.ndarray  # bool[I] whether the step to sample i was accepted (the first always is)


def _signature(targets) -> tuple:
    return tuple((t.name, t.observable_name, t.normalisation, tuple(sorted(t.conditions.items())),
                  tuple(np.asarray(t.edges, float).round(12))) for t in targets)


def _as_datasets(datasets) -> tuple[list[list[BinnedTarget]], bool]:
    if isinstance(datasets, BinnedTarget):
        return [[datasets]], True
    datasets = list(datasets)
    if not datasets:
        raise ValueError("at least one dataset (a list of BinnedTarget) is needed")
    if all(isinstance(t, BinnedTarget) for t in datasets):
        return [datasets], True
    out = []
    for i, d in enumerate(datasets):
        if isinstance(d, BinnedTarget):
            d = [d]
        d = list(d)
        if not d or not all(isinstance(t, BinnedTarget) for t in d):
            raise ValueError(f"dataset {i} must be a non-empty list of BinnedTarget objects")
        out.append(d)
    sig = _signature(out[0])
    for i, d in enumerate(out[1:], 1):
        if _signature(d) != sig:
            raise ValueError(f"dataset {i} has different targets, binning or conditions from dataset 0; all "
                             "datasets of one linearised fit must share them (they share the simulation)")
    return out, False


def _noise_moments(jac_b, c_b):
    """Noise covariances of a Jacobian and contents that are means over B batches.

    ``jac_b`` f[B, M, k] and ``c_b`` f[B, M] are the per-batch Jacobians and contents; returns
    (Cov(J_m), f[M, k, k]; Cov(J_m, h_m), f[M, k]) of their batch means, i.e. the batch scatter / B.
    """
    b = jac_b.shape[0]
    dj = jac_b - jac_b.mean(0)
    dh = c_b - c_b.mean(0)
    jcov = np.einsum("bmj,bmk->mjk", dj, dj) / (b - 1) / b
    jhcov = np.einsum("bmj,bm->mj", dj, dh) / (b - 1) / b
    return jcov, jhcov


def _fisher(jac, jcov, wts, floor: float = NOISE_FLOOR):
    """Σ_m w_m J_m J_mᵀ, less the Jacobian noise Σ_m w_m Cov(J_m) when ``jcov`` is given.

    J's statistical noise adds Σ_m w_m Cov(J_m) to E[Jᵀ W J] (regression dilution): subtracting it
    gives an unbiased Gauss–Newton matrix. In the basis where the uncorrected matrix is the identity the
    corrected one's eigenvalues (the signal fractions of those directions) are kept within
    [``floor``, 1], so the correction enlarges errors and steps by at most 1/√floor and 1/floor.
    """
    f = jac.T @ (jac * wts[:, None])
    if jcov is None:
        return f
    lam, u = np.linalg.eigh(f)
    ok = lam > 1e-12 * max(float(lam.max()), 1e-300)
    if not np.any(ok):
        return f
    half = u[:, ok] * np.sqrt(lam[ok])[None, :]  # f = half halfᵀ on its support
    whiten = u[:, ok] / np.sqrt(lam[ok])[None, :]
    noise = np.einsum("m,mjk->jk", wts, jcov)
    mu, v = np.linalg.eigh(np.eye(int(ok.sum())) - whiten.T @ noise @ whiten)
    mu = np.clip(mu, floor, 1.0)
    inner = (v * mu[None, :]) @ v.T
    return half @ inner @ half.T


def _corrected_problem(h, jac, jcov, jhcov, y, var):
    """(h′, J′): the least-squares form |h′ + J′(θ − θ_e)|² of the noise-corrected surrogate χ².

    χ²_c(Δ) = |(h + JΔ − y)/σ|² − Δᵀ Σ_m Cov(J_m)/σ_m² Δ − 2 Δᵀ Σ_m Cov(J_m, h_m)/σ_m² is the χ² of the true
    local model in expectation over the simulation's noise; with F_c = L Lᵀ (:func:`_fisher`) and
    g = Jᵀ(h − y)/σ² − Σ_m Cov(J_m, h_m)/σ_m², χ²_c = |LᵀΔ + L⁻¹g|² + const.
    """
    f_c = _fisher(jac, jcov, 1.0 / var)
    g = jac.T @ ((h - y) / var) - np.einsum("mj,m->j", jhcov, 1.0 / var)
    k = jac.shape[1]
    lam, u = np.linalg.eigh(f_c)
    lam = np.clip(lam, 1e-300 + 1e-12 * max(float(lam.max()), 1e-300), None)
    l_t = np.sqrt(lam)[:, None] * u.T  # f_c = l_tᵀ l_t
    h_c = (u.T @ g) / np.sqrt(lam)  # l_t⁻ᵀ g
    return h_c, l_t, np.zeros(k), np.ones(k)


def _surrogate_minimum(h_e, jac, theta_e, y, var, transform, phi_start, max_iter: int = 100, ridge=None):
    """Levenberg–Marquardt in φ on χ²(φ) = |(h_e + J(θ(φ) − θ_e) − y)/√var|²; returns (φ, χ²).
    ``ridge = (μ, θ_c, scale)`` adds μ |(θ(φ) − θ_c)/scale|² (the trust region's Lagrange term)."""
    w = 1.0 / np.sqrt(var)
    if ridge is not None:
        mu, theta_r, scale = ridge
        jac = np.concatenate([jac, np.diag(np.sqrt(mu) / scale)])
        h_e = np.concatenate([h_e, np.sqrt(mu) * (theta_e - theta_r) / scale])
        y = np.concatenate([y, np.zeros(len(scale))])
        w = np.concatenate([w, np.ones(len(scale))])

    def resid(phi):
        return (h_e + jac @ (transform.forward_host(phi) - theta_e) - y) * w

    phi = np.asarray(phi_start, float).copy()
    r = resid(phi)
    chi2 = float(r @ r)
    lam = 1e-3
    for _ in range(max_iter):
        jr = (jac * w[:, None]) * transform.jacobian_host(phi)[None, :]
        a, g = jr.T @ jr, jr.T @ r
        improved = False
        for _try in range(20):
            step = -np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), g)
            cand = phi + step
            rc = resid(cand)
            c2 = float(rc @ rc)
            if np.isfinite(c2) and c2 <= chi2:
                phi, r, lam, improved = cand, rc, max(lam / 10.0, 1e-9), True
                done = chi2 - c2 < 1e-10 * max(chi2, 1.0)
                chi2 = c2
                break
            lam *= 10.0
        if not improved or done:
            break
    return phi, chi2


def fit_linearized(gen, params, datasets, observables, free: Sequence[str], *, bounds=None, n_events: int = 20000,
                   key, iterations: int = 5, tol: float = 0.1, common_random_numbers: bool = True,
                   pool: int = 1, pool_radius: float = 1.0, smoothing: float | None = 0.25,
                   straight_through: bool = True, progress: bool | None = None, jacobian_noise: str = "ignore",
                   replicas: int | None = None, baseline: str | None = None, split: str = DEFAULT_SPLIT,
                   max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn"):
    """Fit ``free`` to one dataset or to many datasets at once on the forward-mode linearisation.

    Args:
        gen, params: the generator and its start parameters (θ0; everything not free stays fixed).
        datasets: a list of :class:`~diffgen.fit.targets.BinnedTarget` (one dataset), or a list of such
            lists (several datasets with identical targets, binning and conditions, e.g. pseudo-data).
        observables: ``(name, fn, bins)`` list or :class:`~diffgen.fit.targets.Observable` list.
        free, bounds: as in :func:`diffgen.fit.fit`.
        n_events: events per condition group per iteration (one sample + k JVPs).
        key: PRNG key. common_random_numbers: every expansion point uses the same random numbers
            (default: the iteration then converges on one deterministic objective, as in
            :func:`diffgen.fit.fit`); ``False``: iteration i uses ``fold_in(key, i)``.
        iterations: maximum number of expansion points. tol: stop when the expansion point moves by
            less than ``tol`` × every parameter's error (for ``pool > 1``: the error with one
            sample's σ_sim², the scale on which fresh samples move the expansion point).
        pool: average the surrogate over the last ``pool`` linearisations whose expansion points lie
            within ``pool_radius`` of those (one-sample) errors of the current one (module docstring,
            *Pooling*). Needs ``common_random_numbers=False``; with ``pool > 1`` the fit converges
            only once the window is full.
        smoothing, straight_through: soft binning as in :func:`diffgen.fit.fit`.
        progress: a tqdm bar over iterations on stderr (``None``, the default: only when stderr is a
            terminal).
        jacobian_noise: ``"ignore"`` (default) uses the noisy J as it is; ``"correct"`` (experimental)
            subtracts the Jacobian's statistical noise, estimated from ``NOISE_BATCHES`` batches of each
            sample, from the Gauss–Newton matrix and the surrogate χ² (module docstring, *Jacobian noise*).
            Either way ``FitResult.jacobian_noise`` reports ‖δJ_j‖/‖J_j‖ of one sample.
        replicas, baseline, split: variance reduction of the score-function Jacobian: every event of the
            stages before ``split`` is continued ``replicas`` times and the downstream score terms get
            the sibling baseline ``baseline`` (:mod:`diffgen.expect`, *Sibling baselines*; measured in
            ``docs/gradients.md``). ``n_events`` must be a multiple of ``replicas``. ``None`` (default):
            :func:`diffgen.expect.resolve_variance_options` — the best measured estimator
            (``AUTO_REPLICAS``, ``AUTO_BASELINE``) for chains with a ``split`` stage, the plain one otherwise.
        max_flagged, on_flagged: as in :func:`diffgen.fit.fit`: after the fit, warn (``"warn"``), raise
            (``"raise"``) or not (``"ignore"``) when the worst sample had more than ``max_flagged`` of its
            events flagged (:mod:`diffgen.flagged`).

    Returns:
        a :class:`~diffgen.fit.FitResult` for one dataset, a list of them for several.
        ``loss_history[i]`` is the simulated χ² at expansion point i, ``param_history[i]`` that point.
    """
    check_key(key)
    n_events, iterations, pool = _check_options(n_events, iterations, tol, pool, pool_radius, common_random_numbers)
    sets, single = _as_datasets(datasets)
    replicas, baseline = resolve_variance_options(gen, replicas, baseline, split, n_events)
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    problem = make_problem(gen, params, sets[0], observables, free, bounds, smoothing, straight_through,
                           replicas=replicas, baseline=baseline, split=split)
    monitor = FlagMonitor() if on_flagged != "ignore" else None
    problem = problem._replace(flag_monitor=monitor)
    if n_events % problem.replicas:
        raise ValueError(f"n_events ({n_events}) must be a multiple of replicas ({problem.replicas})")
    start = start_values(params, problem.transform.names)
    data = _data_vectors(sets)
    if jacobian_noise not in ("correct", "ignore"):
        raise ValueError(f"jacobian_noise must be 'correct' or 'ignore', got {jacobian_noise!r}")
    it = _iterate(problem, data, start, key, n_events, iterations, tol, common_random_numbers, pool, pool_radius,
                  progress, jacobian_noise == "correct")
    if monitor is not None:
        monitor.check(max_flagged, on_flagged, where="fit_linearized")
    noisy = noise_warning(it.noise, problem.transform.names, n_events, it.m_pool)
    if noisy:
        warnings.warn(noisy, UserWarning, stacklevel=2)
    results = [_dataset_result(problem, data, it, d, ds, n_events, start, noisy) for d, ds in enumerate(sets)]
    return results[0] if single else results


def noise_warning(noise, names, n_events: int, m_pool: int = 1, limit: float | None = None,
                  target: float | None = None) -> str:
    """The warning of a linearised fit whose surrogate Jacobian is too noisy to trust ('' if it is not).

    ``noise`` is ‖δJ_j‖/‖J_j‖ of one sample of ``n_events`` (``FitResult.jacobian_noise``); the surrogate
    averages ``m_pool`` samples, so its noise is ``noise``/√m_pool. Above ``limit`` the Gauss–Newton steps
    are diluted and the Fisher errors understated along the directions the noise dominates (module
    docstring, *Jacobian noise*); the message names the parameters and the events per iteration that
    would bring their noise to ``target`` (it falls as 1/√n).

    Example:
        >>> msg = noise_warning([0.2, 0.9], ["a", "b"], 20000)
        >>> "b 0.90" in msg and "a 0.2" not in msg and "about 405000 events" in msg
        True
        >>> noise_warning([0.2, 0.3], ["a", "b"], 20000)
        ''
    """
    limit = NOISE_WARN if limit is None else limit
    target = NOISE_TARGET if target is None else target
    if noise is None:
        return ""
    pooled = np.asarray(noise, float) / np.sqrt(max(int(m_pool), 1))
    bad = [j for j, r in enumerate(pooled) if np.isfinite(r) and r > limit]
    if not bad:
        return ""
    worst = float(max(pooled[j] for j in bad))
    need = int(np.ceil(n_events * max(int(m_pool), 1) * (worst / target) ** 2))
    listed = ", ".join(f"{names[j]} {pooled[j]:.2f}" for j in bad)
    return (f"Jacobian noise ‖δJ‖/‖J‖ of the surrogate ({max(int(m_pool), 1)} sample(s) of {n_events} events) is "
            f"above {limit}: {listed}. Gauss–Newton steps are then diluted (the fit stops short of the minimum "
            "along directions the noise dominates, such as the a–b valley) and the errors there are "
            f"understated; about {need} events per surrogate (n_events × pool) bring it to {target}.")


def _check_options(n_events, iterations, tol, pool, pool_radius, common_random_numbers) -> tuple[int, int, int]:
    n_events, iterations, pool = (check_int(v, label) for label, v in
                                  (("n_events", n_events), ("iterations", iterations), ("pool", pool)))
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if pool > 1 and common_random_numbers:
        raise ValueError("pool > 1 averages independent samples: it needs common_random_numbers=False "
                         "(with common random numbers every expansion point reuses the same events)")
    if isinstance(pool_radius, bool) or not (isinstance(pool_radius, (int, float)) and pool_radius > 0):
        raise ValueError(f"pool_radius must be a number > 0, got {pool_radius!r}")
    return n_events, iterations, pool


def _data_vectors(sets) -> _Data:
    """Bins with σ_data > 0, concatenated over targets (``ValueError`` if datasets differ in them)."""
    valid = [np.nonzero(np.asarray(t.errors, float) > 0)[0] for t in sets[0]]
    for d, ds in enumerate(sets[1:], 1):
        for t, v in zip(ds, valid):
            if not np.array_equal(np.nonzero(np.asarray(t.errors, float) > 0)[0], v):
                raise ValueError(f"dataset {d}, target {t.name!r}: its empty bins differ from dataset 0's; "
                                 "give every dataset the same bins with nonzero errors")
    ys = np.stack([np.concatenate([np.asarray(t.contents, float)[v] for t, v in zip(ds, valid)]) for ds in sets])
    vd = np.stack([np.concatenate([np.asarray(t.errors, float)[v] ** 2 for t, v in zip(ds, valid)]) for ds in sets])
    return _Data(valid, ys, vd, np.cumsum([v.size for v in valid])[:-1])


def _pooled(lins, c: int, pool: int, pool_radius: float, err):
    """(h, J, σ_sim², Cov(J), Cov(J, h), m): the local linear model of sample ``c`` (the centre's), averaged
    with those of the last ``pool`` samples whose expansion points lie within ``pool_radius`` errors of it,
    all taken at the centre θ_c (entries of ``lins``: θ_e, h, σ_sim², J, Cov(J), Cov(J, h))."""
    theta_c, h, v_sim, jac, jcov, jhcov = lins[c]
    window = [lins[c]]
    if pool > 1 and err is not None:
        recent = range(max(len(lins) - pool, 0), len(lins))
        window += [lins[i] for i in recent if i != c and np.all(np.abs(lins[i][0] - theta_c) <= pool_radius * err)]
        window = window[:pool]
    m = len(window)
    if m > 1:  # mean of the local linear models, at θ_c; independent samples: variance / m
        h = np.mean([e[1] + e[3] @ (theta_c - e[0]) for e in window], axis=0)
        jac = np.mean([e[3] for e in window], axis=0)
        v_sim = np.mean([e[2] for e in window], axis=0) / m
        if jcov is not None:
            jcov = np.mean([e[4] for e in window], axis=0) / m
            jhcov = np.mean([e[5] for e in window], axis=0) / m
    return h, jac, v_sim, jcov, jhcov, m


def _sample_chi2(h, v_sim, data: _Data) -> tuple[float, float]:
    """Σ_d χ²_d of one simulated sample against the datasets, and the standard deviation of that sum
    from the sample's own statistical noise (δh_b with variance σ_sim,b², shared by the datasets):
    Var = Σ_b σ_sim,b² (Σ_d 2(h_b − y_db)/V_db)² + 2 σ_sim,b⁴ (Σ_d 1/V_db)²."""
    var = data.vd + v_sim[None, :]
    r = h[None, :] - data.ys
    chi2 = float(np.sum(r ** 2 / var))
    lin = np.sum(2.0 * r / var, axis=0)
    quad = np.sum(1.0 / var, axis=0)
    return chi2, float(np.sqrt(np.sum(v_sim * lin ** 2 + 2.0 * v_sim ** 2 * quad ** 2)))


def _surrogate_chi2(h, jac, theta_c, theta, data: _Data, v_sim) -> float:
    """Σ_d χ²_d of the local linear model h + J (θ − θ_c) at θ."""
    pred = h + jac @ (np.asarray(theta, float) - theta_c)
    return float(np.sum((pred[None, :] - data.ys) ** 2 / (data.vd + v_sim[None, :])))


def _phi_inside(transform, theta) -> np.ndarray:
    """φ of θ, with θ moved inside its bounds by 10⁻⁶ of their width if it sits on one (an estimate
    at a bound)."""
    u = np.clip((np.asarray(theta, float) - transform.lo) / (transform.hi - transform.lo), 1e-6, 1.0 - 1e-6)
    return np.log(u) - np.log1p(-u)


def _limited_step(h, jac, theta_c, target, data: _Data, v_sim, transform, scale, radius: float):
    """The expansion point's next position: ``target`` (the mean estimate) if it lies within ``radius``
    (Euclidean, in units of ``scale``) of θ_c; otherwise the minimum of the datasets' summed surrogate χ²
    on that sphere — a Levenberg step, whose ridge μ |(θ − θ_c)/scale|² is found by bisection in log μ.
    Returns (θ, |θ − θ_c|/scale, whether the radius limited it)."""
    norm = float(np.linalg.norm((target - theta_c) / scale))
    if not np.isfinite(radius) or norm <= radius:
        return target, norm, False
    var = data.vd + v_sim[None, :]
    w_sum = np.sum(1.0 / var, axis=0)  # Σ_d χ²_d = Σ_b (h_b − ȳ_b)² W_b + const
    y_bar = np.sum(data.ys / var, axis=0) / w_sum
    phi_c = _phi_inside(transform, theta_c)
    lo, hi, best = -8.0, 8.0, (theta_c, 0.0)
    for _ in range(40):
        mu = 10.0 ** (0.5 * (lo + hi))
        phi, _ = _surrogate_minimum(h, jac, theta_c, y_bar, 1.0 / w_sum, transform, phi_c,
                                    ridge=(mu, theta_c, scale))
        theta = transform.forward_host(phi)
        dist = float(np.linalg.norm((theta - theta_c) / scale))
        if dist > radius:
            lo = np.log10(mu)
        else:
            hi, best = np.log10(mu), (theta, dist)
        if hi - lo < 0.02:
            break
    return best[0], best[1], True


def _iterate(problem: Problem, data: _Data, start, key, n_events: int, iterations: int, tol: float,
             common_random_numbers: bool, pool: int, pool_radius: float, progress: bool,
             correct_noise: bool = True) -> _Iterations:
    """Linearise at θ_e, minimise the surrogate for every dataset, move θ_e towards the mean estimate
    within a trust region (module docstring, *Trust region*); repeat."""
    transform = problem.transform
    phi0 = np.asarray(transform.inverse(start), float)
    theta0 = np.asarray(transform.forward(jnp.asarray(phi0)), float)
    n_sets = data.ys.shape[0]
    linearise = _lineariser(problem, data, n_events)

    bar = progress_bar(iterations, "linearised fit", "sim", progress)
    phis = np.tile(phi0, (n_sets, 1))
    theta_e = theta0.copy()  # where the next sample is taken
    centre, c_index = None, 0  # the accepted expansion point (θ, its sample's Σχ², σ of that, model Σχ² there
    #                            and at the next θ_e) and the index of its sample in ``lins``
    radius, tr_scale = np.inf, None
    history_theta, history_chi2, accepted = [], [], []
    converged, first = False, None
    lins: list[tuple] = []  # (θ_e, h, σ_sim², J, Cov(J), Cov(J, h)) of every sample
    err = None
    m_pool = 1
    try:
        for it in range(iterations):
            lin, full = linearise(theta_e, key if common_random_numbers else jax.random.fold_in(key, it))
            if it == 0:
                first = full
            lins.append(lin)
            chi2_one, sd_one = _sample_chi2(lin[1], lin[2], data)
            history_theta.append(theta_e.copy())
            history_chi2.append(np.sum((lin[1][None, :] - data.ys) ** 2 / (data.vd + lin[2][None, :]), axis=1))
            ok = True
            if centre is not None:  # was the step from the centre to θ_e as good as its model promised?
                noise = 0.0 if common_random_numbers else 2.0 * float(np.hypot(sd_one, centre[2]))
                predicted, actual = centre[3] - centre[4], centre[1] - chi2_one
                slack = noise + 1e-6 * max(abs(centre[1]), 1.0)  # float32 histograms: equal χ² is no failure
                ok = actual + slack >= TRUST_ACCEPT * predicted
                step = float(np.linalg.norm((theta_e - centre[0]) / tr_scale))
                if not ok:
                    radius = TRUST_SHRINK * step
                elif actual >= TRUST_GROW * predicted and step >= 0.99 * radius:
                    radius = 2.0 * radius
            accepted.append(ok)
            if ok:
                centre, c_index = (theta_e.copy(), chi2_one, sd_one), len(lins) - 1
            theta_c = centre[0]
            h, jac, v_sim, jcov, jhcov, m_pool = _pooled(lins, c_index, pool, pool_radius, err)
            var = data.vd + v_sim[None, :]
            phi_c = _phi_inside(transform, theta_c)
            for d in range(n_sets):
                prob = (_corrected_problem(h, jac, jcov, jhcov, data.ys[d], var[d])
                        if correct_noise and jcov is not None else (h, jac, data.ys[d], var[d]))
                # from the previous estimate and from the centre (an estimate at a bound has a flat sigmoid:
                # Levenberg–Marquardt started there cannot leave it)
                tries = [_surrogate_minimum(prob[0], prob[1], theta_c, prob[2], prob[3], transform, p0)
                         for p0 in (phis[d], phi_c)]
                phis[d] = min(tries, key=lambda t: t[1])[0]
            thetas = transform.forward_host(phis)
            err = _step_scale(lins[c_index], data, correct_noise)
            tr_scale = err if tr_scale is None else tr_scale  # fixed units of the radius: the first errors
            new_e, _, limited = _limited_step(h, jac, theta_c, np.mean(thetas, axis=0), data, v_sim, transform,
                                              tr_scale, radius)
            centre = centre[:3] + (_surrogate_chi2(h, jac, theta_c, theta_c, data, v_sim),
                                   _surrogate_chi2(h, jac, theta_c, new_e, data, v_sim))
            move = np.abs(new_e - theta_c) / err
            if bar is not None:
                bar.update(1)
                bar.set_postfix(move=f"{np.max(move):.3g}σ", pooled=m_pool, rejected=accepted.count(False))
            if not limited and np.all(move < tol) and m_pool >= pool:
                converged = True
                break
            theta_e = new_e
    finally:
        if bar is not None:
            bar.close()
    if not converged and limited:
        # the surrogate is trusted only within the radius: move the estimates together so that their mean
        # is the trust-region step (their spread, the data's scatter, is kept)
        lo, hi = transform.lo, transform.hi
        eps = 1e-9 * (hi - lo)
        thetas = np.clip(thetas + (new_e - np.mean(thetas, axis=0)), lo + eps, hi - eps)
    return _Iterations(np.asarray(history_theta), history_chi2, thetas, h, jac, v_sim,
                       jcov if correct_noise else None, jhcov, _noise_ratio(lins, data), first, converged, m_pool,
                       theta_c, np.asarray(accepted))


def _lineariser(problem: Problem, data: _Data, n_events: int):
    """``f(θ, key) -> ((θ, h, σ_sim², J, Cov(J), Cov(J, h)), (contents, variances) per target)``: one sample
    and its forward-mode Jacobian (jitted once), histogrammed also in ``NOISE_BATCHES`` batches for the noise."""
    names = problem.transform.names
    batches = NOISE_BATCHES if n_events >= 2 * NOISE_BATCHES else 0

    def contents(theta, kk):
        out = predict(problem, theta, kk, n_events, batches)
        preds, per_batch = out if batches else (out, None)
        c = jnp.concatenate([p.contents[v] for p, v in zip(preds, data.valid)])
        var = jnp.concatenate([p.variances[v] for p, v in zip(preds, data.valid)])
        aux = (c, var, [p.contents for p in preds], [p.variances for p in preds])
        if not batches:
            return (c, None), aux + (None,)
        cb = jnp.concatenate([p.contents[:, v] for p, v in zip(per_batch, data.valid)], axis=1)
        return (c, cb), aux + (cb,)

    jitted = jax.jit(jax.jacfwd(contents, has_aux=True))

    def run(theta_e, kk):
        (jac, jac_b), (h, v_sim, full_c, full_v, c_b) = jitted(jnp.asarray(theta_e, jnp.result_type(float)), kk)
        h, v_sim, jac = np.asarray(h, float), np.asarray(v_sim, float), np.asarray(jac, float)
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(jac))):
            raise ValueError("the simulated histograms or their Jacobian are not finite at "
                             f"{dict(zip(names, theta_e))}")
        jcov = jhcov = None
        if jac_b is not None:
            jcov, jhcov = _noise_moments(np.asarray(jac_b, float), np.asarray(c_b, float))
        full = ([np.asarray(c) for c in full_c], [np.asarray(v) for v in full_v])
        return (np.asarray(theta_e, float).copy(), h, v_sim, jac, jcov, jhcov), full

    return run


def _step_scale(one, data: _Data, correct_noise: bool):
    """The scale of ``tol``, ``pool_radius`` and the trust radius: the errors with ONE sample's σ_sim²
    (the scatter of expansion points between fresh samples), which are the fit's errors when pool = 1
    (with the noise correction: the sandwich F_c⁻¹ (Jᵀ V⁻¹ J) F_c⁻¹, the scatter of the corrected steps;
    F_c⁻¹ alone understates it where the noise dominates, so that fresh samples jumped beyond
    pool_radius and the pool never filled)."""
    w_one = 1.0 / np.mean(data.vd + one[2][None, :], axis=0)
    f_inv = inverse_or_nan(_fisher(one[3], one[4] if correct_noise else None, w_one))
    cov_one = f_inv @ _fisher(one[3], None, w_one) @ f_inv if correct_noise else f_inv
    return np.sqrt(np.clip(np.diag(cov_one), 1e-300, None))


def _noise_ratio(lins, data: _Data):
    """‖δJ_j‖/‖J_j‖ of the last sample, in units of the bin errors (``None`` without batches)."""
    if not lins or lins[-1][4] is None:
        return None
    one = lins[-1]
    w = 1.0 / np.mean(data.vd + one[2][None, :], axis=0)
    signal = np.sqrt(np.einsum("m,mj->j", w, one[3] ** 2))
    return np.sqrt(np.einsum("m,mjj->j", w, one[4])) / np.where(signal > 0, signal, np.inf)


def _dataset_result(problem: Problem, data: _Data, it: _Iterations, d: int, ds, n_events: int,
                    start: dict, noisy: str = "") -> FitResult:
    """The :class:`FitResult` of dataset ``d``: estimate, Fisher covariance, χ² and histograms."""
    names = problem.transform.names
    h, jac, v_sim = it.h, it.jac, it.v_sim
    vd = data.vd[d]
    var = vd + v_sim
    # the estimate is θ_e − F⁻¹ g with g = Jᵀ V⁻¹ (h − y): its covariance is the sandwich
    # F⁻¹ (Jᵀ V⁻¹ V' V⁻¹ J) F⁻¹ with V' = V (all of it) or σ_data² (the data's part); F = Jᵀ V⁻¹ J for the
    # plain fit, less the Jacobian noise (:func:`_fisher`) with jacobian_noise="correct"
    f_data, f_sim = _fisher(jac, None, vd / var ** 2), _fisher(jac, None, v_sim / var ** 2)
    f_inv = inverse_or_nan(_fisher(jac, it.jcov, 1.0 / var))
    cov = f_inv @ (f_data + f_sim) @ f_inv
    data_cov = f_inv @ f_data @ f_inv
    errs = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    th = it.thetas[d]
    pred = h + jac @ (th - it.theta_c)
    r2 = (pred - data.ys[d]) ** 2 / var
    before, after, hist_b, hist_a = {}, {}, {}, {}
    for t, part, c_full, v_full in zip(ds, np.split(r2, data.splits), it.first[0], it.first[1]):
        ok = np.asarray(t.errors, float) > 0
        vv = np.asarray(t.errors, float)[ok] ** 2 + np.asarray(v_full, float)[ok]
        before[t.name] = (float(np.sum((np.asarray(c_full, float)[ok] - np.asarray(t.contents, float)[ok]) ** 2
                                       / vv)), t.ndf)
        after[t.name] = (float(np.sum(part)), t.ndf)
        hist_b[t.name] = (np.asarray(c_full, float), np.sqrt(np.asarray(v_full, float)))
    for t, v, part_c, part_e in zip(ds, data.valid, np.split(pred, data.splits), np.split(np.sqrt(v_sim), data.splits)):
        full, full_e = np.zeros(t.n_bins), np.zeros(t.n_bins)
        full[v], full_e[v] = part_c, part_e
        hist_a[t.name] = (full, full_e)
    n_it, n_sets, m_pool = len(it.history_theta), data.ys.shape[0], it.m_pool
    n_rej = int(np.sum(~it.accepted))
    msg = (f"Linearised Gauss–Newton: {n_it} expansion point(s) of {n_events} events"
           f"{' per condition group' if len(problem.groups) > 1 else ''}"
           f"{f', surrogate pooled over the last {m_pool}' if m_pool > 1 else ''}"
           f"{', converged' if it.converged else ', not converged (raise iterations)'}"
           f"{f', {n_rej} step(s) rejected by the trust region' if n_rej else ''}"
           f"{f'; {n_sets} datasets share the simulation' if n_sets > 1 else ''}. "
           "Covariance: Fisher (Gauss–Newton) matrix with σ_data² + σ_sim²"
           f"{', less the Jacobian noise' if it.jcov is not None else ''}. chi2_after: linear prediction."
           + (f" WARNING: {noisy}" if noisy else ""))
    return FitResult(
        settings={n: float(th[j]) for j, n in enumerate(names)},
        errors={n: float(errs[j]) for j, n in enumerate(names)},
        covariance=cov, correlation=cov_to_corr(cov),
        loss_history=np.asarray([c[d] for c in it.history_chi2]), param_history=it.history_theta,
        chi2_before=before, chi2_after=after,
        n_events_total=n_it * len(problem.groups) * n_events,
        converged=it.converged, free=names, fisher_covariance=cov, covariance_method="fisher",
        histograms_before=hist_b, histograms_after=hist_a, start=start, message=msg,
        data_covariance=data_cov,
        jacobian_noise=None if it.noise is None else {n: float(it.noise[j]) for j, n in enumerate(names)},
    )
