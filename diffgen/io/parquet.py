"""Apache Parquet event files: one row per event, for pandas, Polars, awkward or Spark.

Schema (one row per event; list columns hold the *occupied* slots only, in slot order):

==============  ===================================  =============================================
column          type                                 meaning
==============  ===================================  =============================================
``px``          list<float>                          momentum x components, GeV
``py``          list<float>                          momentum y components, GeV
``pz``          list<float>                          momentum z components, GeV
``E``           list<float>                          energies, GeV
``pid``         list<int32>                          PDG codes
``colour``      list<int32>                          colour tags (0 = none)
``anticolour``  list<int32>                          anticolour tags (0 = none)
``weight``      float64                              exp(log_weight), pb (convenience column)
``log_weight``  float                                log of the event weight
``status``      uint32                               :class:`diffgen.events.Status` bit flags
``incoming``    list<struct<pid, E, px, py, pz>>     the two incoming particles, GeV
==============  ===================================  =============================================

Floats are stored in the Events' own dtype (float32 or float64), so values round
trip exactly. The user's metadata is JSON in the schema metadata under the key
``diffgen`` (with ``format`` = ``"diffgen.events/1"``).

:func:`read_parquet` re-pads the particle axis to the largest multiplicity in the
file, with occupied slots first: the original capacity and the positions of
holes in the mask are not kept (every masked reduction gives the same result).

Example:
    >>> import os, tempfile
    >>> from diffgen.events import Events
    >>> p = os.path.join(tempfile.mkdtemp(), "ev.parquet")
    >>> write_parquet(p, Events.empty(3, 5), sqrt_s=91.188)
    >>> events, meta = read_parquet(p)
    >>> events.p4.shape, meta["sqrt_s"]
    ((3, 0, 4), 91.188)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from diffgen.events import Events
from diffgen.io.atomic import atomic_write
from diffgen.io.npz import FORMAT, check_arrays, encode_metadata, events_from_arrays, host_arrays

__all__ = ["write_parquet", "read_parquet"]

_META_KEY = b"diffgen"
_LIST_COLUMNS = ("px", "py", "pz", "E", "pid", "colour", "anticolour")
_INCOMING = ("pid", "E", "px", "py", "pz")
_COLUMNS = _LIST_COLUMNS + ("weight", "log_weight", "status", "incoming")


def _list_array(values: np.ndarray, offsets: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))


def to_table(events: Events, **metadata: Any) -> pa.Table:
    """The Parquet table (schema above) for ``events``, with ``metadata`` in the schema metadata."""
    a = host_arrays(events)
    n = a["p4"].shape[0]
    mask = a["mask"].astype(bool)
    offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    p4 = a["p4"][mask]  # row-major: each event's occupied slots in order
    colour = a["colour"][mask].astype(np.int32)
    columns = {
        "px": _list_array(p4[:, 1], offsets), "py": _list_array(p4[:, 2], offsets),
        "pz": _list_array(p4[:, 3], offsets), "E": _list_array(p4[:, 0], offsets),
        "pid": _list_array(a["pid"][mask].astype(np.int32), offsets),
        "colour": _list_array(colour[:, 0], offsets), "anticolour": _list_array(colour[:, 1], offsets),
        "weight": pa.array(np.exp(a["log_weight"].astype(np.float64))),
        "log_weight": pa.array(a["log_weight"]),
        "status": pa.array(a["status"].astype(np.uint32)),
    }
    p4_in = a["p4_in"].reshape(2 * n, 4)
    structs = pa.StructArray.from_arrays(
        [pa.array(a["pid_in"].reshape(2 * n).astype(np.int32))] + [pa.array(p4_in[:, k]) for k in range(4)],
        names=list(_INCOMING))
    columns["incoming"] = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()), structs)
    info = {"format": FORMAT, "metadata": json.loads(encode_metadata(metadata))}
    return pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(info).encode()})


def write_parquet(path: str | os.PathLike, events: Events, **metadata: Any) -> None:
    """Write ``events`` to a Parquet file (schema in the module docstring), atomically.

    Args:
        path: destination (``.parquet`` is conventional).
        events: :class:`~diffgen.events.Events` with jax or NumPy leaves.
        **metadata: JSON-serialisable values, stored in the schema metadata.

    Raises:
        ValueError: inconsistent Events shapes, non-serialisable metadata, or an unwritable path.
    """
    table = to_table(events, **metadata)
    with atomic_write(path, "wb") as f:
        pq.write_table(table, f)


def _padded(column: pa.ChunkedArray, capacity: int, where: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column as a dense ``[N, capacity]`` array (zeros after each row's entries) and its lengths."""
    arr = column.combine_chunks()
    if arr.null_count:
        raise ValueError(f"{where}: column {name!r} has null rows")
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    n = len(arr)
    out = np.zeros((n, capacity), values.dtype)
    rows = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if n else np.zeros(0, np.int64)
    cols = np.arange(len(values)) - np.repeat(starts, lengths)
    out[rows, cols] = values
    return out, lengths


