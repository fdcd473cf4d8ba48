"""Iterative Lund fragmentation of kinked strings (one colour chain q g₁ … g_k q̄ = one string).

Geometry (B. Andersson, G. Gustafson, T. Sjöstrand; T. Sjöstrand, Nucl. Phys. B248 (1984) 469; Pythia 8.3
manual "String Fragmentation"; the region bookkeeping follows Pythia's ``StringSystem``/``StringRegion``
and ``StringEnd::kinematicsHadron``). Every gluon's momentum is split into two halves; region ``r`` of a
chain is spanned by the light-like ``P_r`` (parton r, halved if a gluon) and ``N_r`` (parton r + 1,
halved if a gluon), see :func:`diffgen.hadronization.string.build_chains`. Seen from the quark (+) end
the ``P_r`` are the "direction" vectors and the ``N_r`` the "inverse" ones; from the antiquark (−) end
the roles swap and the chain is read backwards. A string-break vertex of one end is a pair of cursors:
``(a, y)``, the fraction ``y`` of ``Dir_a`` used up by that end's hadrons (all ``Dir_{r<a}`` used), and
``(b, x)`` for the inverse vectors, in the region ``(a, b)``, ``a ≤ b`` (``a < b``: a "higher" region,
spanned by non-adjacent partons after the gluons in between have lost their energy). With
``X = (1 − y) Dir_a + Σ_{a<r≤b} Dir_r + x Inv_b`` the vertex's Γ = X² (κ² × squared proper time; it
equals Pythia's sum of ``x_dir x_inv W²`` over the regions behind the vertex).

A step from an end (Pythia's algorithm):

1. flavour, species and the new pair's transverse momentum ``k`` as for straight strings
   (:mod:`diffgen.hadronization.fragment`); the hadron's transverse four-vector is
   ``T = k_end − k_new`` (``k_end + k_new`` at the − end);
2. ``z`` from the Lund function and ``Γ_new = (1 − z)(Γ_old + m⊥²/z)``; as in Pythia, ``z`` is the fraction
   of the end's *own* unused light-cone momentum (``xDirOld``), not of the remainder between the two
   vertices (that choice made a q q̄ string 3 % richer than Pythia's);
3. the new vertex solves, in a trial region ``(a, b)``, the two bilinear equations
   ``(D + y Dir_a + x Inv_b)² = m²`` (hadron on mass shell; ``D`` the momentum already fixed:
   vectors fully used since the old vertex, minus the old vertex's fractions, plus ``T``) and
   ``X(y, x)² = Γ_new``; their sum is linear, leaving a quadratic in ``y`` whose root continuous
   with the straight-string solution is taken. If ``x > 1`` the vertex moves to the next inverse
   vector (``b + 1``), else if ``y > 1`` to the next direction vector (``a + 1``), and the region is
   solved again (at most :data:`MAX_REGION_STEPS` moves per hadron). The hadron momentum
   ``D + y Dir_a + x Inv_b`` is exactly on shell and the momenta taken by all hadrons telescope, so
   four-momentum is conserved exactly.

End of the string (Pythia's ``finalTwo`` with ``finalRegion``): the remainder between the two vertices
is viewed as a straight string, spanned by ``R_pos`` (the unused parts of the ``P_r``) and ``R_neg``
(of the ``N_r``) (:func:`diffgen.hadronization.string.light_cone_frame`), with light-cone components
``R± = 2 R·n̂∓`` of the remaining momentum ``R``. The stop rule, the feasibility factor and the final
two hadrons are those of the straight string (:mod:`diffgen.hadronization.fragment`) in this view; the
final two get the ends' transverse momenta plus half each of the remainder's unbalanced transverse
momentum (Pythia's ``finalTwo``). The view's transverse axes are carried from step to step (the previous
axes projected onto the new transverse plane), so that the ends' 2D transverse momenta keep their
meaning; a fresh orientation from the string axis' polar angles turned them by an arbitrary azimuth
whenever the remainder was nearly straight, which made a very soft gluon cost ≈ 0.5 hadrons.
Once both vertices are in the same lowest region the remainder *is* a straight string: from then on the
view is frozen (its transverse axes those of the region) and the string continues as a straight one, with
two differences from :mod:`diffgen.hadronization.fragment`: ``z`` is the fraction of the end's own unused
light-cone momentum (Pythia), and a hadron that does not fit restarts the string instead of truncating
``z`` (the window draw below). A q q̄ chain (one region) is fragmented this way throughout.

Transverse momentum across regions. Each region has its own fixed transverse basis (Pythia's
``StringRegion`` axes, :func:`_region_basis`); a hadron gets its end quark's pT in the basis of the old
vertex's region and gives back the new quark's in that of the new vertex's region, as Pythia's ``pxOld``
and ``pxNew``, so the pT given at a break and taken back at the next cancel exactly. In a boosted region
(a gluon nearly collinear with its quark) a transverse unit vector carries an energy of γ; while the
basis followed the changing view of the remainder, the two did not cancel, the remainder lost energies
of γ·pT at random, and the multiplicity of multi-gluon strings was 30–60 % wider than Pythia's (4× its
share of events with ≤ 10 primaries on Pythia's own partons).

The z window and restarts. Pythia draws ``z`` from the whole Lund function and restarts a string when its
hadrons do not fit. Across kinks diffgen does the same: ``z`` is untruncated, and if the kinked solution
has no region (within :data:`MAX_REGION_STEPS` moves), crosses the other end's vertex, or leaves a
remainder lighter than the next hadron pair, the string is **restarted**: its hadrons so far are dropped
(each output carries its chain's attempt number and only the last attempt's are kept) and it is
fragmented again from its ends with fresh draws. In the straight view the fit is a window in ``z`` (it
leaves the remainder room for the next step's hadron pair): whether the untruncated draw lands in it is
a Bernoulli draw of probability ``p_win`` (:func:`diffgen.hadronization.lund_z.window_mass`), ``z`` then
comes from the truncated function (implicit reparameterisation), and outside the window the string
restarts — the same distribution, written so that the window's edges are differentiated. The continue/
stop decision and the window are Bernoulli draws whose scores ``log p − stop_gradient(log p)`` enter the
weight (by default, ``continuous="score"``, z and the breaks' pT are held fixed and their log densities
scored too, so the stop decisions do not depend on a, b, σ); a dropped attempt's score terms stay in it
(the density of "repeat until it fits" is the product over all attempts), so the score estimator stays
unbiased. At most :data:`MAX_RESTARTS` restarts per
string, and only while the steps left leave room for another attempt; beyond that the hadron is taken
from the straight view with ``z`` clipped to the window and the string is finished as a straight one (a
"fallback"). ``diagnose`` counts both: on Pythia's own showered u ū parton events 0.36 restarts and
0.006 fallbacks per event. (Truncating ``z`` to the window without restarting kept the strings Pythia
starts again and made them 2 % rich.) Whether a kinked hadron fits is a deterministic function of the
continuous draws, so that boundary is not differentiated (the only term of the gradient that is
dropped). Where no root satisfies ``y ≥ y_old, x ≥ x_old`` (a vertex passing a gluon corner through a
higher region) Pythia's root (the larger ``x``) is accepted if the hadron has positive energy, as in
Pythia.

Compared with Pythia 8.317 (primary hadrons, meson-only, decays off; benchmarks/kinked_qgq.py, 10⁴ events
each, errors ±0.02–0.03; 2026-12-07): q q̄ at 91.2 GeV 12.22 (diffgen 12.27), 5 MeV gluon at 2 rad 12.21
(12.28), 1 GeV gluon 12.75 (12.82), 20 GeV 18.90 (19.13), 30 GeV at 2.5 rad 19.63 (19.87), a gluon
collinear with each quark 13.87 (14.00, standard deviation 2.285 vs 2.275). Pythia's own showered u ū
parton events hadronized by both (3000 events, meson-only): 21.02 vs 21.10 primary hadrons, standard
deviation 5.85 vs 5.97, 0.57 ± 0.14 % vs 0.83 ± 0.17 % of events with ≤ 10 primaries, primary sphericity
+0.2 % (before the per-region bases and the window restarts: 20.56, 2.2 %, +5.1 %).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffgen.hadronization.flavour import CONSTITUENT_MASS, Bundle, is_diquark_code, sample_bundle
from diffgen.hadronization.fragment import (
    DELTA,
    FIT_WIDTH,
    QUARK_MASS,
    R_FACTOR,
    STOP_MASS,
    STOP_NEW_FLAV,
    STOP_SMEAR,
    FragParams,
    StartChoices,
    continue_decision,
    pt_log_density,
    start_choices,
)
from diffgen.hadronization.lund_z import S_MAX, diquark_shape, sample_log_z, sample_log_z_scored, window_masses
from diffgen.hadronization.string import Chains, Regions, light_cone_frame
from diffgen.numerics import safe_div, safe_log, safe_sqrt
from diffgen.schedule import run_pool

__all__ = ["MAX_REGION_STEPS", "fragment_chains_event", "fragment_chains_batch"]

MAX_REGION_STEPS = 5  #: region moves allowed while solving for one hadron (more: the straight fallback)
MAX_RESTARTS = 3  #: string restarts when a kinked hadron does not fit (more: the straight-view fallback)
_RESTART_MARGIN = 16  #: steps kept free beyond a restarted attempt's expected length
_ATTEMPT_STRIDE = 64  #: output tag = chain index · stride + attempt
_N_STEP_UNIFORMS = 6
_TOL = 1.0e-5


def _dot(p, q):
    return p[..., 0] * q[..., 0] - jnp.sum(p[..., 1:] * q[..., 1:], axis=-1)


class _KState(NamedTuple):
    sidx: jax.Array
    f_pos: jax.Array
    f_neg: jax.Array
    from_positive: jax.Array
    bundle: Bundle
    k: jax.Array  #: f[2] pT of the next new quark (components in the view frame where it is used)
    k_pos: jax.Array  #: f[2] transverse momentum of the + end quark (in the basis where it is used)
    k_neg: jax.Array  #: f[2]
    rem: jax.Array  #: f[4] momentum not yet given to hadrons
    cur_a: jax.Array  #: i32[2] direction cursor (+ end, − end)
    cur_y: jax.Array  #: f[2]
    cur_b: jax.Array  #: i32[2] inverse cursor
    cur_x: jax.Array  #: f[2]
    gamma: jax.Array  #: f[2]
    straight: jax.Array  #: bool: the remainder is fragmented as a straight string in the frozen view
    frame: jax.Array  #: f[4, 4] (n̂₊, n̂₋, e₁, e₂) of the frozen view
    own: jax.Array  #: f[2] each end's own unused light-cone momentum in the frozen view (Pythia's x_own W)
    log_weight: jax.Array
    overflow: jax.Array
    fallback: jax.Array  #: i32 number of straight fallbacks (diagnostics)
    restarts: jax.Array  #: i32 number of string restarts (diagnostics)
    attempt: jax.Array  #: i32 attempt number of the current string (0: first)
    t0: jax.Array  #: i32 step at which the current attempt began


class _Access(NamedTuple):
    """Region vectors of the current chain seen from one end (``plus``), ``r`` in the end's own order."""

    row: object  # i -> Regions.rows[i] of the event
    g0: jax.Array
    n: jax.Array
    plus: jax.Array
    bottom: jax.Array  #: rows[g0]: its Σ_{j<g0} (pos, neg) are the chain's zero
    top: jax.Array  #: rows[g0 + n − 1]: its Σ_{j≤·} (pos, neg) are the chain's totals

    def at(self, r):
        """(Dir_r, Inv_r, Σ_{j<r} Dir_j, Σ_{j<r} Inv_j) with one gather."""
        idx = jnp.where(self.plus, self.g0 + r, self.g0 + self.n - 1 - r)
        v = self.row(idx)
        pos, neg = v[0:4], v[4:8]
        cp_fwd, cn_fwd = v[8:12] - self.bottom[8:12], v[12:16] - self.bottom[12:16]
        cp_bwd, cn_bwd = self.top[16:20] - v[16:20], self.top[20:24] - v[20:24]
        return (jnp.where(self.plus, pos, neg), jnp.where(self.plus, neg, pos),
                jnp.where(self.plus, cp_fwd, cn_bwd), jnp.where(self.plus, cn_fwd, cp_bwd))


