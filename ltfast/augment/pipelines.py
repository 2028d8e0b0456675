"""The training pipelines, keyed by the config's `augment`: what a batch goes through after
the standard crop and flip. Each step has a batched form for the device loader and
torchvision's per-image form for `--loader torch`.

`standard` adds nothing (the LDAM-DRW pipeline). `autoaugment` and `randaugment` add
torchvision's policies; `--cutout LENGTH` adds Cutout after them, on black pixels before
normalising (`--cutout-fill black`: PaCo, CMO, NCL) or on normalised ones, where 0 is the
dataset mean (`--cutout-fill mean`: the original repository).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torchvision.transforms import v2

from ltfast.augment.policies import AutoAugment, Cutout, RandAugment
from ltfast.registry import Registry

if TYPE_CHECKING:
    from ltfast.config import TrainConfig


class Transform(Protocol):
    """A batched augmentation in two halves (see ltfast.augment.policies)."""

    def plan(self, batch: int, generator: torch.Generator) -> Any: ...
    def apply(self, images: torch.Tensor, plan: Any) -> torch.Tensor: ...
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def concatenate_plans(plans: Sequence[Any]) -> Any:
    """Plans of consecutive batches as one: tensors, or tuples of tensors, joined on dim 0."""
    if isinstance(plans[0], torch.Tensor):
        return torch.cat(list(plans))
    return tuple(torch.cat(list(parts)) for parts in zip(*plans, strict=True))


ImageTransform = Callable[[torch.Tensor], torch.Tensor]  # one CHW image -> image
CUTOUT_FILLS = ("black", "mean")


@dataclass(frozen=True)
class Step:
    """One augmentation, batched on the device and per image for a DataLoader."""

    batched: Transform
    per_image: ImageTransform


@dataclass(frozen=True)
class Pipeline:
    """The steps after crop and flip: on uint8 pixels, then on normalised ones."""

    before_normalize: tuple[Step, ...] = ()
    after_normalize: tuple[Step, ...] = ()

    @property
    def draws(self) -> bool:
        """Whether any step needs random numbers (the standard pipeline draws none)."""
        return bool(self.before_normalize or self.after_normalize)


class _OneImage:
    """A batched step applied to one image with torch's global generator (in a DataLoader
    worker, seeded per worker by torch)."""

    def __init__(self, batched: Transform):
        self.batched = batched

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.batched(image.unsqueeze(0), torch.default_generator)[0]

    def __repr__(self) -> str:
        return repr(self.batched)


# A policy builder: config -> its steps.
PIPELINES: Registry[Callable[[TrainConfig], tuple[Step, ...]]] = Registry("augment")


@PIPELINES.register("standard")
def _standard(config: TrainConfig) -> tuple[Step, ...]:
    return ()


@PIPELINES.register("autoaugment")
def _autoaugment(config: TrainConfig) -> tuple[Step, ...]:
    policy = v2.AutoAugmentPolicy(config.autoaugment_policy)
    return (Step(AutoAugment(config.autoaugment_policy), v2.AutoAugment(policy)),)


@PIPELINES.register("randaugment")
def _randaugment(config: TrainConfig) -> tuple[Step, ...]:
    ops, magnitude = config.randaugment_ops, config.randaugment_magnitude
    return (Step(RandAugment(ops, magnitude), v2.RandAugment(ops, magnitude)),)


def build_pipeline(config: TrainConfig) -> Pipeline:
    """The config's policy, then Cutout where --cutout is set."""
    policy = PIPELINES[config.augment](config)
    if config.cutout == 0:
        return Pipeline(policy)
    cutout = Cutout(config.cutout)
    step = (Step(cutout, _OneImage(cutout)),)
    if config.cutout_fill == "black":
        return Pipeline(policy + step)
    return Pipeline(policy, step)
