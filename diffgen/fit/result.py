"""The outcome of a fit (:func:`diffgen.fit.fit` and :func:`diffgen.fit.linear.fit_linearized`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["FitResult"]


class FitResult(NamedTuple):
    """Outcome of :func:`fit`. Vectors and matrices are in the order of ``free``.

    Attributes:
        settings: fitted values ``{name: θ̂}``.
        errors: ``{name: √C_jj}``.
        covariance: C_θ f[k, k] (see module docstring; ``covariance_method`` says which matrix).
        correlation: C_ij/√(C_ii C_jj).
        loss_history: total χ² at each step's parameters, f[steps_run].
        param_history: θ at each step, f[steps_run, k] (row t belongs to loss_history[t]).
        chi2_before, chi2_after: ``{target name: (χ², ndf)}`` on the large final sample.
        n_events_total: events generated in all (fit steps and final samples).
        converged: the relative-change criterion was met.
        free: the fitted setting names.
        fisher_covariance: F⁻¹, the Gauss–Newton covariance.
        covariance_method: ``"hessian"`` or ``"fisher"``.
        histograms_before, histograms_after: ``{target name: (contents, errors)}`` of the simulation.
        start: start values ``{name: θ0}``.
        message: why the fit stopped and anything worth knowing.
        data_covariance: the part of ``covariance`` due to the data's errors alone (the rest is the
            simulated sample's); set by :func:`diffgen.fit.linear.fit_linearized`, else None.
        jacobian_noise: ``{name: ‖δJ‖/‖J‖}``, the statistical noise of one sample's Jacobian column
            relative to its size, in units of the bin errors (falls as 1/√n_events); set by
            :func:`diffgen.fit.linear.fit_linearized`, else None.
    """

    settings: dict
    errors: dict
    covariance: np.ndarray
    correlation: np.ndarray
    loss_history: np.ndarray
    param_history: np.ndarray
    chi2_before: dict
    chi2_after: dict
    n_events_total: int
    converged: bool
    free: tuple = ()
    fisher_covariance: np.ndarray | None = None
    covariance_method: str = "hessian"
    histograms_before: dict | None = None
    histograms_after: dict | None = None
    start: dict | None = None
    message: str = ""
    data_covariance: np.ndarray | None = None
    jacobian_noise: dict | None = None

    @property
    def ndf(self) -> int:
        """Σ ndf of the targets minus the number of fitted parameters."""
        return sum(v[1] for v in self.chi2_after.values()) - len(self.free)

    def summary(self) -> str:
        """A short text table of the fitted values and χ²."""
        lines = [f"{'setting':32s} {'start':>12s} {'fitted':>12s} {'error':>10s}"]
        for n in self.free:
            s0 = (self.start or {}).get(n, float("nan"))
            lines.append(f"{n:32s} {s0:12.6g} {self.settings[n]:12.6g} {self.errors[n]:10.3g}")
        b = sum(v[0] for v in self.chi2_before.values())
        a = sum(v[0] for v in self.chi2_after.values())
        lines.append(f"chi2 before {b:.2f}, after {a:.2f}, ndf {self.ndf}; converged={self.converged}")
        return "\n".join(lines)