def _nearest_basis(e1, e2, p, n):
    """(f₁, f₂, |proj e₁|, |proj e₂ ⟂ f₁|): the orthonormal basis of the plane transverse to ``p``, ``n`` closest
    to (e₁, e₂) (projection, then Gram–Schmidt), with the norms before normalisation (small: ill-defined)."""
    pn = _dot(p, n)

    def proj(v):
        return v - safe_div(_dot(v, n), pn) * p - safe_div(_dot(v, p), pn) * n

    f1 = proj(e1)
    nf1 = safe_sqrt(-_dot(f1, f1))
    f1 = f1 * safe_div(1.0, nf1)
    f2 = proj(e2)
    f2 = f2 + _dot(f2, f1) * f1
    nf2 = safe_sqrt(-_dot(f2, f2))
    return f1, f2 * safe_div(1.0, nf2), nf1, nf2


def _region_basis(p, n):
    """The fixed orthonormal transverse basis (f₁, f₂) of the string region spanned by the light-like ``p``,
    ``n``: as Pythia's ``StringRegion::setUp``, the two lab axes along which ``p/E − n/E`` is smallest,
    made orthogonal to ``p`` and ``n`` (Gram–Schmidt). It depends on the region alone (the same from either
    end), so the transverse momentum a string break gives one hadron (``−k``) and takes back from the next
    (``+k``) cancel exactly when both are laid in the region of that break; a basis that followed the
    changing view of the remainder did not, and in a boosted region (a gluon collinear with its quark) the
    difference carries energies of γ·k: the remainder's mass then fell by chance, and the multiplicity
    distribution of multi-gluon strings came out 30–60 % wider than Pythia's."""
    dtype = p.dtype
    e_diff = safe_div(p, p[0]) - safe_div(n, n[0])
    order = jnp.argsort(e_diff[1:] ** 2)
    axes = jnp.eye(4, dtype=dtype)[1:]
    f1, f2, _, _ = _nearest_basis(axes[order[0]], axes[order[1]], p, n)
    return f1, f2


