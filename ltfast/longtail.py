"""The long-tailed profiles of CIFAR-10-LT / CIFAR-100-LT (LDAM-DRW, BagofTricks-LT, MiSLAS, ...).

Kept exactly as the field computes them (float64 pow, int() truncation, n_max = N / C as a
float), so that every codebase trains on the same images.
"""

from __future__ import annotations

import numpy as np

from ltfast.checks import real
from ltfast.kernels import long_tail_indices

IMB_TYPES = ("exp", "step")
# ldam: each class's images in the order a seeded shuffle puts them (LDAM-DRW's, the standard);
# first_n: each class's first images in file order (Weight Balancing's, ImbSAM's, SHIKE's).
SUBSETS = ("ldam", "first_n")


def check_imbalance(imb_factor: float, imb_type: str) -> None:
    if not 0 < real("imb_factor", imb_factor) <= 1:
        raise ValueError(
            f"imb_factor must be in (0, 1] (n_min / n_max; 0.01 is an imbalance ratio of 100), "
            f"got {imb_factor}"
        )
    if imb_type not in IMB_TYPES:
        raise ValueError(f"imb_type must be one of {IMB_TYPES}, got {imb_type!r}")


def images_per_class(
    num_classes: int, imb_factor: float, imb_type: str = "exp", max_per_class: float | None = None
) -> list[int]:
    """Training images kept per class. `max_per_class` defaults to 50000 / num_classes."""
    check_imbalance(imb_factor, imb_type)
    n_max = 50000 / num_classes if max_per_class is None else float(max_per_class)
    if imb_type == "exp":
        return [int(n_max * imb_factor ** (c / (num_classes - 1.0))) for c in range(num_classes)]
    head = num_classes // 2
    return [int(n_max)] * head + [int(n_max * imb_factor)] * (num_classes - head)


def long_tail_subset(
    targets: np.ndarray,
    num_classes: int,
    imb_factor: float = 0.01,
    imb_type: str = "exp",
    seed: int = 0,
    subset: str = "ldam",
) -> np.ndarray:
    """Positions in `targets` of the long-tailed subset: class 0's block, then class 1's, ...
    `ldam` (the standard): each block in the order NumPy's legacy generator (seeded once)
    shuffled it. `first_n`: each block the class's first images in file order, as Weight
    Balancing's `gen_imbalanced_data` takes them with its shuffles commented out (`seed` is
    unused). Both keep the same number of images per class."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    targets = np.asarray(targets)
    per_class = images_per_class(num_classes, imb_factor, imb_type, len(targets) / num_classes)
    if subset == "first_n":
        blocks = [np.flatnonzero(targets == c)[:n] for c, n in enumerate(per_class)]
        return np.concatenate(blocks).astype(np.int64)
    return long_tail_indices(targets, np.array(per_class), seed)
