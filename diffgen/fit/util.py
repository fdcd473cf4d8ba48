"""Small host-side helpers shared by the fitters: covariance → correlation, a safe inverse, a progress bar.

Example:
    >>> import numpy as np
    >>> from diffgen.fit.util import cov_to_corr, inverse_or_nan
    >>> cov_to_corr(np.array([[4.0, 2.0], [2.0, 4.0]])).tolist()
    [[1.0, 0.5], [0.5, 1.0]]
    >>> bool(np.isnan(inverse_or_nan(np.zeros((2, 2)))).all())
    True
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["cov_to_corr", "inverse_or_nan", "progress_bar"]


def cov_to_corr(cov) -> np.ndarray:
    """C_ij / √(C_ii C_jj); NaN where a variance is zero."""
    d = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(d, d)
    return np.where(np.outer(d, d) > 0, corr, np.nan)


def inverse_or_nan(m) -> np.ndarray:
    """``np.linalg.inv(m)``, or a matrix of NaN if ``m`` is singular."""
    try:
        return np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return np.full_like(m, np.nan)


def progress_bar(total: int, desc: str, unit: str, enabled: bool):
    """A tqdm bar on stderr, or None when ``enabled`` is False (``None``: only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