def _solve_vertex(acc: _Access, a0, y0, b0, x0, k_old, k_new, m2, gamma_new):
    """New vertex and hadron momentum of a step from one end (module docstring, step 3). The hadron's
    transverse momentum is ``k_old`` (2D, the end's quark) laid in the basis of the old vertex's region
    minus ``k_new`` (the new quark's) laid in that of the trial region (Pythia's ``pxOld`` and ``pxNew``
    in ``StringEnd::kinematicsHadron``); :func:`_region_basis`.

    Returns (ok, a, y, b, x, p4)."""
    dir_a0, _, cd0, _ = acc.at(a0)
    _, inv_b0, _, ci0 = acc.at(b0)
    g1, g2 = _region_basis(dir_a0, inv_b0)
    t_old = k_old[0] * g1 + k_old[1] * g2

    def body(_, carry):
        a, b, done, ok, res = carry
        p_dir, _, cd, _ = acc.at(a)
        dir_b, n_inv, cd_b, ci = acc.at(b)
        o = (cd_b + dir_b) - (cd + p_dir)  # Σ_{a<r≤b} Dir_r
        f1, f2 = _region_basis(p_dir, n_inv)
        t4 = t_old - (k_new[0] * f1 + k_new[1] * f2)
        d = (cd - cd0 - y0 * dir_a0) + (ci - ci0 - x0 * inv_b0) + t4
        q = p_dir + o
        w = 2.0 * _dot(p_dir, n_inv)
        den = 2.0 * _dot(d + q, n_inv)
        dd, dp, dn = _dot(d, d), _dot(d, p_dir), _dot(d, n_inv)
        alpha = safe_div(m2 + gamma_new - dd - _dot(q, q), den)
        beta = safe_div(-2.0 * _dot(d - o, p_dir), den)
        qa = beta * w
        qb = 2.0 * dp + 2.0 * beta * dn + alpha * w
        qc = dd - m2 + 2.0 * alpha * dn
        disc = qb * qb - 4.0 * qa * qc
        # both roots, in the cancellation-free form. The physical one has y ≥ y_old and x ≥ x_old; if neither
        # has (near a gluon corner, in a higher region), Pythia's choice, the larger x, whose small negative
        # fractions move the vertex back a little; the hadron must then still have positive energy.
        qh = -0.5 * (qb + jnp.where(qb >= 0, 1.0, -1.0) * safe_sqrt(disc))
        y_r = jnp.stack([safe_div(qc, qh), safe_div(qh, qa)])
        x_r = alpha + beta * y_r
        finite = jnp.stack([qh != 0, qa != 0]) & jnp.isfinite(y_r) & jnp.isfinite(x_r)
        y_min = jnp.where(a > a0, 0.0, y0) - _TOL
        x_min = jnp.where(b > b0, 0.0, x0) - _TOL
        good = finite & (y_r >= y_min) & (x_r >= x_min)
        larger_x = jnp.where(finite[0] & finite[1], jnp.where(x_r[1] > x_r[0], 1, 0), jnp.where(finite[1], 1, 0))
        pick = jnp.where(good[0] & good[1], larger_x, jnp.where(good[1], 1, jnp.where(good[0], 0, larger_x)))
        y, x = y_r[pick], x_r[pick]
        p4 = d + y * p_dir + x * n_inv
        sane = (disc >= 0) & (den > 0) & (w > 0) & finite[pick]
        step_b = sane & (x > 1.0) & (b < acc.n - 1)
        step_a = sane & ~step_b & (y > 1.0) & (a < b)
        found = sane & ~step_a & ~step_b & (x <= 1.0 + _TOL) & (y <= 1.0 + _TOL) & (p4[0] > 0)
        take = ~done & found
        res = jax.tree_util.tree_map(lambda new, old: jnp.where(take, new, old), (a, y, b, x, p4), res)
        ok = ok | take
        done = done | ~(step_a | step_b)
        a = jnp.where(done, a, jnp.where(step_a, a + 1, a))
        b = jnp.where(done, b, jnp.where(step_b, b + 1, b))
        return a, b, done, ok, res

    res0 = (a0, y0, b0, x0, jnp.zeros(4, g1.dtype))
    _, _, _, ok, res = jax.lax.fori_loop(0, MAX_REGION_STEPS + 1, body,
                                         (a0, b0, jnp.array(False), jnp.array(False), res0))
    return (ok, *res)


