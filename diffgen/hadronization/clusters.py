"""Colour-singlet clusters for the ML hadronization layer: formation, fission, light clusters.

Everything acts on a whole batch (``N`` events, ``C`` cluster slots, leading axes ``[N, C]``); no vmap.

Formation (Herwig-like preconfinement, Webber, Nucl. Phys. B238 (1984) 492). Every gluon is split
into a collinear quark–antiquark pair, each half carrying ½ of the gluon four-momentum (z = ½, the
same as the string stage's dipole pieces), the flavour drawn with u : d : s = 1 : 1 :
``StringFlav:probStoUD``. A cluster is then the colour-singlet pair (colour end i, anticolour end j)
with ``colour[i, 0] == colour[j, 1]``: a quark (or the quark half of a gluon) and the antiquark (or
antiquark half of a gluon) that carries the matching anticolour. A chain q g₁ … g_k q̄ gives k + 1
clusters (q, ½g₁), (½g₁, ½g₂), …, (½g_k, q̄). For each cluster we keep

* ``p4`` P = p_a + p_b (GeV) and its mass M = √P²;
* ``axis``: p_a, the quark end's four-momentum (lab frame); only its direction in the rest frame
  of P matters: n̂ = direction of p_a boosted into the cluster rest frame;
* the end flavours ``f_pos`` (quark, 1..5) and ``f_neg`` (antiquark, 1..5), and whether each end is a
  *perturbative* quark of the shower (``pos_primary``, ``neg_primary``) rather than a gluon half or a
  flavour popped in fission (Herwig's ``ClDir`` distinction).

Fission of heavy clusters (Herwig 7 ``ClusterFissioner``, with a smooth threshold). With constituent
masses m_a, m_b of the end flavours (:data:`~diffgen.hadronization.flavour.CONSTITUENT_MASS`), a
cluster is split when M exceeds M_thr = (M_max^p + (m_a + m_b)^p)^(1/p) with M_max =
``ClusterFission:maxMass`` and p = ``ClusterFission:power``; here the decision is a Bernoulli draw
with P(split) = σ((M − M_thr)/w), w = :data:`SPLIT_WIDTH` (Herwig's hard threshold is the limit
w → 0), so that the settings get score-function gradients (``log p − stop_gradient(log p)``). A split
pops a q_new q̄_new pair (u : d : s = 1 : 1 : probStoUD) and makes the children (q_a q̄_new) and
(q_new q̄_b) with masses

    M₁ = m_a + m_new + Δ s v,   M₂ = m_b + m_new + Δ s (1 − v),   Δ = M − m_a − m_b − 2 m_new,

s = u₁^(1/P_s) (P_s = ``ClusterFission:pSplit``, Herwig's ``PSplit``: larger P_s leaves less
relative motion) and v = u₂ uniform: pathwise in P_s. In the parent rest frame the children fly
back to back along n̂ (child 1, which holds the parent's quark end, along +n̂), and both keep the
parent's ``axis`` (the new quark of child 2 points towards child 1). Fission runs a fixed number of
rounds, each splitting every cluster whose draw says so; the children are compacted into the ``C``
slots (more than ``C`` sets the overflow flag).

Light clusters. A cluster with M below the lightest two-meson state of its flavours (plus
:data:`LIGHT_MARGIN`) becomes the lightest meson of flavour (q_a q̄_b); four-momentum is conserved by a
two-body reshuffle with a non-light partner cluster in their common rest frame (the meson keeps its
direction there, the partner keeps its mass and is boosted, its ``axis`` with it); the partner is the
cluster with the largest mass excess M(p_light + p_j) − m_meson − M_j. If no cluster can absorb the
reshuffle, the event gets ``FAILED_KINEMATICS`` and the meson keeps the cluster's off-shell momentum
(none in 256 showered Z-pole events; the slow test allows 10 in 10⁴).

Example:
    >>> import jax.numpy as jnp
    >>> p4 = jnp.array([[[45.0, 0, 0, 45.0], [45.0, 0, 0, -45.0]]])
    >>> cl, bad, over, parton = form_clusters(p4, jnp.array([[2, -2]]), jnp.ones((1, 2), bool),
    ...                                       jnp.array([[[101, 0], [0, 101]]]), jnp.ones((1, 2), jnp.int32), 4)
    >>> int(cl.active.sum()), float(cl.p4[0, 0, 0]), int(cl.f_pos[0, 0]), int(cl.f_neg[0, 0])
    (1, 90.0, 2, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen.events import compact_slots
from diffgen.hadronization.flavour import CONSTITUENT_MASS, lightest_meson, min_two_meson_mass
from diffgen.numerics import safe_div, safe_log, safe_norm, safe_sqrt

__all__ = ["Clusters", "form_clusters", "fission_round", "FissionParams", "two_body_along", "rest_axis",
           "collapse_light_clusters", "LIGHT_MARGIN", "SPLIT_WIDTH", "FISSION_MARGIN"]

LIGHT_MARGIN = 0.01  #: GeV added to the two-meson threshold below which a cluster becomes one meson
SPLIT_WIDTH = 0.1  #: GeV, width w of the smooth fission threshold σ((M − M_thr)/w)
FISSION_MARGIN = 0.01  #: GeV; fission needs M > m_a + m_b + 2 m_new + margin
_P_MIN = 1.0e-6  #: probabilities are clipped into [p_min, 1 − p_min] inside logs


class Clusters(NamedTuple):
    """Cluster slots of a batch, leading axes ``[N, C]`` (see the module docstring)."""

    active: jax.Array  #: bool[N, C]
    p4: jax.Array  #: f[N, C, 4] cluster four-momentum P (GeV)
    axis: jax.Array  #: f[N, C, 4] a four-vector along the quark end (only its rest-frame direction matters)
    f_pos: jax.Array  #: i32[N, C] quark-end flavour 1..5
    f_neg: jax.Array  #: i32[N, C] antiquark-end flavour 1..5
    pos_primary: jax.Array  #: bool[N, C] the quark end is a shower quark
    neg_primary: jax.Array  #: bool[N, C] the antiquark end is a shower antiquark


class FissionParams(NamedTuple):
    max_mass: jax.Array  #: ClusterFission:maxMass (GeV)
    power: jax.Array  #: ClusterFission:power
    p_split: jax.Array  #: ClusterFission:pSplit
    flav_probs: jax.Array  #: f[3] P(d), P(u), P(s) of a popped pair


def form_clusters(p4, pid, mask, colour, gluon_flavour, n_clusters: int):
    """Colour-singlet clusters from the partons of a batch (module docstring).

    Args:
        p4: f[N, P, 4]; pid: i32[N, P]; mask: bool[N, P]; colour: i32[N, P, 2] (colour, anticolour).
        gluon_flavour: i32[N, P] flavour 1..3 of the pair each gluon splits into (ignored elsewhere).
        n_clusters: static number of cluster slots C.

    Returns:
        ``(Clusters, bad_colour bool[N], overflow bool[N], parton bool[N, P])``: ``bad_colour`` when a
        colour end has no partner or several; ``overflow`` when more than C clusters.
    """
    is_q = mask & (pid >= 1) & (pid <= 5)
    is_aq = mask & (pid <= -1) & (pid >= -5)
    is_g = mask & (pid == 21)
    col, acol = colour[..., 0], colour[..., 1]
    col_end = (is_q | is_g) & (col > 0)
    anti_end = (is_aq | is_g) & (acol > 0)
    match = col_end[:, :, None] & anti_end[:, None, :] & (col[:, :, None] == acol[:, None, :])  # [N, i, j]
    n_in = jnp.sum(match, axis=1)
    n_out = jnp.sum(match, axis=2)
    bad = (jnp.any(col_end & (n_out != 1), axis=1) | jnp.any(anti_end & (n_in != 1), axis=1)
           | jnp.any(is_q & ~col_end, axis=1) | jnp.any(is_aq & ~anti_end, axis=1)
           | jnp.any(is_g & ~(col_end & anti_end), axis=1))
    partner = jnp.argmax(match, axis=2)  # [N, P]: slot j with the anticolour matching colour of i

    def take(a, idx):
        return jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)

    half_a = jnp.where(is_g, 0.5, 1.0)[..., None]
    p_a = p4 * half_a
    p_b = take(p4 * half_a, partner)
    f_a = jnp.where(is_g, gluon_flavour, pid)
    f_b = take(jnp.where(is_g, gluon_flavour, -pid), partner)
    prim_b = take(~is_g, partner)
    fields = (p_a + p_b, p_a, jnp.clip(f_a, 1, 5).astype(jnp.int32), jnp.clip(f_b, 1, 5).astype(jnp.int32),
              ~is_g, prim_b)
    active, (p, axis, f_pos, f_neg, pos_prim, neg_prim), overflow = compact_slots(col_end, fields, n_clusters)
    clusters = Clusters(active=active, p4=p, axis=axis, f_pos=jnp.where(active, f_pos, 1),
                        f_neg=jnp.where(active, f_neg, 1), pos_primary=pos_prim & active,
                        neg_primary=neg_prim & active)
    return clusters, bad, overflow, is_q | is_aq | is_g


def rest_axis(p_total, axis):
    """Unit three-vector n̂ of ``axis`` in the rest frame of ``p_total`` (ẑ if undefined), f[..., 3]."""
    beta = safe_div(p_total[..., 1:], p_total[..., :1])
    d = kin.boost(axis, -beta)[..., 1:]
    dn = safe_norm(d, keepdims=True)
    ok = dn > 0
    return jnp.where(ok, d / jnp.where(ok, dn, 1.0), jnp.array([0.0, 0.0, 1.0], d.dtype))


def two_body_along(p_total, unit, m1, m2):
    """Split ``p_total`` (f[..., 4]) into particle 1 of mass ``m1`` flying along the rest-frame unit
    vector ``unit`` (f[..., 3]) and the remainder ``p_total − p1`` (mass m2 up to rounding).

    In the rest frame |p*| = λ^½(M², m1², m2²)/(2M); particle 1 is (√(m1² + p*²), p* û), boosted back.
    Four-momentum is conserved exactly by construction (the second is the difference). ``λ < 0``
    (does not fit) gives p* = 0 with zero gradient.
    """
    big_m2 = kin.mass2(p_total)
    big_m = safe_sqrt(big_m2)
    lam = (big_m2 - m1 ** 2 - m2 ** 2) ** 2 - 4.0 * m1 ** 2 * m2 ** 2
    pstar = safe_div(safe_sqrt(lam), 2.0 * big_m)
    e1 = safe_sqrt(m1 ** 2 + pstar ** 2)
    h_rest = jnp.concatenate([e1[..., None], pstar[..., None] * unit], axis=-1)
    h = kin.boost(h_rest, safe_div(p_total[..., 1:], p_total[..., :1]))
    return h, p_total - h


def _constituent(f):
    return jnp.asarray(CONSTITUENT_MASS)[f - 1]


def fission_round(clusters: Clusters, u, fp: FissionParams):
    """One round of fission of every cluster above threshold (module docstring).

    Args:
        clusters: :class:`Clusters` with C slots.
        u: f[N, C, 4] uniforms of this round.
        fp: :class:`FissionParams`.

    Returns:
        ``(clusters, log_p f[N], overflow bool[N], heavy bool[N, C])``: the new clusters compacted into
        C slots, the summed log-probability of the round's discrete choices (split or not, popped
        flavour; differentiable), overflow flags, and which input clusters were above threshold.
    """
    m = kin.mass(clusters.p4)
    m_a, m_b = _constituent(clusters.f_pos), _constituent(clusters.f_neg)
    cdf = jnp.cumsum(jax.lax.stop_gradient(fp.flav_probs))
    k = jnp.clip(jnp.sum(u[..., 0:1] * cdf[-1] >= cdf, axis=-1), 0, 2)
    q_new = (k + 1).astype(jnp.int32)
    m_new = _constituent(q_new)
    feasible = clusters.active & (m > m_a + m_b + 2.0 * m_new + FISSION_MARGIN)
    p = fp.power
    safe_m = jnp.where(feasible, m, 1.0)
    m_thr = jnp.exp(jnp.log(fp.max_mass ** p + (m_a + m_b) ** p) / p)
    p_split = jnp.clip(jax.nn.sigmoid((safe_m - m_thr) / SPLIT_WIDTH), _P_MIN, 1.0 - _P_MIN)
    split = feasible & (u[..., 1] < jax.lax.stop_gradient(p_split))
    log_p = jnp.where(feasible, jnp.where(split, jnp.log(p_split) + safe_log(fp.flav_probs[k], 0.0),
                                          jnp.log1p(-p_split)), 0.0)
    delta = jnp.maximum(m - m_a - m_b - 2.0 * m_new, 0.0)
    s = jnp.exp(safe_log(jnp.maximum(u[..., 2], 1e-12), 0.0) / fp.p_split)  # u^(1/P_s), pathwise in P_s
    v = u[..., 3]
    m1 = m_a + m_new + delta * s * v
    m2 = m_b + m_new + delta * s * (1.0 - v)
    unit = rest_axis(clusters.p4, clusters.axis)
    c1, c2 = two_body_along(clusters.p4, unit, m1, m2)
    s1 = split[..., None]
    child1 = clusters._replace(p4=jnp.where(s1, c1, clusters.p4), f_neg=jnp.where(split, q_new, clusters.f_neg),
                               neg_primary=clusters.neg_primary & ~split)
    child2 = Clusters(active=split, p4=jnp.where(s1, c2, 0.0), axis=clusters.axis,
                      f_pos=jnp.where(split, q_new, 1), f_neg=clusters.f_neg,
                      pos_primary=jnp.zeros_like(split), neg_primary=clusters.neg_primary & split)
    cat = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=1), child1, child2)
    n_slots = clusters.active.shape[1]
    active, out, overflow = compact_slots(cat.active, cat, n_slots)
    out = out._replace(active=active, f_pos=jnp.where(active, out.f_pos, 1), f_neg=jnp.where(active, out.f_neg, 1))
    return out, jnp.sum(log_p, axis=1), overflow, feasible & (m > m_thr)


def collapse_light_clusters(clusters: Clusters):
    """Turn clusters too light for two mesons into one meson each (module docstring).

    The light clusters are handled one slot after the other; each picks as partner the non-light
    cluster j with the largest excess M(p_light + p_j) − m_meson − M_j (the one that absorbs the
    reshuffle most easily; usually the heaviest or the most back-to-back), whose momentum and axis are
    updated before the next light cluster is handled.

    Returns:
        ``(clusters, pid i32[N, C], p4 f[N, C, 4], light bool[N, C], failed bool[N])``: the clusters with
        the light ones deactivated and their partners boosted, and the single mesons.
    """
    m = kin.mass(clusters.p4)
    light = clusters.active & (m < min_two_meson_mass(clusters.f_pos, clusters.f_neg) + LIGHT_MARGIN)
    pid_l, m_l = lightest_meson(clusters.f_pos, clusters.f_neg)
    cand = clusters.active & ~light
    rows = jnp.arange(m.shape[0])

    def body(s, carry):
        p4, axis, hadrons, failed = carry
        p_s = clusters.p4[:, s]
        pair = p_s[:, None, :] + p4  # [N, C, 4]
        excess = jnp.where(cand, kin.mass(pair) - m_l[:, s, None] - m[:, :], -1.0e9)
        nb = jnp.argmax(excess, axis=1)
        ok = (excess[rows, nb] > 1e-4) & (pid_l[:, s] != 0)
        q_total = pair[rows, nb]
        h, p_nb_new = two_body_along(q_total, rest_axis(q_total, p_s), m_l[:, s], m[rows, nb])
        do = light[:, s] & ok
        p_nb_old = p4[rows, nb]
        axis_new = kin.boost(kin.boost(axis[rows, nb], -safe_div(p_nb_old[:, 1:], p_nb_old[:, :1])),
                             safe_div(p_nb_new[:, 1:], p_nb_new[:, :1]))
        p4 = p4.at[rows, nb].set(jnp.where(do[:, None], p_nb_new, p_nb_old))
        axis = axis.at[rows, nb].set(jnp.where(do[:, None], axis_new, axis[rows, nb]))
        hadrons = hadrons.at[:, s].set(jnp.where(do[:, None], h, p_s))
        return p4, axis, hadrons, failed | (light[:, s] & ~ok)

    init = (clusters.p4, clusters.axis, jnp.zeros_like(clusters.p4), jnp.zeros(m.shape[:1], bool))
    p4, axis, hadrons, failed = jax.lax.fori_loop(0, m.shape[1], body, init)
    out = clusters._replace(active=clusters.active & ~light, p4=p4, axis=axis)
    return out, jnp.where(light, pid_l, 0), jnp.where(light[..., None], hadrons, 0.0), light, failed
