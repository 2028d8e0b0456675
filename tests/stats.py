"""A chi-square goodness-of-fit check without SciPy."""

from __future__ import annotations

import math

import numpy as np

Z_1E4 = 3.719  # the standard normal's 1 - 1e-4 quantile


def chi_square_critical(df: int, z: float = Z_1E4) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (accurate to ~1% for df >= 3)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def fits(observed: np.ndarray, probabilities: np.ndarray) -> bool:
    """True when counts `observed` are consistent with `probabilities` at level 1e-4, and no
    zero-probability category was hit."""
    observed = np.asarray(observed, dtype=np.float64)
    positive = probabilities > 0
    if observed[~positive].sum() > 0:
        return False
    expected = probabilities[positive] * observed.sum()
    statistic = ((observed[positive] - expected) ** 2 / expected).sum()
    return statistic < chi_square_critical(max(int(positive.sum()) - 1, 1))
