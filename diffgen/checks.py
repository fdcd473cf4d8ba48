"""Host-side argument checks shared by every public entry point (one place, one wording).

Each check returns the normalised value or raises ``ValueError`` naming the argument, the value
and the allowed range. They run on concrete Python/NumPy values before anything is traced.

Example:
    >>> from diffgen.checks import check_int
    >>> check_int(8, "capacity", lo=3)
    8
    >>> check_int(True, "capacity")
    Traceback (most recent call last):
    ...
    ValueError: capacity must be an integer >= 1, got True
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_int", "check_optional_int", "check_bool"]


def _range_text(lo, hi) -> str:
    return f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"


def check_int(value, name: str, lo: int = 1, hi: int | None = None, what: str = "") -> int:
    """``int(value)`` if it is an integer (not a bool) in ``[lo, hi]``; ``ValueError`` otherwise.

    ``what`` is an optional explanation appended in parentheses (e.g. "slots for q, qbar and emissions").
    """
    note = f" ({what})" if what else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be {_range_text(lo, hi)}{note}, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {_range_text(lo, hi)}{note}, got {v}")
    return v


def check_optional_int(value, name: str, lo: int = 1, hi: int | None = None, what: str = "") -> int | None:
    """Like :func:`check_int` but ``None`` passes through."""
    if value is None:
        return None
    try:
        return check_int(value, name, lo, hi, what)
    except ValueError as err:
        raise ValueError(str(err).replace(" must be ", " must be None or ", 1)) from None


def check_bool(value, name: str) -> bool:
    """``bool(value)`` if it is a Python or NumPy bool; ``ValueError`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)
