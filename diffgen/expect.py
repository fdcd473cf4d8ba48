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
  the weights, and in the values when ``smoothing`` (a Gaussian kernel width as a
  fraction of the bin width, :func:`kernel_widths`; the same meaning as in the fits) is given.
* :func:`bin_one_hot` — the hard binning behind it (one-hot bin rows, last bin closed), the one
  place every hard histogram in diffgen bins its values.
* :func:`linearize` — f(θ0) and the forward-mode map ε ↦ J·ε for any pytree f.
* :func:`sample_replicated` and ``baseline="siblings"`` / ``"siblings_cv"`` of :func:`expect` — lower-variance
  score-function gradients (issue 17): each upstream event (hard process and shower) is hadronized
  ``replicas`` times, and the score terms of the downstream choices get the *conditional* baseline
  E[O | partons], estimated from the sibling replicas (see *Sibling baselines* below).

Sibling baselines
-----------------
Split the chain at a stage (default ``"hadronization"``): ℓ = ℓᵘ + ℓᵈ, the log-weights added by the
stages before and from it. Run the upstream stages for N/k events and the downstream ones k times on
each (replicas r = 1..k of parent g, with independent keys). The estimator of ∂⟨O⟩ is

    Σ w [∂ℓᵘ (O − ⟨O⟩) + ∂ℓᵈ (O − ⟨O⟩ − β (B − ⟨O⟩)) + ∂O] / Σ w,

