"""Reference hadron-level events for training the ML hadronization layer, and the discriminator features.

A reference is a fixed-shape set of final-state particles: ``p4`` f32[N, P, 4] (E, px, py, pz; GeV,
e+e- centre-of-mass frame), ``pid`` i32[N, P], ``mask`` bool[N, P]. Sources (:func:`load_reference`):

* ``"string"``: diffgen's own ``presets.ee_hadrons()`` (Lund strings + decays) at √s;
* a ``.npz`` file: either a diffgen event file (:func:`diffgen.io.write_events`) or any archive with
  arrays ``p4`` [N, P, 4] and ``pid`` [N, P] (0 = empty slot; optional: a bool ``mask`` [N, P] and
  event weights ``weight`` or ``log_weight`` [N]);
* a HepMC3/HepMC2 ASCII file (``.hepmc3``, ``.hepmc``, optionally ``.gz``) read with
  :func:`diffgen.io.read_events` (final-state particles, e.g. Pythia 8 output).

Malformed input (missing arrays, wrong shapes or dtypes, NaN/inf, no particles, a √s that differs from
the one asked for by more than 1 %) raises ``ValueError`` naming the file and the problem.

Features (:func:`features`): per particle (rotation invariant, about the thrust axis n_T)
x_p = 2|p⃗|/√s, log(x_p + 10⁻³), |cos θ_T| = |p⃗·n_T|/|p⃗|, p_T about n_T in GeV (over 2 GeV, clipped
at 5) and the charged flag; per event n/40, n_ch/20, thrust T and sphericity S. All differentiable in
the momenta (the counts are not, they change through the score terms).

Example:
    >>> import os, tempfile, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "bad.npz")
    >>> np.savez(p, p4=np.zeros((3, 2, 3)), pid=np.zeros((3, 2), int))
    >>> try:
    ...     load_reference(p, 3)
    ... except ValueError as err:
    ...     print(str(err).split(": ", 1)[1])
    'p4' must have shape [N, P, 4] (E, px, py, pz), got (3, 2, 3)
"""

from __future__ import annotations

import os
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen import particles
from diffgen.checks import check_int
from diffgen.events import Events
from diffgen.numerics import safe_div, safe_log
from diffgen.params import DEFAULT_SQRT_S

__all__ = ["Reference", "load_reference", "features", "N_PARTICLE_FEATURES", "N_EVENT_FEATURES",
           "reference_events", "REFERENCE_SUFFIXES"]

N_PARTICLE_FEATURES = 5
N_EVENT_FEATURES = 4
REFERENCE_SUFFIXES = (".npz", ".hepmc3", ".hepmc", ".hepmc3.gz", ".hepmc.gz")


class Reference(NamedTuple):
    """Reference final-state particles (host NumPy arrays) and where they came from."""

    p4: np.ndarray  #: f32[N, P, 4] GeV
    pid: np.ndarray  #: i32[N, P]
    mask: np.ndarray  #: bool[N, P]
    weight: np.ndarray  #: f32[N] event weights, mean 1 (diffgen's generated events are weighted)
    sqrt_s: float  #: GeV
    source: str


def reference_events(p4, pid, mask) -> Events:
    """An :class:`~diffgen.events.Events` batch (no incoming particles, weight 1) from reference arrays."""
    p4 = jnp.asarray(p4, jnp.float32)
    ev = Events.empty(p4.shape[0], p4.shape[1], jnp.float32)
    return ev.replace(p4=p4, pid=jnp.asarray(pid, jnp.int32), mask=jnp.asarray(mask, bool))


def _weights(log_weight, weight, n: int, where: str) -> np.ndarray:
    """Event weights normalised to mean 1, from ``log_weight`` or ``weight`` (else all 1)."""
    if log_weight is not None:
        lw = np.asarray(log_weight, float)
        w = np.exp(lw - (np.max(lw) if lw.size else 0.0)) if lw.shape == (n,) else None
    elif weight is not None:
        w = np.asarray(weight, float)
    else:
        return np.ones(n, np.float32)
    if w is None or w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(f"{where}: event weights must be a finite, non-negative array of shape ({n},) with a "
                         "positive entry")
    return (w / np.mean(w)).astype(np.float32)


