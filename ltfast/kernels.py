"""Numba kernels for labels and sampling, each behind a thin wrapper that fixes its dtypes.

Every wrapper converts its inputs to one dtype and contiguity, so each kernel compiles once
(and is cached on disk). `warmup()` compiles them all up front, outside any timed region.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ltfast.checks import integer

_GAMMA = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def _class_counts(labels, num_classes):
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        counts[label] += 1
    return counts


@njit(cache=True, nogil=True)
def _long_tail_indices(labels, per_class, seed):
    # NumPy's legacy global generator, seeded and shuffled inside one Numba function, gives
    # the stream of np.random.seed + np.random.shuffle: the field's standard subset.
    np.random.seed(seed)  # noqa: NPY002 (the legacy stream is the point)
    picked = np.empty(per_class.sum(), dtype=np.int64)
    start = 0
    for cls in range(per_class.shape[0]):
        members = np.nonzero(labels == cls)[0]
        np.random.shuffle(members)  # noqa: NPY002
        count = per_class[cls]
        picked[start : start + count] = members[:count]
        start += count
    return picked


@njit(cache=True, nogil=True)
def _sample_weights(labels, class_probabilities, class_counts):
    weights = np.empty(labels.shape[0], dtype=np.float64)
    for i in range(labels.shape[0]):
        label = labels[i]
        weights[i] = class_probabilities[label] / class_counts[label]
    return weights


@njit(cache=True, nogil=True, inline="always")
def _splitmix64(state):
    z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_DRAW_BLOCK = 256


@njit(cache=True, nogil=True)
def _draw(members, offsets, accept, alias, num_samples, key):
    # SplitMix64 evaluated at counters key + k * gamma: random access, so every sample is a
    # pure function of (key, position). The class comes from Walker's alias table (O(1)),
    # the member from the high 32 bits of a second word (Lemire's multiply-shift).
    # Positions are computed a block at a time and then gathered in a loop of bare loads,
    # so the cache misses into a large `members` overlap instead of queueing behind hashing.
    out = np.empty(num_samples, dtype=np.int64)
    positions = np.empty(_DRAW_BLOCK, dtype=np.int64)
    scale = 1.0 / 4294967296.0  # 2**-32
    num_classes = np.uint64(accept.shape[0])
    low32 = np.uint64(0xFFFFFFFF)
    for start in range(0, num_samples, _DRAW_BLOCK):
        stop = min(start + _DRAW_BLOCK, num_samples)
        for i in range(start, stop):
            counter = key + np.uint64(2 * i + 1) * _GAMMA
            bits = _splitmix64(counter)
            column = np.int64(((bits >> np.uint64(32)) * num_classes) >> np.uint64(32))
            cls = column if float(bits & low32) * scale < accept[column] else alias[column]
            size = np.uint64(offsets[cls + 1] - offsets[cls])
            high = _splitmix64(counter + _GAMMA) >> np.uint64(32)
            positions[i - start] = offsets[cls] + np.int64((high * size) >> np.uint64(32))
        for i in range(start, stop):
            out[i] = members[positions[i - start]]
    return out


def alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction): column c keeps class c with probability
    accept[c], else gives alias[c]. Zero-probability classes are never returned."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count = len(probabilities)
    scaled = probabilities * (count / probabilities.sum())
    accept, alias = np.ones(count), np.arange(count, dtype=np.int64)
    small = [c for c in range(count) if scaled[c] < 1.0]
    large = [c for c in range(count) if scaled[c] >= 1.0]
    while small and large:
        below, above = small.pop(), large.pop()
        accept[below], alias[below] = scaled[below], above
        scaled[above] += scaled[below] - 1.0
        (small if scaled[above] < 1.0 else large).append(above)
    # Leftovers are within rounding of 1 and keep accept = 1, except a class of probability 0.
    zero = probabilities == 0
    accept[zero], alias[zero & (alias == np.arange(count))] = 0.0, int(np.argmax(probabilities))
    return accept, alias


def _as_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size:
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise ValueError(
                f"label {labels[bad[0]]} at position {bad[0]} is out of range for "
                f"{num_classes} classes (expected 0..{num_classes - 1})"
            )
    return labels


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of samples of each class, int64 of length `num_classes`."""
    return _class_counts(_as_labels(labels, num_classes), np.int64(num_classes))


def long_tail_indices(labels: np.ndarray, per_class: np.ndarray, seed: int = 0) -> np.ndarray:
    """The standard long-tailed subset: for each class in order, its positions shuffled by
    NumPy's legacy generator (seeded once with `seed`) and cut to `per_class[c]`."""
    per_class = np.ascontiguousarray(per_class, dtype=np.int64)
    labels = _as_labels(labels, len(per_class))
    available = _class_counts(labels, np.int64(len(per_class)))
    if np.any(per_class < 0) or np.any(per_class > available):
        cls = int(np.flatnonzero((per_class < 0) | (per_class > available))[0])
        raise ValueError(f"class {cls} asks for {per_class[cls]} samples but has {available[cls]}")
    if not 0 <= integer("seed", seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return _long_tail_indices(labels, per_class, np.uint32(seed))


def sample_weights(labels: np.ndarray, class_probabilities: np.ndarray) -> np.ndarray:
    """Per-sample weights w_i = p[y_i] / n[y_i]: drawing sample i with probability w_i draws
    class j with probability p[j] (not p[j] * n[j], the classic squared-imbalance bug)."""
    probabilities = np.ascontiguousarray(class_probabilities, dtype=np.float64)
    labels = _as_labels(labels, len(probabilities))
    counts = _class_counts(labels, np.int64(len(probabilities)))
    return _sample_weights(labels, probabilities, counts)


class ClassIndex:
    """Sample positions grouped by class, for drawing a class, then a member of it."""

    def __init__(self, labels: np.ndarray, num_classes: int):
        labels = _as_labels(labels, num_classes)
        self.members = np.argsort(labels, kind="stable").astype(np.int64)
        self.counts = _class_counts(labels, np.int64(num_classes))
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def draw(self, class_probabilities: np.ndarray, num_samples: int, key: int) -> np.ndarray:
        """`num_samples` positions with replacement: class j with probability p[j], then
        uniformly within class j. O(num_samples); a pure function of the arguments."""
        probabilities = np.asarray(class_probabilities, dtype=np.float64)
        if probabilities.shape != self.counts.shape:
            raise ValueError(
                f"expected {len(self.counts)} class probabilities, got {probabilities.shape}"
            )
        if np.any(probabilities[self.counts == 0] > 0):
            raise ValueError("a class with no samples has a positive probability")
        if not probabilities.sum() > 0 or np.any(probabilities < 0):
            raise ValueError(
                f"class probabilities must be >= 0 with a positive sum, got {probabilities}"
            )
        accept, alias = alias_table(probabilities)
        return _draw(
            self.members, self.offsets, accept, alias, np.int64(num_samples), np.uint64(key)
        )


def warmup() -> None:
    """Compiles (or loads from the cache) every kernel, so no timed region pays for it."""
    labels = np.array([0, 1, 1], dtype=np.int64)
    class_counts(labels, 2)
    long_tail_indices(labels, np.array([1, 1]), 0)
    sample_weights(labels, np.array([0.5, 0.5]))
    ClassIndex(labels, 2).draw(np.array([0.5, 0.5]), 4, 0)