with B_gr the weighted mean of O over the *other* replicas of parent g. For ``"siblings"`` β = 1; for
``"siblings_cv"`` β_b (per output component or bin) is the regression coefficient of O − ⟨O⟩ on
B − ⟨O⟩, fitted on the other half of the parents (cross-fitting) and clipped to [0, 1], the optimal
scalar control-variate coefficient when the scores are uncorrelated with O. Unbiasedness: B_gr and β
depend only on events other than (g, r), whose downstream choices are independent of those of (g, r)
given parent g, and the downstream stages' weights are normalised probabilities of their choices,
E[wᵈ ∂ℓᵈ | parent] = ∂E[wᵈ | parent] = ∂1 = 0; so E[w ∂ℓᵈ β(B − ⟨O⟩)] = 0 and only the variance
changes: Var(O − B) = Var(O | parent)·k/(k − 1) replaces Var(O). It is a variant of the baselines of
REINFORCE with multiple samples (Kool, van Hoof, Welling, ICLR 2019 workshop, "Buy 4 REINFORCE
samples, get a baseline for free!") applied per level of a hierarchical sampler. The replicas of one
parent are correlated, so the statistical errors of values sum residuals per parent first.

Flagged events: :func:`expect` and :func:`cross_section` (and so :func:`linearize` of functions
built on them) warn, or raise with ``on_flagged="raise"``, when more than ``max_flagged`` (default
1 %) of their events carry status flags and therefore zero weight, naming the flags
(:mod:`diffgen.flagged`). For :func:`histogram`, which sees only values and weights, call
:func:`diffgen.flagged.check_flagged` on the events.
"""

from __future__ import annotations

import functools
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
           "linearize_with_error", "Linearization", "kernel_widths",
           "forward_backward_asymmetry", "tangent_from_settings", "BASELINES", "DEFAULT_SPLIT",
           "ReplicatedEvents", "sample_replicated", "sample_replicated_traced", "sibling_baseline",
           "score_baseline_correction", "grouped_sum_squares", "check_variance_options", "weighted_mean",
           "resolve_variance_options", "AUTO_REPLICAS", "AUTO_BASELINE"]

#: Score-function baselines (module docstring, *Sibling baselines*): ``"mean"`` the self-normalised
#: global ⟨O⟩ only; ``"siblings"`` the sibling replicas' mean for downstream scores; ``"siblings_cv"``
#: the same with a cross-fitted optimal coefficient β.
BASELINES = ("mean", "siblings", "siblings_cv")

#: The stage where :func:`sample_replicated` splits a chain by default (upstream: hard process and shower).
DEFAULT_SPLIT = "hadronization"

#: The estimator that the fits (:func:`diffgen.fit.linear.fit_linearized`, :func:`diffgen.fit.variance_report`)
#: use by default where the generator's chain has the ``split`` stage: the lowest Jacobian noise measured
#: for the LEP observables at 2·10⁴ events (docs/gradients.md, §4).
AUTO_REPLICAS, AUTO_BASELINE = 2, "siblings_cv"


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


def _weighted_mean(values, w, with_error: bool, replicas: int = 1):
    wb = w.reshape(w.shape + (1,) * (values.ndim - 1))
    sw = jnp.sum(w)
    mean = jnp.sum(wb * values, axis=0) / sw
    if not with_error:
        return mean
    # delta-method variance of the ratio estimator Σ w O / Σ w (residuals summed per parent first)
    resid = wb * (values - mean)
    err = jnp.sqrt(grouped_sum_squares(resid, replicas)) / sw
    return mean, err


def grouped_sum_squares(resid, replicas: int = 1):
    """Σ_g (Σ_{i∈g} r_i)² over consecutive groups of ``replicas`` events (axis 0), f[...]: the variance
    sum of correlated replicas (:func:`sample_replicated`); Σ r_i² for ``replicas = 1``."""
    if replicas > 1:
        resid = jnp.sum(resid.reshape((-1, replicas) + resid.shape[1:]), axis=1)
    return jnp.sum(resid * resid, axis=0)


def check_variance_options(baseline: str, replicas, n: int | None = None) -> int:
    """Validate ``baseline`` (one of :data:`BASELINES`) and ``replicas`` (an integer ≥ 1 dividing ``n``;
    ≥ 2 for the sibling baselines); returns ``replicas`` as an int (``ValueError`` otherwise)."""
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; allowed: {', '.join(BASELINES)}")
    replicas = check_int(replicas, "replicas (hadronizations per upstream event)", lo=1)
    if baseline != "mean" and replicas < 2:
        raise ValueError(f"baseline={baseline!r} needs replicas >= 2 (sibling hadronizations), got {replicas}")
    if n is not None and n % replicas:
        raise ValueError(f"the number of events ({n}) must be a multiple of replicas ({replicas})")
    return replicas


def resolve_variance_options(gen, replicas, baseline, split: str = DEFAULT_SPLIT, n: int | None = None):
    """``(replicas, baseline)`` with ``None`` meaning "the default": both ``None`` give
    (:data:`AUTO_REPLICAS`, :data:`AUTO_BASELINE`) when ``gen``'s chain has a stage ``split`` after the
    first (and ``n``, if given, is a multiple of :data:`AUTO_REPLICAS`), the plain (1, ``"mean"``)
    otherwise; ``baseline`` alone takes :data:`AUTO_REPLICAS` replicas (1 for ``"mean"``); ``replicas``
    alone takes :data:`AUTO_BASELINE` (``"mean"`` for 1). The result is validated."""
    if replicas is None and baseline is None:
        names = [name for name, _ in getattr(getattr(gen, "stage", None), "parts", ())]
        fits = split in names[1:] and (n is None or n % AUTO_REPLICAS == 0)
        replicas, baseline = (AUTO_REPLICAS, AUTO_BASELINE) if fits else (1, "mean")
    elif replicas is None:
        replicas = 1 if baseline == "mean" else AUTO_REPLICAS
    elif baseline is None:
        baseline = "mean" if (isinstance(replicas, (int, np.integer)) and replicas == 1) else AUTO_BASELINE
    return check_variance_options(baseline, replicas, n), baseline


def sibling_baseline(values, w, replicas: int):
    """B_i: the ``w``-weighted mean of ``values`` over the other members of event i's group.

    Events come in consecutive groups of ``replicas`` (the replicas of one parent, see
    :func:`sample_replicated`); ``values`` f[N, ...] and ``w`` f[N] carry no gradient here. Where the
    other members have zero total weight (or ``replicas = 1``) B_i = 0.

    Example:
        >>> import jax.numpy as jnp
        >>> sibling_baseline(jnp.array([1.0, 3.0, 5.0, 0.0, 2.0, 4.0]), jnp.ones(6), 3).tolist()
        [4.0, 3.0, 2.0, 3.0, 2.0, 1.0]
    """
    values = jax.lax.stop_gradient(jnp.asarray(values))
    w = jax.lax.stop_gradient(jnp.asarray(w))
    rest = values.shape[1:]
    v = values.reshape((-1, replicas) + rest)
    ww = w.reshape((-1, replicas) + (1,) * len(rest))
    loo_wv = jnp.sum(ww * v, axis=1, keepdims=True) - ww * v
    loo_w = jnp.sum(ww, axis=1, keepdims=True) - ww
    ok = loo_w > 0
    out = jnp.where(ok, loo_wv / jnp.where(ok, loo_w, 1.0), 0.0)
    return out.reshape(values.shape)


def _cross_fitted_beta(dev, base, w, replicas: int):
    """β per component: Σ w dev·B / Σ w B² fitted on the other half of the groups, clipped to [0, 1]."""
    n_groups = dev.shape[0] // replicas
    half = (n_groups // 2) * replicas
    if half == 0:
        return jnp.ones((dev.shape[0],) + dev.shape[1:], dev.dtype)
    wb = w.reshape(w.shape + (1,) * (dev.ndim - 1))

    def fit(sl):
        num = jnp.sum((wb * dev * base)[sl], axis=0)
        den = jnp.sum((wb * base * base)[sl], axis=0)
        return jnp.clip(jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0), 0.0, 1.0)

    beta_first, beta_second = fit(slice(half, None)), fit(slice(0, half))  # each from the other half
    first = jnp.arange(dev.shape[0]) < half
    return jnp.where(first.reshape((-1,) + (1,) * (dev.ndim - 1)), beta_first, beta_second)


def score_baseline_correction(dev, w, log_weight_down, replicas: int, baseline: str):
    """−Σ_i w_i (ℓᵈ_i − sg ℓᵈ_i) β B_i: the sibling-baseline term of the score part (value 0).

    ``dev`` f[N, ...] are the per-event deviations whose weighted sum the score multiplies (O − ⟨O⟩
    for a self-normalised mean), ``w`` f[N] the event weights, ``log_weight_down`` f[N] the log-weights
    added by the downstream stages (ℓᵈ, with gradient), B = :func:`sibling_baseline` of ``dev`` and β
    1 (``"siblings"``) or cross-fitted (``"siblings_cv"``). Divide by the estimator's normalisation
    (Σ w, or N). Zero for ``baseline="mean"``. See the module docstring.
    """
    if baseline == "mean":
        return jnp.zeros(dev.shape[1:], jnp.result_type(dev, float))
    dev = jax.lax.stop_gradient(dev)
    wg = jax.lax.stop_gradient(w)
    base = sibling_baseline(dev, wg, replicas)
    if baseline == "siblings_cv":
        base = base * _cross_fitted_beta(dev, base, wg, replicas)
    box = log_weight_down - jax.lax.stop_gradient(log_weight_down)
    coeff = (wg * box).reshape(w.shape + (1,) * (dev.ndim - 1))
    return -jnp.sum(coeff * base, axis=0)


class ReplicatedEvents(NamedTuple):
    """Events from :func:`sample_replicated`: ``replicas`` consecutive events share one parent.

    ``upstream_log_weight`` f[N] is the log-weight after the upstream stages (ℓᵘ, with gradient);
    ``events.log_weight − upstream_log_weight`` is what the downstream stages added (ℓᵈ).
    """

    events: Events
    upstream_log_weight: jax.Array


def split_chain(gen, split: str):
    parts = getattr(gen.stage, "parts", ())
    names = [name for name, _ in parts]
    if split not in names:
        raise ValueError(f"cannot split generator {gen!r} at stage {split!r}: its chain has stages {names} "
                         "(replicas need a chain with a stage of that name after the first)")
    i = names.index(split)
    if i == 0:
        raise ValueError(f"split stage {split!r} is the first stage of {names}: nothing upstream to replicate")
    return parts[:i], parts[i:]


def _run_parts(parts, params, keys, events):
    from diffgen.stage import fold_keys, stable_id

    for name, st in parts:
        if name not in params:
            raise ValueError(f"params has no entry for stage {name!r}; it has {sorted(params)}")
        events = st.apply(params[name], fold_keys(keys, stable_id(name)), events)
    return events


def sample_replicated_traced(gen, params, key, n: int, replicas: int, split: str = DEFAULT_SPLIT) -> ReplicatedEvents:
    """``n`` events: ``n / replicas`` parents from the stages before ``split``, each continued
    ``replicas`` times by the stages from ``split`` on (traceable; see :func:`sample_replicated`)."""
    from diffgen.events import Status
    from diffgen.stage import _as_typed

    up, down = split_chain(gen, split)
    n_par = n // replicas
    keys = jax.vmap(jax.random.fold_in, (None, 0))(_as_typed(key), jnp.arange(n_par, dtype=jnp.uint32))
    parents = _run_parts(up, params, keys, Events.empty(n_par, 0))
    ev = jax.tree_util.tree_map(lambda a: jnp.repeat(a, replicas, axis=0), parents)
    # replica 0 keeps the parent's key, so replicas = 1 gives exactly gen.sample's events
    data = jnp.repeat(jax.random.key_data(keys), replicas, axis=0)
    r = jnp.tile(jnp.arange(replicas, dtype=jnp.uint32), n_par)
    folded = jax.random.key_data(jax.vmap(jax.random.fold_in)(jax.random.wrap_key_data(data), r))
    down_keys = jax.random.wrap_key_data(jnp.where((r == 0)[:, None], data, folded))
    ev = _run_parts(down, params, down_keys, ev)
    finite = jnp.isfinite(ev.log_weight) & jnp.all(jnp.isfinite(ev.p4), axis=(1, 2))
    ev = ev.with_status(~finite, Status.NONFINITE)
    return ReplicatedEvents(ev, jnp.repeat(parents.log_weight, replicas))


def sample_replicated(gen, params, key, n: int, replicas: int, split: str = DEFAULT_SPLIT) -> ReplicatedEvents:
    """``n`` events in groups of ``replicas`` that share the upstream stages (validated and jitted).

    The stages of ``gen``'s chain before ``split`` (for :func:`diffgen.presets.ee_hadrons`: the hard
    process and the shower) run for ``n / replicas`` parent events with the keys ``fold_in(key, g)``;
    each parent is repeated ``replicas`` times and the stages from ``split`` on run on every copy
    with independent keys (replica 0 with the parent's key: ``replicas = 1`` reproduces
    ``gen.sample(params, key, n)``). Events ``g·replicas … (g+1)·replicas − 1`` are parent g's.

    Example:
        >>> import jax, diffgen
        >>> gen = diffgen.presets.ee_hadrons(shower=False, decays=False)
        >>> rep = sample_replicated(gen, gen.default_params(), jax.random.key(0), 8, 4)
        >>> bool(rep.upstream_log_weight[0] == rep.upstream_log_weight[3])  # one parent, four hadronizations
        True
    """
    from diffgen.params import check_params
    from diffgen.stage import check_key, check_n

    n = check_n(n)
    check_key(key)
    check_params(params)
    replicas = check_variance_options("mean", replicas, n)
    split_chain(gen, split)
    return _replicated_jit(gen, n, replicas, split)(params, key)


@functools.lru_cache(maxsize=32)
def _replicated_jit(gen, n, replicas, split):
    return jax.jit(lambda p, k: sample_replicated_traced(gen, p, k, n, replicas, split))


def expect(observable: Callable[[Events], Any], gen, params, key, n: int, with_error: bool = False, *,
           max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn", baseline: str = "mean",
           replicas: int = 1, split: str = DEFAULT_SPLIT):
    """⟨O⟩ = Σ w O(event) / Σ w over ``n`` events from ``gen`` (see module docstring).

    ``observable`` maps Events to f[N] (or f[N, ...]). Differentiable in ``params``.
    With ``with_error=True`` returns (mean, statistical error). Warns (``on_flagged="raise"``:
    raises) when more than ``max_flagged`` of the events are flagged (zero weight), naming the flags.

    Variance reduction of the score-function gradients (module docstring, *Sibling baselines*):
    ``replicas = k > 1`` continues every upstream event (the stages before ``split``) ``k`` times
    (:func:`sample_replicated`), and ``baseline`` (one of :data:`BASELINES`) chooses the baseline of the
    downstream stages' score terms. The value's error accounts for the correlated replicas.
    """
    check_flag_options(max_flagged, on_flagged)
    replicas = check_variance_options(baseline, replicas, n)
    if replicas > 1:
        rep = sample_replicated(gen, params, key, n, replicas, split)
        events, log_weight_down = rep.events, rep.events.log_weight - rep.upstream_log_weight
    else:
        events, log_weight_down = gen.sample(params, key, n), None
    check_flagged(events, max_flagged, on_flagged, where="expect")
    return expect_of(observable, events, with_error, log_weight_down=log_weight_down, replicas=replicas,
                     baseline=baseline)


def expect_of(observable, events: Events, with_error: bool = False, *, log_weight_down=None, replicas: int = 1,
              baseline: str = "mean"):
    """:func:`expect` on a given sample (for ``baseline != "mean"``: a :func:`sample_replicated` sample,
    its ``replicas``, and ``log_weight_down`` = events.log_weight − upstream_log_weight)."""
    replicas = check_variance_options(baseline, replicas, events.n_events)
    if baseline != "mean" and log_weight_down is None:
        raise ValueError(f"baseline={baseline!r} needs log_weight_down (the downstream stages' log-weights)")
    w = event_weights(events, normalise=True)
    values = jnp.asarray(observable(events))
    if values.shape[:1] != w.shape:
        raise ValueError(f"observable must return one value per event (leading axis {w.shape[0]}), "
                         f"got shape {values.shape}")
    return weighted_mean(values, w, with_error, log_weight_down=log_weight_down, replicas=replicas, baseline=baseline)


def weighted_mean(values, w, with_error: bool = False, *, log_weight_down=None, replicas: int = 1,
                  baseline: str = "mean"):
    """Σ w O / Σ w of per-event ``values`` f[N, ...] with weights ``w`` f[N] (with gradients), its score part
    given the ``baseline`` (module docstring, *Sibling baselines*; ``log_weight_down`` f[N] the downstream
    log-weights for the sibling baselines); with ``with_error`` also the statistical error (residuals
    summed per group of ``replicas``). The arithmetic of :func:`expect_of`, on arrays."""
    out = _weighted_mean(values, w, with_error, replicas)
    if baseline == "mean":
        return out
    mean = out[0] if with_error else out
    dev = values - jax.lax.stop_gradient(mean)
    mean = mean + score_baseline_correction(dev, w, log_weight_down, replicas, baseline) / jax.lax.stop_gradient(
        jnp.sum(w))
    return (mean, out[1]) if with_error else mean


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


def kernel_widths(edges, smoothing):
    """Soft-binning kernel widths f[B+1], one per edge: ``smoothing`` × the mean width of the two bins
    next to the edge (the outer edges: × the width of their bin). ``smoothing`` is a fraction of the bin
    width, the one meaning it has in :func:`histogram`, :func:`diffgen.fit.losses.binned` and the fits.

    Example:
        >>> import jax.numpy as jnp
        >>> kernel_widths(jnp.array([0.0, 1.0, 3.0]), 0.5).tolist()
        [0.5, 0.75, 1.0]
    """
    w = jnp.diff(edges)
    mid = 0.5 * (w[:-1] + w[1:])
    return smoothing * jnp.concatenate([w[:1], mid, w[-1:]])


def histogram(values, bins, weights=None, smoothing=None, range=None, mask=None) -> Histogram:  # noqa: A002
    """Weighted histogram of ``values`` (any shape; ``weights`` and ``mask`` broadcast to it).

    Args:
        values: observable values, e.g. f[N] per event or f[N, P] per particle.
        bins: an int (with ``range``) or an array of edges.
        weights: per-entry weights (default 1); per-event weights f[N] broadcast over particles.
        smoothing: if given, each entry is spread over the bins with a Gaussian kernel whose width
            is ``smoothing`` × the bin width (at each edge, × the mean width of the two bins next to
            it: :func:`kernel_widths`), so contents are differentiable in ``values`` (pathwise
            gradients); the kernel mass outside the edges is lost as for hard under/overflow. The
            same meaning as ``smoothing`` of :func:`diffgen.fit.fit` and
            :func:`diffgen.fit.losses.binned` (e.g. 0.25).
        mask: bool array, entries with False are ignored (padded particle slots).

    Returns:
        :class:`Histogram` (contents Σw, errors √Σw², edges). Entries outside the edges
        are not counted.

    Flagged events: ``histogram`` sees values and weights only, not the events' ``status``, so it
    does not check how many events were flagged (weight 0); call
    :func:`diffgen.flagged.check_flagged` on the events whose weights you bin, as :func:`expect`
    and :func:`cross_section` do for you.
    """
    edges = _edges(bins, range)
    if smoothing is not None and not isinstance(smoothing, jax.core.Tracer):
        h = np.asarray(smoothing, dtype=float)
        if h.ndim != 0 or not (np.isfinite(h) and h > 0):
            raise ValueError(f"smoothing (kernel width as a fraction of the bin width) must be a finite number > 0, "
                             f"got {smoothing!r}")
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
        h = kernel_widths(edges.astype(w.dtype), jnp.asarray(smoothing, w.dtype))
        cdf = ndtr((edges[None, :] - x[:, None]) / h[None, :])
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


def _as_tangent(params, eps):
    """``eps`` as a tangent tree: a ``{setting name: shift}`` dict is expanded, a tree passes through."""
    if isinstance(eps, dict) and eps and all(isinstance(k, str) and ":" in k for k in eps):
        return tangent_from_settings(params, eps)
    return eps


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
        return lin(_as_tangent(params, eps))

    return value, jvp


class Linearization(NamedTuple):
    """:func:`linearize_with_error`'s result: the batch mean of ``fn`` and its Monte Carlo error (pytrees
    like ``fn``'s output), and ``jvp(ε) -> (J·ε, error of J·ε)``."""

    value: Any
    error: Any
    jvp: Callable


