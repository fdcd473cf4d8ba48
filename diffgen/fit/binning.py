"""Normalised histograms of simulated events, optionally soft-binned, with their MC variances.

For event weights w_i and per-event, per-bin entry counts n_ib (the number of the event's entries in
bin b: 0/1 for per-event observables), :func:`binned` gives the contents in one of
:data:`NORMALISATIONS` (see :mod:`diffgen.fit.targets`):

* ``events``: c_b = Σ_i w_i n_ib / Σ_i w_i;
* ``unit``:   c_b = Σ_i w_i n_ib / Σ_i w_i T_i with T_i = Σ_b n_ib;
* ``sigma``:  c_b = Σ_i w_i n_ib / N (pb per bin),

and their delta-method (ratio-estimator) variances, computed without gradient. Soft binning and
the straight-through estimator are described in :mod:`diffgen.fit.losses`.

For events from :func:`diffgen.expect.sample_replicated` (``replicas`` consecutive events per parent)
the variances sum the residuals per parent first (the replicas are correlated), and ``baseline =
"siblings"`` or ``"siblings_cv"`` gives the downstream score terms of each bin the sibling baseline
of :mod:`diffgen.expect` (value unchanged, gradient unbiased with lower variance): the score part of
bin b's gradient becomes Σ w [∂ℓᵘ d_b + ∂ℓᵈ (d_b − β_b B[d_b])] / D with d_ib the per-event deviation
of the normalisation (n_ib − c_b, n_ib − c_b T_i, or n_ib for ``sigma``) and D = Σ w (or N).

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.fit.binning import binned
    >>> binned(jnp.array([0.2, 0.7, 0.8]), jnp.ones(3), [0.0, 0.5, 1.0]).contents.tolist()
    [0.3333333432674408, 0.6666666865348816]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from diffgen.expect import check_variance_options, grouped_sum_squares, kernel_widths, score_baseline_correction

__all__ = ["NORMALISATIONS", "BinnedPrediction", "binned", "check_normalisation"]

#: How contents are normalised (see :mod:`diffgen.fit.targets`).
NORMALISATIONS = ("events", "unit", "sigma")


def check_normalisation(normalisation, what: str = "") -> str:
    """``normalisation`` if it is one of :data:`NORMALISATIONS`; ``ValueError`` naming it otherwise."""
    if normalisation not in NORMALISATIONS:
        prefix = f"{what}: " if what else ""
        raise ValueError(f"{prefix}unknown normalisation {normalisation!r}; allowed: {', '.join(NORMALISATIONS)}")
    return normalisation


class BinnedPrediction(NamedTuple):
    """Simulated bin contents (normalised like the target) and their MC variances."""

    contents: jax.Array
    variances: jax.Array


def binned(values, weights, edges, *, mask=None, normalisation: str = "events", smoothing: float | None = None,
           straight_through: bool = True, log_weight_down=None, replicas: int = 1,
           baseline: str = "mean") -> BinnedPrediction:
    """Normalised, optionally soft-binned histogram with MC variances (see module docstring).

    Args:
        values: f[N] per-event or f[N, P] per-particle observable values.
        weights: f[N] event weights (0 for failed events); any positive scale for ``events`` and
            ``unit``, pb for ``sigma``.
        edges: f[B+1] bin edges.
        mask: bool like ``values`` (padded particle slots False).
        normalisation: ``"events"``, ``"unit"`` or ``"sigma"``.
        smoothing: kernel width as a fraction of the bin width (:func:`diffgen.expect.kernel_widths`), or
            None for hard bins.
        straight_through: value from hard bins, value-gradient from the kernel (default).
        log_weight_down, replicas, baseline: for :func:`diffgen.expect.sample_replicated` samples, the
            downstream log-weights ℓᵈ f[N] (with gradient), the group size and the score baseline (one
            of :data:`diffgen.expect.BASELINES`; module docstring).
    """
    check_normalisation(normalisation)
    replicas = check_variance_options(baseline, replicas, jnp.shape(weights)[0])
    if baseline != "mean" and log_weight_down is None:
        raise ValueError(f"baseline={baseline!r} needs log_weight_down (the downstream stages' log-weights)")
    values = jnp.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
        mask = None if mask is None else jnp.asarray(mask)[:, None]
    m = jnp.ones(values.shape, bool) if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool), values.shape)
    w = jnp.asarray(weights)
    dtype = jnp.result_type(values.dtype, w.dtype, float)
    edges = jnp.asarray(edges, dtype)
    nb = edges.shape[0] - 1
    x = jnp.where(m, values, edges[0] - 1.0).astype(dtype)  # padded slots far outside, masked anyway
    idx = jnp.searchsorted(edges, x, side="right") - 1
    idx = jnp.where(x == edges[-1], nb - 1, idx)
    inside = m & (idx >= 0) & (idx < nb) & (x <= edges[-1])
    hard = jnp.sum(jax.nn.one_hot(jnp.where(inside, idx, -1), nb, dtype=dtype), axis=1)  # [N, B]
    if smoothing is None:
        n = hard
    else:
        h = kernel_widths(edges, jnp.asarray(smoothing, dtype))
        cdf = ndtr((edges - x[..., None]) / h)
        soft = jnp.sum(jnp.where(m[..., None], cdf[..., 1:] - cdf[..., :-1], 0.0), axis=1)
        n = hard + (soft - jax.lax.stop_gradient(soft)) if straight_through else soft
    num = w @ n
    wg, hg = jax.lax.stop_gradient(w), jax.lax.stop_gradient(n)
    if normalisation == "events":
        total = jnp.sum(w)
        contents = num / total
        dev = hg - jax.lax.stop_gradient(contents)
        resid, denom = wg[:, None] * dev, jax.lax.stop_gradient(total)
    elif normalisation == "unit":
        total = w @ jnp.sum(n, -1)
        contents = num / total
        dev = hg - jax.lax.stop_gradient(contents) * jnp.sum(hg, -1, keepdims=True)
        resid, denom = wg[:, None] * dev, jax.lax.stop_gradient(total)
    else:
        count = float(w.shape[0])
        contents = num / count
        dev = hg
        resid, denom = wg[:, None] * hg - jax.lax.stop_gradient(contents), count
    var = grouped_sum_squares(resid, replicas) / denom ** 2
    if baseline != "mean":
        contents = contents + score_baseline_correction(dev, w, log_weight_down, replicas, baseline) / denom
    return BinnedPrediction(contents, var)
