"""Losses comparing simulated events with targets: binned χ² and unbinned sample distances.

**Binning** (:func:`binned`). For event weights w_i and per-event, per-bin entry counts n_ib
(the number of the event's entries in bin b: 0/1 for per-event observables), the contents follow
the target's normalisation (see :mod:`diffgen.fit.targets`):

* ``events``: c_b = Σ_i w_i n_ib / Σ_i w_i;
* ``unit``:   c_b = Σ_i w_i n_ib / Σ_i w_i T_i with T_i = Σ_b n_ib;
* ``sigma``:  c_b = Σ_i w_i n_ib / N (pb per bin).

Their Monte-Carlo variances are the delta-method (ratio-estimator) variances, e.g. for ``events``
V_b = Σ_i w_i² (n_ib − c_b)² / (Σ w)², computed without gradient.

*Soft binning.* A hard bin count has zero derivative in the observable's value, so gradients that
flow *pathwise* (through the kinematics) need smoothing: each entry is spread over the bins with a
Gaussian kernel whose width at each edge is ``smoothing`` × the mean width of the two adjacent bins
(:func:`diffgen.expect.kernel_widths`; ``smoothing`` means this fraction of the bin width everywhere,
in :func:`diffgen.histogram` too),
S_ib = Φ((e_{b+1} − x_i)/h_{b+1}) − Φ((e_b − x_i)/h_b). A smoothed histogram is biased, most at the
outer edges where kernel mass is lost (an O(h) deficit in the first and last bin). With
``straight_through=True`` (default) the contents take their *value* from the hard bins and only their
*derivative in the values* from the kernel: n = H + (S − stop_gradient(S)). The χ² value is then the
exact one, the gradient through the weights (score-function and weight-pathwise terms) is exact,
and the gradient through the values is the kernel estimate of the flux across the edges (bias O(h²)).

**χ²** (:func:`chi2`): Σ_b (c_b^sim − c_b^data)² / (σ_data,b² + σ_sim,b²) over bins with σ_data > 0;
σ_sim² is the MC variance above, held fixed (stop-gradient) so the fit cannot lower χ² by inflating
the simulation's noise.

**Unbinned** (:func:`energy_distance`, :func:`mmd`, :func:`sample_distance`): between weighted
samples X (simulation, weights a) and Y (target, weights b), both normalised to Σ = 1,

* energy distance  D = 2 Σ a_i b_j |x_i − y_j| − Σ a_i a_k |x_i − x_k| − Σ b_j b_l |y_j − y_l| ≥ 0;
* MMD²             = Σ a a k(x, x') + Σ b b k(y, y') − 2 Σ a b k(x, y), k = exp(−|x − y|²/(2ℓ²)),
  with ℓ the median pairwise distance of the target sample (median heuristic), fixed.

Both vanish iff the distributions agree, are differentiable in the weights and the values, and cost
O(N M d): :func:`sample_distance` uses at most ``max_events`` events of each side.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.events import Events
from diffgen.expect import event_weights
from diffgen.fit.binning import BinnedPrediction, binned
from diffgen.fit.targets import BinnedTarget, Observable, as_observables, evaluate
from diffgen.numerics import safe_sqrt

__all__ = ["BinnedPrediction", "binned", "chi2", "pulls", "energy_distance", "mmd", "median_bandwidth",
           "features", "sample_distance"]


def pulls(prediction: BinnedPrediction, target: BinnedTarget):
    """(sim − data)/√(σ_data² + σ_sim²) per bin; 0 in bins with σ_data = 0 (left out of χ²)."""
    data = jnp.asarray(target.contents, prediction.contents.dtype)
    err = np.asarray(target.errors, float)
    valid = jnp.asarray(err > 0)
    var = jnp.asarray(err**2, prediction.contents.dtype) + jax.lax.stop_gradient(prediction.variances)
    var = jnp.where(valid, var, 1.0)
    return jnp.where(valid, (prediction.contents - data) / jnp.sqrt(var), 0.0)


def chi2(prediction: BinnedPrediction, target: BinnedTarget):
    """χ² = Σ_b (sim − data)² / (σ_data² + σ_sim²) over bins with σ_data > 0 (σ_sim² without gradient).

    Its number of degrees of freedom is ``target.ndf`` (minus the number of fitted parameters overall).
    """
    r = pulls(prediction, target)
    return jnp.sum(r * r)


# ---------------------------------------------------------------------------------------------
# unbinned distances
# ---------------------------------------------------------------------------------------------
def _as_2d(x):
    x = jnp.asarray(x)
    return x[:, None] if x.ndim == 1 else x


def _norm_weights(w, n, dtype):
    w = jnp.ones((n,), dtype) if w is None else jnp.asarray(w, dtype)
    return w / jnp.sum(w)


def _pairwise(a, b):
    return safe_sqrt(jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, -1))


def energy_distance(x, y, x_weights=None, y_weights=None):
    """Weighted energy distance between samples x f[N, d] (or f[N]) and y f[M, d] (module docstring).

    Differentiable in x, y and the weights (zero, not NaN, gradient at coincident points).
    """
    x, y = _as_2d(x), _as_2d(y)
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    a = _norm_weights(x_weights, x.shape[0], dtype)
    b = _norm_weights(y_weights, y.shape[0], dtype)
    return 2.0 * a @ _pairwise(x, y) @ b - a @ _pairwise(x, x) @ a - b @ _pairwise(y, y) @ b


def median_bandwidth(y, max_points: int = 2000):
    """Median heuristic: the median pairwise Euclidean distance within y (first ``max_points`` rows)."""
    y = _as_2d(jnp.asarray(y))[:max_points]
    d = _pairwise(y, y)
    iu = np.triu_indices(y.shape[0], 1)
    return jnp.median(d[iu])


def mmd(x, y, x_weights=None, y_weights=None, bandwidth=None):
    """Weighted MMD² with a Gaussian kernel; ``bandwidth`` defaults to :func:`median_bandwidth` of y
    (held fixed: no gradient flows through it)."""
    x, y = _as_2d(x), _as_2d(y)
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    a = _norm_weights(x_weights, x.shape[0], dtype)
    b = _norm_weights(y_weights, y.shape[0], dtype)
    ell = jax.lax.stop_gradient(median_bandwidth(y) if bandwidth is None else jnp.asarray(bandwidth, dtype))

    def k(p, q):
        d2 = jnp.sum((p[:, None, :] - q[None, :, :]) ** 2, -1)
        return jnp.exp(-0.5 * d2 / (ell * ell))

    return a @ k(x, x) @ a + b @ k(y, y) @ b - 2.0 * a @ k(x, y) @ b


def features(events: Events, observables) -> jax.Array:
    """Per-event observable vectors f[N, d] (per-event observables only; ``ValueError`` otherwise)."""
    cols = []
    for o in as_observables(observables).values():
        values, _ = evaluate(o, events)
        if values.ndim != 1:
            raise ValueError(f"unbinned losses need per-event observables f[N]; {o.name!r} has shape {values.shape}")
        cols.append(values)
    return jnp.stack(cols, axis=-1)


def sample_distance(events: Events, target, observables: list[Observable] | dict, *, kind: str = "energy",
                    target_weights=None, max_events: int = 2000, scale=None):
    """Energy distance (``kind="energy"``) or MMD² (``"mmd"``) between weighted simulated events and a
    target sample, after dividing every observable by ``scale`` (default: the target's weighted
    standard deviation). At most ``max_events`` of each side are used.

    ``target`` is either :class:`~diffgen.events.Events` (observables computed by the same functions,
    weighted by their event weights) or observable vectors f[M, d] with optional ``target_weights``
    (default: unweighted, as for unweighted events of another generator).

    Example:
        >>> import jax, diffgen
        >>> from diffgen.fit import losses, targets
        >>> gen = diffgen.presets.ee_mumu(94.0)
        >>> obs = [("cos_theta", targets.cos_theta, [-1.0, 1.0])]
        >>> sim = gen.sample(gen.default_params(), jax.random.key(0), 1000)
        >>> data = gen.sample(gen.default_params(), jax.random.key(1), 1000)
        >>> far = gen.sample(diffgen.with_settings(gen.default_params(), {"23:m0": 93.0}), jax.random.key(1), 1000)
        >>> bool(losses.sample_distance(sim, data, obs) < losses.sample_distance(sim, far, obs))
        True
    """
    if kind not in ("energy", "mmd"):
        raise ValueError(f"unknown sample distance {kind!r}; allowed: 'energy', 'mmd'")
    if isinstance(target, Events):
        if target_weights is not None:
            raise ValueError("target_weights is only for feature arrays; Events carry their own weights")
        tev = target[:max_events]
        y = features(tev, observables)
        yw = event_weights(tev, normalise=True)
    else:
        y = _as_2d(jnp.asarray(target))[:max_events]
        yw = None if target_weights is None else jnp.asarray(target_weights)[:max_events]
    ev = events[:max_events]
    x = features(ev, observables)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{x.shape[1]} observables but the target has {y.shape[1]} feature columns")
    if scale is None:
        b = _norm_weights(yw, y.shape[0], y.dtype)
        mean = b @ y
        s = jnp.sqrt(b @ (y - mean) ** 2)
    else:
        s = jnp.asarray(scale)
    s = jax.lax.stop_gradient(jnp.where(s > 0, s, 1.0))
    w = event_weights(ev, normalise=True)
    fn = energy_distance if kind == "energy" else mmd
    return fn(x / s, y / s, w, yw)