def _same_lowest_region(st: _KState, n):
    """Both vertices in the same lowest region (no corner offset in Γ): the remainder is a straight string."""
    return ((st.cur_a[0] == n - 1 - st.cur_b[1]) & (st.cur_b[0] == n - 1 - st.cur_a[1])
            & (st.cur_a[0] == st.cur_b[0]))


def _view(row, g0, n, st: _KState):
    """(n̂₊, n̂₋, e₁, e₂) of the straight view of the remainder between the two vertices."""
    ap, am = st.cur_a[0], st.cur_a[1]
    bp, bm = st.cur_b[0], st.cur_b[1]
    yp, ym = st.cur_y[0], st.cur_y[1]
    xp, xm = st.cur_x[0], st.cur_x[1]
    v_rp = row(g0 + n - 1 - bm)  # P slot of the − end's inverse cursor
    v_rn = row(g0 + n - 1 - am)  # N slot of the − end's direction cursor
    v_ap, v_bp = row(g0 + ap), row(g0 + bp)
    r_pos = (v_rp[8:12] + (1.0 - xm) * v_rp[0:4]) - (v_ap[8:12] + yp * v_ap[0:4])
    r_neg = (v_rn[12:16] + (1.0 - ym) * v_rn[4:8]) - (v_bp[12:16] + xp * v_bp[4:8])
    _, w, n_plus, n_minus, e1, e2 = light_cone_frame(r_pos, r_neg)
    inv_w = safe_div(1.0, w)
    n_plus, n_minus = n_plus * inv_w, n_minus * inv_w
    # Keep the transverse axes continuous from step to step: the stored 2D transverse momenta (k, k_pos,
    # k_neg) are components along them. light_cone_frame's axes follow the polar angles of the string
    # axis in its rest frame, so for a nearly straight remainder (q q̄ with a soft gluon) a tiny tilt
    # turns them by an arbitrary azimuth and scrambles the pT bookkeeping (the soft-gluon multiplicity
    # deficit). Here the previous step's axes are projected onto the new transverse plane (Gram–Schmidt),
    # as Pythia re-expresses pT in a new region; a fresh frame only at a chain's first step.
    f1, f2, nf1, nf2 = _nearest_basis(st.frame[2], st.frame[3], n_plus, n_minus)
    keep = (nf1 > 0.5) & (nf2 > 0.5)
    e1, e2 = jnp.where(keep, f1, e1), jnp.where(keep, f2, e2)
    # both vertices in the same lowest region: the remainder is that region's straight string, and its
    # view (frozen from here on) takes the region's own transverse basis, the one the ends' last kinked
    # hadrons laid their quarks' pT in (_region_basis), so that the pT bookkeeping carries on exactly
    same = _same_lowest_region(st, n)
    r1, r2 = _region_basis(v_ap[0:4], v_ap[4:8])
    return jnp.stack([n_plus, n_minus, jnp.where(same, r1, e1), jnp.where(same, r2, e2)])


def _own(row, g0, n, st: _KState, frame):
    """Each end's own unused light-cone momentum in the view ``frame``: the + end's direction vectors not
    yet used by its own hadrons, ``Σ_r P_r − (Σ_{r<a} P_r + y P_a)``, projected as ``2 p·n̂₋`` (the − end's
    likewise with the ``N_r`` and ``n̂₊``). Pythia's ``z`` is the fraction of this that a hadron takes
    (``xDirOld`` in ``StringEnd::kinematicsHadron``), not of the remainder between the two vertices."""
    ap, am = st.cur_a[0], st.cur_a[1]
    yp, ym = st.cur_y[0], st.cur_y[1]
    v_top, v_bot = row(g0 + n - 1), row(g0)
    v_ap, v_rn = row(g0 + ap), row(g0 + n - 1 - am)
    own_pos = (v_top[8:12] + v_top[0:4]) - (v_ap[8:12] + yp * v_ap[0:4])
    own_neg = (v_rn[12:16] + (1.0 - ym) * v_rn[4:8]) - v_bot[12:16]
    return jnp.stack([2.0 * _dot(own_pos, frame[1]), 2.0 * _dot(own_neg, frame[0])])


def _load(row: Chains, srow: StartChoices, s, log_weight, overflow, fallback, restarts, attempt=0, t0=0) -> _KState:
    dtype = row.mass.dtype
    z2 = jnp.zeros(2, dtype)
    return _KState(sidx=s, f_pos=row.f_pos, f_neg=row.f_neg, from_positive=srow.from_positive, bundle=srow.bundle,
                   k=srow.k, k_pos=z2, k_neg=z2, rem=row.p_total, cur_a=jnp.zeros(2, jnp.int32),
                   cur_y=jnp.zeros(2, dtype), cur_b=jnp.zeros(2, jnp.int32), cur_x=jnp.zeros(2, dtype),
                   gamma=jnp.zeros(2, dtype), straight=jnp.array(False), frame=jnp.zeros((4, 4), dtype),
                   own=jnp.zeros(2, dtype),
                   log_weight=log_weight, overflow=overflow, fallback=fallback, restarts=restarts,
                   attempt=jnp.asarray(attempt, jnp.int32), t0=jnp.asarray(t0, jnp.int32))


def _first_state(chains: Chains, start: StartChoices, dtype) -> _KState:
    row = jax.tree_util.tree_map(lambda x: x[0], chains)
    srow = jax.tree_util.tree_map(lambda x: x[0], start)
    zero = jnp.array(0, jnp.int32)
    return _load(row, srow, zero, jnp.zeros((), dtype), jnp.array(False), zero, zero)


def _lc(frame, p_plus, p_minus, pt, mass):
    p = p_plus * frame[0] + p_minus * frame[1] + pt[0] * frame[2] + pt[1] * frame[3]
    e = safe_sqrt(mass * mass + jnp.sum(p[1:] * p[1:]))
    return jnp.concatenate([e[None], p[1:]])


