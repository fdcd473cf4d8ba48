"""Iterative Lund fragmentation of straight strings, one event, as a fixed-length ``lax.scan``.

Algorithm (Andersson et al., Phys. Rept. 97 (1983) 31; Pythia 8.3 manual "Fragmentation";
Sjöstrand, Mrenna, Skands, JHEP 05 (2006) 026), per string, in light-cone components along
the string (``R⁺ = R⁻ = W`` initially, see :mod:`diffgen.hadronization.string`):

1. Each step is taken at a random end (probability ½ each). A new q q̄ pair is drawn with
   flavour and the hadron species from :mod:`diffgen.hadronization.flavour`; the new quark
   gets transverse momentum ``k`` with each component ``(σ/√2)·Φ⁻¹(u)`` (pathwise in σ),
   the antiquark ``−k``. The hadron's ``pT`` is the end's ``pT`` minus (plus) ``k``.
2. Stop rule (Pythia's ``energyUsedUp``): with ``W_rem`` the remaining mass and
   ``w_min = stopMass + m_q(end⁺) + m_q(end⁻) + stopNewFlav·m_q(new)`` (1.0 GeV, 2.0,
   constituent masses), Pythia stops when ``W_rem < w_min (1 + 0.2 (2u − 1))``. Here the
   continuation probability is the C¹ smoothstep of ``(W_rem/w_min − 0.8)/0.4`` (same
   window and midpoint as Pythia's uniform smear; the smooth edge keeps the score variance
   finite), times a feasibility factor ``smoothstep((L − m⊥ − floor′ − δ)/0.1 GeV)`` that
   vanishes unless after this hadron the remainder can still close with the next step's
   (already drawn) pair of hadrons: ``L = √(R⁺R⁻)`` and ``floor′ = m⊥(next) + m⊥(closing)``.
   The decision is a Bernoulli draw whose score ``log p − sg(log p)`` goes into the weight.
3. Continue: ``z`` is drawn from the Lund function with ``c = b m⊥²`` (Bowler power for c/b
   ends) truncated to the window that leaves the remainder a longitudinal mass ≥ floor′
   (solving ``(1 − z)(L² − m⊥²/z) ≥ floor′²``), by implicit reparameterisation
   (:mod:`diffgen.hadronization.lund_z`). The hadron takes ``p_side = z R_side``,
   ``p_other = m⊥²/p_side``.
4. Stop: the last two hadrons (the one from this end and the one joining the new flavour
   with the other end) share the remainder exactly: a two-body decay in light-cone
   components, the hadron from the + end moving along +. Because of the truncation in 3
   this always has a solution; momentum is conserved exactly per string.

The truncation in 3 replaces Pythia's "restart the whole string when the final two hadrons
do not fit"; the feasibility factor slightly favours lighter next hadrons near the end of a
string. The scan runs ``n_steps`` steps for the whole event, moving to the next string
when one is done; a string unfinished at the last step sets the overflow flag.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.hadronization.flavour import CONSTITUENT_MASS, N_FLAV, Bundle, is_diquark_code, sample_bundle
from diffgen.hadronization.lund_z import S_MAX, diquark_shape, sample_log_z
from diffgen.hadronization.string import LIGHT_MARGIN, Strings
from diffgen.numerics import safe_div, safe_log, safe_sqrt
from diffgen.schedule import run_pool

__all__ = ["FragParams", "StartChoices", "start_choices", "fragment_event", "STOP_MASS", "STOP_NEW_FLAV",
           "STOP_SMEAR", "R_FACTOR", "smoothstep", "continue_decision", "fragment_batch", "pt_log_density"]

STOP_MASS = 1.0  #: Pythia 8.3 StringFragmentation:stopMass (GeV)
STOP_NEW_FLAV = 2.0  #: Pythia 8.3 StringFragmentation:stopNewFlav
STOP_SMEAR = 0.2  #: Pythia 8.3 StringFragmentation:stopSmear
#: Bowler r_Q per end flavour d, u, s, c, b (Pythia 8.3 StringZ:rFactC = 1.32, rFactB = 0.855)
R_FACTOR = np.array([0.0, 0.0, 0.0, 1.32, 0.855])
QUARK_MASS = np.array([0.0, 0.0, 0.0, 1.5, 4.8])  #: m_Q in the Bowler power (Pythia 4:m0, 5:m0)
# baryons: end flavour codes 6..14 are light diquarks (flavour.DIQUARKS), no Bowler term
R_FACTOR, QUARK_MASS = (np.pad(x, (0, N_FLAV - x.size)) for x in (R_FACTOR, QUARK_MASS))
DELTA = 1.0e-3  #: GeV kept free when closing a string (numerical safety margin)
FIT_WIDTH = 0.1  #: GeV, width of the feasibility factor of the continuation probability
_N_STEP_UNIFORMS = 6


def smoothstep(t):
    """3t² − 2t³ on [0, 1], clamped: C¹, 0 below 0 and 1 above 1."""
    t = jnp.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def continue_decision(t_rule, t_fit, u):
    """Draw continue (``u < p``) or stop, with ``p = smoothstep(t_rule)·smoothstep(t_fit)``, and return the
    log-probability of the drawn decision, the stop probability computed as a sum of complements instead
    of ``1 − p``.

    ``1 − s(t) = s(1 − t)`` exactly for the smoothstep, so ``1 − s₁s₂ = s(1 − t₁) + s₁ s(1 − t₂)`` has no
    cancellation: in float32 ``1 − p`` reads 2.98·10⁻⁶ for a stop of probability 3.00·10⁻⁶, and loses all
    digits below that, where the stop's score ``∝ 1/(1 − p)`` is largest.

    Returns:
        ``(cont_drawn, log_prob)``; ``log_prob`` is 0 where the drawn outcome has probability 0 (never drawn).

    >>> c, lp = continue_decision(jnp.float32(1.0 - 1e-3), jnp.float32(2.0), jnp.float32(0.9999999))
    >>> bool(c), round(float(lp), 2)  # stop, probability 1 − p = 3.0·10⁻⁶
    (False, -12.72)
    """
    s_rule, s_fit = smoothstep(t_rule), smoothstep(t_fit)
    p_cont = s_rule * s_fit
    p_stop = smoothstep(1.0 - t_rule) + s_rule * smoothstep(1.0 - t_fit)
    cont_drawn = u < p_cont
    return cont_drawn, safe_log(jnp.where(cont_drawn, p_cont, p_stop), floor=0.0)


class FragParams(NamedTuple):
    a: jax.Array  #: StringZ:aLund
    b: jax.Array  #: StringZ:bLund (GeV⁻²)
    sigma: jax.Array  #: StringPT:sigma (GeV)
    sp_weights: jax.Array  #: flavour.species_probs table
    flav_probs: jax.Array  #: flavour.new_flavour_probs (mesons only) or flavour.break_flavour_probs
    a_extra_diquark: jax.Array = 0.0  #: StringZ:aExtraDiquark (baryons; see lund_z.diquark_shape)


class StartChoices(NamedTuple):
    """Choices of the first step of every string (leading axis S)."""

    from_positive: jax.Array
    bundle: Bundle
    k: jax.Array  #: f[S, 2] pT of the first new quark


def _mt(m, pt):
    return safe_sqrt(m * m + jnp.sum(pt * pt, axis=-1))


def pt_log_density(k, sigma):
    """Log density (up to a constant) of a break's transverse momentum ``k`` (last axis: the two components, each
    Gaussian of width σ/√2): ``−|k|²/σ² − 2 log σ``, gradient-safe at σ = 0. Its derivative in σ is the score of
    a pT draw held fixed (``string_fragmentation(continuous="score")``)."""
    s2 = jnp.square(sigma)
    return -safe_div(jnp.sum(k * k, axis=-1), s2) - jnp.log(jnp.where(s2 > 0, s2, 1.0))


def start_choices(key, strings: Strings, fp: FragParams, score_k: bool = False) -> tuple[StartChoices, jax.Array]:
    """Draw the first-step choices of every string; restricted so that a light string's final
    two hadrons fit (masses) and its first ``k`` is shrunk to fit (pT). Returns (choices, log p[S]).

    ``score_k`` (static): ``k`` is held fixed under differentiation and ``log p`` includes its log density
    instead (score-function gradient in σ): the 2-D Gaussian's ``−|k|²/σ² − 2 log σ`` where it was not
    shrunk, and ``log P(|k| > k_max) = −k_max²/σ²`` where it was (the shrunk ``k`` is σ-independent).
    """
    s_count = strings.mass.shape[0]
    k_side, k_b, k_pt = jax.random.split(key, 3)
    side = jax.random.uniform(k_side, (s_count,)) < 0.5
    u = jax.random.uniform(k_b, (s_count,))
    bundle = jax.vmap(lambda u_, s_, fp_, fn_, w_: sample_bundle(
        u_, s_, fp_, fn_, fp.sp_weights, fp.flav_probs, w_max=w_, margin=LIGHT_MARGIN))(
        u, side, strings.f_pos, strings.f_neg, strings.mass)
    sigma = jax.lax.stop_gradient(fp.sigma) if score_k else fp.sigma
    k = sigma / np.sqrt(2.0) * jax.random.normal(k_pt, (s_count, 2))
    # At the first step both ends have pT = 0: hadrons get −k and +k; keep |k| below the
    # two-body momentum so that the pair fits in W − margin/2 if the string stops at once.
    w = strings.mass - 0.5 * LIGHT_MARGIN
    lam = (w * w - bundle.mass_h ** 2 - bundle.mass_c ** 2) ** 2 - 4.0 * bundle.mass_h ** 2 * bundle.mass_c ** 2
    k_max = safe_div(safe_sqrt(lam), 2.0 * w)
    k_abs = safe_sqrt(jnp.sum(k * k, axis=-1))
    shrunk = k_abs > k_max
    scale = jnp.where(shrunk, safe_div(k_max, k_abs), 1.0)
    log_p = bundle.log_prob
    if score_k:
        k = jax.lax.stop_gradient(k * scale[:, None])
        log_p = log_p + jnp.where(shrunk, -safe_div(k_max ** 2, jnp.square(fp.sigma)), pt_log_density(k, fp.sigma))
        return StartChoices(side, bundle, k), log_p
    return StartChoices(side, bundle, k * scale[:, None]), log_p


class _State(NamedTuple):
    sidx: jax.Array
    r_plus: jax.Array
    r_minus: jax.Array
    f_pos: jax.Array
    f_neg: jax.Array
    k_pos: jax.Array
    k_neg: jax.Array
    from_positive: jax.Array
    bundle: Bundle
    k: jax.Array
    log_weight: jax.Array
    overflow: jax.Array


def _row(tree, s):
    """Row ``s`` of every leaf (one string of an event)."""
    return jax.tree_util.tree_map(lambda x: x[s], tree)


def _load(row: Strings, srow: StartChoices, s, log_weight, overflow) -> _State:
    """The state at the start of string ``s`` (``row``/``srow``: that string's data and first choices)."""
    w = row.mass
    zero2 = jnp.zeros(2, w.dtype)
    return _State(sidx=s, r_plus=w, r_minus=w, f_pos=row.f_pos, f_neg=row.f_neg, k_pos=zero2,
                  k_neg=zero2, from_positive=srow.from_positive, bundle=srow.bundle, k=srow.k,
                  log_weight=log_weight, overflow=overflow)


def _p4(row: Strings, p_plus, p_minus, pt, mass):
    w = row.mass
    p = (safe_div(p_plus, w) * row.n_plus + safe_div(p_minus, w) * row.n_minus
         + pt[0] * row.e1 + pt[1] * row.e2)
    e = safe_sqrt(mass * mass + jnp.sum(p[1:] * p[1:]))  # on shell to float precision
    return jnp.concatenate([e[None], p[1:]])


def _first_state(strings: Strings, start: StartChoices, dtype) -> _State:
    return _load(_row(strings, 0), _row(start, 0), jnp.array(0), jnp.zeros((), dtype), jnp.array(False))


def _step(st: _State, t, key_t, get, n_active, fp: FragParams, n_steps: int):
    """One fragmentation step of one event: a hadron from the current string (or its last two).

    ``get(s) -> (Strings row, StartChoices row)`` reads string ``s`` of the event (clipped). Returns
    ``(new state, (pid[2], p4[2, 4], valid[2]))``; a state with ``sidx ≥ n_active`` is left unchanged.
    """
    dtype = st.r_plus.dtype
    mq = jnp.asarray(CONSTITUENT_MASS, dtype)
    r_fac = jnp.asarray(R_FACTOR, dtype)
    m_heavy = jnp.asarray(QUARK_MASS, dtype)
    active = st.sidx < n_active
    row, _ = get(st.sidx)
    plus = st.from_positive
    b = st.bundle
    pt_h = jnp.where(plus, st.k_pos - st.k, st.k_neg + st.k)
    pt_c = jnp.where(plus, st.k + st.k_neg, st.k_pos - st.k)
    mt2_h = b.mass_h ** 2 + jnp.sum(pt_h * pt_h)
    mt2_c = b.mass_c ** 2 + jnp.sum(pt_c * pt_c)
    mt_h = safe_sqrt(mt2_h)
    l2 = st.r_plus * st.r_minus
    big_l = safe_sqrt(l2)
    rt = st.k_pos + st.k_neg
    w_rem = safe_sqrt(l2 - jnp.sum(rt * rt))

    # ends after a continuation, and the next step's choices (drawn now: they set floor′)
    f_pos1 = jnp.where(plus, b.q_new, st.f_pos)
    f_neg1 = jnp.where(plus, st.f_neg, b.q_new)
    k_pos1 = jnp.where(plus, st.k, st.k_pos)
    k_neg1 = jnp.where(plus, st.k_neg, -st.k)
    # all of the step's random numbers from one draw (each threefry call is a loop on the CPU):
    # side, bundle, continue/stop, z, and two normals for the new pT (inverse error function)
    u = jax.random.uniform(key_t, (_N_STEP_UNIFORMS,), dtype)
    plus1 = u[0] < 0.5
    b1 = sample_bundle(u[1], plus1, f_pos1, f_neg1, fp.sp_weights, fp.flav_probs)
    v = jnp.clip(2.0 * u[4:6] - 1.0, -1.0 + jnp.finfo(dtype).epsneg, 1.0)
    k1 = fp.sigma * jax.lax.erf_inv(v)  # (σ/√2)·N(0, 1) = σ·erfinv(2u − 1)
    pt_h1 = jnp.where(plus1, k_pos1 - k1, k_neg1 + k1)
    pt_c1 = jnp.where(plus1, k1 + k_neg1, k_pos1 - k1)
    floor1 = _mt(b1.mass_h, pt_h1) + _mt(b1.mass_c, pt_c1)

    # continue or stop
    w_min = STOP_MASS + mq[st.f_pos - 1] + mq[st.f_neg - 1] + STOP_NEW_FLAV * mq[b.q_new - 1]
    t_rule = (safe_div(w_rem, w_min) - (1.0 - STOP_SMEAR)) / (2.0 * STOP_SMEAR)
    t_fit = (big_l - mt_h - floor1 - DELTA) / FIT_WIDTH
    cont_drawn, lp_dec = continue_decision(t_rule, t_fit, u[2])
    last = t == n_steps - 1
    cont = cont_drawn & ~last
    overflow = st.overflow | (active & last & cont_drawn)
    score = lp_dec - jax.lax.stop_gradient(lp_dec) + b1.log_prob - jax.lax.stop_gradient(b1.log_prob)
    log_weight = st.log_weight + jnp.where(active, score, 0.0)

    # --- continue: truncated Lund z from the chosen end
    r_side = jnp.where(plus, st.r_plus, st.r_minus)
    r_oth = jnp.where(plus, st.r_minus, st.r_plus)
    floor_t = floor1 + 0.5 * DELTA
    disc = (l2 - mt2_h - floor_t ** 2) ** 2 - 4.0 * mt2_h * floor_t ** 2
    valid = cont & (disc > 0) & (l2 > 0) & (mt2_h > 0)
    l2_s = jnp.where(valid, l2, 1.0)
    mt2_s = jnp.where(valid, mt2_h, 0.1)
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
    log_z = sample_log_z(u[3], a_z, fp.b * mt2_s, alpha, s_lo, s_hi)
    z = jnp.exp(log_z)
    one_minus_z = -jnp.expm1(log_z)
    r_side_s = jnp.where(valid, r_side, 1.0)
    p_side = z * r_side_s
    p_oth = mt2_s / p_side
    hp_cont = jnp.where(plus, p_side, p_oth)
    hm_cont = jnp.where(plus, p_oth, p_side)
    r_side_new = one_minus_z * r_side
    r_oth_new = r_oth - p_oth

    # --- stop: the final two hadrons share the remainder exactly
    l_s = jnp.where(big_l > 0, big_l, 1.0)
    lam = (l2 - mt2_h - mt2_c) ** 2 - 4.0 * mt2_h * mt2_c
    e1 = (l2 + mt2_h - mt2_c) / (2.0 * l_s)
    q = safe_sqrt(lam) / (2.0 * l_s)
    big = jnp.where(e1 + q > 0, e1 + q, 1.0)
    small = mt2_h / big
    hp_stop = jnp.where(plus, big, small) * st.r_plus / l_s
    hm_stop = jnp.where(plus, small, big) * st.r_minus / l_s
    cp = st.r_plus - hp_stop
    cm = st.r_minus - hm_stop

    hp = jnp.where(cont, hp_cont, hp_stop)
    hm = jnp.where(cont, hm_cont, hm_stop)
    p4_h = _p4(row, hp, hm, pt_h, b.mass_h)
    p4_c = _p4(row, cp, cm, pt_c, b.mass_c)
    ok = jnp.stack([active, active & ~cont])
    out = (jnp.where(ok, jnp.stack([b.pid_h, b.pid_c]), 0),
           jnp.where(ok[:, None], jnp.stack([p4_h, p4_c]), 0.0), ok)

    # --- next state
    cont_state = _State(sidx=st.sidx, r_plus=jnp.where(plus, r_side_new, r_oth_new),
                        r_minus=jnp.where(plus, r_oth_new, r_side_new), f_pos=f_pos1, f_neg=f_neg1,
                        k_pos=k_pos1, k_neg=k_neg1, from_positive=plus1, bundle=b1, k=k1,
                        log_weight=log_weight, overflow=overflow)
    next_row, next_start = get(st.sidx + 1)
    next_state = _load(next_row, next_start, st.sidx + 1, log_weight, overflow)
    new = jax.tree_util.tree_map(lambda c_, n_: jnp.where(cont, c_, n_), cont_state, next_state)
    new = jax.tree_util.tree_map(lambda n_, o_: jnp.where(active, n_, o_), new, st)
    return new, out


def _getter(strings: Strings, start: StartChoices):
    n_s = strings.mass.shape[-1]
    return lambda s: (_row(strings, jnp.clip(s, 0, n_s - 1)), _row(start, jnp.clip(s, 0, n_s - 1)))


def fragment_event(key, strings: Strings, n_active, start: StartChoices, fp: FragParams, n_steps: int):
    """Fragment the first ``n_active`` strings of one event in ``n_steps`` scan steps (step t draws from
    ``fold_in(key, t)``). This is the differentiable (reverse- and forward-mode) form; :func:`fragment_batch`
    runs the same steps on the slot scheduler and uses this one for derivatives.

    Returns:
        pid i32[2·n_steps], p4 f[2·n_steps, 4], valid bool[2·n_steps], log-weight (score sum),
        overflow flag.
    """
    dtype = strings.mass.dtype
    get = _getter(strings, start)

    def step(st, t):
        return _step(st, t, jax.random.fold_in(key, t), get, n_active, fp, n_steps)

    init = _first_state(strings, start, dtype)
    final, (pid, p4, valid) = jax.lax.scan(jax.checkpoint(step), init, jnp.arange(n_steps))
    overflow = final.overflow | (final.sidx < n_active)
    return (pid.reshape(-1), p4.reshape(-1, 4), valid.reshape(-1), final.log_weight, overflow)


def _fragment_scan(key_data, strings, n_active, start, fp, n_steps):
    keys = jax.random.wrap_key_data(key_data)
    return jax.vmap(lambda k, s_, n_, st_: fragment_event(k, s_, n_, st_, fp, n_steps))(keys, strings, n_active,
                                                                                         start)


def _fragment_pool(key_data, strings, n_active, start, fp, n_steps, pool):
    keys = jax.random.wrap_key_data(key_data)
    n_ev = keys.shape[0]
    dtype = strings.mass.dtype

    def load(idx):
        idx = jnp.clip(idx, 0, n_ev - 1)
        st = jax.vmap(lambda s_, st_: _first_state(s_, st_, dtype))(_row(strings, idx), _row(start, idx))
        return st, n_active[idx] <= 0

    n_s = strings.mass.shape[-1]

    def one(st, t, k, ev):
        def get(s):
            s = jnp.clip(s, 0, n_s - 1)
            at = (lambda x: x[ev, s])  # noqa: E731 - one string of event ev, gathered directly
            return jax.tree_util.tree_map(at, strings), jax.tree_util.tree_map(at, start)

        return _step(st, t, jax.random.fold_in(k, t), get, n_active[ev], fp, n_steps)

    def step(st, out, ev, steps, busy):
        evc = jnp.clip(ev, 0, n_ev - 1)
        new, (pid, p4, ok) = jax.vmap(one)(st, steps, keys[evc], evc)
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(busy.reshape(busy.shape + (1,) * (a.ndim - 1)), a, b),
                                     new, st)
        row = jnp.where(busy, ev, n_ev)[:, None]
        col = 2 * steps[:, None] + jnp.arange(2)[None, :]
        out = out._replace(pid=out.pid.at[row, col].set(pid, mode="drop"),
                           p4=out.p4.at[row, col].set(p4, mode="drop"),
                           valid=out.valid.at[row, col].set(ok, mode="drop"))
        return new, out, new.sidx >= n_active[evc]

    def store(out, ev, write, st, steps):
        row = jnp.where(write, ev, n_ev)
        evc = jnp.clip(ev, 0, n_ev - 1)
        overflow = st.overflow | (st.sidx < n_active[evc])
        return out._replace(log_weight=out.log_weight.at[row].set(st.log_weight, mode="drop"),
                            overflow=out.overflow.at[row].set(overflow, mode="drop"))

    out0 = _Fragments(pid=jnp.zeros((n_ev, 2 * n_steps), jnp.int32), p4=jnp.zeros((n_ev, 2 * n_steps, 4), dtype),
                      valid=jnp.zeros((n_ev, 2 * n_steps), bool), log_weight=jnp.zeros((n_ev,), dtype),
                      overflow=jnp.zeros((n_ev,), bool))
    out, stats = run_pool(load, step, store, out0, n_ev, pool, n_steps)
    return tuple(out), stats


