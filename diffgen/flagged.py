"""No silent bias from flagged events: :func:`check_flagged`.

An event whose ``status`` is not 0 (capacity overflow, failed kinematics, non-finite values, a
parameter out of range, below threshold; see :class:`diffgen.events.Status`) gets weight 0 in every
expectation, cross section and histogram. A few such events (≲ 0.1 % at the defaults) change
nothing; many bias the results, because the flagged events are not a random subset (e.g. events
with many emissions overflow first). So :func:`diffgen.expect`, :func:`diffgen.cross_section`,
:func:`diffgen.linearize` (through them), :func:`diffgen.fit.fit`,
:func:`diffgen.fit.variations.linearized_histograms` and :func:`diffgen.distributed.expect_and_grad`
call :func:`check_flagged` (or, for sums reduced inside ``jit``, :func:`check_flag_counts` on
:func:`flag_counts`), which acts when the share of flagged events exceeds ``max_flagged`` (default 1 %):

* ``on_flagged="warn"`` (default): a :class:`FlaggedEventsWarning` naming the share and each flag;
* ``on_flagged="raise"``: a :class:`FlaggedEventsError` (a ``ValueError``) with the same message;
* ``on_flagged="ignore"``: nothing.

With concrete events the check runs at once. Inside ``jit``/``grad``/``linearize`` the status is
traced, so the check runs on the host through ``jax.debug.callback`` when the program runs; a
``"raise"`` there surfaces as JAX's runtime error, whose text contains the message.

:func:`diffgen.histogram` sees only values and weights, not the events' status, so it cannot
check; call :func:`check_flagged` on the events whose weights it bins. Not yet checked:
:func:`diffgen.fit.fit_linearized`.

Example:
    >>> import numpy as np
    >>> from diffgen.events import Events
    >>> ev = Events.empty(4, 1).with_status(np.array([True, False, False, False]), 2)
    >>> flagged_message(ev.status, max_flagged=0.01)[:80]
    '1 of 4 events (25.0%) are flagged and get zero weight, more than max_flagged = 0'
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_flagged(ev, where="expect")
    >>> caught[0].category.__name__, str(caught[0].message).startswith("expect: 1 of 4 events")
    ('FlaggedEventsWarning', True)
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.events import Status

__all__ = ["check_flagged", "check_flag_options", "flagged_message", "flag_counts", "check_flag_counts",
           "FlaggedEventsWarning", "FlaggedEventsError", "DEFAULT_MAX_FLAGGED", "FlagMonitor"]

DEFAULT_MAX_FLAGGED = 0.01  #: the share of flagged events above which :func:`check_flagged` acts
_ACTIONS = ("warn", "raise", "ignore")


class FlaggedEventsWarning(UserWarning):
    """More events than ``max_flagged`` carry status flags (and zero weight)."""


class FlaggedEventsError(ValueError):
    """More events than ``max_flagged`` carry status flags, with ``on_flagged="raise"``."""


def check_flag_options(max_flagged, on_flagged) -> tuple[float, str]:
    """Validated ``(max_flagged, on_flagged)``: a share in [0, 1] and one of ``warn``, ``raise``, ``ignore``."""
    if on_flagged not in _ACTIONS:
        raise ValueError(f"on_flagged must be one of {', '.join(_ACTIONS)}, got {on_flagged!r}")
    try:
        share = float(max_flagged)
    except (TypeError, ValueError):
        raise ValueError(f"max_flagged must be a share in [0, 1], got {max_flagged!r}") from None
    if not (math.isfinite(share) and 0.0 <= share <= 1.0) or isinstance(max_flagged, bool):
        raise ValueError(f"max_flagged must be a share in [0, 1], got {max_flagged!r}")
    return share, on_flagged


def flagged_message(status, max_flagged: float, where: str = "") -> str | None:
    """The warning text for host ``status`` (u32[N]), or None when at most ``max_flagged`` of the events are flagged."""
    s = np.asarray(status).astype(np.uint32).reshape(-1)
    per_flag = {f.name: int(np.count_nonzero(s & np.uint32(int(f)))) for f in Status}
    return _message(s.size, int(np.count_nonzero(s)), per_flag, max_flagged, where)


def flag_counts(status, valid=None):
    """Traceable i32[1 + len(Status)]: the number of flagged events (status ≠ 0), then the number with
    each :class:`~diffgen.events.Status` flag, over the events where ``valid`` (bool[N]) is True.

    For code that reduces events inside ``jit`` and checks on the host afterwards (the counts of
    disjoint blocks add up): :func:`check_flag_counts`.
    """
    s = jnp.asarray(status).astype(jnp.uint32)
    keep = jnp.ones(s.shape, bool) if valid is None else jnp.asarray(valid, bool)
    rows = [s != 0] + [(s & np.uint32(int(f))) != 0 for f in Status]
    return jnp.stack([jnp.sum(r & keep, dtype=jnp.int32) for r in rows])


def check_flag_counts(counts, n: int, max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn",
                      where: str = "") -> None:
    """:func:`check_flagged` for host :func:`flag_counts` (summed over blocks) of ``n`` events."""
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    if on_flagged == "ignore":
        return
    c = np.asarray(counts, np.int64).reshape(-1)
    msg = _message(int(n), int(c[0]), {f.name: int(k) for f, k in zip(Status, c[1:])}, max_flagged, where)
    _raise_or_warn(msg, on_flagged, stacklevel=3)  # the caller of our caller (e.g. of expect_and_grad)


def _message(n: int, bad: int, per_flag: dict, max_flagged: float, where: str) -> str | None:
    if n == 0 or bad / n <= max_flagged:
        return None
    counts = ", ".join(f"{name} {k}" for name, k in per_flag.items() if k)
    prefix = f"{where}: " if where else ""
    return (f"{prefix}{bad} of {n} events ({bad / n:.1%}) are flagged and get zero weight, more than "
            f"max_flagged = {max_flagged:.3g}: {counts}. Results are biased unless those events are "
            "unphysical; raise the stage capacities or move the settings back into the model's range "
            "(on_flagged='ignore' silences this).")


def _raise_or_warn(msg: str | None, on_flagged: str, stacklevel: int) -> None:
    if msg is None:
        return
    if on_flagged == "raise":
        raise FlaggedEventsError(msg)
    warnings.warn(msg, FlaggedEventsWarning, stacklevel=stacklevel + 1)


def _act(status, max_flagged: float, on_flagged: str, where: str) -> None:
    _raise_or_warn(flagged_message(status, max_flagged, where), on_flagged, stacklevel=4)


def check_flagged(events, max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn", where: str = "") -> None:
    """Warn (or raise) if more than ``max_flagged`` of ``events`` carry status flags (see the module docstring).

    Works on concrete events at once and on traced ones (inside ``jit``/``grad``) through
    ``jax.debug.callback``. ``where`` prefixes the message (e.g. ``"expect"``).
    """
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    if on_flagged == "ignore":
        return
    status = events.status
    if isinstance(status, jax.core.Tracer):
        jax.debug.callback(functools.partial(_act, max_flagged=max_flagged, on_flagged=on_flagged, where=where),
                           status)
    else:
        _act(status, max_flagged, on_flagged, where)


class FlagMonitor:
    """Records, through ``jax.debug.callback``, the largest share of flagged events seen over many
    evaluations of a traced program (e.g. the steps of a fit), and checks it once at the end.

    Made per run (e.g. by :func:`diffgen.fit.fit`), so no state outlives it.

    Example:
        >>> import numpy as np
        >>> m = FlagMonitor()
        >>> m.record(np.uint32([0, 0, 2, 0]))
        >>> m.record(np.uint32([0, 0, 0, 0]))
        >>> m.worst_share
        0.25
    """

    def __init__(self):
        self.worst_share = 0.0
        self.worst_status = None

    def record(self, status) -> None:
        s = np.asarray(status).astype(np.uint32).reshape(-1)
        share = float(np.count_nonzero(s)) / max(s.size, 1)
        if self.worst_status is None or share > self.worst_share:
            self.worst_share, self.worst_status = share, s

    def watch(self, events) -> None:
        """Record ``events.status`` (concrete now, traced when the program runs)."""
        if isinstance(events.status, jax.core.Tracer):
            jax.debug.callback(self.record, events.status)
        else:
            self.record(events.status)

    def check(self, max_flagged: float = DEFAULT_MAX_FLAGGED, on_flagged: str = "warn", where: str = "") -> None:
        """Warn or raise (see :func:`check_flagged`) for the worst evaluation recorded."""
        max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
        if on_flagged != "ignore" and self.worst_status is not None:
            _act(self.worst_status, max_flagged, on_flagged, where)
