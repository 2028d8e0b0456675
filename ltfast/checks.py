"""Checks of the public API's scalar arguments: a wrong type is named with its value, before
it can turn into a silent truncation (seed=1.5 -> 1) or an obscure comparison error."""

from __future__ import annotations

import numbers

import numpy as np


def integer(name: str, value: object, minimum: int | None = None) -> int:
    """`value` as an int, refusing floats (2.5, but also 2.0 and NaN), bools and strings."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def real(name: str, value: object) -> float:
    """`value` as a float (ints and NumPy numbers too), refusing bools and strings."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)
