"""The hadron-decay stage: iterate particle decays for a fixed number of generations, fixed shapes.

Algorithm (per event, all slots at once, ``generations`` times inside a ``lax.fori_loop``):

1. A slot decays if it is occupied and its |PDG code| has a table in :mod:`diffgen.decays.table` and is
   not in ``stable``. B0 and B_s0 first turn into their antiparticle with probability χ (mixing).
2. A channel is drawn with the fixed PDG branching fractions (one uniform, inverse CDF). The fractions
   do not depend on any parameter θ, so no score-function term is added: ``log_weight`` is untouched.
3. Daughters get their PDG pole masses (:func:`diffgen.particles.mass`; no line shapes) and momenta from
   :mod:`diffgen.decays.kinematics` (isotropic two-body, flat three-body, a one-body K0 → K_S/K_L
   relabelling keeps the momentum), boosted with the mother's four-momentum: they are differentiable
   functions of the mother's ``p4``, and Σ p(daughters) = p(mother) exactly up to rounding.
4. The first daughter takes the mother's slot; the others are appended and the record is compacted
   (occupied slots first, in order) into ``capacity`` slots. An event that needs more slots is flagged
   with :attr:`Status.CAPACITY_OVERFLOW` and its surplus particles are dropped (never silently).

For speed only the first ``decay_slots`` unstable particles of an event are decayed in one generation
(the kinematics runs on a gathered ``[N, decay_slots]`` buffer, not on all ``capacity`` slots); the rest
wait one generation, and the default number of generations has one spare for them.

Validation: fed the primary hadrons of 10^5 Pythia 8.317 e+e- → Z → hadrons events (√s = 91.19 GeV, Pythia's
decays off), the stage gives ⟨n_charged⟩ = 20.25 and ⟨n_final⟩ = 42.7 against Pythia's own decays' 20.45
and 43.4, with no capacity overflow (at most 115–120 of the 160 default slots used). (That check predates the
Σ*, Ξ*, charm and bottom baryons in :data:`diffgen.particles.TABLE`: about 10 % of those events then held
one of them, which passed through undecayed; all of them now have tables.)

Particles whose code has no table (partons, W/Z/t, p, γ, e, ν, …) pass through unchanged, with their
colour tags; daughters have colour 0. Antiparticles decay into the charge-conjugated channels.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen.events import Events
    >>> from diffgen.decays import hadron_decays
    >>> st = hadron_decays(capacity=8)
    >>> ev = Events.empty(1, 1).replace(p4=jnp.array([[[1.0, 0.0, 0.0, 0.98]]]), pid=jnp.array([[111]]),
    ...                                 mask=jnp.array([[True]]))
    >>> out = st.apply(st.init(None), jax.random.key(0), ev)
    >>> sorted(int(p) for p in out.pid[0] if p != 0) in ([22, 22], [-11, 11, 22])
    True
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.decays import kinematics as dk
from diffgen.decays.table import (
    DECAYS,
    DEFAULT_STABLE,
    MIXING,
    branching_table,
    chain_depth,
    conjugate,
    decaying_codes,
    mass_of,
)
from diffgen.events import (
    FROM_BEAMS,
    FROM_SHOWER,
    FROM_STRINGS,
    RECORD_DECAYED,
    RECORD_FINAL,
    RECORD_HARD_PARTON,
    RECORD_HARD_RESONANCE,
    RECORD_PARTON,
    Events,
    Record,
    Status,
    compact_slots,
)
from diffgen.schedule import prefix_sum
from diffgen.stage import Stage, event_keys, fold_keys

__all__ = ["hadron_decays", "record_hard_process", "record_partons", "is_stable", "DEFAULT_CAPACITY", "DALITZ_GRID"]

#: Default particle capacity of the output: ≥ 4× the typical Z → hadrons final-state multiplicity.
DEFAULT_CAPACITY = 160
#: Default number of particles decayed per event and generation (the work buffer); more wait a generation.
DEFAULT_DECAY_SLOTS = 32
#: Points of the tabulated inverse CDF of the three-body s12 marginal.
DALITZ_GRID = 1025
_MAX_DAUGHTERS = 3
_N_UNIFORMS = 7  # mixing, channel, cos θ, φ, ψ, Dalitz s12, Dalitz s23


class _Tables(NamedTuple):
    """Host (NumPy) decay tables for one choice of ``stable``; indices are over all channels."""

    codes: np.ndarray  # i32[S] sorted positive codes that decay
    mother_mass: np.ndarray  # f64[S]
    chi: np.ndarray  # f64[S] mixing probability
    block_end: np.ndarray  # i32[S] one past the last channel of each species
    cum: np.ndarray  # f64[C] species index + cumulative branching fraction
    n_daughters: np.ndarray  # i32[C]
    daughters: np.ndarray  # i32[C, 3]
    daughters_cc: np.ndarray  # i32[C, 3] charge-conjugated
    daughter_mass: np.ndarray  # f64[C, 3]
    p_star: np.ndarray  # f64[C] two-body momentum (0 otherwise)
    dalitz_row: np.ndarray  # i32[C] row of ``dalitz`` (0 = dummy for non-three-body channels)
    dalitz: np.ndarray  # f64[R, G] inverse CDFs of s12


def _build(stable: tuple[int, ...]) -> _Tables:
    table = branching_table()
    codes = decaying_codes(stable)
    cum, nd, dau, dau_cc, md, ps, row, end = [], [], [], [], [], [], [], []
    dalitz = [dk.dalitz_inverse_cdf(1.0, 0.0, 0.0, 0.0, DALITZ_GRID)]  # dummy row 0
    for s, pid in enumerate(codes):
        acc = 0.0
        chans = table[pid]
        for k, (br, ds) in enumerate(chans):
            acc += br
            cum.append(s + (1.0 if k == len(chans) - 1 else min(acc, 1.0)))
            n = len(ds)
            pad = tuple(ds) + (0,) * (_MAX_DAUGHTERS - n)
            nd.append(n)
            dau.append(pad)
            dau_cc.append(tuple(conjugate(d) if d else 0 for d in pad))
            masses = [mass_of(d) if d else 0.0 for d in pad]
            md.append(masses)
            M = mass_of(pid)
            ps.append(dk.two_body_momentum(M, masses[0], masses[1]) if n == 2 else 0.0)
            if n == 3:
                row.append(len(dalitz))
                dalitz.append(dk.dalitz_inverse_cdf(M, *masses, n_grid=DALITZ_GRID))
            else:
                row.append(0)
        end.append(len(cum))
    return _Tables(
        codes=np.array(codes, np.int32), mother_mass=np.array([mass_of(c) for c in codes]),
        chi=np.array([MIXING.get(c, 0.0) for c in codes]), block_end=np.array(end, np.int32),
        cum=np.array(cum), n_daughters=np.array(nd, np.int32), daughters=np.array(dau, np.int32),
        daughters_cc=np.array(dau_cc, np.int32), daughter_mass=np.array(md), p_star=np.array(ps),
        dalitz_row=np.array(row, np.int32), dalitz=np.array(dalitz))


def _species(codes: np.ndarray, pid):
    """Index into ``codes`` of |pid| and whether it is there (a dense lookup table over 0..max code:
    one gather instead of a binary search)."""
    codes = np.asarray(codes)
    top = int(codes.max()) + 1
    lut = np.full(top + 1, -1, np.int32)
    lut[codes] = np.arange(len(codes), dtype=np.int32)
    a = jnp.abs(pid)
    idx = jnp.asarray(lut)[jnp.clip(a, 0, top)]
    return jnp.maximum(idx, 0), idx >= 0


def is_stable(pid, stable=DEFAULT_STABLE):
    """True where the decay stage leaves ``pid`` as it is: no decay table, or |pid| in ``stable``.

    Empty slots (0), partons and W/Z/t count as stable. Vectorised and jittable; ``stable`` is static.

    Example:
        >>> import jax.numpy as jnp
        >>> [bool(x) for x in is_stable(jnp.array([211, 111, -3122, 22, 310]))]
        [True, False, False, True, False]
    """
    codes = np.array(decaying_codes(tuple(stable)), np.int32)
    if len(codes) == 0:
        return jnp.ones(jnp.shape(pid), bool)
    return ~_species(codes, jnp.asarray(pid))[1]


def _append(mask, fields, new_mask, new_fields):
    """Append the occupied entries of ``new_*`` (``[N, E, ...]``) after the occupied prefix of ``mask``.

    Requires the occupied slots of ``mask`` (``[N, C]``) to be a prefix (as :func:`~diffgen.events.compact_slots` leaves
    them). Returns (mask, fields, overflow[N]). Each new entry is scattered to slot ``n_old + rank``
    (entries past ``C`` are dropped); scatter-set is differentiable, so gradients flow to the kept entries.
    """
    n, c = mask.shape
    n_old = jnp.sum(mask, axis=1, dtype=jnp.int32)
    cs = prefix_sum(new_mask)
    pos = jnp.where(new_mask, n_old[:, None] + cs - 1, c)  # c: dropped
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], pos.shape)
    out = [f.at[rows, pos].set(g, mode="drop") for f, g in zip(fields, new_fields)]
    total = n_old + cs[:, -1]
    return jnp.arange(c)[None, :] < total[:, None], out, total > c


def _uniforms(keys, shape, dtype):
    """Per-event uniforms ``[N, *shape]`` in [0, 1) with 23 random bits (cheaper than ``jax.random.uniform``)."""
    bits = jax.vmap(lambda k: jax.random.bits(k, shape, jnp.uint32))(keys)
    return (bits >> 9).astype(dtype) * jnp.asarray(2.0 ** -23, dtype)


def _check_config(capacity, generations, stable, enabled):
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer (number of particle slots), got {capacity!r}")
    if generations is not None and (isinstance(generations, bool) or not isinstance(generations, (int, np.integer))
                                    or generations < 0):
        raise ValueError(f"generations must be None or an integer >= 0, got {generations!r}")
    try:
        stable = tuple(int(s) for s in stable)
    except TypeError as err:
        raise ValueError(f"stable must be an iterable of PDG codes, got {stable!r}") from err
    if not isinstance(enabled, (bool, np.bool_)):
        raise ValueError(f"enabled must be a bool, got {enabled!r}")
    return int(capacity), stable


def hadron_decays(capacity: int = DEFAULT_CAPACITY, generations: int | None = None,
                  stable: tuple[int, ...] = DEFAULT_STABLE, enabled: bool = True,
                  decay_slots: int | None = None, record: bool = False) -> Stage:
    """Stage that decays unstable hadrons (and τ) into final-state particles.

    Args:
        capacity: particle slots of the output events (static). Events needing more are flagged
            :attr:`Status.CAPACITY_OVERFLOW`.
        generations: decay iterations (static); ``None`` means one more than the longest decay chain
            allowed by the table and ``stable`` (9 with the defaults: B* → B → D* → D → K̄* → K̄0 → K_S →
            π0 → γ), the spare one absorbing decays postponed for lack of work slots.
        stable: PDG codes (sign ignored) never decayed. Default: Pythia 8's rule that particles with
            cτ0 > 1 m do not decay (π±, K±, K_L, μ; p, n, γ, e, ν have no decays anyway). Add e.g. 310
            and 3122 to keep K_S and Λ as LEP analyses did.
        enabled: if False the stage is the identity.
        decay_slots: particles decayed per event and generation (static work buffer, default
            ``DEFAULT_DECAY_SLOTS``); further unstable particles wait for the next generation. An event
            still holding unstable particles at the end because of this is flagged
            :attr:`Status.CAPACITY_OVERFLOW`.
        record: also keep the full record (``events.record``, a :class:`~diffgen.events.Record` of
            ``2 × capacity`` entries after the hard process and partons that :func:`record_hard_process` and
            :func:`record_partons` put there): every primary hadron, each decayed particle with HepMC
            status 2 and its daughters linked to it, the final state with status 1. Costs a few scatters
            per generation; the final state is the same either way. (A B0/B_s0 that oscillated is
            recorded with its produced flavour.)

    Returns:
        ``Stage(init, apply)``; ``init(key) -> {}`` (no tunable parameters) and
        ``apply(params, key, events) -> events`` with ``events.capacity == capacity``.
    """
    capacity, stable = _check_config(capacity, generations, stable, enabled)
    if generations is None:
        generations = chain_depth(stable) + 1
    generations = int(generations)
    if decay_slots is None:
        decay_slots = max(1, min(capacity, DEFAULT_DECAY_SLOTS))
    if isinstance(decay_slots, bool) or not isinstance(decay_slots, (int, np.integer)) or decay_slots < 1:
        raise ValueError(f"decay_slots must be a positive integer, got {decay_slots!r}")
    n_active = int(min(decay_slots, capacity))
    if not isinstance(record, (bool, np.bool_)):
        raise ValueError(f"record must be a bool, got {record!r}")
    n_hist = 2 * capacity  # primaries + decay products: ≤ 2 × the final-state slots

    def init(key):
        return {}

    if not enabled and not record:
        return Stage(init=init, apply=lambda params, key, events: events)

    tab = _build(stable)
    if len(tab.codes) == 0 and not record:
        return Stage(init=init, apply=lambda params, key, events: events.resize(capacity))
    if not enabled or len(tab.codes) == 0:
        generations = 0

    def _generation(g, key, p4, pid, mask, colour, hist=None):
        dtype = p4.dtype
        n, c = pid.shape
        k = n_active
        sp_all, found = _species(tab.codes, pid)
        decays = mask & found
        # gather the first ``k`` decaying slots of each event; the others wait for the next generation
        cs = prefix_sum(decays.astype(jnp.int32), axis=1)
        targets = jnp.arange(1, k + 1, dtype=jnp.int32)
        src = jnp.minimum(jax.vmap(lambda x: jnp.searchsorted(x, targets, side="left"))(cs), c - 1)
        act = targets[None, :] <= cs[:, -1:]
        pid_a = jnp.take_along_axis(pid, src, axis=1)
        sp = jnp.take_along_axis(sp_all, src, axis=1)
        u = _uniforms(fold_keys(key, g), (k, _N_UNIFORMS), dtype)
        # mixing of neutral B mesons
        flip = act & (u[..., 0] < jnp.asarray(tab.chi, dtype)[sp])
        pid_a = jnp.where(flip, -pid_a, pid_a)
        # channel choice: fixed probabilities, inverse CDF over the species' block
        target = sp.astype(dtype) + u[..., 1]
        ch = jnp.searchsorted(jnp.asarray(tab.cum, dtype), target, side="right").astype(jnp.int32)
        ch = jnp.minimum(ch, jnp.asarray(tab.block_end)[sp] - 1)
        nd = jnp.asarray(tab.n_daughters)[ch]
        dpid = jnp.where((pid_a < 0)[..., None], jnp.asarray(tab.daughters_cc)[ch], jnp.asarray(tab.daughters)[ch])
        md = jnp.asarray(tab.daughter_mass, dtype)[ch]
        M = jnp.where(act, jnp.asarray(tab.mother_mass, dtype)[sp], 1.0)
        # rest-frame momenta (constants and uniforms only)
        q1 = jnp.zeros((n, k, _MAX_DAUGHTERS, 4), dtype).at[..., 0, 0].set(M)
        q2 = dk.rest_two_body(jnp.asarray(tab.p_star, dtype)[ch], md[..., 0], md[..., 1])
        q2 = jnp.concatenate([q2, jnp.zeros((n, k, 1, 4), dtype)], axis=-2)
        grid = jnp.asarray(tab.dalitz, dtype)
        kf = u[..., 5] * (DALITZ_GRID - 1)
        k0 = jnp.clip(jnp.floor(kf).astype(jnp.int32), 0, DALITZ_GRID - 2)
        frac = kf - k0
        row = jnp.asarray(tab.dalitz_row)[ch]
        s12 = grid[row, k0] * (1 - frac) + grid[row, k0 + 1] * frac
        three = nd == 3
        m3 = jnp.where(three[..., None], md, 0.0)
        q3 = dk.rest_three_body(jnp.where(three, M, 1.0), m3[..., 0], m3[..., 1], m3[..., 2], s12, u[..., 6])
        q = jnp.where(three[..., None, None], q3, jnp.where((nd == 2)[..., None, None], q2, q1))
        rot = dk.euler_rotation(u[..., 2], u[..., 3], u[..., 4])
        q = jnp.concatenate([q[..., :1], dk.rotate(q[..., 1:], tuple(r[..., None] for r in rot))], axis=-1)
        # boost with the mother's momentum: the only place where gradients enter
        P = jnp.where(act[..., None], jnp.take_along_axis(p4, src[..., None], axis=1),
                      jnp.array([1.0, 0.0, 0.0, 0.0], dtype))
        lab = dk.boost_from_rest(q, P[..., None, :], M[..., None])
        dmask = act[..., None] & (jnp.arange(_MAX_DAUGHTERS) < nd[..., None])
        # first daughter in the mother's slot, the others appended after all slots
        done = decays & (cs <= k)
        kidx = jnp.clip(cs - 1, 0, k - 1)
        slot_p4 = jnp.where(done[..., None], jnp.take_along_axis(lab[..., 0, :], kidx[..., None], axis=1), p4)
        slot_pid = jnp.where(done, jnp.take_along_axis(dpid[..., 0], kidx, axis=1), pid)
        slot_col = jnp.where(done[..., None], 0, colour)
        e = k * (_MAX_DAUGHTERS - 1)
        fields = [slot_p4, slot_pid, slot_col]
        new = [lab[..., 1:, :].reshape(n, e, 4), dpid[..., 1:].reshape(n, e), jnp.zeros((n, e, 2), colour.dtype)]
        if hist is not None:
            hist, slot_hid, new_hid = _record_generation(hist, src, act, done, kidx, dmask, lab, dpid)
            fields.append(slot_hid)
            new.append(new_hid)
        mask, fields, overflow = _append(mask, fields, dmask[..., 1:].reshape(n, e), new)
        return mask, fields, overflow, cs[:, -1] > k, hist

    def _record_generation(hist, src, act, done, kidx, dmask, lab, dpid):
        """History bookkeeping of one generation: mark the mothers decayed, give every daughter a new
        entry linked to its mother, and return the history index of each slot's (new) particle."""
        hid, h_p4, h_pid, h_par, h_dec, h_cnt = hist
        n, k = src.shape
        rows = jnp.arange(n)[:, None]
        mother = jnp.take_along_axis(hid, src, axis=1)
        h_dec = h_dec.at[rows, jnp.where(act, mother, n_hist)].set(True, mode="drop")
        flat = dmask.reshape(n, k * _MAX_DAUGHTERS)
        pos = jnp.where(flat, h_cnt[:, None] + prefix_sum(flat, axis=1) - 1, n_hist)
        h_p4 = h_p4.at[rows, pos].set(lab.reshape(n, -1, 4), mode="drop")
        h_pid = h_pid.at[rows, pos].set(dpid.reshape(n, -1), mode="drop")
        h_par = h_par.at[rows, pos].set(jnp.repeat(mother, _MAX_DAUGHTERS, axis=1), mode="drop")
        h_cnt = h_cnt + jnp.sum(flat, axis=1, dtype=jnp.int32)
        pos = pos.reshape(n, k, _MAX_DAUGHTERS)
        slot_hid = jnp.where(done, jnp.take_along_axis(pos[..., 0], kidx, axis=1), hid)
        return (hid, h_p4, h_pid, h_par, h_dec, h_cnt), slot_hid, pos[..., 1:].reshape(n, -1)

    def apply(params, key, events: Events) -> Events:
        key = event_keys(key, events.n_events)
        mask0, (p4, pid, colour), overflow = compact_slots(
            events.mask, (events.p4, jnp.where(events.mask, events.pid, 0), events.colour), capacity)
        hist = _start_history(mask0, p4, pid) if record else None

        def body(g, carry):
            p4, pid, mask, colour, overflow, deferred, hist = carry
            mask, fields, ovf, dfr, hist = _generation(g, key, p4, pid, mask, colour, hist)
            p4, pid, colour = fields[:3]
            if hist is not None:  # the slots' history indices travel with the slots
                hist = (fields[3], *hist[1:])
            return p4, pid, mask, colour, overflow | ovf, deferred | dfr, hist

        p4, pid, mask, colour, overflow, deferred, hist = jax.lax.fori_loop(
            0, generations, body, (p4, pid, mask0, colour, overflow, jnp.zeros_like(overflow), hist))
        # decays postponed for lack of work slots and not caught up by the last generation
        left = deferred & jnp.any(mask & _species(tab.codes, pid)[1], axis=1) if len(tab.codes) else deferred
        out = events.replace(p4=p4, pid=pid, mask=mask, colour=colour)
        if hist is not None:
            out = out.replace(record=_finish_record(hist, events.record))
            overflow = overflow | (hist[-1] > n_hist)
        return out.with_status(overflow | left, Status.CAPACITY_OVERFLOW)

    def _start_history(mask0, p4, pid):
        """History buffers: the primaries in entries 0 … C−1, each slot pointing at its own entry."""
        n, c = pid.shape
        h_p4 = jnp.zeros((n, n_hist, 4), p4.dtype).at[:, :c].set(p4)
        h_pid = jnp.zeros((n, n_hist), jnp.int32).at[:, :c].set(pid)
        h_par = jnp.full((n, n_hist), FROM_STRINGS, jnp.int32)
        hid = jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32), (n, c))
        return hid, h_p4, h_pid, h_par, jnp.zeros((n, n_hist), bool), jnp.sum(mask0, axis=1, dtype=jnp.int32)

    def _finish_record(hist, partons):
        """The :class:`Record`: status 2 for decayed entries, 1 for the rest; after the entries earlier
        record stages put there (hard process, partons; mothers' indices shifted past them)."""
        _, h_p4, h_pid, h_par, h_dec, h_cnt = hist
        used = (jnp.arange(n_hist)[None, :] < h_cnt[:, None]) & (h_pid != 0)
        h_status = jnp.where(used, jnp.where(h_dec, RECORD_DECAYED, RECORD_FINAL), 0).astype(jnp.int32)
        h_par = jnp.where(used, h_par, FROM_STRINGS)
        if partons is None:
            return Record(p4=h_p4, pid=h_pid, status=h_status, parent=h_par)
        h_par = jnp.where(h_par >= 0, h_par + partons.capacity, h_par)
        return Record(p4=jnp.concatenate([partons.p4.astype(h_p4.dtype), h_p4], axis=1),
                      pid=jnp.concatenate([partons.pid, h_pid], axis=1),
                      status=jnp.concatenate([partons.status, h_status], axis=1),
                      parent=jnp.concatenate([partons.parent, h_par], axis=1))

    return Stage(init=init, apply=apply)