def _step(st: _KState, t, key_t, get, take, n_active, fp: FragParams, n_steps: int, score_continuous: bool = False):
    """One step of one event: a hadron from the current chain (or its last two). ``get(s)`` reads chain
    ``s`` and its start choices, ``take(i)`` row ``i`` of the event's :class:`Regions` ``rows``."""
    dtype = st.rem.dtype
    mq = jnp.asarray(CONSTITUENT_MASS, dtype)
    r_fac = jnp.asarray(R_FACTOR, dtype)
    m_heavy = jnp.asarray(QUARK_MASS, dtype)
    active = st.sidx < n_active
    row, _ = get(st.sidx)
    g0, n = row.start, row.n_reg
    plus = st.from_positive
    b = st.bundle

    # --- the straight view of the remainder (frozen once both vertices share a region)
    # both vertices in the same lowest region (no corner offset in Γ): the remainder is a straight string
    same = _same_lowest_region(st, n)
    straight = st.straight | same
    frame = jnp.where(st.straight, st.frame, _view(take, g0, n, st))
    r_plus = 2.0 * _dot(st.rem, frame[1])
    r_minus = 2.0 * _dot(st.rem, frame[0])
    rem_t = jnp.stack([-_dot(st.rem, frame[2]), -_dot(st.rem, frame[3])])
    k_pos = st.k_pos
    k_neg = rem_t - k_pos  # the view's transverse balance: exact four-momentum in the last two hadrons

    pt_h = jnp.where(plus, k_pos - st.k, k_neg + st.k)
    pt_c = jnp.where(plus, st.k + k_neg, k_pos - st.k)
    mt2_h = b.mass_h ** 2 + jnp.sum(pt_h * pt_h)
    mt2_c = b.mass_c ** 2 + jnp.sum(pt_c * pt_c)
    # The m⊥ of the hadron a continuing step makes (Lund b m⊥², z window, fit test): across kinks the end's
    # bookkept pT (the view's balance above mixes in the kinks' transverse momenta and is too large: with
    # it ⟨n⟩ of Pythia's multi-gluon parton events came out 5 % low); in the straight view, the view's.
    pt_kk = jnp.where(plus, st.k_pos - st.k, st.k_neg + st.k)
    pt_d = jnp.where(straight, pt_h, pt_kk)
    mt2_d = b.mass_h ** 2 + jnp.sum(pt_d * pt_d)
    mt_h = safe_sqrt(mt2_d)
    w2_rem = r_plus * r_minus - jnp.sum(rem_t * rem_t)
    w_rem = safe_sqrt(w2_rem)
    # the view's L² = R₊R₋ for the z window and the fit test: with the ends' bookkept pT in place of the
    # remainder's transverse momentum (equal in the straight view), so that a kink's transverse momentum,
    # which no hadron's m⊥ accounts for, does not widen the window (a kinked hadron that then did not fit)
    k_sum = jnp.where(straight, rem_t, k_pos + st.k_neg)
    l2 = w2_rem + jnp.sum(k_sum * k_sum)
    big_l = safe_sqrt(l2)

    f_pos1 = jnp.where(plus, b.q_new, st.f_pos).astype(st.f_pos.dtype)  # (int32 also with jax_enable_x64)
    f_neg1 = jnp.where(plus, st.f_neg, b.q_new).astype(st.f_neg.dtype)
    k_pos1 = jnp.where(plus, st.k, st.k_pos)
    k_neg1 = jnp.where(plus, st.k_neg, -st.k)
    u = jax.random.uniform(key_t, (_N_STEP_UNIFORMS,), dtype)
    plus1 = u[0] < 0.5
    b1 = sample_bundle(u[1], plus1, f_pos1, f_neg1, fp.sp_weights, fp.flav_probs)
    v = jnp.clip(2.0 * u[4:6] - 1.0, -1.0 + jnp.finfo(dtype).epsneg, 1.0)
    sg = jax.lax.stop_gradient
    k1 = (sg(fp.sigma) if score_continuous else fp.sigma) * jax.lax.erf_inv(v)
    pt_h1 = jnp.where(plus1, k_pos1 - k1, k_neg1 + k1)
    pt_c1 = jnp.where(plus1, k1 + k_neg1, k_pos1 - k1)
    floor1 = (safe_sqrt(b1.mass_h ** 2 + jnp.sum(pt_h1 ** 2)) + safe_sqrt(b1.mass_c ** 2 + jnp.sum(pt_c1 ** 2)))

    # --- continue or stop (straight view)
    w_min = STOP_MASS + mq[st.f_pos - 1] + mq[st.f_neg - 1] + STOP_NEW_FLAV * mq[b.q_new - 1]
    t_rule = (safe_div(w_rem, w_min) - (1.0 - STOP_SMEAR)) / (2.0 * STOP_SMEAR)
    t_fit = (big_l - mt_h - floor1 - DELTA) / FIT_WIDTH
    cont_drawn, lp_dec = continue_decision(t_rule, t_fit, u[2])
    last = t == n_steps - 1
    cont = cont_drawn & ~last
    overflow = st.overflow | (active & last & cont_drawn)
    score = lp_dec - jax.lax.stop_gradient(lp_dec) + b1.log_prob - jax.lax.stop_gradient(b1.log_prob)
    log_weight = st.log_weight + jnp.where(active, score, 0.0)

    # --- continue: truncated Lund z (window from the straight view)
    r_side = jnp.where(plus, r_plus, r_minus)
    floor_t = floor1 + 0.5 * DELTA
    disc = (l2 - mt2_d - floor_t ** 2) ** 2 - 4.0 * mt2_d * floor_t ** 2
    valid = cont & (disc > 0) & (l2 > 0) & (mt2_d > 0)
    l2_s = jnp.where(valid, l2, 1.0)
    mt2_s = jnp.where(valid, mt2_d, 0.1)
    fl2_s = jnp.where(valid, floor_t ** 2, 0.01)
    sq = safe_sqrt(jnp.where(valid, disc, 1.0))
    z_big = (l2_s + mt2_s - fl2_s + sq) / (2.0 * l2_s)
    y_big = (l2_s - mt2_s + fl2_s + sq) / (2.0 * l2_s)
    s_lo = jnp.where(valid, jnp.log(mt2_s / (l2_s * z_big)), -20.0)
    s_hi = jnp.where(valid, jnp.log1p(-fl2_s / (l2_s * y_big)), S_MAX)
    f_end = jnp.where(plus, st.f_pos, st.f_neg)
    alpha = 1.0 + r_fac[f_end - 1] * fp.b * m_heavy[f_end - 1] ** 2
    # baryons: StringZ:aExtraDiquark for a diquark end or new diquark (lund_z.diquark_shape)
    a_z, alpha = diquark_shape(fp.a, fp.a_extra_diquark, is_diquark_code(f_end), is_diquark_code(b.q_new), alpha)
    # z is the fraction of the end's own unused light-cone momentum (Pythia): the window above bounds the
    # hadron's share p_side = z_view · r_side of the remainder, so in own units it is shifted by log(r/own)
    own = jnp.where(st.straight, st.own, _own(take, g0, n, st, frame))
    own_side = jnp.where(plus, own[0], own[1])
    r_side_s = jnp.where(valid, r_side, 1.0)
    own_s = jnp.where(valid & (own_side >= r_side_s), own_side, r_side_s)
    log_kappa = jnp.log(r_side_s / own_s)
    lo_w, hi_w = s_lo + log_kappa, s_hi + log_kappa
    # Pythia draws z from the whole Lund function and restarts the string when the hadron does not fit.
    # Across kinks the kinked solve decides that (below), so z is drawn untruncated there. In the straight
    # view the fit is the window: whether z falls in it is a Bernoulli draw of probability p_win (its score
    # enters the weight), then z comes from the truncated function (implicit reparameterisation); outside
    # the window the string restarts. That is the untruncated draw followed by Pythia's restart, written so
    # that the window's edges are differentiated too. (Truncating without the restart, as before, kept the
    # strings that Pythia would have started again: a q q̄ string was 2 % richer than Pythia's.)
    c_z = fp.b * mt2_s
    if score_continuous:  # z held fixed, its log density's score in the weight (where z is used: a continuation)
        log_z, lp_z = sample_log_z_scored(u[3], a_z, c_z, alpha, jnp.where(straight, lo_w, -1.0e4),
                                          jnp.where(straight, hi_w, S_MAX))
    else:
        log_z = sample_log_z(u[3], a_z, c_z, alpha, jnp.where(straight, lo_w, -1.0e4),
                             jnp.where(straight, hi_w, S_MAX))
    p_win, p_out = window_masses(a_z, c_z, alpha, lo_w, hi_w)
    use_win = straight & valid
    in_win = jax.random.uniform(jax.random.fold_in(key_t, 2), (), dtype) < p_win
    out_win = active & cont & use_win & ~in_win
    lp_win = safe_log(jnp.where(in_win, p_win, p_out), floor=0.0)
    log_weight = log_weight + jnp.where(active & use_win, lp_win - jax.lax.stop_gradient(lp_win), 0.0)
    if score_continuous:
        # the next break's pT (2-D Gaussian, σ/√2 per component), drawn at every active step
        lp_k = pt_log_density(k1, fp.sigma)
        log_weight = log_weight + jnp.where(active, lp_k - sg(lp_k), 0.0)
        log_weight = log_weight + jnp.where(active & cont, lp_z - sg(lp_z), 0.0)
    # the straight-view hadron (straight steps; the rare fallback across kinks) keeps z inside the window
    z = jnp.exp(jnp.clip(log_z, lo_w, hi_w))
    p_side = z * own_s
    p_oth = jnp.where(valid, mt2_h, 0.1) / p_side  # the straight-view hadron's own m⊥ (on its light cone)
    p4_straight = _lc(frame, jnp.where(plus, p_side, p_oth), jnp.where(plus, p_oth, p_side), pt_h, b.mass_h)

    # --- continue across regions (kinked solve) while the vertices are in different regions
    side = jnp.where(plus, 0, 1)
    pt_k = jnp.where(plus, st.k_pos - st.k, st.k_neg + st.k)
    z_k = jnp.exp(log_z)
    gamma_new = -jnp.expm1(log_z) * (st.gamma[side] + safe_div(b.mass_h ** 2 + jnp.sum(pt_k * pt_k), z_k))
    acc = _Access(take, g0, n, plus, take(g0), take(g0 + n - 1))
    k_old = jnp.where(plus, st.k_pos, st.k_neg)
    k_new = jnp.where(plus, k_pos1, k_neg1)  # pt_k = k_old − k_new
    ok_k, a_k, y_k, b_k, x_k, p4_k = _solve_vertex(acc, st.cur_a[side], st.cur_y[side], st.cur_b[side],
                                                   st.cur_x[side], k_old, k_new, b.mass_h ** 2, gamma_new)
    oth = 1 - side
    a_o, y_o, b_o, x_o = st.cur_a[oth], st.cur_y[oth], st.cur_b[oth], st.cur_x[oth]
    no_cross = (((a_k < n - 1 - b_o) | ((a_k == n - 1 - b_o) & (y_k + x_o <= 1.0)))
                & ((b_k < n - 1 - a_o) | ((b_k == n - 1 - a_o) & (x_k + y_o <= 1.0))))
    rem_k = st.rem - p4_k
    fits = (_dot(rem_k, rem_k) > floor1 ** 2) & (rem_k[0] > 0)
    use_k = ~straight & valid & ok_k & no_cross & fits
    # a kinked hadron that does not fit (crosses the other end's vertex, leaves too little, or has no
    # region): as in Pythia, where finalTwo then fails, the string starts over (its hadrons so far are
    # dropped, the scores of the dropped attempt stay in the weight: the density of "repeat until it
    # fits" is the product over all attempts); after MAX_RESTARTS the straight-view fallback
    failed_k = (active & ~straight & cont & ~use_k) | out_win
    # (only while the steps left leave room for another attempt as long as this one and a margin)
    restart = failed_k & (st.attempt < MAX_RESTARTS) & (2 * t - st.t0 + _RESTART_MARGIN < n_steps)
    fell_back = failed_k & ~restart
    e_k = safe_sqrt(b.mass_h ** 2 + jnp.sum(p4_k[1:] ** 2))  # on shell to float precision
    p4_k = jnp.concatenate([e_k[None], p4_k[1:]])
    p4_cont = jnp.where(use_k, p4_k, p4_straight)

    # --- stop: the final two hadrons share the remainder exactly (straight view). Their pT are the ends'
    # bookkept ones, plus half each of the remainder's transverse momentum those leave unbalanced (kinks'
    # transverse momenta in the view; Pythia's finalTwo shares this "pxRem" evenly as well)
    excess = 0.5 * (rem_t - k_pos - st.k_neg)
    kp_s, kn_s = k_pos + excess, st.k_neg + excess
    pt_h = jnp.where(plus, kp_s - st.k, kn_s + st.k)
    pt_c = jnp.where(plus, st.k + kn_s, kp_s - st.k)
    mt2_h = b.mass_h ** 2 + jnp.sum(pt_h * pt_h)
    mt2_c = b.mass_c ** 2 + jnp.sum(pt_c * pt_c)
    l2_v = r_plus * r_minus  # exact: the final two take the remainder's R± in full
    big_l_v = safe_sqrt(l2_v)
    l_s = jnp.where(big_l_v > 0, big_l_v, 1.0)
    lam = (l2_v - mt2_h - mt2_c) ** 2 - 4.0 * mt2_h * mt2_c
    e1 = (l2_v + mt2_h - mt2_c) / (2.0 * l_s)
    qq = safe_sqrt(lam) / (2.0 * l_s)
    big = jnp.where(e1 + qq > 0, e1 + qq, 1.0)
    small = mt2_h / big
    hp_stop = jnp.where(plus, big, small) * r_plus / l_s
    hm_stop = jnp.where(plus, small, big) * r_minus / l_s
    p4_h_stop = _lc(frame, hp_stop, hm_stop, pt_h, b.mass_h)
    p4_c = _lc(frame, r_plus - hp_stop, r_minus - hm_stop, pt_c, b.mass_c)

    p4_h = jnp.where(cont, p4_cont, p4_h_stop)
    ok = jnp.stack([active & ~restart, active & ~cont])
    tag = jnp.full((2,), st.sidx * _ATTEMPT_STRIDE + st.attempt, jnp.int32)
    out = (jnp.where(ok, jnp.stack([b.pid_h, b.pid_c]), 0),
           jnp.where(ok[:, None], jnp.stack([p4_h, p4_c]), 0.0), ok, tag)

    # --- next state
    upd = lambda arr, val: jnp.where(use_k, arr.at[side].set(val), arr)  # noqa: E731
    cont_state = _KState(
        sidx=st.sidx, f_pos=f_pos1, f_neg=f_neg1, from_positive=plus1, bundle=b1, k=k1,
        k_pos=k_pos1, k_neg=k_neg1, rem=st.rem - p4_cont,
        cur_a=upd(st.cur_a, a_k), cur_y=upd(st.cur_y, y_k), cur_b=upd(st.cur_b, b_k), cur_x=upd(st.cur_x, x_k),
        gamma=upd(st.gamma, gamma_new), straight=straight | ~use_k, frame=frame,
        own=own.at[side].set(own_s - p_side), log_weight=log_weight,
        overflow=overflow, fallback=st.fallback + fell_back.astype(jnp.int32), restarts=st.restarts,
        attempt=st.attempt, t0=st.t0)
    next_row, next_start = get(st.sidx + 1)
    next_state = _load(next_row, next_start, st.sidx + 1, log_weight, overflow, cont_state.fallback, st.restarts,
                       t0=t + 1)
    # the restart: a fresh first choice for the chain, drawn as at its start (start_choices: the chain's own
    # end flavours, light-chain limits) from draws independent of this step's, which decided the failure;
    # its score is added to the weight that already holds every choice of the failed attempt
    srow_r, lp_r = start_choices(jax.random.fold_in(key_t, 1), jax.tree_util.tree_map(lambda x: x[None], row), fp,
                                 score_k=score_continuous)
    srow_r = jax.tree_util.tree_map(lambda x: x[0], srow_r)
    score_r = lp_r[0] - jax.lax.stop_gradient(lp_r[0])
    restart_state = _load(row, srow_r, st.sidx, log_weight + jnp.where(active, score_r, 0.0), overflow, st.fallback,
                          st.restarts + 1, st.attempt + 1, t + 1)
    new = jax.tree_util.tree_map(lambda c_, n_: jnp.where(cont, c_, n_), cont_state, next_state)
    new = jax.tree_util.tree_map(lambda r_, n_: jnp.where(restart, r_, n_), restart_state, new)
    new = jax.tree_util.tree_map(lambda n_, o_: jnp.where(active, n_, o_), new, st)
    return new, out


