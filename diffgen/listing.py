"""Text a Pythia user expects: the end-of-run statistics table (``stat()``) and event listings (``event.list()``).

:func:`statistics_table` summarises a run: events generated, accepted (status 0) and flagged (zero
weight), the flags by name, and σ ± its error — the same estimator as :func:`diffgen.cross_section`
(σ̂ = Σw/N over *all* N events, flagged ones contributing 0, error std(w)/√N). Pythia retries an
event whose kinematics fail; diffgen's events have fixed shapes, so a flagged event is kept with
weight 0 instead, and the table states the resulting bias: if the flagged events are a random
subset of the physical ones, σ̂ is low by σ̂·f/(1 − f) for a flagged share f.

:func:`event_listing` prints one event as ``event.list()`` does: index, PDG code, name, colour tags,
momentum components, energy and mass.

Example:
    >>> print(statistics_table(n=1000, flags={"FAILED_KINEMATICS": 2}, n_flagged=2, sigma_pb=1480.0,
    ...                        error_pb=2.5, title="ee-mumu at sqrt(s) = 91.188 GeV").splitlines()[3])
     |  events accepted (status 0)                998               |
"""

from __future__ import annotations

import numpy as np

from diffgen.particles import name as particle_name

__all__ = ["statistics_table", "event_listing"]

_WIDTH = 64


def _row(text: str) -> str:
    return f" | {text:<{_WIDTH - 4}s} |"


def statistics_table(*, n: int, flags: dict, n_flagged: int, sigma_pb: float, error_pb: float, title: str = "") -> str:
    """The end-of-run table (see the module docstring); ``flags``: events per flag name (0s are left out)."""
    bar = " *" + "-" * (_WIDTH - 2) + "*"
    head = "  diffgen Event and Cross Section Statistics  "
    lines = [" *-------" + head + "-" * (_WIDTH - 9 - len(head)) + "*"]
    if title:
        lines.append(_row(title))
    lines.append(_row(f" events generated {n:>28d}"))
    lines.append(_row(f" events accepted (status 0) {n - n_flagged:>18d}"))
    lines.append(_row(f" events flagged (weight 0) {n_flagged:>19d}"))
    for flag, count in flags.items():
        if count:
            lines.append(_row(f"   {flag:<24s}{count:>19d}"))
    lines.append(_row(f" sigma = {sigma_pb:.6g} +- {error_pb:.3g} pb"))
    if n_flagged:
        f = n_flagged / n
        bias = sigma_pb * f / (1.0 - f) if f < 1 else float("inf")
        lines.append(_row(f" flagged share {f:.3%}: sigma counts them as 0; if they"))
        lines.append(_row(f" are physical, sigma is low by ~{bias:.3g} pb ({f / (1 - f) if f < 1 else np.inf:.2%})"))
    lines.append(bar)
    return "\n".join(lines)


def event_listing(events, i: int, index: int | None = None) -> str:
    """Event ``i`` of ``events`` (host or device arrays) as a text table, like Pythia's ``event.list()``.

    ``index`` is the number printed as the event's (default ``i``). Rows: the two incoming particles
    (``in``) and the occupied outgoing slots; momenta, energies and masses in GeV.

    Example:
        >>> from diffgen.events import Events
        >>> print(event_listing(Events.empty(1, 1), 0).splitlines()[0])
         --------  diffgen Event Listing  (event 0)  weight 1 pb  status 0  --------
    """
    p4 = np.asarray(events.p4[i], np.float64)
    pid, mask = np.asarray(events.pid[i]), np.asarray(events.mask[i], bool)
    colour = np.asarray(events.colour[i])
    p4_in, pid_in = np.asarray(events.p4_in[i], np.float64), np.asarray(events.pid_in[i])
    weight = float(np.exp(np.float64(np.asarray(events.log_weight[i]))))
    status = int(np.asarray(events.status[i]))
    lines = [f" --------  diffgen Event Listing  (event {i if index is None else index})  weight {weight:.6g} pb  "
             f"status {status}  --------",
             "    no        id  name        col  acol          px          py          pz           e           m"]

    def row(no, code, c, a, p):
        m2 = p[0] ** 2 - p[1] ** 2 - p[2] ** 2 - p[3] ** 2
        m = np.sign(m2) * np.sqrt(abs(m2))
        return (f"{no:>6} {int(code):>9d}  {particle_name(int(code)) if code else '':<10s} {int(c):>4d} {int(a):>4d}"
                f" {p[1]:11.4f} {p[2]:11.4f} {p[3]:11.4f} {p[0]:11.4f} {m:11.4f}")

    for k in range(2):
        lines.append(row("in", pid_in[k], 0, 0, p4_in[k]))
    total = np.zeros(4)
    for k, slot in enumerate(np.flatnonzero(mask)):
        lines.append(row(k, pid[slot], colour[slot, 0], colour[slot, 1], p4[slot]))
        total += p4[slot]
    lines.append(f"{'sum':>6} {'':>9s}  {'':<10s} {'':>4s} {'':>4s} {total[1]:11.4f} {total[2]:11.4f} "
                 f"{total[3]:11.4f} {total[0]:11.4f}")
    return "\n".join(lines)