def record_hard_process() -> Stage:
    """Stage that starts the full event record (:class:`~diffgen.events.Record`) with the hard process: the
    s-channel γ*/Z (PDG 23 as Pythia writes it, status 22, from the beams; its momentum is the sum of the
    outgoing particles) and the outgoing partons (status 23, daughters of the γ*/Z). Put it right after the
    hard process (``presets.ee_hadrons(record=True)`` does); :func:`record_partons` then appends the partons
    after the shower. The events themselves pass through unchanged.

    Shapes: a record of ``1 + P`` entries for events of ``P`` slots; empty slots give empty entries, and an
    event with no occupied slot has no γ*/Z either.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from diffgen.events import Events
        >>> ev = Events.empty(1, 2).replace(p4=jnp.array([[[45.0, 0, 0, 45.0], [45.0, 0, 0, -45.0]]]),
        ...                                 pid=jnp.array([[1, -1]]), mask=jnp.ones((1, 2), bool))
        >>> rec = record_hard_process().apply({}, jax.random.key(0), ev).record
        >>> rec.pid.tolist(), rec.status.tolist(), rec.parent.tolist(), rec.p4[0, 0].tolist()
        ([[23, 1, -1]], [[22, 23, 23]], [[-1, 0, 0]], [90.0, 0.0, 0.0, 0.0])
    """
    def apply(params, key, events: Events) -> Events:
        mask = events.mask
        p4 = jnp.where(mask[..., None], events.p4, 0.0)
        any_out = jnp.any(mask, axis=1)
        n = mask.shape[0]
        rec = Record(
            p4=jnp.concatenate([jnp.sum(p4, axis=1, keepdims=True), p4], axis=1),
            pid=jnp.concatenate([jnp.where(any_out, 23, 0)[:, None], jnp.where(mask, events.pid, 0)],
                                axis=1).astype(jnp.int32),
            status=jnp.concatenate([jnp.where(any_out, RECORD_HARD_RESONANCE, 0)[:, None],
                                    jnp.where(mask, RECORD_HARD_PARTON, 0)], axis=1).astype(jnp.int32),
            parent=jnp.concatenate([jnp.full((n, 1), FROM_BEAMS, jnp.int32), jnp.zeros(mask.shape, jnp.int32)],
                                   axis=1))
        return events.replace(record=rec)

    return Stage(init=lambda key: {}, apply=apply)