def fragment_chains_event(key, chains: Chains, regions: Regions, n_active, start: StartChoices, fp: FragParams,
                          n_steps: int, score_continuous: bool = False):
    """Fragment the first ``n_active`` kinked strings of one event in ``n_steps`` scan steps (step t draws
    from ``fold_in(key, t)``); the differentiable form. Returns pid i32[2·n_steps], p4 f[2·n_steps, 4],
    valid bool[2·n_steps], log-weight (score sum), overflow flag, number of straight fallbacks, number of
    string restarts."""
    dtype = chains.mass.dtype
    n_s = chains.mass.shape[-1]
    n_e = regions.pos.shape[0]

    def get(s):
        s = jnp.clip(s, 0, n_s - 1)
        return jax.tree_util.tree_map(lambda x: x[s], chains), jax.tree_util.tree_map(lambda x: x[s], start)

    def take(i):
        return regions.rows[jnp.clip(i, 0, n_e - 1)]

    def step(st, t):
        return _step(st, t, jax.random.fold_in(key, t), get, take, n_active, fp, n_steps, score_continuous)

    init = _first_state(chains, start, dtype)
    final, (pid, p4, valid, tag) = jax.lax.scan(jax.checkpoint(step), init, jnp.arange(n_steps))
    overflow = final.overflow | (final.sidx < n_active)
    valid = _last_attempt(tag.reshape(-1), valid.reshape(-1), n_s)
    return (pid.reshape(-1), p4.reshape(-1, 4), valid, final.log_weight, overflow, final.fallback, final.restarts)


