"""NumPy ``.npz`` event files: the exact, lossless format.

Layout (a compressed ``.npz`` zip archive, readable with ``np.load`` alone):

=================  ==============  ===================================================
key                shape / dtype   meaning
=================  ==============  ===================================================
``p4``             f[N, P, 4]      four-momenta (E, px, py, pz), GeV; padded slots 0
``pid``            i[N, P]         PDG codes, 0 = empty slot
``mask``           bool[N, P]      occupied slots
``colour``         i[N, P, 2]      colour, anticolour tags (0 = none)
``log_weight``     f[N]            log of the event weight (weight in pb)
``status``         u32[N]          :class:`diffgen.events.Status` bit flags
``p4_in``          f[N, 2, 4]      incoming four-momenta, GeV
``pid_in``         i[N, 2]         incoming PDG codes
``metadata``       0-d str         JSON object of the user's metadata
``format``         0-d str         ``"diffgen.events/1"``
``truth_<field>``  as ``<field>``  optional: the paired particle-level record
                                   (:attr:`Events.truth`, e.g. after a detector stage),
                                   the eight fields above with the prefix ``truth_``
=================  ==============  ===================================================

Arrays are stored with the dtypes they had (float32 stays float32), so a round
trip is bit-exact. Metadata values must be JSON-serialisable: ``None``, bool,
int, float, str, or lists/dicts of those (NumPy scalars are converted; tuples
come back as lists).

Example:
    >>> import os, tempfile
    >>> from diffgen.events import Events
    >>> p = os.path.join(tempfile.mkdtemp(), "ev.npz")
    >>> write_npz(p, Events.empty(3, 2), sqrt_s=91.188, process="ee>mumu")
    >>> events, meta = read_npz(p)
    >>> events.p4.shape, meta["sqrt_s"]
    ((3, 2, 4), 91.188)
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from diffgen.events import Events
from diffgen.io.atomic import atomic_write

__all__ = ["write_npz", "read_npz", "FORMAT"]

FORMAT = "diffgen.events/1"
FIELDS = ("p4", "pid", "mask", "colour", "log_weight", "status", "p4_in", "pid_in")


def _expected_shapes(n: int, p: int) -> dict[str, tuple[int, ...]]:
    return {
        "p4": (n, p, 4), "pid": (n, p), "mask": (n, p), "colour": (n, p, 2),
        "log_weight": (n,), "status": (n,), "p4_in": (n, 2, 4), "pid_in": (n, 2),
    }


def check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise ``ValueError`` (naming ``where`` and the field) unless the Events arrays are consistent."""
    for name in FIELDS:
        if name not in arrays:
            raise ValueError(f"{where}: missing field {name!r}")
    if arrays["p4"].ndim != 3:
        raise ValueError(f"{where}: field 'p4' must have shape (N, P, 4), got {arrays['p4'].shape}")
    n, p = arrays["p4"].shape[:2]
    for name, shape in _expected_shapes(n, p).items():
        if arrays[name].shape != shape:
            raise ValueError(f"{where}: field {name!r} has shape {arrays[name].shape}, expected {shape}")
    kinds = {"p4": "f", "log_weight": "f", "p4_in": "f", "pid": "iu", "colour": "iu", "pid_in": "iu",
             "status": "iu", "mask": "b"}
    for name, allowed in kinds.items():
        if arrays[name].dtype.kind not in allowed:
            raise ValueError(f"{where}: field {name!r} has dtype {arrays[name].dtype}, expected kind {allowed!r}")


def host_arrays(events: Events, where: str = "events") -> dict[str, np.ndarray]:
    """The Events fields as host NumPy arrays (accepts jax or NumPy leaves), checked for consistency."""
    if not isinstance(events, Events):
        raise ValueError(f"{where}: expected diffgen.events.Events, got {type(events).__name__}")
    arrays = {name: np.asarray(getattr(events, name)) for name in FIELDS}
    check_arrays(arrays, where)
    return arrays


def _plain(value: Any, key: str) -> Any:
    """``value`` as plain JSON types; ``ValueError`` naming ``key`` otherwise."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, key) for k, v in value.items()}
    raise ValueError(f"metadata {key!r}: {type(value).__name__} is not JSON-serialisable "
                     "(use None, bool, int, float, str, or lists/dicts of them)")


def encode_metadata(metadata: dict[str, Any]) -> str:
    """Metadata as a JSON string (values checked, NumPy scalars converted)."""
    return json.dumps({k: _plain(v, k) for k, v in metadata.items()}, sort_keys=True)


def decode_metadata(text: str, where: str) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; ``ValueError`` naming ``where`` if it is not a JSON object."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{where}: metadata is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{where}: metadata is not a JSON object")
    return value


def truth_arrays(events: Events, where: str = "events") -> dict[str, np.ndarray]:
    """The paired truth record's fields as ``{"truth_<field>": array}`` (empty if ``events.truth`` is None)."""
    if events.truth is None:
        return {}
    t = host_arrays(events.truth, f"{where} (truth)")
    if t["p4"].shape[:2] != np.shape(events.p4)[:2]:
        raise ValueError(f"{where}: the truth record has shape {t['p4'].shape[:2]}, the events "
                         f"{np.shape(events.p4)[:2]}; they must pair slot by slot")
    return {f"truth_{k}": v for k, v in t.items()}


def events_from_arrays(arrays: dict[str, np.ndarray], where: str = "events") -> Events:
    """Events from its field arrays; ``truth_<field>`` arrays, if present, become :attr:`Events.truth`."""
    truth = None
    if "truth_p4" in arrays:
        t = {name: arrays.get(f"truth_{name}") for name in FIELDS}
        missing = [k for k, v in t.items() if v is None]
        if missing:
            raise ValueError(f"{where}: truth record lacks field(s) {', '.join('truth_' + k for k in missing)}")
        check_arrays(t, f"{where} (truth)")
        truth = Events(**t)
    return Events(**{name: arrays[name] for name in FIELDS}, truth=truth)


def write_npz(path: str | os.PathLike, events: Events, **metadata: Any) -> None:
    """Write ``events`` and ``metadata`` to a compressed ``.npz`` file, atomically.

    Args:
        path: destination (any suffix is accepted; ``.npz`` is conventional).
        events: :class:`~diffgen.events.Events` with jax or NumPy leaves.
        **metadata: JSON-serialisable values stored beside the arrays (e.g. ``sqrt_s=91.188``).

    Raises:
        ValueError: inconsistent Events shapes, non-serialisable metadata, or an unwritable path.
    """
    arrays = host_arrays(events)
    arrays.update(truth_arrays(events))
    meta = encode_metadata(metadata)
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays, metadata=np.array(meta), format=np.array(FORMAT))


def read_npz(path: str | os.PathLike) -> tuple[Events, dict[str, Any]]:
    """Read an ``.npz`` event file written by :func:`write_npz`.

    Returns:
        ``(events, metadata)``: Events with host NumPy leaves in their stored dtypes, and the metadata dict.

    Raises:
        ValueError: the file is not an ``.npz`` archive, lacks a field, or has inconsistent shapes
            (the message names the file and the field).
        FileNotFoundError: ``path`` does not exist.
    """
    name = os.fspath(path)
    where = f"event file {name!r}"
    try:
        data = np.load(name, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ValueError(f"{where}: not a readable .npz archive ({err})") from err
    check_arrays(arrays, where)
    if "metadata" not in arrays:
        raise ValueError(f"{where}: missing field 'metadata'")
    metadata = decode_metadata(str(arrays["metadata"]), where)
    return events_from_arrays(arrays, where), metadata
