"""Class-aware samplers (Kang et al., ICLR 2020) that change with `set_epoch`, shard across
ranks like `DistributedSampler`, and draw in O(num_samples) past torch's 2**24 limit.

Every rank draws the same global list from (seed, epoch) and takes its stride
`rank::num_replicas`, so the ranks together see exactly one draw, and all are equally long.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ltfast.checks import integer, real
from ltfast.kernels import ClassIndex, class_counts
from ltfast.seeds import SAMPLER, derive_seed

CONVENTIONS = ("t/T", "(t-1)/(T-1)")


def _targets(targets: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Class labels as int64, refusing float, bool and other non-integer arrays."""
    array = targets.numpy(force=True) if isinstance(targets, torch.Tensor) else np.asarray(targets)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"targets must be a non-empty 1-D sequence, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class labels, got dtype {array.dtype}")
    return array.astype(np.int64)


# More classes than any long-tail benchmark has (iNaturalist: 8,142; ImageNet-21k: 21,841): a
# label beyond this is a stray value, which would otherwise allocate per-class tables of its
# size (10**9 classes: gigabytes).
MAX_CLASSES = 1_000_000


def _inferred_classes(targets: np.ndarray) -> int:
    """The class count the labels imply (max + 1), refusing negative and stray labels."""
    low, high = int(targets.min()), int(targets.max())
    for value in (low, high):
        if not 0 <= value < MAX_CLASSES:
            position = int(np.flatnonzero(targets == value)[0])
            raise ValueError(
                f"label {value} at position {position} is out of range: labels must be in "
                f"0..num_classes-1 (and below {MAX_CLASSES:,}); pass num_classes to say how "
                f"many classes there are"
            )
    return high + 1


def balanced_probabilities(counts: np.ndarray, q: float) -> np.ndarray:
    """p_j = n_j**q / sum_i n_i**q over the classes that have samples; 0 for empty classes."""
    if not 0 <= real("q", q) <= 1:
        raise ValueError(
            f"q must be in [0, 1] (1 instance-, 0.5 square-root-, 0 class-balanced), got {q}"
        )
    counts = np.asarray(counts, dtype=np.float64)
    powered = np.where(counts > 0, counts**q, 0.0)
    return powered / powered.sum()


def progressive_probabilities(counts: np.ndarray, ratio: float) -> np.ndarray:
    """p_j = (1 - ratio) * n_j / N + ratio / C, with C the classes that have samples."""
    return (1 - ratio) * balanced_probabilities(counts, 1.0) + ratio * balanced_probabilities(
        counts, 0.0
    )


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    num_replicas, rank = integer("num_replicas", num_replicas, 1), integer("rank", rank, 0)
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(
            f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}"
        )
    return num_replicas, rank


class EpochSampler(Sampler[int]):
    """A fresh draw each epoch, a pure function of (seed, epoch), strided across ranks."""

    def __init__(
        self,
        num_samples: int,
        seed: int,
        num_replicas: int | None,
        rank: int | None,
    ):
        self.num_samples = integer("num_samples", num_samples, 1)
        self.seed = integer("seed", seed, 0)
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.epoch = 0
        # Like DistributedSampler: the total is rounded up so every rank is equally long.
        self.total_size = math.ceil(num_samples / self.num_replicas) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Selects epoch `epoch` (0-based) for the next iteration."""
        self.epoch = integer("epoch", epoch, 0)

    def global_indices(self) -> np.ndarray:
        """The whole draw of the current epoch, before it is split across ranks."""
        raise NotImplementedError

    def indices(self) -> np.ndarray:
        """This rank's int64 positions for the current epoch (what iteration yields)."""
        return self.global_indices()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restores what state_dict() returned: {"seed": int, "epoch": int}, checked."""
        if not isinstance(state, dict) or set(state) != {"seed", "epoch"}:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"a sampler state is {{'seed': int, 'epoch': int}}, got {keys}")
        seed = integer("seed", state["seed"], 0)
        if seed >= 2**63:
            raise ValueError(f"seed must be below 2**63, got {seed}")
        self.set_epoch(state["epoch"])
        self.seed = seed


class ShuffleSampler(EpochSampler):
    """Instance sampling: a permutation of all samples each epoch, without replacement.

    With several ranks the permutation is padded by wrapping around, like DistributedSampler.
    """

    def __init__(
        self,
        size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        super().__init__(size, seed, num_replicas, rank)

    def global_indices(self) -> np.ndarray:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        return np.resize(order, self.total_size)


class _ClassSampler(EpochSampler):
    """Draws a class with the epoch's class probabilities, then a sample of it uniformly."""

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        num_samples: int | None,
        seed: int,
        num_classes: int | None,
        num_replicas: int | None,
        rank: int | None,
    ):
        targets = _targets(targets)
        if num_classes is None:
            num_classes = _inferred_classes(targets)
        num_classes = integer("num_classes", num_classes, 1)
        if num_classes > MAX_CLASSES:
            raise ValueError(f"num_classes must be at most {MAX_CLASSES:,}, got {num_classes:,}")
        self.counts = class_counts(targets, num_classes)
        self._index = ClassIndex(targets, num_classes)
        super().__init__(
            len(targets) if num_samples is None else num_samples, seed, num_replicas, rank
        )

    def class_probabilities(self) -> np.ndarray:
        """The class probabilities of the current epoch."""
        raise NotImplementedError

    def global_indices(self) -> np.ndarray:
        key = derive_seed(self.seed, self.epoch, SAMPLER)
        return self._index.draw(self.class_probabilities(), self.total_size, key)


class ClassBalancedSampler(_ClassSampler):
    """p_j proportional to n_j**q, with replacement: q=1 instance-balanced, q=0.5 square-root,
    q=0 class-balanced. A class without samples gets probability 0."""

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        q: float = 0.0,
        num_samples: int | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        super().__init__(targets, num_samples, seed, num_classes, num_replicas, rank)
        self.q = q
        self._probabilities = balanced_probabilities(self.counts, q)

    def class_probabilities(self) -> np.ndarray:
        return self._probabilities.copy()


class ProgressiveBalancedSampler(_ClassSampler):
    """Kang et al.'s progressive-balanced sampling over `epochs` epochs:
    p_j(t) = (1 - r) * n_j / N + r / C, with r = t/T for epochs t = 1..T (BagofTricks-LT,
    the default) or r = (t-1)/(T-1) (classifier-balancing). Epoch e of set_epoch is t = e + 1.
    """

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        epochs: int,
        convention: str = "t/T",
        num_samples: int | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        epochs = integer("epochs", epochs, 1)
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        if convention == "(t-1)/(T-1)" and epochs < 2:
            raise ValueError("convention '(t-1)/(T-1)' needs epochs >= 2")
        self.epochs, self.convention = epochs, convention
        super().__init__(targets, num_samples, seed, num_classes, num_replicas, rank)

    def set_epoch(self, epoch: int) -> None:
        if integer("epoch", epoch, 0) >= self.epochs:
            raise ValueError(
                f"epoch must be in 0..{self.epochs - 1} for epochs={self.epochs}, got {epoch}"
            )
        super().set_epoch(epoch)

    def ratio(self) -> float:
        """The weight r of the class-balanced part in the current epoch."""
        t = self.epoch + 1
        if self.convention == "t/T":
            return t / self.epochs
        return (t - 1) / (self.epochs - 1)

    def class_probabilities(self) -> np.ndarray:
        return progressive_probabilities(self.counts, self.ratio())
