"""Normalised histograms of simulated events, optionally soft-binned, with their MC variances.

For event weights w_i and per-event, per-bin entry counts n_ib (the number of the event's entries in
bin b: 0/1 for per-event observables), :func:`binned` gives the contents in one of
:data:`NORMALISATIONS` (see :mod:`diffgen.fit.targets`):

* ``events``: c_b = Σ_i w_i n_ib / Σ_i w_i;
* ``unit``:   c_b = Σ_i w_i n_ib / Σ_i w_i T_i with T_i = Σ_b n_ib;
* ``sigma``:  c_b = Σ_i w_i n_ib / N (pb per bin),

and their delta-method (ratio-estimator) variances, computed without gradient. Soft binning and
the straight-through estimator are described in :mod:`diffgen.fit.losses`.

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


def _edge_widths(edges, smoothing):
    w = jnp.diff(edges)
    mid = 0.5 * (w[:-1] + w[1:])
    return smoothing * jnp.concatenate([w[:1], mid, w[-1:]])


def binned(values, weights, edges, *, mask=None, normalisation: str = "events", smoothing: float | None = None,
           straight_through: bool = True) -> BinnedPrediction:
    """Normalised, optionally soft-binned histogram with MC variances (see module docstring).

    Args:
        values: f[N] per-event or f[N, P] per-particle observable values.
        weights: f[N] event weights (0 for failed events); any positive scale for ``events`` and
            ``unit``, pb for ``sigma``.
        edges: f[B+1] bin edges.
        mask: bool like ``values`` (padded particle slots False).
        normalisation: ``"events"``, ``"unit"`` or ``"sigma"``.
        smoothing: kernel width as a fraction of the bin width, or None for hard bins.
        straight_through: value from hard bins, value-gradient from the kernel (default).
    """
    check_normalisation(normalisation)
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
        h = _edge_widths(edges, jnp.asarray(smoothing, dtype))
        cdf = ndtr((edges - x[..., None]) / h)
        soft = jnp.sum(jnp.where(m[..., None], cdf[..., 1:] - cdf[..., :-1], 0.0), axis=1)
        n = hard + (soft - jax.lax.stop_gradient(soft)) if straight_through else soft
    num = w @ n
    wg, hg = jax.lax.stop_gradient(w), jax.lax.stop_gradient(n)
    if normalisation == "events":
        total = jnp.sum(w)
        contents = num / total
        dev = hg - jax.lax.stop_gradient(contents)
        var = jnp.sum((wg[:, None] * dev) ** 2, 0) / jax.lax.stop_gradient(total) ** 2
    elif normalisation == "unit":
        total = w @ jnp.sum(n, -1)
        contents = num / total
        dev = hg - jax.lax.stop_gradient(contents) * jnp.sum(hg, -1, keepdims=True)
        var = jnp.sum((wg[:, None] * dev) ** 2, 0) / jax.lax.stop_gradient(total) ** 2
    else:
        count = float(w.shape[0])
        contents = num / count
        dev = wg[:, None] * hg - jax.lax.stop_gradient(contents)
        var = jnp.sum(dev * dev, 0) / count / count
    return BinnedPrediction(contents, var)
