"""Linearised histograms: sim(θ0 + ε) ≈ sim(θ0) + J ε without regenerating events.

:func:`linearized_histograms` generates one sample at θ0 and computes, for every observable, the
normalised bin contents (:func:`diffgen.fit.losses.binned`, soft-binned so pathwise gradients flow)
and their Jacobian J_bj = ∂c_b/∂θ_j in forward mode (``jax.jacfwd``: one JVP per free parameter).
:meth:`LinearizedHistograms.predict` then evaluates nominal + J ε for any number of shifts at the
cost of a matrix product.

**Where the linear approximation holds** (:meth:`LinearizedHistograms.validity`). For each free
parameter j and shifts ε = ±m·s_j on a grid of multipliers m, the histograms are re-simulated with
the *same* random numbers (common random numbers, so the difference isolates the parameter
dependence, free of sampling noise) and the non-linearity pull is

    z_b(ε) = (resim_b(θ0 + ε e_j) − nominal_b − J_bj ε) / σ_b,

σ_b the MC statistical error of the nominal bin. The linear prediction is *valid* at ε when
max_b |z_b| ≤ ``threshold`` (default 1: the non-linearity is below the statistical error of the
sample), and ``max_eps[j]`` is the largest |ε| on the grid such that every grid point with a
smaller or equal |ε|, on both sides, is valid (0 if the smallest already fails).

**Errors of the Jacobian and of the prediction** (``batches``, default 10). The same events are also
cut into ``batches`` equal blocks whose normalised histograms and Jacobians are computed alongside
(no extra generation: binning only); the spread of the block Jacobians gives the Monte Carlo error of
the full-sample Jacobian by batch means, ``δJ = std_blocks(J) / √batches`` (``jacobian_errors``), and
:meth:`LinearizedHistograms.predict_errors` the error of a predicted *shift* ``J ε`` the same way
(per-block ``J_b ε``, so the correlations between parameters are kept). A shift smaller than its
error is noise, not a prediction.

Example:
    >>> import jax, numpy as np, diffgen
    >>> from diffgen.fit import targets
    >>> from diffgen.fit.variations import linearized_histograms
    >>> gen = diffgen.presets.ee_mumu(94.0)
    >>> obs = [("cos_theta", targets.cos_theta, np.linspace(-1, 1, 5))]
    >>> lin = linearized_histograms(gen, gen.default_params(), obs, ["23:m0"], jax.random.key(0), 2000)
    >>> lin.jacobian["cos_theta"].shape
    (4, 1)
    >>> sorted(lin.predict({"23:m0": 0.05}))
    ['cos_theta']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.checks import check_int
from diffgen.expect import event_weights
from diffgen.fit.binning import binned, check_normalisation
from diffgen.fit.targets import as_observables, evaluate
from diffgen.fit.transforms import check_free
from diffgen.flagged import DEFAULT_MAX_FLAGGED, check_flag_counts, check_flag_options, flag_counts
from diffgen.params import settings as flat_settings
from diffgen.params import with_settings
from diffgen.stage import MAX_EVENTS, check_key

__all__ = ["linearized_histograms", "LinearizedHistograms", "ValidityReport"]


class ValidityReport(NamedTuple):
    """Result of :meth:`LinearizedHistograms.validity` (definitions in the module docstring).

    Attributes:
        max_eps: ``{name: largest valid |ε|}``.
        grid: ``{name: f[m] the |ε| tested}``.
        max_pull: ``{name: f[m, 2] max_b |z_b| at −ε and +ε}``.
        threshold: the pull below which the linear prediction counts as valid.
    """

    max_eps: dict
    grid: dict
    max_pull: dict
    threshold: float


class LinearizedHistograms:
    """Nominal histograms, their Jacobian in the free settings, and the linear prediction.

    Attributes:
        free: the setting names (Jacobian columns, in this order).
        theta0: f[k] their nominal values.
        nominal, errors: ``{observable: f[B]}`` contents (normalised as requested) and MC errors.
        jacobian: ``{observable: f[B, k]}``.
        jacobian_errors: ``{observable: f[B, k]}`` their Monte Carlo errors (batch means over the
            blocks of the sample; ``None`` with ``batches=1``).
        edges: ``{observable: f[B+1]}``.
    """

    def __init__(self, free, theta0, nominal, errors, jacobian, edges, simulate, block_jacobians=None):
        self.free = tuple(free)
        self.theta0 = np.asarray(theta0, float)
        self.nominal = nominal
        self.errors = errors
        self.jacobian = jacobian
        self.edges = edges
        self._simulate = simulate
        self._blocks = block_jacobians  # {observable: f[batches, B, k]} or None
        self.jacobian_errors = None if block_jacobians is None else {
            k: np.std(v, axis=0, ddof=1) / np.sqrt(v.shape[0]) for k, v in block_jacobians.items()}

    def __repr__(self) -> str:
        return f"LinearizedHistograms(free={list(self.free)}, observables={list(self.nominal)})"

    def _eps_array(self, eps) -> np.ndarray:
        if isinstance(eps, Mapping):
            unknown = [k for k in eps if k not in self.free]
            if unknown:
                raise ValueError(f"shifts given for {unknown}, which are not among the linearised settings "
                                 f"{list(self.free)}")
            return np.asarray([float(eps.get(n, 0.0)) for n in self.free])
        arr = np.asarray(eps, float)
        if arr.shape[-1:] != (len(self.free),):
            raise ValueError(f"shift array must have last axis {len(self.free)} (one per free setting "
                             f"{list(self.free)}), got shape {arr.shape}")
        return arr

    def predict(self, eps) -> dict[str, np.ndarray]:
        """nominal + J ε per observable. ε: ``{name: shift}``, f[k], or a batch f[m, k] (→ f[m, B])."""
        e = self._eps_array(eps)
        return {name: self.nominal[name] + e @ self.jacobian[name].T for name in self.nominal}

    def predict_errors(self, eps) -> dict[str, np.ndarray]:
        """Monte Carlo error of the predicted shift ``J ε`` per observable and bin (same shapes as
        :meth:`predict`), from the spread of the block Jacobians' shifts ``J_b ε`` (batch means). It is
        the error of the *change*; the nominal's own error is ``errors``.

        Raises:
            ValueError: the linearisation was made with ``batches=1`` (no blocks to compare).
        """
        if self._blocks is None:
            raise ValueError("no Jacobian errors: linearized_histograms(..., batches=1); use batches >= 2")
        e = self._eps_array(eps)
        out = {}
        for name, blocks in self._blocks.items():
            shifts = np.einsum("...k,nbk->n...b", e, blocks)
            out[name] = np.std(shifts, axis=0, ddof=1) / np.sqrt(blocks.shape[0])
        return out

    def resimulate(self, eps) -> dict[str, np.ndarray]:
        """The histograms re-simulated at θ0 + ε with the same random numbers (for checks)."""
        e = self._eps_array(eps)
        contents, _ = self._simulate(jnp.asarray(self.theta0 + e))
        return {k: np.asarray(v, float) for k, v in contents.items()}

    def validity(self, scale, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
                 threshold: float = 1.0) -> ValidityReport:
        """Where the linear prediction stays within ``threshold`` statistical errors of re-simulation.

        Args:
            scale: ``{name: s_j}`` base shift per setting (settings left out are not tested), or a
                number r meaning s_j = r·|θ0_j| (relative shifts).
            multipliers: the grid m; shifts ±m·s_j are tested in increasing order.
            threshold: the allowed max_b |z_b|.
        """
        if isinstance(scale, Mapping):
            unknown = [k for k in scale if k not in self.free]
            if unknown:
                raise ValueError(f"validity scales given for {unknown}, not among {list(self.free)}")
            base = {k: float(v) for k, v in scale.items()}
        else:
            r = float(scale)
            base = {n: r * (abs(t) if t != 0 else 1.0) for n, t in zip(self.free, self.theta0)}
        if any(not v > 0 for v in base.values()):
            raise ValueError(f"validity scales must be positive, got {base}")
        mult = np.sort(np.asarray(multipliers, float))
        if mult.size == 0 or np.any(mult <= 0):
            raise ValueError(f"multipliers must be positive numbers, got {list(multipliers)}")
        max_eps, grid, max_pull = {}, {}, {}
        for name, s in base.items():
            j = self.free.index(name)
            eps_grid = mult * s
            pulls = np.zeros((eps_grid.size, 2))
            for a, eps in enumerate(eps_grid):
                for side, sign in enumerate((-1.0, 1.0)):
                    e = np.zeros(len(self.free))
                    e[j] = sign * eps
                    lin = self.predict(e)
                    res = self.resimulate(e)
                    z = 0.0
                    for obs in lin:
                        err = self.errors[obs]
                        ok = err > 0
                        if np.any(ok):
                            z = max(z, float(np.max(np.abs(res[obs] - lin[obs])[ok] / err[ok])))
                    pulls[a, side] = z
            good = np.all(pulls <= threshold, axis=1)
            n_ok = int(np.argmin(good)) if not np.all(good) else good.size
            max_eps[name] = float(eps_grid[n_ok - 1]) if n_ok > 0 else 0.0
            grid[name], max_pull[name] = eps_grid, pulls
        return ValidityReport(max_eps, grid, max_pull, float(threshold))


def linearized_histograms(gen, params, observables, free: Sequence[str], key, n: int, *,
                          normalisation: str = "events", smoothing: float | None = 0.25,
                          straight_through: bool = True,
                          conditions: Mapping[str, float] | None = None,
                          batches: int | None = None, max_flagged: float = DEFAULT_MAX_FLAGGED,
                          on_flagged: str = "warn") -> LinearizedHistograms:
    """Histograms of ``observables`` at ``params`` and their forward-mode Jacobian in ``free``.

    Args:
        gen, params: generator and nominal parameters; ``conditions`` (e.g. ``{"Beams:eCM": 94}``)
            are applied on top.
        observables: ``(name, fn, bins)`` list (see :mod:`diffgen.fit.targets`).
        free: setting names to differentiate in.
        key, n: PRNG key and number of events (the same random numbers are reused by ``validity``).
        normalisation, smoothing, straight_through: as in :func:`diffgen.fit.losses.binned`
            (``smoothing``: the kernel width as a fraction of the bin width; None: hard bins).
        batches: blocks of the sample for the Jacobian's Monte Carlo errors (module docstring); 1: none.
            Each block needs enough events for its own normalised histogram (``n // batches`` ≥ 50).
            Default: 10 where ``n`` ≥ 1000 (fewer for smaller ``n``; none below 200 events).
        max_flagged, on_flagged: when more than ``max_flagged`` of the nominal sample's events are
            flagged (zero weight), warn (default), raise :class:`diffgen.flagged.FlaggedEventsError`
            (``"raise"``) or not (``"ignore"``), naming the flags (:mod:`diffgen.flagged`). The
            re-simulations of :meth:`LinearizedHistograms.validity` are not checked.
    """
    names = check_free(free)
    obs = as_observables(observables)
    n = check_int(n, "number of events n", hi=MAX_EVENTS)
    if batches is None:
        batches = min(10, n // 100) if n >= 200 else 1
    batches = check_int(batches, "batches (blocks for the Jacobian errors)", lo=1, hi=max(1, n // 50),
                        what=f"each block needs >= 50 of the n = {n} events")
    check_key(key)
    check_normalisation(normalisation)
    max_flagged, on_flagged = check_flag_options(max_flagged, on_flagged)
    present = flat_settings(params)
    for name in names:
        if name not in present:
            raise ValueError(f"setting {name!r} is not used by this generator; its settings: {sorted(present)}")
    base = with_settings(params, dict(conditions or {}))
    theta0 = np.asarray([float(np.asarray(flat_settings(base)[nm])) for nm in names])

    def histograms(ev):
        w = event_weights(ev, normalise=normalisation != "sigma")
        out_c, out_v = {}, {}
        for name, o in obs.items():
            values, mask = evaluate(o, ev)
            pred = binned(values, w, o.bins, mask=mask, normalisation=normalisation, smoothing=smoothing,
                          straight_through=straight_through)
            out_c[name], out_v[name] = pred.contents, pred.variances
        return out_c, out_v

    def sample(theta):
        return gen.sample_traced(with_settings(base, {nm: theta[j] for j, nm in enumerate(names)}), key, n)

    def contents_and_variances(theta):
        return histograms(sample(theta))

    def with_flag_counts(theta):
        ev = sample(theta)
        return histograms(ev), flag_counts(ev.status)

    def with_blocks(theta):
        ev = sample(theta)
        size = n // batches
        blocks = jax.tree_util.tree_map(lambda a: a[:size * batches].reshape((batches, size) + a.shape[1:]), ev)
        return histograms(ev)[0], jax.vmap(lambda b: histograms(b)[0])(blocks)

    simulate_and_count = jax.jit(with_flag_counts)  # one compilation for the nominal and validity's re-runs
    t0 = jnp.asarray(theta0, jnp.result_type(float))
    (nominal, variances), flags = simulate_and_count(t0)
    check_flag_counts(flags, n, max_flagged, on_flagged, where="linearized_histograms")
    block_jac = None
    if batches > 1:
        jac, block_jac = jax.jit(jax.jacfwd(with_blocks))(t0)
        block_jac = {k: np.asarray(v, float) for k, v in block_jac.items()}
    else:
        jac = jax.jit(jax.jacfwd(lambda t: contents_and_variances(t)[0]))(t0)
    return LinearizedHistograms(
        names, theta0,
        nominal={k: np.asarray(v, float) for k, v in nominal.items()},
        errors={k: np.sqrt(np.asarray(v, float)) for k, v in variances.items()},
        jacobian={k: np.asarray(v, float) for k, v in jac.items()},
        edges={k: np.asarray(o.bins, float) for k, o in obs.items()},
        simulate=lambda theta: simulate_and_count(theta)[0],
        block_jacobians=block_jac,
    )
