"""Expectations, cross sections, histograms and linearisation.

Weights: an event's weight is ``w = exp(log_weight)`` for events with
``status == 0`` and 0 otherwise. For a generator, w carries pb and σ = E[w].

* :func:`cross_section` — σ̂ = (1/N) Σ w ± std(w)/√N.
* :func:`expect` — the self-normalised mean ⟨O⟩ = Σ w O / Σ w. Its gradient is
  Σ ∂w (O − ⟨O⟩)/Σ w + Σ w ∂O / Σ w: the self-normalisation subtracts the
  baseline ⟨O⟩ from the score-function part (the control variate of DESIGN §2),
  so score terms added to ``log_weight`` by stages do not inflate the variance
  by the size of ⟨O⟩.
* :func:`histogram` — weighted bin contents and errors √Σw²; differentiable in
  the weights, and in the values when ``smoothing`` (a Gaussian kernel width in
  the units of the values) is given.
* :func:`bin_one_hot` — the hard binning behind it (one-hot bin rows, last bin closed), the one
  place every hard histogram in diffgen bins its values.
* :func:`linearize` — f(θ0) and the forward-mode map ε ↦ J·ε for any pytree f.

Flagged events: :func:`expect` and :func:`cross_section` (and so :func:`linearize` of functions
built on them) warn, or raise with ``on_flagged="raise"``, when more than ``max_flagged`` (default
1 %) of their events carry status flags and therefore zero weight, naming the flags
(:mod:`diffgen.flagged`). For :func:`histogram`, which sees only values and weights, call
:func:`diffgen.flagged.check_flagged` on the events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from diffgen.checks import check_int
from diffgen.events import Events
from diffgen.flagged import DEFAULT_MAX_FLAGGED, check_flag_options, check_flagged
from diffgen.kinematics import cos_theta
from diffgen.numerics import safe_sqrt
from diffgen.params import SETTINGS, settings

__all__ = ["event_weights", "cross_section", "expect", "Histogram", "histogram", "bin_one_hot", "linearize",
           "forward_backward_asymmetry", "tangent_from_settings"]


def event_weights(events: Events, normalise: bool = False):
    """w = exp(log_weight) for good events (status 0), 0 otherwise.

    With ``normalise=True`` the log weights are shifted by their (stop-gradient)
    maximum first — safe against overflow, for self-normalised ratios only.
    """
    good = events.status == 0
    lw = jnp.where(good, events.log_weight, -jnp.inf)
    if normalise:
        shift = jax.lax.stop_gradient(jnp.max(jnp.where(good, lw, -1e30)))
        lw = lw - shift
    return jnp.where(good, jnp.exp(jnp.where(good, lw, 0.0)), 0.0)


def cross_section(gen, params, key, n: int, *, max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn"):
    """Monte-Carlo σ in pb and its statistical error: (mean(w), std(w)/√N).

    Differentiable in ``params`` (e.g. ``jax.grad(lambda p: cross_section(gen, p, key, n)[0])``).
    Warns (``on_flagged="raise"``: raises :class:`diffgen.flagged.FlaggedEventsError`) when more than
    ``max_flagged`` of the events are flagged (zero weight), naming the flags.
    """
    check_flag_options(max_flagged, on_flagged)
    events = gen.sample(params, key, n)
    check_flagged(events, max_flagged, on_flagged, where="cross_section")
    return cross_section_of(events)


def cross_section_of(events: Events):
    """(σ, error) in pb from an event sample with pb weights."""
    w = event_weights(events)
    n = w.shape[0]
    mean = jnp.mean(w)
    err = safe_sqrt(jnp.mean(w * w) - mean * mean) / jnp.sqrt(n)
    return mean, err


def _weighted_mean(values, w, with_error: bool):
    wb = w.reshape(w.shape + (1,) * (values.ndim - 1))
    sw = jnp.sum(w)
    mean = jnp.sum(wb * values, axis=0) / sw
    if not with_error:
        return mean
    # delta-method variance of the ratio estimator Σ w O / Σ w
    resid = wb * (values - mean)
    err = jnp.sqrt(jnp.sum(resid * resid, axis=0)) / sw
    return mean, err


def expect(observable: Callable[[Events], Any], gen, params, key, n: int, with_error: bool = False, *,
           max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn"):
    """⟨O⟩ = Σ w O(event) / Σ w over ``n`` events from ``gen`` (see module docstring).

    ``observable`` maps Events to f[N] (or f[N, ...]). Differentiable in ``params``.
    With ``with_error=True`` returns (mean, statistical error). Warns (``on_flagged="raise"``:
    raises) when more than ``max_flagged`` of the events are flagged (zero weight), naming the flags.
    """
    check_flag_options(max_flagged, on_flagged)
    events = gen.sample(params, key, n)
    check_flagged(events, max_flagged, on_flagged, where="expect")
    return expect_of(observable, events, with_error)


def expect_of(observable, events: Events, with_error: bool = False):
    """:func:`expect` on a given sample."""
    w = event_weights(events, normalise=True)
    values = jnp.asarray(observable(events))
    if values.shape[:1] != w.shape:
        raise ValueError(f"observable must return one value per event (leading axis {w.shape[0]}), "
                         f"got shape {values.shape}")
    return _weighted_mean(values, w, with_error)


def forward_backward_asymmetry(events: Events):
    """A_FB of the fermion in slot 0 relative to the incoming particle in slot 0, with its error.

    A_FB = (σ_F − σ_B)/(σ_F + σ_B) with weights; error from the ratio-estimator variance.
    """
    sign = jnp.sign(cos_theta(events.p4[:, 0], events.p4_in[:, 0]))
    w = event_weights(events, normalise=True)
    return _weighted_mean(sign, w, True)


class Histogram(NamedTuple):
    """Bin contents Σw, their errors √Σw² and the bin edges."""

    contents: jax.Array
    errors: jax.Array
    edges: jax.Array


def _edges(bins, range_):
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        bins = check_int(bins, "number of bins")
        if range_ is None:
            raise ValueError("histogram with an integer number of bins needs range=(lo, hi)")
        lo, hi = float(range_[0]), float(range_[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"histogram range must be finite with hi > lo, got {range_}")
        return jnp.linspace(lo, hi, bins + 1)
    edges = jnp.asarray(bins, dtype=jnp.result_type(float))
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError(f"bin edges must be a 1-d array of length >= 2, got shape {edges.shape}")
    if not isinstance(edges, jax.core.Tracer) and not bool(jnp.all(jnp.diff(edges) > 0)):
        raise ValueError("bin edges must be strictly increasing")
    return edges


def bin_one_hot(values, edges, mask=None, dtype=None):
    """Hard binning: the one-hot row of the bin that holds each value, f[..., B] for B = len(edges) − 1.

    Bin b is [edges[b], edges[b+1]) and the last bin is closed, [edges[B−1], edges[B]]. Values
    outside the edges, NaN, and entries where ``mask`` is False give a row of zeros (no
    under/overflow bins). ``edges`` must be increasing; ``values`` have any shape (``mask``
    broadcasts to it). The result is piecewise constant in ``values`` (zero value-gradient); weight
    it, e.g. ``w @ bin_one_hot(x, edges)`` for the contents of a histogram of f[N] values.

    Example:
        >>> import jax.numpy as jnp
        >>> bin_one_hot(jnp.array([-1.0, 0.0, 0.5, 1.0, 2.0]), jnp.array([0.0, 0.5, 1.0])).tolist()
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    """
    values = jnp.asarray(values)
    edges = jnp.asarray(edges)
    dtype = dtype or jnp.result_type(values.dtype, edges.dtype, float)
    nb = edges.shape[0] - 1
    idx = jnp.searchsorted(edges, values, side="right") - 1
    idx = jnp.where(values == edges[-1], nb - 1, idx)  # the last bin is closed on the right
    inside = (idx >= 0) & (idx < nb)
    if mask is not None:
        inside = inside & jnp.broadcast_to(jnp.asarray(mask, bool), values.shape)
    return jax.nn.one_hot(jnp.where(inside, idx, -1), nb, dtype=dtype)


def histogram(values, bins, weights=None, smoothing=None, range=None, mask=None) -> Histogram:  # noqa: A002
    """Weighted histogram of ``values`` (any shape; ``weights`` and ``mask`` broadcast to it).

    Args:
        values: observable values, e.g. f[N] per event or f[N, P] per particle.
        bins: an int (with ``range``) or an array of edges.
        weights: per-entry weights (default 1); per-event weights f[N] broadcast over particles.
        smoothing: if given, each entry is spread over the bins with a Gaussian kernel of this
            width, so contents are differentiable in ``values`` (pathwise gradients); the
            kernel mass outside the edges is lost as for hard under/overflow.
        mask: bool array, entries with False are ignored (padded particle slots).

    Returns:
        :class:`Histogram` (contents Σw, errors √Σw², edges). Entries outside the edges
        are not counted.
    """
    edges = _edges(bins, range)
    if smoothing is not None and not isinstance(smoothing, jax.core.Tracer):
        h = np.asarray(smoothing, dtype=float)
        if h.ndim != 0 or not (np.isfinite(h) and h > 0):
            raise ValueError(f"smoothing (Gaussian kernel width) must be a finite number > 0, got {smoothing!r}")
    values = jnp.asarray(values)
    w = jnp.ones_like(values) if weights is None else jnp.asarray(weights)
    if w.ndim < values.ndim:
        w = w.reshape(w.shape + (1,) * (values.ndim - w.ndim))
    w = jnp.broadcast_to(w, values.shape)
    if mask is not None:
        w = jnp.where(jnp.broadcast_to(mask, values.shape), w, 0.0)
    x = values.reshape(-1)
    w = w.reshape(-1)
    if smoothing is None:
        frac = bin_one_hot(x, edges, dtype=w.dtype)
    else:
        h = jnp.asarray(smoothing, w.dtype)
        cdf = ndtr((edges[None, :] - x[:, None]) / h)
        frac = cdf[:, 1:] - cdf[:, :-1]
    contents = jnp.einsum("i,ib->b", w, frac)
    errors = jnp.sqrt(jnp.einsum("i,ib->b", w * w, frac * frac))
    return Histogram(contents, errors, edges)


def tangent_from_settings(params, eps: dict):
    """A tangent pytree shaped like ``params``: ``eps[name]`` at every leaf named ``name``, 0 elsewhere."""
    known = set(settings(params))
    for name in eps:
        if name not in SETTINGS or name not in known:
            raise ValueError(f"unknown setting {name!r} for this generator; its settings: {sorted(known)}")

    def walk(tree):
        if isinstance(tree, dict):
            return {k: (walk(v) if isinstance(v, dict)
                        else jnp.asarray(eps.get(k, 0.0), jnp.result_type(v)) * jnp.ones_like(v))
                    for k, v in tree.items()}
        return jax.tree_util.tree_map(jnp.zeros_like, tree)

    return walk(params)


def linearize(fn: Callable, params):
    """Linearise ``fn`` around ``params``: returns ``(fn(params), jvp)``.

    ``jvp(eps)`` is J·ε computed in forward mode, with ε either a pytree shaped like
    ``params`` or a dict ``{setting name: shift}``; so sim(θ0 + ε) ≈ value + jvp(ε).
    ``fn`` may return any pytree (e.g. a :class:`Histogram`). The linearisation is
    computed once; each ``jvp`` call costs one cheap linear map.

    Example:
        >>> import jax, diffgen
        >>> gen = diffgen.presets.ee_mumu()
        >>> p0 = gen.default_params()
        >>> f = lambda p: diffgen.cross_section(gen, p, jax.random.key(0), 1000)[0]
        >>> value, jvp = diffgen.linearize(f, p0)
        >>> shifted = value + jvp({"23:m0": 0.01})
    """
    value, lin = jax.linearize(fn, params)

    def jvp(eps):
        if isinstance(eps, dict) and eps and all(isinstance(k, str) and ":" in k for k in eps):
            eps = tangent_from_settings(params, eps)
        return lin(eps)

    return value, jvp