class _Fragments(NamedTuple):
    pid: jax.Array
    p4: jax.Array
    valid: jax.Array
    log_weight: jax.Array
    overflow: jax.Array


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6))
def _fragment_batch(key_data, strings, n_active, start, fp, n_steps, pool):
    return _fragment_pool(key_data, strings, n_active, start, fp, n_steps, pool)[0]


@_fragment_batch.defjvp
def _fragment_batch_jvp(n_steps, pool, primals, tangents):
    return jax.jvp(lambda *a: _fragment_scan(*a, n_steps), primals, tangents)


def fragment_batch(keys, strings: Strings, n_active, start: StartChoices, fp: FragParams, n_steps: int,
                   pool: int, with_stats: bool = False):
    """Fragment a batch of events (leading axis N on every input; ``keys[N]``) with the slot scheduler.

    The values come from :func:`diffgen.schedule.run_pool` (each event as many steps as it needs); the
    derivatives (``jax.jvp``, ``jax.grad``) from the same steps as a fixed-length ``lax.scan``
    (:func:`fragment_event`), which is what JAX can differentiate in both modes. Returns
    ``(pid[N, 2·n_steps], p4[N, 2·n_steps, 4], valid, log_weight[N], overflow[N])``, and with
    ``with_stats`` (not differentiable) also the scheduler's :class:`~diffgen.schedule.PoolStats`.
    """
    if with_stats:
        return _fragment_pool(jax.random.key_data(keys), strings, n_active, start, fp, n_steps, pool)
    return _fragment_batch(jax.random.key_data(keys), strings, n_active, start, fp, n_steps, pool)
