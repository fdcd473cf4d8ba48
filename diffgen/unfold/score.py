"""Per-event joint score and joint likelihood ratio from the generator's own weights (MadMiner's "gold").

For an event with latent history z (every random choice of the chain) and observables x(z), the joint
likelihood of the *normalised* event distribution is p(x, z | θ) = w(z; θ) q(z) / σ(θ): q is the
density the random numbers were drawn from, w the event weight (pb) and σ = E_q[w]. At fixed z

    t(x, z | θ) = ∇_θ log p(x, z | θ) = ∇_θ log w(z; θ) − ∇_θ log σ(θ),
    r(x, z | θ0, θ1) = p(x, z | θ0) / p(x, z | θ1) = [w(z; θ0) / w(z; θ1)] · σ(θ1) / σ(θ0)

(Brehmer, Cranmer, Louppe and Pavez, arXiv:1805.00020). diffgen gets ∇_θ log w(z; θ) with the random
numbers held fixed by forward-mode autodiff of ``Events.log_weight`` through
:func:`diffgen.with_settings`.

**What this includes, exactly.**

* Weight factors that depend on θ (matrix elements, couplings, widths): ∇ log w pathwise. Exact when
  the latent z is a θ-independent function of the random numbers (e.g. e+e- → f f̄: cos θ = 2u − 1).
* Discrete choices with the "magic box" ``log p − stop_gradient(log p)`` in ``log_weight`` (accept /
  reject, efficiencies, flavours, the shower's veto algorithm for α_s): exactly ∇ log p(choice | θ).
* The normalisation −∇ log σ: estimated from the sample (``normalisation="sample"``, the default:
  ∇ log σ̂ = Σ w ∇ log w / Σ w), or given (an array, e.g. from the closed-form σ or an independent
  sample), or left out (``"none"``: the score of the unnormalised intensity w q, i.e. of the extended
  likelihood with the rate).

**What it does not include: pathwise-reparameterised continuous choices.** If a stage draws a
latent as y = g(u; θ) (x = μ + σ Φ⁻¹(u), a Breit–Wigner tan mapping in m_Z, a Lund z from an inverse
CDF in a and b), then at fixed u the latent *moves* with θ and ∇_θ log w at fixed u is not the score:
the joint score of y is ∇_θ log q(y | θ) at fixed y, e.g. (y − μ)/σ² for a Gaussian, which requires
the density of y. diffgen cannot get it from the weights. :func:`joint_score` therefore also computes
∂p4/∂θ at fixed random numbers and raises ``ValueError`` for every setting that moves the momenta,
unless ``allow_pathwise=True`` (then ``pathwise`` reports them and the score is incomplete). For a
stage that can compute its CDF F(y; θ), the missing term is ∇_θ log ∂_y F(y; θ) at fixed y
(:func:`reparameterised_score`). Momentum changes are visible to forward mode; a discrete choice made
by comparing a θ-dependent number with a threshold *without* the magic box is not, and would be
silently missing (no released stage does this).

The joint likelihood ratio is computed by running the generator at θ0 and θ1 with the same random
numbers; it requires the same latent history at both points (checked: momenta, PDG codes and masks
must agree, else ``ValueError``) and a proposal q that does not depend on θ's value (true for single
flavour e+e- → f f̄; for several flavours the flavour proposal σ_f/Σσ moves with θ, and the ratio is
off by q(θ1)/q(θ0) for the events whose flavour did not change — use the score there).

Fisher information: I(θ) = E[t tᵀ] (weighted). The information captured by a per-event summary s(x)
used through its mean is I_s = E[t s̃ᵀ] Cov(s)⁻¹ E[s̃ tᵀ] (s̃ = s − E s; E[t s̃ᵀ] = ∂_θ E[s]), and
I_s ≤ I_x ≤ I_joint = E[t tᵀ]. SALLY (:func:`sally`) regresses t on the observed features x with a
small network; t̂(x) ≈ E[t | x] is the locally sufficient statistic, and its I_s, measured on held-out
events, is what it captures of the bound.

Example:
    >>> import jax, numpy as np, diffgen
    >>> gen = diffgen.presets.ee_mumu(94.0)
    >>> js = joint_score(gen, gen.default_params(), jax.random.key(0), 2000, ["StandardModel:sin2thetaWbar"])
    >>> js.score.shape, bool(abs(np.average(js.score[:, 0], weights=js.weights)) < 1e-6)
    ((2000, 1), True)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.events import Events
from diffgen.params import settings, with_settings
from diffgen.stage import Generator, block_plan, check_key, check_n

__all__ = ["JointScore", "JointRatio", "joint_score", "parameter_value", "with_parameters", "joint_likelihood_ratio",
           "fisher_information",
           "captured_information", "reparameterised_score", "SallyResult", "sally"]


class JointScore(NamedTuple):
    """The per-event joint score of :func:`joint_score` (N events, k settings).

    Attributes:
        names: the k setting names (columns of ``score``).
        events: the generated events.
        weights: f[N] event weights w (pb; 0 for events with a non-zero status).
        score: f[N, k] t(x, z | θ) (0 for events with a non-zero status).
        log_weight_grad: f[N, k] ∇_θ log w at fixed random numbers (the unnormalised score).
        log_sigma_grad: f[k] the ∇_θ log σ subtracted (0 for ``normalisation="none"``).
        pathwise: f[k] max |∂p4/∂θ| over good events (GeV per unit of the setting); nonzero means the
            setting moves the kinematics and the score is incomplete (see module docstring).
    """

    names: tuple
    events: Events
    weights: np.ndarray
    score: np.ndarray
    log_weight_grad: np.ndarray
    log_sigma_grad: np.ndarray
    pathwise: np.ndarray


class JointRatio(NamedTuple):
    """r(x, z | θ0, θ1) per event: ``log_ratio`` f[N], with the events (generated at θ0) and weights at θ0."""

    log_ratio: np.ndarray
    events: Events
    weights: np.ndarray


def _get_path(params, name):
    node = params
    for part in name.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set_path(tree, parts, value):
    if len(parts) == 1:
        return {**tree, parts[0]: value}
    return {**tree, parts[0]: _set_path(tree[parts[0]], parts[1:], value)}


def parameter_value(params, name):
    """The value of θ component ``name``: a Pythia-style setting, or a ``"stage/leaf"`` path for leaves
    without a setting name (toy stages, network weights)."""
    if "/" in name:
        return _get_path(params, name)
    return settings(params).get(name)


def with_parameters(params, values: dict):
    """``params`` with the θ components ``values`` replaced (settings by name, other leaves by path)."""
    by_setting = {k: v for k, v in values.items() if "/" not in k}
    out = with_settings(params, by_setting) if by_setting else params
    for k, v in values.items():
        if "/" in k:
            out = _set_path(out, k.split("/"), v)
    return out


def _check_names(params, names) -> tuple:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError("names must list at least one setting")
    known = settings(params)
    for name in names:
        if not isinstance(name, str) or parameter_value(params, name) is None or (
                "/" in name and jnp.ndim(_get_path(params, name)) != 0):
            raise ValueError(f"{name!r} is neither a setting of this generator nor a 'stage/leaf' path to a scalar "
                             f"parameter; its settings: {sorted(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names}")
    return names


@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def _score_block(gen, names, params, key, offset, size):
    theta = jnp.stack([jnp.asarray(parameter_value(params, nm), jnp.result_type(float)) for nm in names])

    def run(th):
        p = with_parameters(params, dict(zip(names, list(th))))
        ev = gen.sample_traced(p, key, size, offset)
        return (ev.log_weight, ev.p4), ev

    (d_lw, d_p4), ev = jax.jacfwd(run, has_aux=True)(theta)
    return ev, d_lw, jnp.max(jnp.abs(d_p4), axis=(1, 2))  # [B, k] and per event max |dp4/dθ| [B, k]


def _weights_np(ev) -> np.ndarray:
    good = np.asarray(ev.status) == 0
    lw = np.asarray(ev.log_weight, np.float64)
    return np.where(good, np.exp(np.where(good, lw, 0.0)), 0.0)


def joint_score(gen: Generator, params, key, n: int, names: Sequence[str], *, normalisation="sample",
                allow_pathwise: bool = False, offset: int = 0) -> JointScore:
    """t(x, z | θ) = ∇_θ log p(x, z | θ) for ``n`` events of ``gen`` (module docstring), for the settings ``names``.

    Args:
        gen, params, key, n, offset: as for :meth:`~diffgen.stage.Generator.sample` (the same events).
        names: the components of θ: Pythia-style setting names, or ``"stage/leaf"`` paths to scalar
            parameters that have no setting name.
        normalisation: ``"sample"`` (∇ log σ from this sample), ``"none"``, or an array f[k] of ∇ log σ.
        allow_pathwise: accept settings that move the momenta at fixed random numbers (their score
            is then incomplete; ``pathwise`` says which); otherwise they raise ``ValueError``.

    Returns:
        :class:`JointScore`. Runs in blocks of ``gen.block`` events (one compilation per block size).
    """
    n = check_n(n)
    check_key(key)
    names = _check_names(params, names)
    size, n_blocks = block_plan(n, gen.block)
    parts, grads, paths = [], [], []
    for b in range(n_blocks):
        ev, d_lw, d_p4 = _score_block(gen, names, params, key, jnp.asarray(offset + b * size, jnp.uint32), size)
        parts.append(ev)
        grads.append(np.asarray(d_lw, np.float64))
        paths.append(np.asarray(d_p4, np.float64))
    events = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0)[:n], *parts)
    w = _weights_np(events)
    good = w != 0
    g = np.where(good[:, None], np.concatenate(grads)[:n], 0.0)
    if not np.all(np.isfinite(g)):
        raise ValueError(f"non-finite ∇ log w in {int(np.sum(~np.isfinite(g).all(1)))} good events")
    pathwise = np.max(np.where(good[:, None], np.concatenate(paths)[:n], 0.0), axis=0)
    moved = [nm for nm, v in zip(names, pathwise) if v > 0]
    if moved and not allow_pathwise:
        raise ValueError(f"settings {moved} move the event momenta at fixed random numbers (pathwise "
                         f"reparameterised): ∇ log w misses the score of those latents; pass "
                         f"allow_pathwise=True to get the incomplete score (see diffgen.unfold.score)")
    if isinstance(normalisation, str):
        if normalisation == "sample":
            log_sigma_grad = np.sum(w[:, None] * g, axis=0) / np.sum(w)
        elif normalisation == "none":
            log_sigma_grad = np.zeros(len(names))
        else:
            raise ValueError(f"normalisation must be 'sample', 'none' or an array of ∇ log σ, got {normalisation!r}")
    else:
        log_sigma_grad = np.asarray(normalisation, np.float64)
        if log_sigma_grad.shape != (len(names),) or not np.all(np.isfinite(log_sigma_grad)):
            raise ValueError(f"normalisation must be a finite array of shape ({len(names)},), "
                             f"got {normalisation!r}")
    score = np.where(good[:, None], g - log_sigma_grad, 0.0)
    return JointScore(names, events, w, score, g, log_sigma_grad, pathwise)


def joint_likelihood_ratio(gen: Generator, params, key, n: int, theta0: dict, theta1: dict, *,
                           normalisation: str = "sample", offset: int = 0, atol: float = 1e-6) -> JointRatio:
    """log r(x, z | θ0, θ1) = log p(x, z | θ0) − log p(x, z | θ1) for ``n`` events generated at θ0.

    ``theta0`` and ``theta1`` are ``{setting name: value}`` changes applied to ``params``. The same random
    numbers are used at both points; ``ValueError`` if the events' momenta (beyond ``atol`` GeV),
    PDG codes or masks differ (the latent history would not be the same). ``normalisation="sample"``
    includes log σ̂(θ1)/σ̂(θ0) (σ̂ = mean weight of the same events), ``"none"`` leaves it out.
    """
    n = check_n(n)
    check_key(key)
    if normalisation not in ("sample", "none"):
        raise ValueError(f"normalisation must be 'sample' or 'none', got {normalisation!r}")
    if set(theta0) != set(theta1):
        raise ValueError(f"theta0 and theta1 must name the same settings, got {sorted(theta0)} and {sorted(theta1)}")
    _check_names(params, list(theta0))
    p0, p1 = with_parameters(params, theta0), with_parameters(params, theta1)
    ev0, ev1 = gen.sample(p0, key, n, offset), gen.sample(p1, key, n, offset)
    same = (np.array_equal(np.asarray(ev0.pid), np.asarray(ev1.pid))
            and np.array_equal(np.asarray(ev0.mask), np.asarray(ev1.mask))
            and np.allclose(np.asarray(ev0.p4), np.asarray(ev1.p4), rtol=0.0, atol=atol))
    if not same:
        raise ValueError("the events at theta0 and theta1 differ for the same random numbers (momenta, PDG codes "
                         "or masks): the latent history moves with θ, so the ratio of weights is not the joint "
                         "likelihood ratio")
    w0, w1 = _weights_np(ev0), _weights_np(ev1)
    good = (w0 > 0) & (w1 > 0)
    lw0, lw1 = np.asarray(ev0.log_weight, np.float64), np.asarray(ev1.log_weight, np.float64)
    log_r = np.where(good, lw0 - lw1, 0.0)
    if normalisation == "sample":
        log_r = np.where(good, log_r + np.log(np.mean(w1)) - np.log(np.mean(w0)), 0.0)
    return JointRatio(log_r, ev0, w0)


def fisher_information(score, weights=None) -> np.ndarray:
    """I = Σ w t tᵀ / Σ w, f[k, k], from per-event scores ``score`` f[N, k] and weights f[N]."""
    t = _score_array(score)
    w = _event_weights(weights, t.shape[0])
    return np.einsum("i,ia,ib->ab", w, t, t) / np.sum(w)


def captured_information(summary, score, weights=None) -> np.ndarray:
    """I_s = E[t s̃ᵀ] Cov(s)⁻¹ E[s̃ tᵀ], f[k, k]: the Fisher information in the mean of a summary s(x).

    ``summary`` f[N] or f[N, m], ``score`` f[N, k] (joint or marginal), ``weights`` f[N]. Because
    E[t s̃ᵀ] = ∂_θ E[s], this is the information of the method-of-moments estimator on s; it is at
    most the information in x and at most E[t tᵀ].
    """
    t = _score_array(score)
    s = np.asarray(summary, np.float64)
    s = s[:, None] if s.ndim == 1 else s
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"summary has {s.shape[0]} events but score has {t.shape[0]}")
    w = _event_weights(weights, t.shape[0])
    wn = w / np.sum(w)
    s_c = s - wn @ s
    cross = np.einsum("i,ia,ib->ab", wn, t, s_c)  # E[t s̃ᵀ], [k, m]
    cov = np.einsum("i,ia,ib->ab", wn, s_c, s_c)
    return cross @ np.linalg.pinv(cov) @ cross.T


def _score_array(score) -> np.ndarray:
    t = np.asarray(score, np.float64)
    t = t[:, None] if t.ndim == 1 else t
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"score must be f[N, k] with N >= 1, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("score has non-finite values")
    return t


def _event_weights(weights, n) -> np.ndarray:
    from diffgen.unfold.inputs import as_weights

    return as_weights(weights, n, "weights")


def reparameterised_score(cdf, y, theta):
    """∇_θ log ∂_y F(y; θ) at fixed y: the joint-score term of a latent y drawn by inverting F(·; θ).

    ``cdf(y, theta)`` is F for one event (y scalar, θ f[k]); ``y`` f[N]. Returns f[N, k].

    Example:
        >>> import jax.numpy as jnp
        >>> from jax.scipy.stats import norm
        >>> cdf = lambda y, th: norm.cdf(y, th[0], th[1])
        >>> t = reparameterised_score(cdf, jnp.array([2.0]), jnp.array([1.0, 0.5]))  # (y−μ)/σ², ((y−μ)²/σ² − 1)/σ
        >>> [round(float(v), 4) for v in t[0]]
        [4.0, 6.0]
    """
    def log_density(yi, th):
        return jnp.log(jax.grad(cdf, argnums=0)(yi, th))

    return jax.vmap(jax.grad(log_density, argnums=1), (0, None))(jnp.asarray(y), jnp.asarray(theta))


class SallyResult(NamedTuple):
    """SALLY on held-out events: the full-information bound, what the learned score captures, their ratio.

    Attributes:
        regressor: the trained :class:`~diffgen.unfold.classifier.Classifier` (``log_ratio(x)`` = t̂(x)).
        fisher_joint: E[t tᵀ] f[k, k] on the test events (the bound).
        fisher_captured: I_t̂ f[k, k] of the learned score on the test events.
        fraction: tr(I_t̂) / tr(E[t tᵀ]) (for k = 1, the fraction of the information captured).
        n_test: number of held-out events.
    """

    regressor: object
    fisher_joint: np.ndarray
    fisher_captured: np.ndarray
    fraction: float
    n_test: int


def sally(key, features, score, weights=None, network=None, config=None, test_fraction: float = 0.5) -> SallyResult:
    """Regress the joint score on observed ``features`` (f[N, F]) and measure the information it captures.

    The events are split (by ``key``) into a training part and a held-out part of ``test_fraction``;
    the network (default ``mlp((64, 64), n_out=k)``) minimises Σ w |t − t̂(x)|² on the training part
    (:func:`~diffgen.unfold.classifier.fit_regressor`); :func:`captured_information` of t̂ and the
    bound E[t tᵀ] are measured on the held-out part.
    """
    from diffgen.unfold.classifier import TrainConfig, fit_regressor
    from diffgen.unfold.inputs import as_features
    from diffgen.unfold.networks import mlp

    x = as_features(features, "features")
    t = _score_array(score)
    n = x.shape[0]
    if t.shape[0] != n:
        raise ValueError(f"features has {n} events but score has {t.shape[0]}")
    w = _event_weights(weights, n)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), n))
    n_test = max(1, int(round(test_fraction * n)))
    test, train = perm[:n_test], perm[n_test:]
    net = network or mlp((64, 64), n_out=t.shape[1])
    reg, _ = fit_regressor(jax.random.fold_in(key, 2), net, x[train], t[train], w[train], config or TrainConfig())
    t_hat = reg.output(x[test])
    full = fisher_information(t[test], w[test])
    cap = captured_information(t_hat, t[test], w[test])
    return SallyResult(reg, full, cap, float(np.trace(cap) / np.trace(full)), n_test)
