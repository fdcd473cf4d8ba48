"""DCTR: a parameterised classifier for reweighting and fitting (Andreassen and Nachman, arXiv:1907.08209).

**Training.** Sample 0 holds events x at the reference point θ0 (weights w⁰); sample 1 holds events
(x_i, θ_i) with each θ_i drawn from a prior π(θ) and x_i from p(x | θ_i) (weights w¹). Every event of
sample 0 is given a θ drawn from the same (weighted) θ-marginal as sample 1, so that for each θ the
two classes carry the same total weight, and one network f(x, θ) (an MLP on [x, θ]) is trained to
separate them (:mod:`diffgen.unfold.classifier`). Its logit converges to

    s(x, θ) = log p(x | θ) / p(x | θ0),

so a θ0 sample is reweighted to any θ inside the prior's support by w⁰ e^{s(x, θ)} (:meth:`DCTR.reweight`,
self-normalised to the θ0 total: per-θ normalisation errors of the classifier cancel).

**Fitting** (the second step). Given a target sample x^T_j (weights v_j), θ is fitted by maximising the
self-normalised likelihood built from the learned ratio,

    log L(θ) = Σ_j v_j s(x^T_j, θ) − V log [Σ_i w⁰_i e^{s(x_i, θ)} / Σ_i w⁰_i],   V = Σ_j v_j,

with gradients and Hessians through the network (Newton steps from θ0, kept inside ``bounds``). The
second term is the normalisation ∫ p(x|θ0) e^{s} dx = 1 estimated on the θ0 sample. Errors: the
sandwich H⁻¹ J H⁻¹ (H the Hessian of −log L, J = Σ_j v_j² g_j g_jᵀ with g_j the per-event gradients),
which equals H⁻¹ for unit weights and stays right for weighted targets; optionally the spread of
``bootstrap`` refits with Poisson(1)-resampled target weights. Both count the target's statistics
only, not the finite training samples of the classifier. This is the likelihood-ratio form of
DCTR's fit (as in CARL, arXiv:1506.02169), not the adversarial one of the paper: it gives the same
estimator in the limit of a perfect classifier, and a Hessian error for free.

Example:
    >>> import jax, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x0 = rng.normal(0.0, 1.0, (8000, 1))
    >>> th = rng.uniform(-1, 1, (8000, 1)); x1 = rng.normal(th, 1.0)
    >>> model, info = fit_dctr(jax.random.key(0), x0, None, [0.0], x1, None, th,
    ...                        config=TrainConfig(epochs=20, batch_size=512), names=("mu",))
    >>> target = rng.normal(0.5, 1.0, (4000, 1))
    >>> res = dctr_fit(model, target, x0, bounds=[(-1.0, 1.0)])
    >>> bool(abs(res.theta[0] - 0.5) < 3 * res.errors[0] + 0.05)
    True
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.unfold.classifier import Classifier, TrainConfig, _std_tree, fit_classifier
from diffgen.unfold.inputs import as_features, as_weights
from diffgen.unfold.networks import Network, mlp

__all__ = ["DCTR", "DCTRFit", "fit_dctr", "dctr_fit"]


class DCTR(NamedTuple):
    """A trained parameterised classifier: ``log_ratio(x, θ)`` = log p(x|θ)/p(x|θ0).

    Attributes:
        classifier: the :class:`~diffgen.unfold.classifier.Classifier` on inputs (x, θ).
        theta0: f[k] the reference point; names: the k parameter names.
        bounds: f[k, 2] the range of θ seen in training (reweighting outside it is extrapolation).
    """

    classifier: Classifier
    theta0: np.ndarray
    names: tuple
    bounds: np.ndarray

    def _theta_rows(self, theta, n):
        th = np.asarray(theta, np.float32)
        th = np.broadcast_to(th.reshape(1, -1) if th.ndim <= 1 else th, (n, len(self.theta0)))
        return np.ascontiguousarray(th)

    def log_ratio(self, x, theta) -> np.ndarray:
        """s(x, θ) f[N] for features x f[N, F] and θ f[k] (one point) or f[N, k] (per event)."""
        x = as_features(x, "x")
        return self.classifier.log_ratio((x, self._theta_rows(theta, x.shape[0])))

    def reweight(self, x, theta, weights=None) -> np.ndarray:
        """Weights w⁰ e^{s(x, θ)} that turn the θ0 sample ``x`` into one at θ, normalised to Σ w⁰."""
        x = as_features(x, "x")
        w = as_weights(weights, x.shape[0], "weights")
        s = self.log_ratio(x, theta)
        r = w * np.exp(s - np.max(s))
        return r * (np.sum(w) / np.sum(r))


class DCTRFit(NamedTuple):
    """Result of :func:`dctr_fit`: θ̂, its errors and covariance, −log L at θ̂, Newton steps, bootstrap θ̂s."""

    theta: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    nll: float
    steps: int
    converged: bool
    at_bound: bool
    bootstrap: np.ndarray


def _as_theta_rows(theta, n, name):
    th = np.asarray(theta, np.float64)
    th = th[:, None] if th.ndim == 1 else th
    if th.ndim != 2 or th.shape[0] != n:
        raise ValueError(f"{name} must be f[{n}] or f[{n}, k] (one θ per event), got shape {np.shape(theta)}")
    if not np.all(np.isfinite(th)):
        raise ValueError(f"{name} has non-finite values")
    return th


def fit_dctr(key, x0, w0, theta0, x1, w1, theta1, network: Network | None = None,
             config: TrainConfig = TrainConfig(), names=None):
    """Train the DCTR classifier (module docstring).

    Args:
        key: PRNG key (θ assignment of sample 0, training).
        x0, w0: features f[N0, F] (or f[N0]) at θ0 and their weights (None: 1).
        theta0: f[k] the reference point.
        x1, w1, theta1: features f[N1, F], weights and the θ f[N1, k] (or f[N1]) each event was drawn at.
        network: default ``mlp((64, 64))`` on [x, θ]; config: training settings.
        names: optional names of the k parameters (for reports).

    Returns:
        (:class:`DCTR`, :class:`~diffgen.unfold.classifier.TrainInfo`).
    """
    x0, x1 = as_features(x0, "x0"), as_features(x1, "x1")
    if x0.shape[1] != x1.shape[1]:
        raise ValueError(f"x0 and x1 must have the same features, got {x0.shape[1]} and {x1.shape[1]} columns")
    w0 = as_weights(w0, x0.shape[0], "w0")
    w1 = as_weights(w1, x1.shape[0], "w1")
    th1 = _as_theta_rows(theta1, x1.shape[0], "theta1")
    th0 = np.atleast_1d(np.asarray(theta0, np.float64))
    if th0.shape != (th1.shape[1],) or not np.all(np.isfinite(th0)):
        raise ValueError(f"theta0 must be {th1.shape[1]} finite number(s) (as many as theta1 columns), got {theta0!r}")
    names = tuple(names) if names is not None else tuple(f"theta{i}" for i in range(len(th0)))
    if len(names) != len(th0):
        raise ValueError(f"names must have {len(th0)} entries, got {names}")
    k_assign, k_train = jax.random.split(key)
    # θ for sample 0 from sample 1's weighted θ-marginal (negative weights: by |w|)
    p = np.abs(w1) / np.sum(np.abs(w1))
    pick = np.asarray(jax.random.choice(k_assign, x1.shape[0], (x0.shape[0],), p=jnp.asarray(p)))
    th0_rows = th1[pick]
    net = network or mlp((64, 64))
    clf, info = fit_classifier(k_train, net, (x0, th0_rows.astype(np.float32)), w0,
                               (x1, th1.astype(np.float32)), w1, config)
    bounds = np.stack([th1.min(axis=0), th1.max(axis=0)], axis=1)
    return DCTR(clf, th0, names, bounds), info


@functools.partial(jax.jit, static_argnums=0)
def _per_event_log_ratio(network, weights, std, x, theta):
    xs = _std_tree((x, jnp.broadcast_to(theta, (x.shape[0], theta.shape[0]))), std)
    return network.apply(weights, *xs)[:, 0]


def _per_event(model: DCTR, theta, x_t, x_0, w_0):
    """ℓ_j(θ) = s(x_j, θ) − log N̂(θ), N̂(θ) = Σ_i w⁰_i e^{s(x_i, θ)} / Σ_i w⁰_i; f[M]."""
    clf = model.classifier
    s0 = _per_event_log_ratio(clf.network, clf.weights, clf.standardiser, x_0, theta)
    log_norm = jax.scipy.special.logsumexp(s0, b=w_0) - jnp.log(jnp.sum(w_0))
    return _per_event_log_ratio(clf.network, clf.weights, clf.standardiser, x_t, theta) - log_norm


def _nll(model, theta, v, x_t, x_0, w_0):
    return -jnp.sum(v * _per_event(model, theta, x_t, x_0, w_0))


def dctr_fit(model: DCTR, x_target, x0, *, target_weights=None, w0=None, theta_start=None, bounds=None,
             max_steps: int = 50, tol: float = 1e-6, bootstrap: int = 0, key=None) -> DCTRFit:
    """Fit θ to ``x_target`` through the DCTR ratio by Newton's method on −log L (module docstring).

    Args:
        model: a trained :class:`DCTR`. x_target: target features f[M, F]; target_weights: f[M].
        x0, w0: the θ0 sample (the one the model was trained with, or another one) for the normalisation.
        theta_start: f[k] start (default θ0). bounds: [(lo, hi)] per parameter (default: the training range).
        max_steps, tol: Newton iterations and the stopping size of a step in units of the errors.
        bootstrap: number of Poisson-resampled refits (0: none); key: PRNG key for them.

    Returns:
        :class:`DCTRFit`. ``at_bound`` is True when θ̂ sits on a bound (the errors are then unreliable).
    """
    x_t = as_features(x_target, "x_target")
    x_0 = as_features(x0, "x0")
    v = as_weights(target_weights, x_t.shape[0], "target_weights")
    w_0 = as_weights(w0, x_0.shape[0], "w0")
    k = len(model.theta0)
    lo_hi = np.asarray(model.bounds if bounds is None else bounds, np.float64).reshape(k, 2)
    theta = np.array(model.theta0 if theta_start is None else theta_start, np.float64).reshape(k)
    max_steps = check_int(max_steps, "max_steps")
    check_int(bootstrap, "bootstrap", lo=0)
    xt_j, x0_j, w0_j = jnp.asarray(x_t), jnp.asarray(x_0), jnp.asarray(w_0, jnp.float32)

    # the samples are arguments, not closed-over constants (XLA would constant-fold the network on them)
    nll_v = jax.jit(functools.partial(_nll, model))
    grad_v = jax.jit(jax.grad(functools.partial(_nll, model)))
    hess_v = jax.jit(jax.hessian(functools.partial(_nll, model)))
    data = (xt_j, x0_j, w0_j)

    def newton(weights_t, start):
        v_j = jnp.asarray(weights_t, jnp.float32)

        def nll(th):
            return nll_v(th, v_j, *data)

        def grad(th):
            return grad_v(th, v_j, *data)

        def hess(th):
            return hess_v(th, v_j, *data)

        th = np.clip(start, lo_hi[:, 0], lo_hi[:, 1])
        steps, converged = 0, False
        for steps in range(1, max_steps + 1):  # noqa: B007 (the count is returned)
            g = np.asarray(grad(jnp.asarray(th, jnp.float32)), np.float64)
            h = np.asarray(hess(jnp.asarray(th, jnp.float32)), np.float64)
            try:
                step = -np.linalg.solve(h, g)
                if not np.all(np.isfinite(step)) or g @ step > 0:
                    raise np.linalg.LinAlgError
            except np.linalg.LinAlgError:  # not convex here: a gradient step scaled by the diagonal
                step = -g / np.maximum(np.abs(np.diag(h)), 1e-12)
            f0 = float(nll(jnp.asarray(th, jnp.float32)))
            scale = 1.0
            for _ in range(20):  # backtracking inside the bounds
                trial = np.clip(th + scale * step, lo_hi[:, 0], lo_hi[:, 1])
                if float(nll(jnp.asarray(trial, jnp.float32))) <= f0 + 1e-7 * abs(f0):
                    break
                scale *= 0.5
            moved = trial - th
            th = trial
            err = np.sqrt(np.abs(np.diag(np.linalg.pinv(h))))
            if np.all(np.abs(moved) <= tol * np.maximum(err, 1e-12)) or np.all(np.abs(moved) < 1e-7):
                converged = True
                break
        return th, steps, converged, nll, hess

    theta, steps, converged, nll, hess = newton(v, theta)
    th_j = jnp.asarray(theta, jnp.float32)
    h = np.asarray(hess(th_j), np.float64)
    g = np.asarray(jax.jit(jax.jacfwd(functools.partial(_per_event, model)))(th_j, *data), np.float64)  # [M, k]
    j = np.einsum("i,ia,ib->ab", v**2, g, g)
    h_inv = np.linalg.pinv(h)
    cov = h_inv @ j @ h_inv
    boots = []
    if bootstrap:
        if key is None:
            raise ValueError("bootstrap needs a key")
        for b in range(bootstrap):
            pois = np.asarray(jax.random.poisson(jax.random.fold_in(key, b), 1.0, (x_t.shape[0],)), np.float64)
            boots.append(newton(v * pois, theta)[0])
    at_bound = bool(np.any(np.isclose(theta, lo_hi[:, 0]) | np.isclose(theta, lo_hi[:, 1])))
    return DCTRFit(theta, np.sqrt(np.diag(cov)), cov, float(nll(th_j)), steps, converged, at_bound,
                   np.array(boots).reshape(-1, k))
