"""Efficiencies as discrete keep/drop choices with score-function weights.

A particle eligible for detection (inside the acceptance, above threshold) is kept with probability
p(θ): kept if u < p for a uniform u. The choice is discrete, so its gradient comes from the score
function (DESIGN §2): the event's ``log_weight`` gets

    Σ_eligible [k log p + (1 − k) log(1 − p)] − stop_gradient(same),

which is 0 in value, and whose gradient is the score Σ (k/p − (1 − k)/(1 − p)) ∂p/∂θ. With the
self-normalised means of :func:`diffgen.expect` this gives unbiased ∂⟨O⟩/∂θ for 0 < p < 1; e.g. for
O = the number of kept particles, ∂⟨O⟩/∂p = ⟨number eligible⟩. At p = 1 (or 0) one outcome never
occurs and its term is missing from the estimate: values and gradients are finite but the derivative
with respect to p is then biased (the detector's default efficiencies are inside (0, 1) for this reason).

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.detector.efficiency import keep_with_score
    >>> keep, lp = keep_with_score(jnp.array([[0.1, 0.95, 0.5]]), jnp.asarray(0.9),
    ...                            jnp.array([[True, True, False]]))
    >>> keep.tolist(), round(float(lp[0]), 4)  # log 0.9 + log 0.1
    ([[True, False, False]], -2.4079)
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.numerics import safe_log

__all__ = ["keep_with_score"]


def keep_with_score(u, p, eligible):
    """Keep each eligible slot with probability ``p``.

    Args:
        u: f[N, P] uniforms in [0, 1).
        p: the efficiency, a scalar in [0, 1] (traced or not).
        eligible: bool[N, P].

    Returns:
        ``(keep, log_prob)``: bool[N, P] (eligible & u < p) and f[N], Σ over eligible slots of log p
        (kept) or log(1 − p) (dropped). Gradient-safe at p = 0 and p = 1 (the impossible branch has a
        zero gradient, not inf).
    """
    keep = eligible & (u < p)
    lp = jnp.where(keep, safe_log(p), safe_log(1.0 - p))
    return keep, jnp.sum(jnp.where(eligible, lp, 0.0), axis=-1)