def _from_arrays(p4, pid, mask, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p4 = np.asarray(p4)
    pid = np.asarray(pid)
    if p4.ndim != 3 or p4.shape[-1] != 4:
        raise ValueError(f"{where}: 'p4' must have shape [N, P, 4] (E, px, py, pz), got {p4.shape}")
    if p4.dtype.kind not in "fiu":
        raise ValueError(f"{where}: 'p4' must be numeric, got dtype {p4.dtype}")
    if pid.shape != p4.shape[:2]:
        raise ValueError(f"{where}: 'pid' must have shape {p4.shape[:2]} (one PDG code per p4 slot), got {pid.shape}")
    if pid.dtype.kind not in "iu" and not (pid.dtype.kind == "f" and np.all(pid == np.round(pid))):
        raise ValueError(f"{where}: 'pid' must hold integer PDG codes, got dtype {pid.dtype}")
    pid = pid.astype(np.int32)
    if mask is None:
        mask = pid != 0
    else:
        mask = np.asarray(mask)
        if mask.shape != pid.shape or mask.dtype != bool:
            raise ValueError(f"{where}: 'mask' must be bool with shape {pid.shape}, got {mask.dtype} {mask.shape}")
    if p4.shape[0] == 0 or not mask.any():
        raise ValueError(f"{where}: no particles (need at least one event with occupied slots)")
    if not np.all(np.isfinite(p4[mask])):
        raise ValueError(f"{where}: 'p4' holds NaN or inf in occupied slots")
    if np.any(p4[mask][:, 0] < 0):
        raise ValueError(f"{where}: negative energies in 'p4'")
    if np.any(pid[mask] == 0):
        raise ValueError(f"{where}: occupied slots with PDG code 0")
    return np.where(mask[..., None], p4, 0.0).astype(np.float32), np.where(mask, pid, 0), mask


def _read_npz(path: str):
    from diffgen.io import read_events

    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:  # not a zip archive, truncated, pickled
        raise ValueError(f"{path!r} is not a readable .npz archive: {err}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is not a readable .npz archive (it holds a single .npy array)")
    with z:
        keys = set(z.files)
        if "format" in keys:
            raw = None
        else:
            missing = {"p4", "pid"} - keys
            if missing:
                raise ValueError(f"{path!r}: a reference .npz needs arrays 'p4' [N, P, 4] and 'pid' [N, P]; "
                                 f"missing {sorted(missing)} (it has {sorted(keys)})")
            try:
                raw = (z["p4"], z["pid"], z["mask"] if "mask" in keys else None)
                lw = (z["log_weight"] if "log_weight" in keys else None, z["weight"] if "weight" in keys else None)
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
                raise ValueError(f"{path!r}: cannot read its arrays: {err}") from None
    if raw is None:
        ev, _ = read_events(path)
        raw = (np.asarray(ev.p4), np.asarray(ev.pid), np.asarray(ev.mask))
        lw = (np.asarray(ev.log_weight), None)
    return raw, lw


def load_reference(source: str, n_events: int, key=None, sqrt_s: float = DEFAULT_SQRT_S,
                   progress: bool = False) -> Reference:
    """Reference events from ``"string"`` (generated) or a file (module docstring); at most ``n_events``.

    Raises ``ValueError`` for an unknown suffix, a missing or malformed file, or a √s more than 1 % away
    from ``sqrt_s`` (GeV).
    """
    n_events = check_int(n_events, "number of reference events", lo=1)
    if not isinstance(source, str) or not source:
        raise ValueError(f"reference must be 'string' or a file path ({', '.join(REFERENCE_SUFFIXES)}), got {source!r}")
    if source == "string":
        from diffgen import generate, presets

        gen = presets.ee_hadrons(sqrt_s)
        key = jax.random.key(12345) if key is None else key
        ev = generate(gen, gen.default_params(), key, n_events, chunk=2048, progress=progress)
        good = np.asarray(ev.status) == 0
        p4, pid, mask = _from_arrays(np.asarray(ev.p4)[good], np.asarray(ev.pid)[good], np.asarray(ev.mask)[good],
                                     "string reference")
        weight = _weights(np.asarray(ev.log_weight)[good], None, len(p4), "string reference")
        return Reference(p4, pid, mask, weight, float(sqrt_s), "string")
    name = source
    if not name.lower().endswith(REFERENCE_SUFFIXES):
        raise ValueError(f"reference file {name!r} has an unknown suffix; allowed: 'string' or "
                         f"{', '.join(REFERENCE_SUFFIXES)}")
    if not os.path.isfile(name):
        raise ValueError(f"reference file {name!r} does not exist")
    if name.lower().endswith(".npz"):
        raw, lw = _read_npz(name)
    else:
        from diffgen.io import read_events

        ev, _ = read_events(name)
        raw = (np.asarray(ev.p4), np.asarray(ev.pid), np.asarray(ev.mask))
        lw = (np.asarray(ev.log_weight), None)
    p4, pid, mask = _from_arrays(*raw, where=repr(name))
    weight = _weights(*lw, n=len(p4), where=repr(name))
    p4, pid, mask, weight = p4[:n_events], pid[:n_events], mask[:n_events], weight[:n_events]
    total = np.where(mask[..., None], p4, 0.0).sum(axis=1)
    m = np.sqrt(np.maximum(total[:, 0] ** 2 - np.sum(total[:, 1:] ** 2, axis=-1), 0.0))
    ref_sqrt_s = float(np.median(m))
    if abs(ref_sqrt_s - sqrt_s) > 0.01 * sqrt_s:
        raise ValueError(f"reference file {name!r}: its events have √s ≈ {ref_sqrt_s:.4g} GeV (median visible mass), "
                         f"but training runs at √s = {sqrt_s:g} GeV (allowed difference 1 %)")
    used = np.nonzero(mask.any(axis=0))[0]
    width = int(used.max()) + 1
    return Reference(p4[:, :width], pid[:, :width], mask[:, :width], weight / np.mean(weight), float(sqrt_s), name)


def features(events: Events, sqrt_s: float):
    """Discriminator inputs: (particle features f[N, P, 5], mask bool[N, P], event features f[N, 4]).

    See the module docstring; ``sqrt_s`` in GeV (a Python float: the reference files carry no beams).
    """
    from diffgen.observables import sphericity, thrust_analysis

    mask = events.mask
    p4 = jnp.where(mask[..., None], events.p4, 0.0)
    p_abs = kin.p3_abs(p4)
    x_p = 2.0 * p_abs / sqrt_s
    t = thrust_analysis(events.replace(p4=p4))
    p_long = jnp.sum(p4[..., 1:] * t.axis[:, None, :], axis=-1)
    cos_t = jnp.abs(safe_div(p_long, p_abs))
    pt = jnp.sqrt(jnp.maximum(p_abs ** 2 - p_long ** 2, 0.0) + 1e-8)
    charged = (particles.charge3(events.pid) != 0) & mask
    part = jnp.stack([x_p, safe_log(x_p + 1e-3, 0.0), cos_t, jnp.minimum(pt / 2.0, 5.0), charged.astype(p4.dtype)],
                     axis=-1)
    part = jnp.where(mask[..., None], part, 0.0)
    n = jnp.sum(mask, axis=1).astype(p4.dtype)
    n_ch = jnp.sum(charged, axis=1).astype(p4.dtype)
    event = jnp.stack([n / 40.0, n_ch / 20.0, t.thrust, sphericity(events.replace(p4=p4))], axis=-1)
    return part, mask, event
