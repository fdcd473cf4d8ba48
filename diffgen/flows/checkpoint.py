"""Checkpoints of flow parameters and training states (flax serialization, msgpack bytes).

``save(path, tree)`` writes ``flax.serialization.to_bytes(tree)`` to a temporary file in the same folder
and renames it over ``path`` (atomic: a reader never sees half a file). ``load(path, template)`` restores
a tree of the template's structure (e.g. a fresh :func:`~diffgen.flows.init_train_state`) with the saved
leaves, bit for bit: float leaves round-trip exactly, so training continues identically.

Example:
    >>> import os, tempfile, jax, jax.numpy as jnp
    >>> from diffgen.flows import checkpoint
    >>> tree = {"w": jnp.arange(3.0) / 7}
    >>> path = os.path.join(tempfile.mkdtemp(), "flow.msgpack")
    >>> checkpoint.save(path, tree)
    >>> bool(jnp.array_equal(checkpoint.load(path, {"w": jnp.zeros(3)})["w"], tree["w"]))
    True
"""

from __future__ import annotations

import os

import jax
from flax import serialization

from diffgen.io.atomic import atomic_write

__all__ = ["save", "load"]


def save(path: str, tree) -> None:
    """Write ``tree`` (any pytree of arrays; typed PRNG keys must be stored as key data) to ``path`` atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"checkpoint folder {folder!r} does not exist")
    data = serialization.to_bytes(jax.device_get(tree))
    with atomic_write(path, "wb") as fh:  # temporary file, renamed on success
        fh.write(data)


def load(path: str, template):
    """The tree saved at ``path``, with the structure of ``template`` (``ValueError`` if the file is missing)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as fh:
        data = fh.read()
    return serialization.from_bytes(template, data)