def _last_attempt(tag, valid, n_s):
    """Keep only the outputs of each chain's last attempt (restarted attempts are dropped)."""
    seg = jnp.clip(tag // _ATTEMPT_STRIDE, 0, n_s - 1)
    last = jax.ops.segment_max(jnp.where(valid, tag, -1), seg, num_segments=n_s)
    return valid & (tag == last[seg])


def _scan(key_data, chains, regions, n_active, start, fp, n_steps, score_continuous=False):
    keys = jax.random.wrap_key_data(key_data)
    return jax.vmap(lambda k, c_, r_, n_, s_: fragment_chains_event(k, c_, r_, n_, s_, fp, n_steps, score_continuous))(
        keys, chains, regions, n_active, start)


class _Out(NamedTuple):
    pid: jax.Array
    p4: jax.Array
    valid: jax.Array
    log_weight: jax.Array
    overflow: jax.Array
    fallback: jax.Array
    restarts: jax.Array
    tag: jax.Array


def _pool(key_data, chains, regions, n_active, start, fp, n_steps, pool, score_continuous=False):
    keys = jax.random.wrap_key_data(key_data)
    n_ev = keys.shape[0]
    dtype = chains.mass.dtype
    n_s = chains.mass.shape[-1]

    def load(idx):
        idx = jnp.clip(idx, 0, n_ev - 1)
        row = jax.tree_util.tree_map(lambda x: x[idx], chains)
        srow = jax.tree_util.tree_map(lambda x: x[idx], start)
        return jax.vmap(lambda c_, s_: _first_state(c_, s_, dtype))(row, srow), n_active[idx] <= 0

    def one(st, t, k, ev):
        def get(s):
            s = jnp.clip(s, 0, n_s - 1)
            at = (lambda x: x[ev, s])  # noqa: E731
            return jax.tree_util.tree_map(at, chains), jax.tree_util.tree_map(at, start)

        def take(i):
            return regions.rows[ev, jnp.clip(i, 0, regions.rows.shape[1] - 1)]

        return _step(st, t, jax.random.fold_in(k, t), get, take, n_active[ev], fp, n_steps, score_continuous)

    def step(st, out, ev, steps, busy):
        evc = jnp.clip(ev, 0, n_ev - 1)
        new, (pid, p4, ok, tag) = jax.vmap(one)(st, steps, keys[evc], evc)
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(busy.reshape(busy.shape + (1,) * (a.ndim - 1)), a, b),
                                     new, st)
        row = jnp.where(busy, ev, n_ev)[:, None]
        col = 2 * steps[:, None] + jnp.arange(2)[None, :]
        out = out._replace(pid=out.pid.at[row, col].set(pid, mode="drop"),
                           p4=out.p4.at[row, col].set(p4, mode="drop"),
                           valid=out.valid.at[row, col].set(ok, mode="drop"),
                           tag=out.tag.at[row, col].set(tag, mode="drop"))
        return new, out, new.sidx >= n_active[evc]

    def store(out, ev, write, st, steps):
        row = jnp.where(write, ev, n_ev)
        evc = jnp.clip(ev, 0, n_ev - 1)
        overflow = st.overflow | (st.sidx < n_active[evc])
        return out._replace(log_weight=out.log_weight.at[row].set(st.log_weight, mode="drop"),
                            overflow=out.overflow.at[row].set(overflow, mode="drop"),
                            fallback=out.fallback.at[row].set(st.fallback, mode="drop"),
                            restarts=out.restarts.at[row].set(st.restarts, mode="drop"))

    out0 = _Out(pid=jnp.zeros((n_ev, 2 * n_steps), jnp.int32), p4=jnp.zeros((n_ev, 2 * n_steps, 4), dtype),
                valid=jnp.zeros((n_ev, 2 * n_steps), bool), log_weight=jnp.zeros((n_ev,), dtype),
                overflow=jnp.zeros((n_ev,), bool), fallback=jnp.zeros((n_ev,), jnp.int32),
                restarts=jnp.zeros((n_ev,), jnp.int32), tag=jnp.zeros((n_ev, 2 * n_steps), jnp.int32))
    out, stats = run_pool(load, step, store, out0, n_ev, pool, n_steps)
    valid = jax.vmap(lambda t_, v_: _last_attempt(t_, v_, n_s))(out.tag, out.valid)
    return tuple(out._replace(valid=valid))[:-1], stats


