"""Durham (k_T) jet clustering for e+e- events: merge scales y_{n,n+1} and y23.

Durham distance (Catani et al. 1991; Pythia 8 ``ClusterJet`` with ``measure = 2``):

    y_ij = 2 min(E_i², E_j²) (1 − cos θ_ij) / E_vis²,   E_vis = Σ_k E_k (occupied slots),

with E-scheme recombination p_ij = p_i + p_j. The pair with the smallest y_ij is merged repeatedly; the
merge scale y_{n,n+1} is the smallest y_ij when n + 1 pseudojets remain, i.e. the resolution at which
the event changes from n + 1 to n jets; y23 = y_{2,3}. Events with fewer than n + 1 particles have
y_{n,n+1} = 0. The event has n jets at resolution y_cut when y_{n,n+1} < y_cut ≤ y_{n−1,n} (for the
usual monotonic sequence), from which the jet rates R_n(y_cut) follow.

Fixed shapes: the clustering runs on the batch in a ``lax.fori_loop`` of M − n iterations (M the largest
number of occupied slots of an event in the batch, at most P), with an [N, P, P] table of pair distances
(memory O(N P²)) of which one row and column are scattered per merge; merged and padded slots are masked
off (distance +inf). The clustering history is computed without
gradient; the returned value is then recomputed differentiably as y of the selected pair of pseudojets
(sums of their constituents' four-momenta) at that fixed history. It is piecewise smooth in the
momenta: exact derivatives away from ties and reordering of the merges, finite everywhere (the angle
uses safe norms and divisions, so collinear pairs, particles at rest and padded slots are harmless).

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.checks import check_int
from diffgen.checks import check_int
from diffgen.events import Events
    >>> from diffgen.observables import durham_y23
    >>> p4 = jnp.array([[[3., 3., 0., 0.], [4., 0., 4., 0.], [5., -3., -4., 0.]]])  # E_vis = 12
    >>> ev = Events.empty(1, 3).replace(p4=p4, mask=jnp.ones((1, 3), bool))
    >>> float(durham_y23(ev)[0])  # 2 · 3² · (1 − 0) / 12²
    0.125
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffgen.checks import check_int
from diffgen.events import Events
from diffgen.numerics import safe_div, safe_norm
from diffgen.observables.event_shapes import einsum_highest

__all__ = ["durham_distance", "durham_merge_scales", "durham_yn", "durham_y23"]

_sg = jax.lax.stop_gradient


def durham_distance(p_i, p_j):
    """Un-normalised Durham distance 2 min(E_i², E_j²)(1 − cos θ_ij) in GeV², broadcasting over [..., 4].

    cos θ is taken as 0 when either 3-momentum vanishes; values and gradients are finite everywhere.
    """
    e_i, e_j = p_i[..., 0], p_j[..., 0]
    v_i, v_j = p_i[..., 1:], p_j[..., 1:]
    cos = safe_div(jnp.sum(v_i * v_j, -1), safe_norm(v_i) * safe_norm(v_j))
    return 2.0 * jnp.minimum(e_i * e_i, e_j * e_j) * (1.0 - jnp.clip(cos, -1.0, 1.0))


def _history(p4, mask, ns: tuple[int, ...]):
    """Cluster without gradient; for each n in ``ns`` the merged pair (i, j) and constituent labels
    when n + 1 pseudojets remained: i32[N, len(ns), 2], i32[N, len(ns), P]."""
    n_ev, cap = mask.shape
    k_stop = min(ns) + 1
    inf = jnp.asarray(jnp.inf, p4.dtype)
    slots = jnp.arange(cap)
    jets = _sg(jnp.where(mask[..., None], p4, 0.0))
    pair_ok = mask[:, :, None] & mask[:, None, :] & (slots[:, None] != slots[None, :])
    table = jnp.where(pair_ok, durham_distance(jets[:, :, None, :], jets[:, None, :, :]), inf)
    label = jnp.broadcast_to(slots, (n_ev, cap)).astype(jnp.int32)
    rec_pair = jnp.zeros((n_ev, len(ns), 2), jnp.int32)
    rec_label = jnp.zeros((n_ev, len(ns), cap), jnp.int32)
    ns_arr = jnp.asarray(ns)
    rows = jnp.arange(n_ev)

    def body(_, carry):
        jets, active, label, table, rec_pair, rec_label = carry
        k = jnp.sum(active, -1)
        flat = jnp.argmin(table.reshape(n_ev, cap * cap), -1)
        a, b = flat // cap, flat % cap
        i, j = jnp.minimum(a, b).astype(jnp.int32), jnp.maximum(a, b).astype(jnp.int32)
        hit = (k[:, None] == ns_arr[None, :] + 1)  # [N, len(ns)]
        rec_pair = jnp.where(hit[..., None], jnp.stack([i, j], -1)[:, None, :], rec_pair)
        rec_label = jnp.where(hit[..., None], label[:, None, :], rec_label)
        # Merge j into i (E-scheme) where more than k_stop pseudojets remain.
        merge = k > k_stop
        is_i = (slots[None, :] == i[:, None]) & merge[:, None]
        is_j = (slots[None, :] == j[:, None]) & merge[:, None]
        p_new = jnp.take_along_axis(jets, i[:, None, None], 1) + jnp.take_along_axis(jets, j[:, None, None], 1)
        jets = jnp.where(is_i[..., None], p_new, jets)
        active = active & ~is_j
        label = jnp.where(merge[:, None] & (label == j[:, None]), i[:, None], label)
        # row and column i become the new pseudojet's distances, row and column j +inf (scatters: O(N P)
        # per merge instead of rewriting the [N, P, P] table); events that do not merge keep their rows
        row = jnp.where(active & ~is_i, durham_distance(p_new, jets), inf)  # [N, P]: new i vs the others
        row = jnp.where(merge[:, None], row, table[rows, i])
        table = table.at[rows, i].set(row).at[rows, :, i].set(row)
        gone = jnp.where(merge[:, None], inf, table[rows, j])
        table = table.at[rows, j].set(gone).at[rows, :, j].set(gone)
        return jets, active, label, table, rec_pair, rec_label

    carry = (jets, mask, label, table, rec_pair, rec_label)
    # the busiest event needs (its particles − k_stop + 1) merges; the others idle (merge is False) after theirs
    n_iter = jnp.maximum(jnp.max(jnp.sum(mask, -1)) - k_stop + 1, 0) if n_ev else 0
    carry = jax.lax.fori_loop(0, n_iter, body, carry)
    return carry[4], carry[5]


def _merge_scales(events: Events, ns: tuple[int, ...]):
    """y_{n,n+1} for each n in ``ns``, f[N, len(ns)], differentiable at the fixed clustering history."""
    p4 = jnp.where(events.mask[..., None], events.p4, 0.0)
    n_ev, cap = events.mask.shape
    if cap < min(ns) + 1:
        return jnp.zeros((n_ev, len(ns)), p4.dtype)
    pair, label = _history(p4, events.mask, ns)  # [N, K, 2], [N, K, P]
    member_i = ((label == pair[..., :1]) & events.mask[:, None, :]).astype(p4.dtype)
    member_j = ((label == pair[..., 1:]) & events.mask[:, None, :]).astype(p4.dtype)
    p_i = einsum_highest("nkp,npc->nkc", member_i, p4)
    p_j = einsum_highest("nkp,npc->nkc", member_j, p4)
    evis = jnp.sum(p4[..., 0], -1)
    y = safe_div(durham_distance(p_i, p_j), (evis * evis)[:, None])
    enough = jnp.sum(events.mask, -1)[:, None] >= jnp.asarray(ns)[None, :] + 1
    return jnp.where(enough, y, 0.0)


def durham_merge_scales(events: Events, n_max: int = 4):
    """Durham merge scales y_{n,n+1} for n = 1 … ``n_max``, f[N, n_max] (0 where fewer than n + 1 particles).

    One clustering pass (P − 1 merges) serves all n. E_vis = Σ E over occupied slots; 0 for empty events.
    """
    n_max = check_int(n_max, "n_max")
    return _merge_scales(events, tuple(range(1, n_max + 1)))


def durham_yn(events: Events, n: int):
    """Durham merge scale y_{n,n+1} (the y at which n + 1 jets become n), f[N]; y23 = ``durham_yn(ev, 2)``.

    Clusters down to n + 1 pseudojets only (P − n loop iterations).
    """
    n = check_int(n, "n", what="jets")
    return _merge_scales(events, (n,))[:, 0]


def durham_y23(events: Events):
    """Durham y23 = y_{2,3}, the resolution at which the event changes from 3 to 2 jets, f[N] (0 if < 3 particles)."""
    return durham_yn(events, 2)
