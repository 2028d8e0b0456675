"""What changes from epoch to epoch: the learning rate and the sampler."""

from __future__ import annotations

import numpy as np

from ltfast.config import TrainConfig
from ltfast.samplers import (
    ClassBalancedSampler,
    EpochSampler,
    ProgressiveBalancedSampler,
    ShuffleSampler,
    balanced_probabilities,
)


def lr_factor(epoch: int, warmup_epochs: int, milestones: list[int], decay: float) -> float:
    """Linear warm-up over the first epochs, then x decay at each milestone (0-based epochs)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return decay ** sum(epoch >= m for m in milestones)


class SamplingSchedule:
    """Instance sampling (a shuffle) before `sampler_start_epoch`, the chosen sampler after.

    A progressive-balanced sampler runs over the epochs after the switch, so with a switch at
    E its schedule starts at t = 1 in epoch E.
    """

    def __init__(
        self,
        config: TrainConfig,
        targets: list[int] | np.ndarray,
        num_classes: int,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        world = {"num_replicas": num_replicas, "rank": rank, "seed": config.seed}
        self.counts = np.bincount(np.asarray(targets), minlength=num_classes)
        self.instance = ShuffleSampler(len(targets), **world)
        self.start = config.epochs if config.sampler == "instance" else config.sampler_start_epoch
        self.chosen: ClassBalancedSampler | ProgressiveBalancedSampler | None = None
        if config.sampler in ("sqrt", "class"):
            q = 0.5 if config.sampler == "sqrt" else 0.0
            self.chosen = ClassBalancedSampler(targets, q, num_classes=num_classes, **world)
        elif config.sampler == "pb":
            self.chosen = ProgressiveBalancedSampler(
                targets,
                config.epochs - self.start,
                config.pb_convention,
                num_classes=num_classes,
                **world,
            )

    def sampler(self, epoch: int) -> EpochSampler:
        """The sampler of `epoch`, already set to it."""
        if self.chosen is None or epoch < self.start:
            self.instance.set_epoch(epoch)
            return self.instance
        local = epoch - self.start if isinstance(self.chosen, ProgressiveBalancedSampler) else epoch
        self.chosen.set_epoch(local)
        return self.chosen

    def class_probabilities(self, epoch: int) -> np.ndarray:
        sampler = self.sampler(epoch)
        if isinstance(sampler, ClassBalancedSampler | ProgressiveBalancedSampler):
            return sampler.class_probabilities()
        return balanced_probabilities(self.counts, 1.0)