def record_partons() -> Stage:
    """Stage that puts the event's partons in the full event record (:class:`~diffgen.events.Record`), status
    71; put it just before hadronization and build the decays stage with ``record=True``, which appends the
    hadrons (``presets.ee_hadrons(record=True)`` does both). After :func:`record_hard_process` the partons are
    appended to its record and come from the shower vertex (parent :data:`~diffgen.events.FROM_SHOWER`, whose
    incoming particles are the hard partons); without it they start the record, from the beams. The events
    themselves pass through unchanged."""
    def apply(params, key, events: Events) -> Events:
        pid = jnp.where(events.mask, events.pid, 0)
        hard = events.record
        rec = Record(p4=jnp.where(events.mask[..., None], events.p4, 0.0), pid=pid,
                     status=jnp.where(events.mask, RECORD_PARTON, 0).astype(jnp.int32),
                     parent=jnp.full(pid.shape, FROM_BEAMS if hard is None else FROM_SHOWER, jnp.int32))
        if hard is not None:
            rec = Record(p4=jnp.concatenate([hard.p4.astype(rec.p4.dtype), rec.p4], axis=1),
                         pid=jnp.concatenate([hard.pid, rec.pid], axis=1),
                         status=jnp.concatenate([hard.status, rec.status], axis=1),
                         parent=jnp.concatenate([hard.parent, rec.parent], axis=1))
        return events.replace(record=rec)

    return Stage(init=lambda key: {}, apply=apply)


# The tables are static data: fail at import if a channel is closed or a daughter unknown.
for _pid, _chans in DECAYS.items():
    for _br, _ds in _chans:
        if len(_ds) > 1 and sum(mass_of(d) for d in _ds) >= mass_of(_pid):
            raise ValueError(f"decay channel {_pid} -> {_ds} is kinematically closed")