@functools.partial(jax.custom_jvp, nondiff_argnums=(6, 7, 8))
def _batch(key_data, chains, regions, n_active, start, fp, n_steps, pool, score_continuous):
    return _pool(key_data, chains, regions, n_active, start, fp, n_steps, pool, score_continuous)[0]


@_batch.defjvp
def _batch_jvp(n_steps, pool, score_continuous, primals, tangents):
    return jax.jvp(lambda *a: _scan(*a, n_steps, score_continuous), primals, tangents)


def fragment_chains_batch(keys, chains: Chains, regions: Regions, n_active, start: StartChoices, fp: FragParams,
                          n_steps: int, pool: int, with_stats: bool = False, score_continuous: bool = False):
    """Fragment a batch of events' kinked strings (leading axis N everywhere) on the slot scheduler, with
    derivatives from the equivalent ``lax.scan`` (as :func:`diffgen.hadronization.fragment.fragment_batch`).

    Returns ``(pid[N, 2·n_steps], p4[N, 2·n_steps, 4], valid, log_weight[N], overflow[N], fallback[N],
    restarts[N])``,
    and with ``with_stats`` also the scheduler's :class:`~diffgen.schedule.PoolStats`. ``score_continuous``
    (static): z and the breaks' pT are held fixed under differentiation and their log densities' scores enter
    the log-weight instead (``string_fragmentation(continuous="score")``).
    """
    if with_stats:
        return _pool(jax.random.key_data(keys), chains, regions, n_active, start, fp, n_steps, pool, score_continuous)
    return _batch(jax.random.key_data(keys), chains, regions, n_active, start, fp, n_steps, pool, score_continuous)
