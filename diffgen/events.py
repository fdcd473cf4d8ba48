"""The :class:`Events` pytree: a fixed-shape batch of events.

Shapes (``N`` events, ``P`` particle slots, a static capacity per stage):

* ``p4``: f[N, P, 4] four-momenta (E, px, py, pz) in GeV; padded slots are zero.
* ``pid``: i32[N, P] PDG codes, 0 marks an empty slot.
* ``mask``: bool[N, P] True for occupied slots.
* ``colour``: i32[N, P, 2] colour and anticolour tags (0 = none), for partons.
* ``log_weight``: f[N] log of the event's Monte-Carlo weight. For a generator
  the weight carries the cross-section unit (pb), so that σ = E[w]. Score-function
  terms ``log p − stop_gradient(log p)`` are added here (value 0, gradient the score).
* ``status``: u32[N] bit flags (:class:`Status`); errors inside ``jit`` are data.
* ``p4_in``: f[N, 2, 4] and ``pid_in``: i32[N, 2] the incoming particles.
* ``truth``: ``Events | None`` (default None, no leaves): the particle-level events a detector stage
  reconstructed these from, slot for slot — reco slot j is the measurement of truth slot j
  (``mask[i, j]`` False where truth particle j was not detected). :meth:`Events.resize`,
  :meth:`Events.compact` and event selection keep the pairing.
* ``record``: ``Record | None`` (default None): the full event record when a generator is built with
  ``record=True`` — the hard process (γ*/Z and its partons), the partons after the shower, primary
  hadrons and every decay, with mother links and HepMC status codes (:class:`Record`). Observables
  never read it; ``p4``/``pid``/``mask`` stay the final state.

Every reduction over particles must use ``mask``. :func:`compact_slots` (and
:meth:`Events.compact` on it) moves occupied slots to the front of a fixed capacity.
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.schedule import prefix_sum

__all__ = ["Events", "Record", "Status", "status_names", "status_summary", "compact_slots"]

#: :attr:`Record.status` codes: HepMC's 1 (final) and 2 (decayed); for intermediates Pythia's own codes,
#: which its HepMC output keeps (HepMC3 leaves 11–200 to the generator): 22 for the hard process's
#: s-channel boson (γ*/Z), 23 for its outgoing partons, 71 for the partons collected into strings.
RECORD_FINAL, RECORD_DECAYED, RECORD_PARTON = 1, 2, 71
RECORD_HARD_RESONANCE, RECORD_HARD_PARTON = 22, 23
#: :attr:`Record.parent` for entries whose mothers are a whole group rather than one entry: the beams
#: (the γ*/Z, or the partons of a record without the hard process), the strings (primary hadrons; the
#: hadronization vertex's incoming particles are all the status-71 partons) and the shower (the
#: status-71 partons of a record with the hard process; the shower vertex's incoming particles are
#: all the status-23 partons).
FROM_BEAMS, FROM_STRINGS, FROM_SHOWER = -1, -2, -3


class Status(enum.IntFlag):
    """Bit flags in :attr:`Events.status`. Zero means a good event."""

    CAPACITY_OVERFLOW = 1  #: a stage needed more particle slots than its capacity
    FAILED_KINEMATICS = 2  #: a kinematic construction had no solution
    NONFINITE = 4  #: NaN or inf appeared in momenta or weight
    PARAM_OUT_OF_RANGE = 8  #: a (traced) parameter was outside its physical range
    BELOW_THRESHOLD = 16  #: √s below the production threshold


def status_names(bits: int) -> list[str]:
    """Names of the flags set in ``bits``."""
    return [f.name for f in Status if int(bits) & int(f)]


def status_summary(status) -> dict[str, int]:
    """Count events with each status flag set (host-side, for reporting)."""
    s = np.asarray(status).astype(np.uint32)
    return {f.name: int(np.count_nonzero(s & np.uint32(int(f)))) for f in Status}


def compact_slots(mask, fields, capacity: int):
    """Move the occupied slots of each event to the front, in order, into ``capacity`` slots.

    With c_i = Σ_j mask[i, j] occupied slots in event i, output slot k < min(c_i, capacity) holds
    the (k+1)-th occupied input slot (the order is kept); every other output slot is zero and
    unoccupied. Events with c_i > capacity keep their first ``capacity`` occupied slots and are
    flagged in ``overflow``. The move is a gather (``take_along_axis``), so gradients flow from each
    output slot back to the input slot it came from, and dropped or empty slots get zero gradient.

    Args:
        mask: bool[N, L] occupied input slots.
        fields: a pytree (tuple, list, dict, …) of arrays shaped [N, L, ...] (e.g. p4 f[N, L, 4],
            pid i32[N, L]).
        capacity: number of output slots (a static int ≥ 0; smaller or larger than L).

    Returns:
        ``(mask, fields, overflow)``: bool[N, capacity] (a prefix of True per event), the fields
        shaped [N, capacity, ...] with the structure of ``fields``, and bool[N] overflow flags.

    Example:
        >>> import jax.numpy as jnp
        >>> m = jnp.array([[False, True, False, True]])
        >>> out_mask, (pid,), over = compact_slots(m, (jnp.array([[0, 211, 0, -211]]),), 3)
        >>> out_mask.tolist(), pid.tolist(), over.tolist()
        ([[True, True, False]], [[211, -211, 0]], [False])
    """
    mask = jnp.asarray(mask, bool)
    n, slots = mask.shape
    cum = prefix_sum(mask, axis=1)  # [N, L]: occupied slots up to and including j
    count = cum[:, -1] if slots else jnp.zeros((n,), jnp.int32)
    rank = jnp.arange(1, capacity + 1, dtype=jnp.int32)  # output slot k holds the rank-(k+1) occupied slot
    keep = rank[None, :] <= count[:, None]  # [N, capacity]
    if slots:
        src = jnp.minimum(jax.vmap(lambda c: jnp.searchsorted(c, rank, side="left"))(cum), slots - 1)
    else:
        src = jnp.zeros((n, capacity), jnp.int32)

    def gather(f):
        f = jnp.asarray(f)
        extra = (1,) * (f.ndim - 2)
        if not slots:
            return jnp.zeros((n, capacity) + f.shape[2:], f.dtype)
        g = jnp.take_along_axis(f, src.reshape(src.shape + extra), axis=1)
        return jnp.where(keep.reshape(keep.shape + extra), g, jnp.zeros((), f.dtype))

    return keep, jax.tree_util.tree_map(gather, fields), count > capacity


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Record:
    """The full event record (``H`` entries per event, ordered so that a mother precedes its daughters).

    * ``p4``: f[N, H, 4]; ``pid``: i32[N, H] (0: empty entry);
    * ``status``: i32[N, H] — :data:`RECORD_HARD_RESONANCE` (22) for the hard process's γ*/Z,
      :data:`RECORD_HARD_PARTON` (23) for its outgoing q q̄, :data:`RECORD_PARTON` (71) for the partons
      after the shower, :data:`RECORD_DECAYED` (2) for a hadron or τ that decayed, :data:`RECORD_FINAL`
      (1) for a final-state particle, 0 for an empty entry;
    * ``parent``: i32[N, H] — the mother's entry for a hard parton (the γ*/Z) or a decay product,
      :data:`FROM_BEAMS` (−1) for the γ*/Z (or for the partons when the record has no hard process),
      :data:`FROM_SHOWER` (−3) for a parton after the shower, :data:`FROM_STRINGS` (−2) for a primary
      hadron.

    The status-1 entries are exactly the event's final-state particles (the same momenta); the γ*/Z is
    the sum of its partons, the daughters of a decayed entry add up to its four-momentum, and the
    partons after the shower add up to the hard partons (the shower's recoil is local to each dipole,
    so this holds to float32 rounding).
    """

    p4: jax.Array
    pid: jax.Array
    status: jax.Array
    parent: jax.Array

    @property
    def capacity(self) -> int:
        return self.pid.shape[1]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Events:
    """A batch of events with fixed shapes (see module docstring)."""

    p4: jax.Array
    pid: jax.Array
    mask: jax.Array
    colour: jax.Array
    log_weight: jax.Array
    status: jax.Array
    p4_in: jax.Array
    pid_in: jax.Array
    truth: Events | None = None  #: particle-level events paired slot by slot (see module docstring)
    record: Record | None = None  #: the full event record, when asked for (see module docstring)

    @staticmethod
    def empty(n: int, capacity: int = 0, dtype=None) -> Events:
        """``n`` events with ``capacity`` empty slots, weight 1 and status 0."""
        dtype = dtype or jnp.zeros(()).dtype
        return Events(
            p4=jnp.zeros((n, capacity, 4), dtype),
            pid=jnp.zeros((n, capacity), jnp.int32),
            mask=jnp.zeros((n, capacity), bool),
            colour=jnp.zeros((n, capacity, 2), jnp.int32),
            log_weight=jnp.zeros((n,), dtype),
            status=jnp.zeros((n,), jnp.uint32),
            p4_in=jnp.zeros((n, 2, 4), dtype),
            pid_in=jnp.zeros((n, 2), jnp.int32),
        )

    @property
    def n_events(self) -> int:
        return self.p4.shape[0]

    @property
    def capacity(self) -> int:
        return self.p4.shape[1]

    @property
    def weight(self) -> jax.Array:
        """exp(log_weight)."""
        return jnp.exp(self.log_weight)

    def replace(self, **changes) -> Events:
        return dataclasses.replace(self, **changes)

    def with_status(self, condition, flag: Status) -> Events:
        """Set ``flag`` on events where ``condition`` (bool[N] or scalar) holds."""
        cond = jnp.broadcast_to(condition, self.status.shape)
        return self.replace(status=self.status | jnp.where(cond, jnp.uint32(int(flag)), jnp.uint32(0)))

    def add_log_weight(self, delta) -> Events:
        return self.replace(log_weight=self.log_weight + delta)

    def resize(self, capacity: int) -> Events:
        """Pad (or, if all dropped slots are empty, cut) the particle axis to ``capacity``.

        Cutting occupied slots sets :attr:`Status.CAPACITY_OVERFLOW` on those events. A paired
        ``truth`` record is resized with it (the slot pairing is kept; a cut that loses an occupied
        truth slot also flags the event).
        """
        p = self.capacity
        if capacity == p:
            return self
        truth = None if self.truth is None else self.truth.resize(capacity)
        if capacity > p:
            pad = capacity - p
            return self.replace(
                p4=jnp.pad(self.p4, ((0, 0), (0, pad), (0, 0))),
                pid=jnp.pad(self.pid, ((0, 0), (0, pad))),
                mask=jnp.pad(self.mask, ((0, 0), (0, pad))),
                colour=jnp.pad(self.colour, ((0, 0), (0, pad), (0, 0))),
                truth=truth,
            )
        lost = jnp.any(self.mask[:, capacity:], axis=1)
        if truth is not None:
            lost = lost | jnp.any(self.truth.mask[:, capacity:], axis=1)
        out = self.replace(
            p4=self.p4[:, :capacity], pid=self.pid[:, :capacity],
            mask=self.mask[:, :capacity], colour=self.colour[:, :capacity], truth=truth,
        )
        return out.with_status(lost, Status.CAPACITY_OVERFLOW)

    def compact(self, capacity: int | None = None) -> Events:
        """Occupied slots to the front, in order, in ``capacity`` slots (default: the current capacity).

        Built on :func:`compact_slots` (gather-based: gradients flow to the kept momenta); events
        with more occupied slots than ``capacity`` keep the first ones and get
        :attr:`Status.CAPACITY_OVERFLOW`. With a paired ``truth`` record, a slot is kept if its reco
        *or* its truth particle is occupied, and both move together: the pairing survives and no
        undetected truth particle is lost.
        """
        capacity = self.capacity if capacity is None else check_int(capacity, "capacity", lo=0)
        if self.truth is None:
            mask, (p4, pid, colour), overflow = compact_slots(self.mask, (self.p4, self.pid, self.colour), capacity)
            out = self.replace(p4=p4, pid=pid, mask=mask, colour=colour)
            return out.with_status(overflow, Status.CAPACITY_OVERFLOW)
        t = self.truth
        keep = self.mask | t.mask
        _, (p4, pid, mask, colour, t_p4, t_pid, t_mask, t_colour), overflow = compact_slots(
            keep, (self.p4, self.pid, self.mask, self.colour, t.p4, t.pid, t.mask, t.colour), capacity)
        truth = t.replace(p4=t_p4, pid=t_pid, mask=t_mask, colour=t_colour).with_status(
            overflow, Status.CAPACITY_OVERFLOW)
        out = self.replace(p4=p4, pid=pid, mask=mask, colour=colour, truth=truth)
        return out.with_status(overflow, Status.CAPACITY_OVERFLOW)

    def total_p4(self) -> jax.Array:
        """Σ p over occupied slots, f[N, 4]."""
        return jnp.sum(jnp.where(self.mask[..., None], self.p4, 0.0), axis=1)

    def __getitem__(self, idx) -> Events:
        """Select events (rows) with a NumPy-style index."""
        return jax.tree_util.tree_map(lambda a: a[idx], self)

    @staticmethod
    def concatenate(parts) -> Events:
        """Join batches along the event axis. Host (NumPy) batches stay NumPy with their dtypes (float64
        is kept even without ``jax_enable_x64``); otherwise the result is a jax array."""
        parts = list(parts)
        if not parts:
            raise ValueError("Events.concatenate needs at least one batch")

        def cat(*a):
            if all(isinstance(x, np.ndarray) for x in a):
                return np.concatenate(a, axis=0)
            return jnp.concatenate(a, axis=0)

        return jax.tree_util.tree_map(cat, *parts)
