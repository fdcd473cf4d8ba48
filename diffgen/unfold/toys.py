"""Toy data sets with known truth for unfolding: Gaussian smearing with inefficiency and fakes.

:func:`gaussian_toy` is the 1-D example of the OmniFold paper (arXiv:1911.09107) and of the
``omnifold`` package: truth z ~ N(μ, σ), reconstruction x = z + N(0, s²). Optionally an event is
reconstructed only with probability ε(z) = ε₀ + ε₁ tanh(z) (inefficiency), and a fraction of the
reconstructed events are fakes with no truth-level counterpart, x ~ N(μ_f, σ_f²). Simulation and
data differ only in (μ, σ); smearing, efficiency and fakes are the same (the detector is known).

Example:
    >>> import jax
    >>> toy = gaussian_toy(jax.random.key(0), 1000, 500)
    >>> toy.sim_truth.shape, toy.data_reco.shape, bool(toy.pass_reco.all())
    ((1000,), (500,), True)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from diffgen.checks import check_int

__all__ = ["GaussianToy", "gaussian_toy"]


class GaussianToy(NamedTuple):
    """Simulated (truth, reco) pairs with pass flags, data at reco level, and the data's truth.

    Rows of ``sim_truth`` with ``pass_truth`` False (fakes) and of ``sim_reco`` with ``pass_reco``
    False (not reconstructed) hold NaN. ``data_reco`` holds only reconstructed data events;
    ``data_truth`` the truth of every real (non-fake) data event, reconstructed or not: the target
    of the unfolding.
    """

    sim_truth: np.ndarray
    sim_reco: np.ndarray
    pass_truth: np.ndarray
    pass_reco: np.ndarray
    data_reco: np.ndarray
    data_truth: np.ndarray


def _sample(key, n, mean, width, smearing, efficiency, fake_fraction, fake):
    k = jax.random.split(key, 5)
    z = mean + width * np.asarray(jax.random.normal(k[0], (n,)), np.float64)
    x = z + smearing * np.asarray(jax.random.normal(k[1], (n,)), np.float64)
    if efficiency is None:
        reco = np.ones(n, bool)
    else:
        eff = np.clip(efficiency[0] + efficiency[1] * np.tanh(z), 0.0, 1.0)
        reco = np.asarray(jax.random.uniform(k[2], (n,)), np.float64) < eff
    is_fake = np.asarray(jax.random.uniform(k[3], (n,)), np.float64) < fake_fraction
    x_fake = fake[0] + fake[1] * np.asarray(jax.random.normal(k[4], (n,)), np.float64)
    truth = np.where(is_fake, np.nan, z)
    reco = reco | is_fake
    x = np.where(is_fake, x_fake, np.where(reco, x, np.nan))
    return truth, x, ~is_fake, reco


def gaussian_toy(key, n_sim: int, n_data: int, sim=(0.0, 1.0), data=(0.2, 0.8), smearing: float = 0.5,
                 efficiency=None, fake_fraction: float = 0.0, fake=(0.0, 1.5)) -> GaussianToy:
    """Draw a :class:`GaussianToy` (see module docstring).

    Args:
        key: PRNG key. n_sim, n_data: events generated (before inefficiency; fakes included).
        sim, data: (μ, σ) of the truth Gaussian in simulation and in data.
        smearing: detector resolution s.
        efficiency: None (every event reconstructed) or (ε₀, ε₁) with ε(z) = ε₀ + ε₁ tanh(z).
        fake_fraction: probability that an event is a fake; fake: (μ_f, σ_f) of the fakes' x.
    """
    n_sim, n_data = check_int(n_sim, "n_sim"), check_int(n_data, "n_data")
    if not 0.0 <= fake_fraction < 1.0:
        raise ValueError(f"fake_fraction must be in [0, 1), got {fake_fraction!r}")
    k_sim, k_data = jax.random.split(key)
    opts = (smearing, efficiency, fake_fraction, fake)
    st, sr, pt, pr = _sample(k_sim, n_sim, *sim, *opts)
    dt, dr, dpt, dpr = _sample(k_data, n_data, *data, *opts)
    return GaussianToy(st, sr, pt, pr, dr[dpr], dt[dpt])
