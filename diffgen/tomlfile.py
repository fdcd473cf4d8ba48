"""Reading and checking TOML job files (``diffgen tune``, ``diffgen unfold``): one wording for every problem.

A job file is validated completely before anything runs, and all its problems are reported at once:
:class:`Problems` collects the ``ValueError`` of each independent part, and :meth:`Problems.raise_if_any`
raises one ``ValueError`` listing them (one line each). The helpers name the offending key.

Example:
    >>> probs = Problems("unfold file 'u.toml'")
    >>> probs.attempt(check_keys, {"sim": 1, "dat": 2}, {"sim", "data"}, "[inputs]")
    >>> probs.attempt(positive_float, -1, "omnifold.clip")
    >>> try:
    ...     probs.raise_if_any()
    ... except ValueError as err:
    ...     print(err)
    unfold file 'u.toml' has 2 problems:
      - [inputs]: unknown key(s) 'dat'; allowed: data, sim
      - omnifold.clip must be a positive number, got -1
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

__all__ = ["ManyProblems", "Problems", "check_keys", "positive_float", "resolve_file", "check_output_dir",
           "read_toml"]


class ManyProblems(ValueError):
    """A ``ValueError`` for several problems at once (``messages``, one line each)."""

    def __init__(self, messages, where: str = ""):
        self.messages = list(messages)
        where = where or "this part of the file"
        super().__init__(f"{where} has {len(self.messages)} problems:\n  - " + "\n  - ".join(self.messages))


class Problems:
    """Collects the ``ValueError``\\ s of the independent parts of a file, to report them together.

    ``where`` names the file in the message of several problems (e.g. ``"tune file 't.toml'"``).
    """

    def __init__(self, where: str = ""):
        self.where = where
        self.messages: list[str] = []

    def attempt(self, fn, *args):
        """``fn(*args)``, or None after recording its ``ValueError`` (each of a :class:`ManyProblems`)."""
        try:
            return fn(*args)
        except ManyProblems as err:
            self.messages.extend(err.messages)
        except ValueError as err:
            self.messages.append(str(err))
        return None

    def raise_if_any(self, where: str = "") -> None:
        """One problem: its own ``ValueError``; several: a :class:`ManyProblems` listing them."""
        if len(self.messages) == 1:
            raise ValueError(self.messages[0])
        if self.messages:
            raise ManyProblems(self.messages, where or self.where)


def check_keys(table, allowed, where: str) -> None:
    """``table`` is a mapping whose keys are all in ``allowed``."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")


def positive_float(value, where: str, allow_zero: bool = False) -> float:
    """``float(value)`` for a finite positive (or, with ``allow_zero``, non-negative) number, not a bool."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{where} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def resolve_file(base: str, rel: str, where: str) -> str:
    """The path of an existing file named ``rel`` (relative to the directory ``base`` unless absolute)."""
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{where} must be a file path, got {rel!r}")
    path = rel if os.path.isabs(rel) else os.path.join(base, rel)
    if not os.path.isfile(path):
        raise ValueError(f"{where}: file {path!r} does not exist")
    return path


def check_output_dir(out_dir: str, what: str) -> None:
    """``out_dir`` is a directory, or can be made (missing levels included) in a writable one."""
    from diffgen.io.atomic import check_writable

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{what}: {out_dir!r} exists and is not a directory")
    existing = os.path.abspath(out_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what}: cannot create {out_dir!r}: {existing!r} is not a directory")
    try:
        check_writable(os.path.join(existing, "report.md"))
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def read_toml(path: str, top: set, what: str = "file") -> dict:
    """The parsed TOML document at ``path`` (a ``what`` such as ``"tune file"``), top-level keys in ``top``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the 'tomli' package
        import tomli as tomllib

    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{what} {path!r} is not valid TOML: {err}") from None
    check_keys(doc, top, f"{what} {path!r}")
    return doc
