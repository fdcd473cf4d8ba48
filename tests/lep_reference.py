"""The Pythia 8 reference numbers the tests compare with (``tests/data/pythia_reference.json``).

Every number in the file is made by ``benchmarks/pythia_reference.py`` (Pythia 8.317, Monash; the settings,
seed and event count of each entry are stored next to it), so none is typed in by hand and none comes from
diffgen. ``load()`` reads the file; ``mean_and_error`` and ``hist_chi2`` compare a weighted diffgen sample
with it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

PATH = Path(__file__).resolve().parent / "data" / "pythia_reference.json"
SCHEMA = 1


@functools.cache
def load() -> dict:
    ref = json.loads(PATH.read_text())
    if ref.get("schema") != SCHEMA:
        raise ValueError(f"{PATH}: schema {ref.get('schema')!r}, expected {SCHEMA}; rerun benchmarks/pythia_reference.py")
    return ref


def mean_and_error(values, weights) -> tuple[float, float]:
    """Weighted mean and its statistical error (delta method for the self-normalised mean)."""
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    sw = w.sum()
    mean = float((w * v).sum() / sw)
    return mean, float(np.sqrt((w**2 * (v - mean) ** 2).sum()) / sw)


def hist_chi2(values, weights, ref_hist, ref_events: int | None = None) -> tuple[float, int]:
    """χ² and ndf between diffgen's normalised histogram and Pythia's (both per event).

    Bins with no entries on either side are dropped; ndf = used bins − 1 (the normalisation). Values
    outside the edges are put in the end bins, as the reference script does. ``ref_events`` rescales the
    reference's errors to that many events (the χ² one would get with a Pythia sample of that size).
    """
    edges = np.asarray(ref_hist["edges"], np.float64)
    counts = np.asarray(ref_hist["counts"], np.float64)
    n_ref = float(ref_hist["events"])
    v = np.clip(np.asarray(values, np.float64), edges[0], edges[-1] - 1e-9)
    w = np.asarray(weights, np.float64)
    sw = w.sum()
    d, _ = np.histogram(v, edges, weights=w / sw)
    d_var, _ = np.histogram(v, edges, weights=(w / sw) ** 2)
    p = counts / n_ref
    p_var = counts / n_ref**2 * (n_ref / ref_events if ref_events else 1.0)
    used = (counts > 0) | (d > 0)
    var = np.where(used, d_var + p_var, 1.0)
    return float((((d - p) ** 2 / var)[used]).sum()), int(used.sum() - 1)
