"""Pythia-style ``.cmnd`` settings files: :func:`read_settings`, :func:`write_settings`.

A ``.cmnd`` file holds one ``Group:name = value`` per line, as Pythia's ``readFile`` reads it::

    ! ee-hadrons at the Z pole, hadron decays off
    Beams:eCM = 91.188
    StringZ:aLund = 0.7          ! Lund a
    HadronLevel:Decay = off

Names are matched without regard to case; ``!`` and ``#`` start comments; a later line overrides
an earlier one; switches (:data:`diffgen.params.SWITCHES`) take ``on``/``off`` (or ``true``/``false``,
``yes``/``no``, ``1``/``0``). Pythia settings that diffgen does not have (``Main:numberOfEvents``,
``Beams:idA``, ``Tune:ee``, …) raise one ``ValueError`` naming all of them, or, with
``ignore_unknown=True``, are skipped with a ``UserWarning`` that names them — never silently.

Pythia's ``settings.writeFile`` is ``write_settings(path, params)``: given a params tree (as
:func:`diffgen.presets.configure` or ``gen.default_params()`` return it), every setting is written,
``Beams:eCM`` included, and then the switches that the tree's stages imply
(:func:`diffgen.params.stage_switches`), so that reading the file back builds the same stages.
A flat ``{name: value}`` mapping (``diffgen.settings(params)``) is written as given, without switches.

Use the result with :func:`diffgen.presets.configure` (switches and ``Beams:eCM`` build the
generator), :func:`diffgen.with_settings`, or ``diffgen generate --settings run.cmnd``.

Example:
    >>> import os, tempfile, diffgen
    >>> p = os.path.join(tempfile.mkdtemp(), "run.cmnd")
    >>> write_settings(p, {"StringZ:aLund": 0.7, "HadronLevel:Decay": False}, header="a test")
    >>> print(open(p).read(), end="")
    ! a test
    StringZ:aLund = 0.7
    HadronLevel:Decay = off
    >>> read_settings(p)
    {'StringZ:aLund': 0.7, 'HadronLevel:Decay': False}
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from diffgen.io.atomic import atomic_write
from diffgen.params import SETTINGS, SWITCHES, parse_settings, parse_switch, settings_and_switches

__all__ = ["read_settings", "write_settings", "format_settings", "plain_value"]


def read_settings(path: str | os.PathLike, *, ignore_unknown: bool = False) -> dict[str, Any]:
    """Settings of a ``.cmnd`` file: ``{name: float}`` for parameters, ``{name: bool}`` for switches.

    Raises:
        ValueError: the file does not exist or is unreadable, a malformed line (the message names the
            file and line), a value that is not a number (or not on/off for a switch), or unknown
            names (all listed; ``ignore_unknown=True`` skips them with a ``UserWarning``).
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"settings file {name!r} does not exist")
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"settings file {name!r} is not readable text ({err})") from None
    where = f"settings file {name!r}"
    if ignore_unknown:
        known = parse_settings(text, ignore_unknown=True, where=where)
        try:
            parse_settings(text, where=where)
        except ValueError as err:
            warnings.warn(f"{err} — skipped (ignore_unknown)", UserWarning, stacklevel=2)
        return known
    return parse_settings(text, where=where)


def _value_text(name: str, value) -> str:
    if name in SWITCHES:
        return "on" if parse_switch(name, value) else "off"
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    # the shortest text that reads back to the same value in the value's own precision (float32: 91.3)
    text = np.format_float_positional(arr[()], unique=True, trim="-") if 1e-4 <= abs(float(arr)) < 1e16 \
        else np.format_float_scientific(arr[()], unique=True, trim="-")
    return "0" if float(arr) == 0 else text


def plain_value(value) -> float:
    """A setting's value as the Python float of its shortest text in its own precision (float32 2.6 -> 2.6).

    Example:
        >>> import numpy as np
        >>> float(np.float32(2.6)), plain_value(np.float32(2.6))
        (2.5999999046325684, 2.6)
    """
    return float(_value_text("", value))


def format_settings(settings: Mapping[str, Any], header: str | None = None) -> str:
    """The ``.cmnd`` text of ``settings``, with ``header`` as ``!`` comments.

    ``settings`` is a flat ``{name: value}`` mapping or a params tree; a tree is written as
    :func:`diffgen.params.settings_and_switches` gives it (every setting, then the switches).

    Each value is written as the shortest decimal that reads back to the same number in the value's
    own precision (a float32 setting 91.3 is written ``91.3``, not ``91.30000305175781``).

    Example:
        >>> print(format_settings({"Beams:eCM": 91.188, "PartonLevel:FSR": True}), end="")
        Beams:eCM = 91.188
        PartonLevel:FSR = on
    """
    lines = [f"! {line}".rstrip() for line in (header or "").splitlines()]
    for name, value in settings_and_switches(settings).items():
        if name not in SETTINGS and name not in SWITCHES:
            raise ValueError(f"format_settings: unknown setting name {name!r}")
        lines.append(f"{name} = {_value_text(name, value)}")
    return "".join(line + "\n" for line in lines)


def write_settings(path: str | os.PathLike, settings: Mapping[str, Any], header: str | None = None) -> None:
    """Write ``settings`` (concrete values; a flat mapping or a params tree) as a ``.cmnd`` file, atomically.

    :func:`read_settings` reads it back to the same values (in the values' own precision). Given a
    params tree, the file also holds the switches of its stages, like Pythia's ``writeFile``:
    ``presets.configure(process, read_settings(path))`` rebuilds the same stages and settings.

    Example:
        >>> import os, tempfile, diffgen
        >>> _, params = diffgen.presets.configure("ee-hadrons", "HadronLevel:Decay = off")
        >>> p = os.path.join(tempfile.mkdtemp(), "out.cmnd")
        >>> write_settings(p, params)
        >>> read_settings(p)["HadronLevel:Decay"], read_settings(p)["Beams:eCM"]
        (False, 91.188)
    """
    text = format_settings(settings, header)
    with atomic_write(path, "w") as f:
        f.write(text)
