"""What changes from epoch to epoch: the learning rate, the sampler and the loss's per-class
weights. Each is a registry keyed by the config: `--lr-schedule`, `--sampler`, `--reweight`."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from ltfast.losses import class_balanced_weights, inverse_frequency_weights
from ltfast.registry import Registry
from ltfast.samplers import (
    ClassBalancedSampler,
    EpochSampler,
    ProgressiveBalancedSampler,
    ShuffleSampler,
    balanced_probabilities,
)

if TYPE_CHECKING:
    from ltfast.config import TrainConfig


def lr_factor(epoch: int, warmup_epochs: int, milestones: list[int], decay: float) -> float:
    """Linear warm-up over the first epochs, then x decay at each milestone (0-based epochs)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return decay ** sum(epoch >= m for m in milestones)


def cosine_factor(epoch: int, warmup_epochs: int, epochs: int) -> float:
    """Linear warm-up, then a cosine from 1 to 0 over the remaining epochs, set once per
    epoch (MiSLAS's stage 2: 0.5 (1 + cos(pi e / E)), e = 0..E-1)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def shifted_cosine_factor(epoch: int, warmup_epochs: int, epochs: int) -> float:
    """torch's CosineAnnealingLR(T = epochs after the warm-up) stepped at the start of each
    epoch, as ImbSAM's and Weight Balancing's loops step it: epoch e trains at
    0.5 (1 + cos(pi (e + 1) / E)), one step ahead of `cosine_factor`; the last epoch at 0."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    position = (epoch - warmup_epochs + 1) / (epochs - warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * position))


def paco_factor(epoch: int, warmup_epochs: int, milestones: list[int], decay: float) -> float:
    """PaCo's schedule (`adjust_learning_rate` in paco_cifar.py; CMO's 400-epoch runs use it
    too): (e + 1) / W for e <= W, then x decay after each milestone (e > m). Epoch e = W
    trains at (W + 1) / W of --lr (1.1 lr for W = 10): a quirk of its code that ltfast keeps,
    so the 400-epoch recipes run the published schedule."""
    if warmup_epochs and epoch <= warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return decay ** sum(epoch > m for m in milestones)


# WarmupMultiStepLR's starting factor in BagofTricks-LT's configs.
BOT_WARMUP_FACTOR = 1 / 3


def bot_factor(epoch: int, warmup_epochs: int, milestones: list[int], decay: float) -> float:
    """BagofTricks-LT's WarmupMultiStepLR as its loop steps it: once in the constructor, then
    at the start of every epoch, so 0-based epoch e trains at last_epoch = e + 1. A linear
    warm-up from 1/3 (e + 1 < W), and x decay for each milestone m <= e + 1: the decays come
    one epoch earlier than in LDAM-DRW's schedule (SPEC 8.4)."""
    last = epoch + 1
    warm = 1.0
    if last < warmup_epochs:
        alpha = last / warmup_epochs
        warm = BOT_WARMUP_FACTOR * (1 - alpha) + alpha
    return warm * decay ** bisect.bisect_right(milestones, last)


# A learning-rate schedule: (epoch, config) -> the factor applied to --lr in that epoch.
LR_SCHEDULES: Registry[Callable[[int, TrainConfig], float]] = Registry("lr_schedule")
LR_SCHEDULES.register("step")(
    lambda epoch, c: lr_factor(epoch, c.warmup_epochs, c.lr_milestones, c.lr_decay)
)
LR_SCHEDULES.register("cosine")(lambda epoch, c: cosine_factor(epoch, c.warmup_epochs, c.epochs))
LR_SCHEDULES.register("cosine_shifted")(
    lambda epoch, c: shifted_cosine_factor(epoch, c.warmup_epochs, c.epochs)
)
LR_SCHEDULES.register("bot")(
    lambda epoch, c: bot_factor(epoch, c.warmup_epochs, c.lr_milestones, c.lr_decay)
)
LR_SCHEDULES.register("paco")(
    lambda epoch, c: paco_factor(epoch, c.warmup_epochs, c.lr_milestones, c.lr_decay)
)


# A sampler builder: (targets, num_classes, config, rank's world) -> the sampler, or None for
# plain instance sampling.
SamplerBuilder = Callable[..., ClassBalancedSampler | ProgressiveBalancedSampler | None]
SAMPLERS: Registry[SamplerBuilder] = Registry("sampler")


@SAMPLERS.register("instance")
def _instance(targets, num_classes, config, **world) -> None:
    return None


@SAMPLERS.register("sqrt")
def _square_root(targets, num_classes, config, **world) -> ClassBalancedSampler:
    return ClassBalancedSampler(targets, 0.5, num_classes=num_classes, **world)


@SAMPLERS.register("class")
def _class_balanced(targets, num_classes, config, **world) -> ClassBalancedSampler:
    return ClassBalancedSampler(targets, 0.0, num_classes=num_classes, **world)


@SAMPLERS.register("pb")
def _progressive(targets, num_classes, config, **world) -> ProgressiveBalancedSampler:
    return ProgressiveBalancedSampler(
        targets, config.epochs, config.pb_convention, num_classes=num_classes, **world
    )


class SamplingSchedule:
    """Instance sampling (a shuffle) before `sampler_start_epoch`, the chosen sampler after.

    A progressive-balanced sampler counts t over the whole run, not from the switch: deferred
    at epoch 160 of 200 it starts at t/T = 161/200, as BagofTricks-LT's DRS-PB does (its
    dataset's `update` mixes with epoch / MAX_EPOCH whatever START_EPOCH is).
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
        self.start = config.sampler_start_epoch
        self.chosen = SAMPLERS[config.sampler](targets, num_classes, config, **world)

    def sampler(self, epoch: int) -> EpochSampler:
        """The sampler of `epoch`, already set to it."""
        if self.chosen is None or epoch < self.start:
            self.instance.set_epoch(epoch)
            return self.instance
        self.chosen.set_epoch(epoch)
        return self.chosen

    def class_probabilities(self, epoch: int) -> np.ndarray:
        sampler = self.sampler(epoch)
        if isinstance(sampler, ClassBalancedSampler | ProgressiveBalancedSampler):
            return sampler.class_probabilities()
        return balanced_probabilities(self.counts, 1.0)


# A weighting builder: (class counts, config) -> per-class loss weights, or None for none.
WeightingBuilder = Callable[[np.ndarray, "TrainConfig"], torch.Tensor | None]
REWEIGHTINGS: Registry[WeightingBuilder] = Registry("reweight")
REWEIGHTINGS.register("none")(lambda counts, config: None)
REWEIGHTINGS.register("inverse")(lambda counts, config: inverse_frequency_weights(counts))
REWEIGHTINGS.register("class_balanced")(
    lambda counts, config: class_balanced_weights(counts, config.reweight_beta)
)


class WeightSchedule:
    """The loss's per-class weights: none before `reweight_start_epoch`, the chosen weighting
    from then on (LDAM-DRW's deferred re-weighting switches at epoch 160)."""

    def __init__(self, config: TrainConfig, counts: np.ndarray):
        self.start = config.reweight_start_epoch
        self.chosen = REWEIGHTINGS[config.reweight](np.asarray(counts), config)
        self.num_classes = len(counts)

    def weights(self, epoch: int) -> torch.Tensor | None:
        return None if epoch < self.start else self.chosen

    def as_list(self, epoch: int) -> list[float]:
        """The weights in force, for the metrics (ones when there are none)."""
        weights = self.weights(epoch)
        return [1.0] * self.num_classes if weights is None else weights.tolist()
