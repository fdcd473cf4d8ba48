"""The masses written in the mass columns of LHE and HepMC3 files.

diffgen's momenta are float32 on the device, and E² − |p|² cancels: for a 40 GeV pion the mass of the
momentum, m = sqrt(max(E² − |p|², 0)), is off by 2e-4 GeV (median; up to 8e-4), for a 5 GeV one by
7e-6 GeV. Files therefore carry, as Pythia's do, the mass of the particle table:

* hadrons, leptons, photons and every other code in :data:`diffgen.particles.TABLE`: the PDG mass
  (:func:`diffgen.particles.host_mass`, float64, exactly the table's value);
* partons — quarks (|pid| 1–6), gluons (21) and diquarks — have no fixed mass: the hard process makes
  u, d, s massless and c, b with Pythia's m0, the shower gives its partons masses of its own
  (:func:`diffgen.shower.fsr.shower_mass`), so they get the mass of their momentum, as do codes the
  table does not know and empty slots (0).

Intermediate resonances of a full record (the s-channel γ*/Z) get the mass of their momentum from
the caller (:mod:`diffgen.io.hepmc`), not the table's pole mass.

Example:
    >>> import numpy as np
    >>> p4 = np.array([[40.0002435, 0.0, 0.0, 40.0], [5.0, 0.0, 3.0, 4.0]], np.float32)
    >>> [round(float(m), 8) for m in file_mass(p4, np.array([211, 21]))]
    [0.13957039, 0.0]
"""

from __future__ import annotations

import numpy as np

from diffgen.particles import host_mass

__all__ = ["generated_mass", "file_mass", "has_fixed_mass"]


def generated_mass(p4: np.ndarray) -> np.ndarray:
    """m = sqrt(max(E² − |p|², 0)) in float64 for p4 f[..., 4] (E, px, py, pz) in GeV; shape ``p4.shape[:-1]``."""
    p4 = np.asarray(p4).astype(np.float64)
    m2 = p4[..., 0] ** 2 - np.sum(p4[..., 1:] ** 2, axis=-1)
    return np.sqrt(np.maximum(m2, 0.0))


def has_fixed_mass(pid) -> np.ndarray:
    """bool, shaped like ``pid``: True where the particle table gives the mass (a known code that is not a
    quark, gluon or diquark)."""
    pid = np.asarray(pid, np.int64)
    a = np.abs(pid)
    parton = ((a >= 1) & (a <= 6)) | (a == 21) | ((a > 1000) & (a < 6000) & ((a // 10) % 10 == 0))
    return host_mass(pid)[1] & ~parton


def file_mass(p4: np.ndarray, pid) -> np.ndarray:
    """Masses in GeV (float64, shape ``pid.shape``) for a file's mass column: the PDG mass where
    :func:`has_fixed_mass`, else :func:`generated_mass` of ``p4`` (f[..., 4])."""
    pdg, _ = host_mass(pid)
    return np.where(has_fixed_mass(pid), pdg, generated_mass(p4))