def read_parquet(path: str | os.PathLike) -> tuple[Events, dict[str, Any]]:
    """Read a Parquet event file written by :func:`write_parquet`.

    Returns:
        ``(events, metadata)``: Events with host NumPy leaves, the particle axis padded to the largest
        multiplicity in the file (occupied slots first), and the metadata dict.

    Raises:
        ValueError: not a Parquet file, a missing column, or inconsistent list lengths (the message
            names the file and the column).
        FileNotFoundError: ``path`` does not exist.
    """
    name = os.fspath(path)
    where = f"event file {name!r}"
    if not os.path.exists(name):
        raise FileNotFoundError(name)
    try:
        table = pq.read_table(name)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{where}: not a readable Parquet file ({err})") from err
    for column in _COLUMNS:
        if column not in table.column_names:
            raise ValueError(f"{where}: missing column {column!r}")
    try:
        raw = (table.schema.metadata or {})[_META_KEY]
        metadata = json.loads(raw)["metadata"]
        if not isinstance(metadata, dict):
            raise TypeError("not a JSON object")
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: missing or malformed 'diffgen' schema metadata ({err})") from err

    n = table.num_rows
    lengths = table.column("pid").combine_chunks().value_lengths().to_numpy(zero_copy_only=False)
    capacity = int(lengths.max()) if n else 0
    dense = {}
    for column in _LIST_COLUMNS:
        dense[column], col_lengths = _padded(table.column(column), capacity, where, column)
        if not np.array_equal(col_lengths, lengths):
            raise ValueError(f"{where}: column {column!r} has list lengths different from column 'pid'")

    incoming = table.column("incoming").combine_chunks()
    if incoming.null_count or not np.all(incoming.value_lengths().to_numpy(zero_copy_only=False) == 2):
        raise ValueError(f"{where}: column 'incoming' must hold exactly 2 particles per event")
    structs = incoming.flatten()
    try:
        inc = {k: structs.field(k).to_numpy(zero_copy_only=False) for k in _INCOMING}
    except KeyError as err:
        raise ValueError(f"{where}: column 'incoming' lacks field {err}") from err

    arrays = {
        "p4": np.stack([dense["E"], dense["px"], dense["py"], dense["pz"]], axis=-1),
        "pid": dense["pid"],
        "mask": np.arange(capacity)[None, :] < lengths[:, None],
        "colour": np.stack([dense["colour"], dense["anticolour"]], axis=-1),
        "log_weight": table.column("log_weight").to_numpy(),
        "status": table.column("status").to_numpy().astype(np.uint32),
        "p4_in": np.stack([inc["E"], inc["px"], inc["py"], inc["pz"]], axis=-1).reshape(n, 2, 4),
        "pid_in": inc["pid"].reshape(n, 2),
    }
    check_arrays(arrays, where)
    return events_from_arrays(arrays), metadata
