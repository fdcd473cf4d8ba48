"""Particle data: PDG codes, masses, widths and charges used by every stage.

Masses and widths are the PDG 2024 Review of Particle Physics values (GeV),
rounded to the precision shown; quark masses are Pythia 8.3's defaults
(``1:m0`` … ``5:m0``: 0.33, 0.33, 0.5, 1.5, 4.8 GeV), which Pythia uses as
constituent masses in showers and strings. The table is a constant; lookups are
vectorised (``searchsorted`` on the sorted |PDG code|) and jittable.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen import particles
    >>> [float(x) for x in particles.charge(jnp.array([211, -211, 111, 0]))]
    [1.0, -1.0, 0.0, 0.0]
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["Particle", "TABLE", "mass", "host_mass", "width", "charge", "charge3", "name", "is_quark", "is_gluon",
           "is_parton", "is_charged", "is_known"]


class Particle(NamedTuple):
    pid: int  #: PDG code of the particle (positive)
    name: str
    mass: float  #: GeV
    width: float  #: GeV (0 for stable)
    charge3: int  #: three times the electric charge of the particle (pid > 0)
    spin2: int = 0  #: 2J+1 ... stored as 2J


_P = Particle
TABLE: tuple[Particle, ...] = (
    # quarks (Pythia 8.3 constituent masses) and gauge bosons
    _P(1, "d", 0.33, 0.0, -1, 1), _P(2, "u", 0.33, 0.0, 2, 1), _P(3, "s", 0.5, 0.0, -1, 1),
    _P(4, "c", 1.5, 0.0, 2, 1), _P(5, "b", 4.8, 0.0, -1, 1), _P(6, "t", 172.5, 1.42, 2, 1),
    _P(21, "g", 0.0, 0.0, 0, 2), _P(22, "gamma", 0.0, 0.0, 0, 2),
    _P(23, "Z0", 91.1876, 2.50419, 0, 2), _P(24, "W+", 80.377, 2.085, 3, 2),
    # leptons
    _P(11, "e-", 0.000510999, 0.0, -3, 1), _P(12, "nu_e", 0.0, 0.0, 0, 1),
    _P(13, "mu-", 0.1056584, 0.0, -3, 1), _P(14, "nu_mu", 0.0, 0.0, 0, 1),
    _P(15, "tau-", 1.77686, 2.27e-12, -3, 1), _P(16, "nu_tau", 0.0, 0.0, 0, 1),
    # light pseudoscalar mesons
    _P(111, "pi0", 0.1349768, 7.8e-9, 0), _P(211, "pi+", 0.13957039, 0.0, 3),
    _P(221, "eta", 0.547862, 1.31e-6, 0), _P(331, "eta'", 0.95778, 1.88e-4, 0),
    _P(130, "K_L0", 0.497611, 0.0, 0), _P(310, "K_S0", 0.497611, 7.35e-15, 0),
    _P(311, "K0", 0.497611, 0.0, 0), _P(321, "K+", 0.493677, 0.0, 3),
    # light vector mesons
    _P(113, "rho0", 0.77526, 0.1474, 0, 2), _P(213, "rho+", 0.77511, 0.1491, 3, 2),
    _P(223, "omega", 0.78266, 0.00868, 0, 2), _P(333, "phi", 1.019461, 0.004249, 0, 2),
    _P(313, "K*0", 0.89555, 0.0473, 0, 2), _P(323, "K*+", 0.89167, 0.0514, 3, 2),
    # charm and bottom mesons
    _P(411, "D+", 1.86966, 6.33e-13, 3), _P(421, "D0", 1.86484, 1.605e-12, 0),
    _P(431, "D_s+", 1.96835, 1.305e-12, 3), _P(413, "D*+", 2.01026, 8.34e-5, 3, 2),
    _P(423, "D*0", 2.00685, 5.5e-5, 0, 2), _P(433, "D*_s+", 2.1122, 1.9e-5, 3, 2),
    _P(511, "B0", 5.27965, 4.33e-13, 0), _P(521, "B+", 5.27934, 4.02e-13, 3),
    _P(531, "B_s0", 5.36688, 4.37e-13, 0), _P(513, "B*0", 5.32470, 0.0, 0, 2),
    _P(523, "B*+", 5.32470, 0.0, 3, 2), _P(533, "B*_s0", 5.4154, 0.0, 0, 2),
    _P(441, "eta_c", 2.9839, 0.032, 0), _P(443, "J/psi", 3.096900, 9.26e-5, 0, 2),
    _P(551, "eta_b", 9.3987, 0.01, 0), _P(553, "Upsilon", 9.46030, 5.4e-5, 0, 2),
    # baryons
    _P(2212, "p+", 0.93827209, 0.0, 3, 1), _P(2112, "n0", 0.93956542, 0.0, 0, 1),
    _P(3122, "Lambda0", 1.115683, 2.5e-15, 0, 1), _P(3222, "Sigma+", 1.18937, 8.2e-15, 3, 1),
    _P(3212, "Sigma0", 1.192642, 8.9e-6, 0, 1), _P(3112, "Sigma-", 1.197449, 4.5e-15, -3, 1),
    _P(3322, "Xi0", 1.31486, 2.3e-15, 0, 1), _P(3312, "Xi-", 1.32171, 4.0e-15, -3, 1),
    _P(2224, "Delta++", 1.232, 0.117, 6, 3), _P(2214, "Delta+", 1.232, 0.117, 3, 3),
    _P(2114, "Delta0", 1.232, 0.117, 0, 3), _P(1114, "Delta-", 1.232, 0.117, -3, 3),
    _P(3334, "Omega-", 1.67245, 8.0e-15, -3, 3),
    # strange decuplet Σ*(1385), Ξ*(1530)
    _P(3224, "Sigma*+", 1.38280, 0.0360, 3, 3), _P(3214, "Sigma*0", 1.3837, 0.036, 0, 3),
    _P(3114, "Sigma*-", 1.3872, 0.0394, -3, 3), _P(3324, "Xi*0", 1.53180, 0.0091, 0, 3),
    _P(3314, "Xi*-", 1.5350, 0.0099, -3, 3),
    # charm baryons (widths from the lifetimes: Λc 202.6 fs, Ξc+ 453 fs, Ξc0 151 fs, Ωc 273 fs; Ξc' and
    # Ωc(2770), which decay radiatively, have no measured width: 0)
    _P(4122, "Lambda_c+", 2.28646, 3.25e-12, 3, 1), _P(4222, "Sigma_c++", 2.45397, 1.89e-3, 6, 1),
    _P(4212, "Sigma_c+", 2.4529, 2.3e-3, 3, 1), _P(4112, "Sigma_c0", 2.45375, 1.83e-3, 0, 1),
    _P(4224, "Sigma*_c++", 2.51841, 0.01478, 6, 3), _P(4214, "Sigma*_c+", 2.5175, 0.017, 3, 3),
    _P(4114, "Sigma*_c0", 2.51848, 0.0153, 0, 3),
    _P(4232, "Xi_c+", 2.46771, 1.45e-12, 3, 1), _P(4132, "Xi_c0", 2.47044, 4.36e-12, 0, 1),
    _P(4322, "Xi'_c+", 2.5782, 0.0, 3, 1), _P(4312, "Xi'_c0", 2.5787, 0.0, 0, 1),
    _P(4324, "Xi*_c+", 2.6451, 2.14e-3, 3, 3), _P(4314, "Xi*_c0", 2.6462, 2.35e-3, 0, 3),
    _P(4332, "Omega_c0", 2.6952, 2.41e-12, 0, 1), _P(4334, "Omega*_c0", 2.7659, 0.0, 0, 3),
    # bottom baryons (Λb 1.471 ps, Ξb− 1.572 ps, Ξb0 1.480 ps, Ωb 1.64 ps). Not observed, masses from the
    # isospin partner (Ξ'b0) or from Pythia's Ω*b − Ωb splitting (Ω*b−), both below their strong thresholds
    _P(5122, "Lambda_b0", 5.61960, 4.48e-13, 0, 1), _P(5222, "Sigma_b+", 5.81056, 5.0e-3, 3, 1),
    _P(5212, "Sigma_b0", 5.8130, 5.0e-3, 0, 1), _P(5112, "Sigma_b-", 5.81564, 5.3e-3, -3, 1),
    _P(5224, "Sigma*_b+", 5.83032, 9.4e-3, 3, 3), _P(5214, "Sigma*_b0", 5.8330, 1.0e-2, 0, 3),
    _P(5114, "Sigma*_b-", 5.83474, 1.04e-2, -3, 3),
    _P(5132, "Xi_b-", 5.7970, 4.19e-13, -3, 1), _P(5232, "Xi_b0", 5.7919, 4.45e-13, 0, 1),
    _P(5312, "Xi'_b-", 5.93502, 3.2e-5, -3, 1), _P(5322, "Xi'_b0", 5.9350, 0.0, 0, 1),
    _P(5314, "Xi*_b-", 5.95530, 1.65e-3, -3, 3), _P(5324, "Xi*_b0", 5.9523, 8.7e-4, 0, 3),
    _P(5332, "Omega_b-", 6.0452, 4.01e-13, -3, 1), _P(5334, "Omega*_b-", 6.1052, 0.0, -3, 3),
    # diquarks (Pythia 8.3 masses), used inside strings only
    _P(1103, "dd_1", 0.96, 0.0, -2, 2), _P(2101, "ud_0", 0.58, 0.0, 1, 0),
    _P(2103, "ud_1", 0.77, 0.0, 1, 2), _P(2203, "uu_1", 0.77, 0.0, 4, 2),
)

_codes = np.array([p.pid for p in TABLE])
_order = np.argsort(_codes)
_SORTED = _codes[_order]
_MASS = np.array([p.mass for p in TABLE])[_order]
_WIDTH = np.array([p.width for p in TABLE])[_order]
_CHARGE3 = np.array([p.charge3 for p in TABLE])[_order]
_NAMES = {p.pid: p.name for p in TABLE}
_SELF_CONJUGATE = {111, 113, 130, 221, 223, 310, 331, 333, 441, 443, 551, 553, 21, 22, 23}


def _index(pid):
    a = jnp.abs(jnp.asarray(pid))
    idx = jnp.clip(jnp.searchsorted(jnp.asarray(_SORTED), a), 0, len(_SORTED) - 1)
    found = jnp.asarray(_SORTED)[idx] == a
    return idx, found


def is_known(pid):
    """True where ``pid`` is in :data:`TABLE` (0, the empty slot, is not)."""
    return _index(pid)[1]


def mass(pid):
    """Mass in GeV (0 for unknown codes and empty slots)."""
    idx, found = _index(pid)
    return jnp.where(found, jnp.asarray(_MASS)[idx], 0.0)


def host_mass(pid) -> tuple[np.ndarray, np.ndarray]:
    """Host-side (NumPy, float64) masses: the table's values exactly, not rounded to float32 as
    :func:`mass` is without ``jax_enable_x64``; for file writers.

    Returns:
        ``(mass, known)``: f64 masses in GeV (0 where the code is not in :data:`TABLE`, and for 0) and
        bool, True where |pid| is in the table; both shaped like ``pid``.

    Example:
        >>> m, known = host_mass(np.array([211, -3122, 0, 99]))
        >>> m.tolist(), known.tolist()
        ([0.13957039, 1.115683, 0.0, 0.0], [True, True, False, False])
    """
    a = np.abs(np.asarray(pid, np.int64))
    idx = np.clip(np.searchsorted(_SORTED, a), 0, len(_SORTED) - 1)
    known = _SORTED[idx] == a
    return np.where(known, _MASS[idx], 0.0), known


def width(pid):
    """Total width in GeV (0 for unknown codes)."""
    idx, found = _index(pid)
    return jnp.where(found, jnp.asarray(_WIDTH)[idx], 0.0)


def charge3(pid):
    """Three times the electric charge (integer); sign-flipped for antiparticles."""
    pid = jnp.asarray(pid)
    idx, found = _index(pid)
    c = jnp.where(found, jnp.asarray(_CHARGE3)[idx], 0)
    return jnp.where(pid < 0, -c, c).astype(jnp.int32)


def charge(pid):
    """Electric charge in units of e (float)."""
    return charge3(pid) / 3.0


def is_charged(pid):
    return charge3(pid) != 0


def is_quark(pid):
    a = jnp.abs(jnp.asarray(pid))
    return (a >= 1) & (a <= 6)


def is_gluon(pid):
    return jnp.asarray(pid) == 21


def is_parton(pid):
    return is_quark(pid) | is_gluon(pid)


def name(pid: int) -> str:
    """Human-readable name (host-side)."""
    pid = int(pid)
    base = _NAMES.get(abs(pid), str(abs(pid)))
    if pid >= 0 or abs(pid) in _SELF_CONJUGATE:
        return base
    if base.endswith("+"):
        return base[:-1] + "-"
    if base.endswith("-"):
        return base[:-1] + "+"
    return base + "bar"