def linearize_with_error(fn: Callable, params, key, batches: int = 10) -> Linearization:
    """Linearise a Monte Carlo estimate with its error: ``fn(params, key)`` is evaluated and linearised on
    ``batches`` independent keys (``jax.random.split(key, batches)``), and value, Jacobian-vector
    products and their errors are the batch means and ``std / √batches`` (batch means: the error of the
    mean of the batches, i.e. of a run with ``batches`` × the events ``fn`` uses). A shift ``J·ε`` smaller
    than its error is noise. ``fn`` returns any pytree of arrays; ``ε`` as for :func:`linearize`.

    Example:
        >>> import jax, diffgen
        >>> gen = diffgen.presets.ee_mumu()
        >>> f = lambda p, k: diffgen.cross_section(gen, p, k, 500)[0]
        >>> lin = diffgen.linearize_with_error(f, gen.default_params(), jax.random.key(0), batches=4)
        >>> shift, err = lin.jvp({"23:m0": 0.01})

    Raises:
        ValueError: ``batches`` < 2.
    """
    batches = check_int(batches, "batches (independent samples for the errors)", lo=2)
    values, lins = [], []
    for k in jax.random.split(key, batches):
        v, lin = jax.linearize(lambda p, k=k: fn(p, k), params)
        values.append(v)
        lins.append(lin)

    def mean_err(stack):
        return jax.tree_util.tree_map(lambda *xs: jnp.mean(jnp.stack(xs), axis=0), *stack), \
            jax.tree_util.tree_map(lambda *xs: jnp.std(jnp.stack(xs), axis=0, ddof=1) / math.sqrt(batches), *stack)

    value, error = mean_err(values)

    def jvp(eps):
        eps = _as_tangent(params, eps)
        return mean_err([lin(eps) for lin in lins])

    return Linearization(value, error, jvp)

