"""Colour-singlet strings and their light-cone frames (per event; vmapped by the caller).

Two models. Kinked strings (the default of :func:`~diffgen.hadronization.string_fragmentation`):
:func:`build_chains` orders each colour chain q g₁ … g_k q̄ from its quark end, joins adjacent partons
lighter than ``FragmentationSystems:mJoin`` and sets up its string regions (:class:`Regions`),
fragmented as one string by :mod:`diffgen.hadronization.kinked`. Straight pieces (``kinked=False``,
kept for comparison) are described below.

Gluons as dipole pieces. Every gluon is split into a collinear q q̄ pair, each carrying half
of its four-momentum, with a new flavour u : d : s = 1 : 1 : probStoUD; the gluon's colour
half is the quark end of one piece, its anticolour half the antiquark end of the next. A
chain q g₁ … g_k q̄ therefore becomes k + 1 straight strings (q, ½g₁), (½g₁, ½g₂), …,
(½g_k, q̄), each fragmented independently. The string effect (hadron flow between
colour-connected partons, depleted between q and q̄ of a q q̄ g event) is kept.

Soft gluons are absorbed. The rapidity length of the two half-gluon pieces is
ln(s_qg/2m₀²) + ln(s_gq̄/2m₀²) = ln(s/m₀²) + ln(p⊥²/4m₀²) with p⊥² = s_qg s_gq̄ / s_qq̄ the
kink transverse momentum: splitting a gluon with p⊥ < 2m₀ would *shorten* the string (a
0.2 GeV gluon halves the multiplicity: infrared unsafe). A gluon with kink p⊥ below
:data:`PT_KINK_MIN` = 1.8 GeV (where the measured multiplicities of the split and the
straight string cross) is therefore not split: the pieces on both sides merge into one
straight string whose two ends each receive half of the absorbed gluon momenta. Compared
with Lund's kinked string: harder gluons give about 2 ln 2 less rapidity length (≈ 1.7
fewer primary hadrons per hard gluon at the default tune), absorbed gluons leave no
angular imprint of their own, the kink flavour is chosen without rank ordering, and the
absorb/split decision is a discontinuous function of the parton momenta (it does not
depend on the tune parameters).

A piece is identified by its colour end (a quark or gluon slot ``i``); its anticolour end is
the slot ``j`` (antiquark or gluon) whose anticolour tag equals the colour tag of ``i``.

Light-cone frame of a straight string with end momenta ``p_a`` (quark end) and ``p_b``:
``P = p_a + p_b``, ``W² = P²``; in the rest frame of ``P`` the axis ẑ is the direction of
``p_a`` and ``n± = (W/2)(1, ±ẑ)``, with transverse unit vectors ``e₁, e₂ ⟂ ẑ``; all four are
boosted back to the event frame. A hadron with light-cone momenta ``(p⁺, p⁻)`` and transverse
momentum ``(t₁, t₂)`` along the string is ``p = (p⁺/W) n₊ + (p⁻/W) n₋ + t₁ e₁ + t₂ e₂``, so that
``p² = p⁺p⁻ − t²`` and Σp = P exactly when Σp⁺ = Σp⁻ = W and Σt = 0.

Light strings. A piece whose mass is below the lightest two-meson state of its end flavours
(plus a 10 MeV margin) becomes the lightest meson of those flavours; four-momentum is
conserved by a two-body reshuffle with the heaviest fragmentable piece of the event (both
keep their direction in their common rest frame; the heavy piece keeps its mass and is
boosted). If no such partner exists or the pair is too light, the event is flagged
``FAILED_KINEMATICS`` and the meson carries the piece's (off-shell) momentum.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen.hadronization.flavour import CONSTITUENT_MASS, lightest_meson, min_two_meson_mass
from diffgen.numerics import safe_div, safe_norm, safe_sqrt

__all__ = ["Strings", "light_cone_frame", "build_pieces", "collapse_light", "LIGHT_MARGIN", "PT_KINK_MIN",
           "compact_strings", "M_JOIN", "JOIN_PASSES", "Chains", "Regions", "make_regions", "build_chains",
           "collapse_light_chains", "compact_chains"]

LIGHT_MARGIN = 0.01  #: GeV added to the two-meson threshold below which a piece collapses
#: GeV; gluons whose kink pT (s_ag s_gb / s_ab with their colour neighbours) is below this are
#: not split but absorbed into the merged straight string (calibrated: 2 m₀, see module docstring)
PT_KINK_MIN = 1.8


class Strings(NamedTuple):
    """Straight strings of one event, fixed number ``S`` of slots (leading axis)."""

    active: jax.Array  #: bool[S]
    p_total: jax.Array  #: f[S, 4]
    mass: jax.Array  #: f[S] W
    n_plus: jax.Array  #: f[S, 4] light-like, along the quark end
    n_minus: jax.Array  #: f[S, 4]
    e1: jax.Array  #: f[S, 4] transverse unit vectors (space-like)
    e2: jax.Array
    f_pos: jax.Array  #: i32[S] flavour (1..5) of the quark end
    f_neg: jax.Array  #: i32[S] flavour (1..5) of the antiquark end


def light_cone_frame(p_a, p_b):
    """(P, W, n₊, n₋, e₁, e₂) of the straight string spanned by ``p_a`` (quark end) and ``p_b``."""
    p = p_a + p_b
    w = kin.mass(p)
    beta = safe_div(p[..., 1:], p[..., :1])
    pa_rest = kin.boost(p_a, -beta)
    norm = safe_norm(pa_rest[..., 1:], keepdims=True)
    ok = norm > 0
    axis = jnp.where(ok, pa_rest[..., 1:] / jnp.where(ok, norm, 1.0), jnp.array([0.0, 0.0, 1.0]))
    half = 0.5 * w[..., None]
    one = jnp.ones_like(w)[..., None]
    n_plus = jnp.concatenate([half, half * axis], axis=-1)
    n_minus = jnp.concatenate([half, -half * axis], axis=-1)
    zero = jnp.zeros_like(w)
    ex = kin.rotate_z_to(kin.four_vector(zero, one[..., 0], zero, zero), axis)
    ey = kin.rotate_z_to(kin.four_vector(zero, zero, one[..., 0], zero), axis)
    boosted = [kin.boost(v, beta) for v in (n_plus, n_minus, ex, ey)]
    return (p, w, *boosted)


def _kink_pt2(p4, prev, nxt):
    """Kink transverse momentum² s_ag s_gb / s_ab of each slot g between partons a = prev, b = next."""
    pa, pb = p4[prev], p4[nxt]
    s_ag = 2.0 * kin.minkowski_dot(pa, p4)
    s_gb = 2.0 * kin.minkowski_dot(p4, pb)
    s_ab = 2.0 * kin.minkowski_dot(pa, pb)
    return safe_div(s_ag * s_gb, s_ab, default=1.0e6)


def build_pieces(p4, pid, mask, colour, gluon_flavour, n_strings: int):
    """Straight-string pieces of one event.

    Args:
        p4: f[P, 4]; pid: i32[P]; mask: bool[P]; colour: i32[P, 2] (colour, anticolour).
        gluon_flavour: i32[P] flavour (1..3) of the q q̄ pair each gluon splits into.
        n_strings: static number of string slots S.

    Returns:
        (:class:`Strings`, bad_colour: bool, overflow: bool, parton: bool[P]) — ``bad_colour``
        when a parton has no colour partner (or several), or a closed loop of soft gluons;
        ``overflow`` when more than S pieces.
    """
    n_slots = pid.shape[0]
    is_q = mask & (pid >= 1) & (pid <= 5)
    is_aq = mask & (pid <= -1) & (pid >= -5)
    is_g = mask & (pid == 21)
    col, acol = colour[:, 0], colour[:, 1]
    col_end = (is_q | is_g) & (col > 0)
    anti_end = (is_aq | is_g) & (acol > 0)
    match = col_end[:, None] & anti_end[None, :] & (col[:, None] == acol[None, :])
    n_in = jnp.sum(match, axis=0)
    n_out = jnp.sum(match, axis=1)
    bad = (jnp.any(col_end & (n_out != 1)) | jnp.any(anti_end & (n_in != 1))
           | jnp.any(is_q & ~col_end) | jnp.any(is_aq & ~anti_end) | jnp.any(is_g & ~(col_end & anti_end)))
    nxt = jnp.argmax(match, axis=1)  # slot carrying the anticolour that matches my colour
    prev = jnp.argmax(match, axis=0)  # slot carrying the colour that matches my anticolour
    absorbed = is_g & (n_in == 1) & (n_out == 1) & (_kink_pt2(p4, prev, nxt) < PT_KINK_MIN ** 2)

    starts = col_end & ~absorbed
    order = jnp.argsort(~starts, stable=True)
    pad = max(n_strings - n_slots, 0)
    idx = jnp.pad(order, (0, pad))[:n_strings]
    active = jnp.pad(starts[order], (0, pad))[:n_strings]
    overflow = jnp.sum(starts) > n_strings

    def walk(_, carry):
        cur, acc, seen = carry
        go = absorbed[cur]
        seen = seen | (jax.nn.one_hot(cur, n_slots, dtype=bool) & go[:, None])
        acc = acc + jnp.where(go[:, None], p4[cur], 0.0)
        return jnp.where(go, nxt[cur], cur), acc, seen

    cur0 = nxt[idx]
    acc0 = jnp.zeros((n_strings, 4), p4.dtype)
    seen0 = jnp.zeros((n_strings, n_slots), bool)
    j, acc, seen = jax.lax.fori_loop(0, n_slots, walk, (cur0, acc0, seen0))
    covered = jnp.any(seen & active[:, None], axis=0)
    bad = bad | jnp.any(absorbed & ~covered) | jnp.any(active & absorbed[j])

    i = idx
    half_i = jnp.where(is_g[i], 0.5, 1.0)[:, None]
    half_j = jnp.where(is_g[j], 0.5, 1.0)[:, None]
    p_a = jnp.where(active[:, None], p4[i] * half_i + 0.5 * acc, jnp.array([1.0, 0.0, 0.0, 1.0]))
    p_b = jnp.where(active[:, None], p4[j] * half_j + 0.5 * acc, jnp.array([1.0, 0.0, 0.0, -1.0]))
    f_pos = jnp.where(active, jnp.where(is_g[i], gluon_flavour[i], pid[i]), 1)
    f_neg = jnp.where(active, jnp.where(is_g[j], gluon_flavour[j], -pid[j]), 1)
    f_pos = jnp.clip(f_pos, 1, 5)
    f_neg = jnp.clip(f_neg, 1, 5)
    p, w, n_plus, n_minus, e1, e2 = light_cone_frame(p_a, p_b)
    strings = Strings(active=active & (w > 0), p_total=p, mass=w, n_plus=n_plus, n_minus=n_minus,
                      e1=e1, e2=e2, f_pos=f_pos.astype(jnp.int32), f_neg=f_neg.astype(jnp.int32))
    parton = is_q | is_aq | is_g
    return strings, bad, overflow, parton, absorbed & is_g


def _two_body_along(q_total, p_dir, m1, m2):
    """Split ``q_total`` into on-shell momenta (m1, m2), particle 1 along ``p_dir`` in the rest frame."""
    big_m2 = kin.mass2(q_total)
    big_m = safe_sqrt(big_m2)
    beta = safe_div(q_total[..., 1:], q_total[..., :1])
    d = kin.boost(p_dir, -beta)[..., 1:]
    dn = safe_norm(d, keepdims=True)
    unit = jnp.where(dn > 0, d / jnp.where(dn > 0, dn, 1.0), jnp.array([0.0, 0.0, 1.0]))
    lam = (big_m2 - m1 ** 2 - m2 ** 2) ** 2 - 4.0 * m1 ** 2 * m2 ** 2
    pstar = safe_div(safe_sqrt(lam), 2.0 * big_m)
    e1 = safe_sqrt(m1 ** 2 + pstar ** 2)
    h_rest = jnp.concatenate([e1[..., None], pstar[..., None] * unit], axis=-1)
    h = kin.boost(h_rest, beta)
    return h, q_total - h


def collapse_light(strings: Strings):
    """Collapse pieces too light for two mesons into one meson each (see module docstring).

    Returns:
        (strings with the collapsed pieces deactivated and the partner boosted,
        collapsed pid i32[S], collapsed p4 f[S, 4], collapsed valid bool[S], failed: bool)
    """
    s_count = strings.mass.shape[0]
    light = strings.active & (strings.mass < min_two_meson_mass(strings.f_pos, strings.f_neg) + LIGHT_MARGIN)
    pid_l, m_l = lightest_meson(strings.f_pos, strings.f_neg)
    cand = strings.active & ~light
    nb = jnp.argmax(jnp.where(cand, strings.mass, -1.0))
    has_nb = jnp.any(cand)
    w_nb = strings.mass[nb]
    p_nb0 = strings.p_total[nb]

    def body(s, carry):
        p_nb, hadrons, failed = carry
        q_total = strings.p_total[s] + p_nb
        fits = kin.mass(q_total) > m_l[s] + w_nb + 1e-4
        ok = has_nb & fits & (pid_l[s] != 0)
        h, p_nb_new = _two_body_along(q_total, strings.p_total[s], m_l[s], w_nb)
        do = light[s]
        h = jnp.where(do & ok, h, strings.p_total[s])
        p_nb = jnp.where(do & ok, p_nb_new, p_nb)
        return p_nb, hadrons.at[s].set(h), failed | (do & ~ok)

    hadrons0 = jnp.zeros_like(strings.p_total)
    p_nb, hadrons, failed = jax.lax.fori_loop(0, s_count, body, (p_nb0, hadrons0, jnp.array(False)))

    # Boost the partner's frame from its old to its new momentum (same mass).
    beta_old = safe_div(p_nb0[1:], p_nb0[:1])
    beta_new = safe_div(p_nb[1:], p_nb[:1])
    moved = has_nb & jnp.any(light)

    def move(v):
        new = kin.boost(kin.boost(v[nb], -beta_old), beta_new)
        return v.at[nb].set(jnp.where(moved, new, v[nb]))

    out = strings._replace(active=strings.active & ~light, p_total=move(strings.p_total),
                           n_plus=move(strings.n_plus), n_minus=move(strings.n_minus),
                           e1=move(strings.e1), e2=move(strings.e2))
    return out, jnp.where(light, pid_l, 0), hadrons, light, failed


def compact_strings(strings: Strings) -> Strings:
    """Move active strings to the front (stable), so that string ``k < n_active`` is active."""
    order = jnp.argsort(~strings.active, stable=True)
    return jax.tree_util.tree_map(lambda a: a[order], strings)


# --------------------------------------------------------------------------------------------------
# Kinked strings: one string per colour chain q g₁ … g_k q̄ (see :mod:`diffgen.hadronization.kinked`)
# --------------------------------------------------------------------------------------------------

M_JOIN = 0.3  #: GeV, Pythia 8.3 FragmentationSystems:mJoin (allowed 0.2 … 1.0)
#: joins per event (one pair each, smallest mass first); more joinable pairs than this stay unjoined
JOIN_PASSES = 8


class Chains(NamedTuple):
    """Kinked strings of one event: ``S`` chain slots (leading axis).

    Chain ``c`` owns the string regions ``start[c] … start[c] + n_reg[c] − 1`` of :class:`Regions`.
    ``mass``, ``f_pos`` and ``f_neg`` have the meaning of :class:`Strings` (``start_choices`` reads them).
    """

    active: jax.Array  #: bool[S]
    start: jax.Array  #: i32[S] first region (index into Regions)
    n_reg: jax.Array  #: i32[S] number of regions (k + 1 for q g₁ … g_k q̄)
    p_total: jax.Array  #: f[S, 4]
    mass: jax.Array  #: f[S]
    f_pos: jax.Array  #: i32[S] flavour of the quark end
    f_neg: jax.Array  #: i32[S] flavour of the antiquark end


class Regions(NamedTuple):
    """String regions of one event, ``E`` slots: region ``r`` of a chain is spanned by the light-like
    ``pos[r]`` (the colour-side parton, a gluon with half its momentum) and ``neg[r]`` (the next parton,
    halved if a gluon). ``rows[r]`` packs, for one gather per region, ``pos[r]``, ``neg[r]``,
    ``Σ_{j<r} pos[j]``, ``Σ_{j<r} neg[j]``, ``Σ_{j≤r} pos[j]``, ``Σ_{j≤r} neg[j]`` (f[E, 24], sums over
    the flat slot index)."""

    pos: jax.Array  #: f[E, 4]
    neg: jax.Array  #: f[E, 4]
    rows: jax.Array  #: f[E, 24]


def make_regions(pos, neg) -> Regions:
    """:class:`Regions` from the region vectors (zero in unused slots)."""
    zero = jnp.zeros((1, 4), pos.dtype)
    cp = jnp.cumsum(pos, axis=0)
    cn = jnp.cumsum(neg, axis=0)
    below_p = jnp.concatenate([zero, cp[:-1]])
    below_n = jnp.concatenate([zero, cn[:-1]])
    return Regions(pos, neg, jnp.concatenate([pos, neg, below_p, below_n, cp, cn], axis=-1))


def _colour_links(pid, mask, colour):
    """(is_q, is_aq, is_g, nxt, prev, bad) of the colour flow (see :func:`build_pieces`)."""
    is_q = mask & (pid >= 1) & (pid <= 5)
    is_aq = mask & (pid <= -1) & (pid >= -5)
    is_g = mask & (pid == 21)
    col, acol = colour[:, 0], colour[:, 1]
    col_end = (is_q | is_g) & (col > 0)
    anti_end = (is_aq | is_g) & (acol > 0)
    match = col_end[:, None] & anti_end[None, :] & (col[:, None] == acol[None, :])
    n_in = jnp.sum(match, axis=0)
    n_out = jnp.sum(match, axis=1)
    bad = (jnp.any(col_end & (n_out != 1)) | jnp.any(anti_end & (n_in != 1))
           | jnp.any(is_q & ~col_end) | jnp.any(is_aq & ~anti_end) | jnp.any(is_g & ~(col_end & anti_end)))
    return is_q, is_aq, is_g, jnp.argmax(match, axis=1), jnp.argmax(match, axis=0), bad


def _join_pass(p4, kind, chain, alive, m_join):
    """One joining step: merge the adjacent pair (with ≥ 1 gluon, gluons at half momentum) of smallest
    invariant mass if it is below ``m_join``; the gluon's momentum goes to its partner (a gluon pair
    stays a gluon). Entries are compacted (alive first, order kept)."""
    half = jnp.where(kind == 1, 0.5, 1.0)[:, None]
    q = p4 * half
    pair = alive[:-1] & alive[1:] & (chain[:-1] == chain[1:]) & ((kind[:-1] == 1) | (kind[1:] == 1))
    m2 = kin.mass2(q[:-1] + q[1:])
    m2 = jnp.where(pair, m2, jnp.inf)
    e = jnp.argmin(m2)
    do = m2[e] < m_join ** 2
    # the surviving entry: the quark end if there is one, else the first gluon
    keep = jnp.where(kind[e + 1] == 2, e + 1, e)
    gone = jnp.where(keep == e, e + 1, e)
    p4 = jnp.where(do, p4.at[keep].add(p4[gone]), p4)
    alive = jnp.where(do, alive.at[gone].set(False), alive)
    order = jnp.argsort(~alive, stable=True)
    return p4[order], kind[order], chain[order], alive[order]


def build_chains(p4, pid, mask, colour, n_chains: int, m_join: float = M_JOIN):
    """Colour chains q g₁ … g_k q̄ of one event as kinked strings (Sjöstrand, Nucl. Phys. B248 (1984) 469).

    Partons are ordered along each chain from the quark (colour) end; adjacent partons whose invariant
    mass (a gluon counted with half its momentum) is below ``m_join`` are joined, smallest pair first
    (Pythia's ``FragmentationSystems:mJoin``; at most :data:`JOIN_PASSES` joins per event). Region ``r`` of
    a chain is spanned by parton ``r``
    (halved if a gluon) and parton ``r + 1`` (halved if a gluon); a massive pair (heavy-quark end, or a
    joined parton) is replaced by the two light-like vectors with the same sum along the same axis in
    its rest frame (:func:`light_cone_frame`), so Σ regions = Σ partons exactly.

    Args:
        p4 f[P, 4], pid i32[P], mask bool[P], colour i32[P, 2]; n_chains: static chain slots S.

    Returns:
        (:class:`Chains`, :class:`Regions` with E = P slots, bad_colour bool (broken colour flow or a
        closed gluon loop, which this model does not fragment), overflow bool (more than S chains),
        parton bool[P]).
    """
    n_slots = pid.shape[0]
    is_q, is_aq, is_g, nxt, prev, bad = _colour_links(pid, mask, colour)
    parton = is_q | is_aq | is_g

    def back(_, carry):
        cur, depth = carry
        stop = is_q[cur] | ~parton[cur]
        return jnp.where(stop, cur, prev[cur]), depth + (~stop).astype(jnp.int32)

    first, depth = jax.lax.fori_loop(0, n_slots, back, (jnp.arange(n_slots), jnp.zeros(n_slots, jnp.int32)))
    open_chain = parton & is_q[first]
    bad = bad | jnp.any(parton & ~open_chain)  # closed gluon loops (none in e+e- → q q̄ showers)
    big = n_slots * (n_slots + 1)
    key = jnp.where(open_chain, first * (n_slots + 1) + depth, big + jnp.arange(n_slots))
    order = jnp.argsort(key)
    alive = open_chain[order]
    kind = jnp.where(is_q, 0, jnp.where(is_g, 1, 2))[order]  # 0 quark end, 1 gluon, 2 antiquark end
    chain = first[order]
    q4 = jnp.where(alive[:, None], p4[order], 0.0)

    q4, kind, chain, alive = jax.lax.fori_loop(
        0, min(n_slots, JOIN_PASSES), lambda _, c: _join_pass(*c, m_join), (q4, kind, chain, alive))

    half = jnp.where(kind == 1, 0.5, 1.0)[:, None]
    has_reg = alive[:-1] & alive[1:] & (chain[:-1] == chain[1:])
    has_reg = jnp.concatenate([has_reg, jnp.zeros((1,), bool)])
    a = q4 * half
    b = jnp.concatenate([q4[1:] * half[1:], jnp.zeros((1, 4), q4.dtype)])
    _, w, n_plus, n_minus, _, _ = light_cone_frame(jnp.where(has_reg[:, None], a, jnp.array([1.0, 0, 0, 1.0])),
                                                   jnp.where(has_reg[:, None], b, jnp.array([1.0, 0, 0, -1.0])))
    pos = jnp.where(has_reg[:, None], n_plus, 0.0)
    neg = jnp.where(has_reg[:, None], n_minus, 0.0)

    is_start = alive & (kind == 0)
    starts = jnp.argsort(~is_start, stable=True)
    pad = max(n_chains - n_slots, 0)
    c_idx = jnp.pad(starts, (0, pad))[:n_chains]
    active = jnp.pad(is_start[starts], (0, pad))[:n_chains]
    overflow = jnp.sum(is_start) > n_chains
    same = chain[None, :] == chain[c_idx][:, None]  # [S, E]
    in_chain = same & alive[None, :] & active[:, None]
    n_part = jnp.sum(in_chain, axis=1)
    n_reg = jnp.maximum(n_part - 1, 1).astype(jnp.int32)
    p_total = jnp.sum(jnp.where((same & has_reg[None, :] & active[:, None])[..., None], (pos + neg)[None], 0.0),
                      axis=1)
    # end flavours from the original end partons (joining never removes an end)
    n_flav = len(CONSTITUENT_MASS)
    f_pos = jnp.where(active, pid[chain[c_idx]], 1)
    aq_of_chain = jnp.argmax(is_aq[None, :] & (first[None, :] == chain[c_idx][:, None]), axis=1)
    f_neg = jnp.where(active, -pid[aq_of_chain], 1)
    f_pos = jnp.clip(f_pos, 1, n_flav).astype(jnp.int32)
    f_neg = jnp.clip(f_neg, 1, n_flav).astype(jnp.int32)
    mass = kin.mass(p_total)
    chains = Chains(active=active & (mass > 0), start=c_idx.astype(jnp.int32), n_reg=n_reg, p_total=p_total,
                    mass=mass, f_pos=f_pos, f_neg=f_neg)
    return chains, make_regions(pos, neg), bad, overflow, parton


def collapse_light_chains(chains: Chains, regions: Regions, force=None):
    """:func:`collapse_light` for kinked strings: a chain below its two-meson threshold (+ margin), or one
    marked in ``force`` (bool[S]; a mini-string whose two-hadron draws failed), becomes its lightest meson;
    the heaviest fragmentable chain recoils (all its region vectors are boosted).

    Returns (chains, regions, collapsed pid i32[S], p4 f[S, 4], valid bool[S], failed bool).
    """
    s_count = chains.mass.shape[0]
    light = chains.active & (chains.mass < min_two_meson_mass(chains.f_pos, chains.f_neg) + LIGHT_MARGIN)
    if force is not None:
        light = light | (chains.active & force)
    pid_l, m_l = lightest_meson(chains.f_pos, chains.f_neg)
    cand = chains.active & ~light
    nb = jnp.argmax(jnp.where(cand, chains.mass, -1.0))
    has_nb = jnp.any(cand)
    w_nb = chains.mass[nb]
    p_nb0 = chains.p_total[nb]

    def body(s, carry):
        p_nb, hadrons, failed = carry
        q_total = chains.p_total[s] + p_nb
        ok = has_nb & (kin.mass(q_total) > m_l[s] + w_nb + 1e-4) & (pid_l[s] != 0)
        h, p_nb_new = _two_body_along(q_total, chains.p_total[s], m_l[s], w_nb)
        do = light[s]
        h = jnp.where(do & ok, h, chains.p_total[s])
        p_nb = jnp.where(do & ok, p_nb_new, p_nb)
        return p_nb, hadrons.at[s].set(h), failed | (do & ~ok)

    p_nb, hadrons, failed = jax.lax.fori_loop(0, s_count, body, (p_nb0, jnp.zeros_like(chains.p_total),
                                                                 jnp.array(False)))
    beta_old = safe_div(p_nb0[1:], p_nb0[:1])
    beta_new = safe_div(p_nb[1:], p_nb[:1])
    moved = has_nb & jnp.any(light)
    e_idx = jnp.arange(regions.pos.shape[0])
    mine = moved & (e_idx >= chains.start[nb]) & (e_idx < chains.start[nb] + chains.n_reg[nb])

    def move(v):
        return jnp.where(mine[:, None], kin.boost(kin.boost(v, -beta_old), beta_new), v)

    regions = make_regions(move(regions.pos), move(regions.neg))
    chains = chains._replace(active=chains.active & ~light,
                             p_total=chains.p_total.at[nb].set(jnp.where(moved, p_nb, p_nb0)))
    return chains, regions, jnp.where(light, pid_l, 0), hadrons, light, failed


def compact_chains(chains: Chains) -> Chains:
    """Move active chains to the front (stable), so that chain ``k < n_active`` is active."""
    order = jnp.argsort(~chains.active, stable=True)
    return jax.tree_util.tree_map(lambda a: a[order], chains)
