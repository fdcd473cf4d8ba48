"""Unweighting and the weight diagnostics that keep an integrator honest.

**Unweighting.** Given weights w_i ≥ 0 (e.g. f/q, or event weights in pb), an event is kept with probability
min(1, w_i / w_max); kept events carry the weight w_max, so E[Σ_kept w_max] = Σ w_i when no w_i exceeds w_max.
The **unweighting efficiency** is ε = ⟨w⟩ / w_max, the expected fraction of events kept.

* uncapped: w_max = max_i w_i of the sample (ε depends on the sample size N, which is reported);
* capped (``cap`` = r): w_max is the smallest value with Σ_i max(w_i − w_max, 0) = r Σ_i w_i — the
  overweights carry a fraction r of σ. Kept overweights either keep the weight w_i (``keep_overweights``,
  unbiased, a few events with weight > w_max) or get w_max, and then σ is biased low by exactly that fraction r
  of the sample, which is reported as ``cap_bias``.

**Diagnostics.** :func:`weight_diagnostics` gives the effective sample size ESS = (Σw)²/Σw² and the largest
single weight's share of Σw. An integrator that misses a region of the integrand entirely cannot see it in its
weights; one that samples it rarely (a flat or wide channel in a mixture) shows it as a few huge weights.
:func:`check_weights` turns a small ESS/N or a large max share into a ``UserWarning`` instead of a quietly
small error bar.

Example:
    >>> import numpy as np
    >>> from diffgen.flows.unweight import unweighting_efficiency
    >>> w = np.array([1.0, 1.0, 2.0, 4.0])
    >>> unweighting_efficiency(w).efficiency, unweighting_efficiency(w, cap=0.25).w_max
    (0.5, 2.0)
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Efficiency", "unweighting_efficiency", "unweight_mask", "Diagnostics", "weight_diagnostics",
           "pilot_max_weight", "unweight_events",
           "check_weights"]


class Efficiency(NamedTuple):
    efficiency: float  #: ⟨w⟩ / w_max
    w_max: float
    cap_bias: float  #: fraction of Σw above w_max (removed if overweights are set to w_max); 0 uncapped
    overweight_fraction: float  #: fraction of events with w > w_max
    n: int  #: sample size


def _weights(w):
    w = np.asarray(w, np.float64).ravel()
    if w.size == 0:
        raise ValueError("need at least one weight")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0 (drop flagged events first)")
    if not w.sum() > 0:
        raise ValueError("all weights are zero: nothing to unweight")
    return w


def _capped_max(w, cap):
    """Smallest m with Σ max(w − m, 0) = cap Σw (piecewise linear in m; exact on sorted weights)."""
    ws = np.sort(w)[::-1]
    target = cap * ws.sum()
    csum = np.cumsum(ws)
    # excess(m) for m = ws[k]: Σ_{i<k} (ws_i − ws_k) = csum[k-1] − k ws_k, increasing in k
    k = np.arange(ws.size)
    excess = np.concatenate([[0.0], csum[:-1]]) - k * ws
    j = int(np.searchsorted(excess, target, side="right"))  # first k with excess > target
    if j >= ws.size:
        return float(ws[-1]) if excess[-1] <= target else float(ws[-1])
    # between ws[j-1] and ws[j]: excess(m) = csum[j-1] − j m  → m = (csum[j-1] − target)/j
    return float((csum[j - 1] - target) / j)


def unweighting_efficiency(w, cap: float | None = None) -> Efficiency:
    """ε = ⟨w⟩ / w_max for weights ``w`` (f[N] ≥ 0), uncapped or with overweight fraction ``cap`` of σ in (0, 1)."""
    w = _weights(w)
    if cap is None:
        w_max = float(w.max())
    else:
        if not (0 < cap < 1):
            raise ValueError(f"cap (fraction of sigma in overweights) must be in (0, 1), got {cap}")
        w_max = _capped_max(w, cap)
    over = w > w_max
    bias = float(np.sum(w[over] - w_max) / w.sum()) if cap is not None else 0.0
    return Efficiency(float(w.mean() / w_max), w_max, bias, float(over.mean()), int(w.size))


def unweight_mask(key, w, w_max):
    """bool[N]: keep event i with probability min(1, w_i / w_max) (traceable; one uniform per event from ``key``)."""
    u = jax.random.uniform(key, np.shape(w))
    return u * w_max < w


class Diagnostics(NamedTuple):
    ess_fraction: float  #: (Σw)² / (N Σw²)
    max_share: float  #: max w / Σw
    n: int


def weight_diagnostics(w) -> Diagnostics:
    """ESS/N and the largest weight's share of Σw (module docstring)."""
    w = _weights(w)
    return Diagnostics(float(w.sum() ** 2 / (w.size * np.sum(w * w))), float(w.max() / w.sum()), int(w.size))


def check_weights(w, min_ess_fraction: float = 0.01, max_share: float = 0.01, what: str = "sample") -> Diagnostics:
    """:func:`weight_diagnostics`, warning (``UserWarning``) when ESS/N < ``min_ess_fraction`` or one weight
    carries more than ``max_share`` of Σw: the error estimate is then not to be trusted (a structure of the
    integrand is sampled too rarely, or was found late)."""
    d = weight_diagnostics(w)
    if d.ess_fraction < min_ess_fraction or d.max_share > max_share:
        warnings.warn(f"{what}: unreliable weights — ESS/N = {d.ess_fraction:.3g} (warn below {min_ess_fraction}), "
                      f"largest weight carries {d.max_share:.3g} of the sum (warn above {max_share}); the integrand "
                      "has structure the sampler rarely visits, and the quoted error may be far too small",
                      UserWarning, stacklevel=2)
    return d


def pilot_max_weight(gen, params, key, n: int = 20_000, cap: float | None = None) -> float:
    """w_max for unweighting ``gen``'s events, from a pilot sample of ``n`` events drawn with a key independent
    of ``key``'s event sequence (``fold_in(key, 2**31 − 1)``): the largest weight, or the capped one (``cap``)."""
    from diffgen.expect import event_weights

    ev = gen.sample(params, jax.random.fold_in(key, 2**31 - 1), n)
    w = np.asarray(event_weights(ev), np.float64)
    return unweighting_efficiency(w, cap).w_max


def unweight_events(events, w_max: float, key, first_index: int = 0):
    """Keep event i with probability min(1, w_i/w_max) and give it the weight max(w_i, w_max) (so overweights above
    a pilot's w_max stay unbiased); flagged events are dropped. Event ``first_index + i`` decides with its own
    uniform ``uniform(fold_in(key, first_index + i))``, so the result does not depend on the chunking.
    Returns ``(kept Events, number dropped, number of overweights)``."""
    if not (w_max > 0 and np.isfinite(w_max)):
        raise ValueError(f"w_max must be a positive finite weight, got {w_max}")
    lw = np.asarray(events.log_weight, np.float64)
    good = np.asarray(events.status) == 0
    w = np.where(good, np.exp(np.where(good, lw, 0.0)), 0.0)
    idx = jnp.arange(first_index, first_index + w.size, dtype=jnp.uint32)
    u = np.asarray(jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(idx), np.float64)
    keep = good & (u * w_max < w)
    kept = events[np.flatnonzero(keep)]
    new_lw = np.log(np.maximum(w[keep], w_max)).astype(np.asarray(events.log_weight).dtype)
    return kept.replace(log_weight=new_lw), int(w.size - keep.sum()), int(np.sum(w[keep] > w_max))
