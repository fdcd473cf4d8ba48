"""Inputs of the unfolding and inference classifiers: feature arrays, particle sets, weights, flags.

Every public function of :mod:`diffgen.unfold` takes its per-event inputs through these checks, which
run on the host before anything is traced and raise ``ValueError`` naming the argument:

* features are ``f[N, F]`` arrays (``f[N]`` is read as ``f[N, 1]``) or a :class:`ParticleSet`
  (``values f[N, P, F]`` with ``mask bool[N, P]``; padded slots may hold anything, they are zeroed);
* weights are finite ``f[N]`` with a positive sum (negative entries are allowed, as generators with
  negative weights produce them);
* pass flags are ``bool[N]``; feature rows of events that do not pass are ignored and zeroed, so
  a missing reconstruction may be stored as NaN.

Example:
    >>> import numpy as np
    >>> from diffgen.unfold.inputs import as_features
    >>> as_features(np.array([1.0, 2.0]), "sim_reco").shape
    (2, 1)
    >>> as_features(np.array([[1.0], [np.nan]]), "sim_reco")
    Traceback (most recent call last):
    ...
    ValueError: sim_reco has 1 non-finite value(s) (first in event 1); features must be finite
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

__all__ = ["ParticleSet", "as_features", "as_weights", "as_flags", "n_rows", "take_rows", "concat_rows"]


class ParticleSet(NamedTuple):
    """A padded set of particles per event: ``values f[N, P, F]`` and ``mask bool[N, P]``."""

    values: np.ndarray
    mask: np.ndarray


def n_rows(x) -> int:
    """Number of events (leading axis) of features ``x``."""
    return int(jax.tree_util.tree_leaves(x)[0].shape[0])


def take_rows(x, idx):
    """Rows ``idx`` of features (array or :class:`ParticleSet`)."""
    return jax.tree_util.tree_map(lambda a: a[idx], x)


def concat_rows(parts):
    """Concatenate features along the event axis (NumPy)."""
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *parts)


def _first_bad(ok_rows: np.ndarray) -> int:
    return int(np.flatnonzero(~ok_rows)[0])


def as_features(x, name: str, valid=None, dtype=np.float32):
    """Validated features: ``f[N, F]`` (from ``f[N]`` or ``f[N, F]``) or a :class:`ParticleSet`.

    ``valid`` (bool[N], optional): rows that must be finite; other rows are set to 0.
    """
    if isinstance(x, ParticleSet):
        values = np.asarray(x.values, dtype)
        mask = np.asarray(x.mask)
        if values.ndim != 3 or mask.shape != values.shape[:2] or mask.dtype != bool:
            raise ValueError(f"{name}: a ParticleSet needs values f[N, P, F] and mask bool[N, P], got shapes "
                             f"{values.shape} and {mask.shape} (mask dtype {mask.dtype})")
        n = values.shape[0]
        if n == 0:
            raise ValueError(f"{name} is empty (0 events); at least one event is needed")
        rows = np.ones(n, bool) if valid is None else valid
        finite = np.all(np.isfinite(values) | ~mask[..., None], axis=(1, 2))
        bad = rows & ~finite
        if bad.any():
            raise ValueError(f"{name} has non-finite values in {int(bad.sum())} event(s) (first in event "
                             f"{int(np.flatnonzero(bad)[0])}); occupied particle slots must be finite")
        mask = mask & rows[:, None]
        values = np.where(mask[..., None], values, 0.0).astype(dtype)
        return ParticleSet(values, mask)
    arr = np.asarray(x, dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be f[N] or f[N, F] features (or a ParticleSet), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 events); at least one event is needed")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns (shape {arr.shape})")
    rows = np.ones(arr.shape[0], bool) if valid is None else valid
    finite = np.all(np.isfinite(arr), axis=1)
    bad = rows & ~finite
    if bad.any():
        n_bad = int(np.sum(~np.isfinite(arr[bad])))
        raise ValueError(f"{name} has {n_bad} non-finite value(s) (first in event {_first_bad(~bad)}); "
                         f"features must be finite")
    return np.where(rows[:, None], arr, 0.0).astype(dtype)


def as_weights(w, n: int, name: str, dtype=np.float64) -> np.ndarray:
    """Validated per-event weights f[n] (``None`` means all 1): finite, with a positive sum."""
    if w is None:
        return np.ones(n, dtype)
    arr = np.asarray(w, dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per event), got {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        raise ValueError(f"{name} has {int((~finite).sum())} non-finite weight(s) (first in event "
                         f"{_first_bad(finite)}); weights must be finite")
    if not arr.sum() > 0:
        raise ValueError(f"{name} must have a positive sum, got {arr.sum():g}")
    return arr


def as_flags(flags, n: int, name: str) -> np.ndarray:
    """Validated bool[n] pass flags (``None`` means all True)."""
    if flags is None:
        return np.ones(n, bool)
    arr = np.asarray(flags)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one flag per event), got {arr.shape}")
    if arr.dtype != bool:
        raise ValueError(f"{name} must be boolean, got dtype {arr.dtype}")
    return arr
