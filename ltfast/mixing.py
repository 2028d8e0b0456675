"""Batch mixing, keyed by the config's `mix`: none, mixup (Zhang et al.), cutmix (Yun et al.)
and cmo (Park et al.: CutMix with a minority-sampled image). SPEC sections 8.7 and 8.8.

A mixer turns each epoch into a function of (images, labels) that returns the images to train
on and their `Mixture` of targets. The loss of a mixture is the field's
lam * loss(y_a) + (1 - lam) * loss(y_b), each with its own batch mean, so per-class weights
(DRW) weight both parts as `criterion(output, y)` does in the field's code. Every draw comes
from (seed, epoch) streams and is made for skipped steps too, so a resumed epoch mixes as an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ltfast.augment.boxes import box_area_lam, rand_bbox
from ltfast.distributed import World
from ltfast.registry import Registry
from ltfast.samplers import ClassBalancedSampler
from ltfast.seeds import MINORITY, MIXUP, derive_seed

if TYPE_CHECKING:
    from ltfast.config import TrainConfig
    from ltfast.datasets import CIFAR10
    from ltfast.loader import DeviceLoader, TorchLoader
    from ltfast.losses import ClassLoss

# CMO's active epochs: start_data_aug < epoch < epochs - end_data_aug (0-based), both 3 in
# its code: epochs 4 to E - 4.
CMO_START_AFTER, CMO_END_BEFORE = 3, 3


@dataclass(frozen=True)
class Mixture:
    """A batch's targets as (weight, target) parts whose weights sum to 1; a target is int64
    labels or soft (smoothed) targets."""

    parts: tuple[tuple[float, torch.Tensor], ...]

    @classmethod
    def of(cls, target: torch.Tensor) -> Mixture:
        return cls(((1.0, target),))

    def loss(self, loss_of: ClassLoss, logits: torch.Tensor, **options) -> torch.Tensor:
        """sum_k weight_k * loss_of(logits, target_k, **options)."""
        if len(self.parts) == 1:
            return loss_of(logits, self.parts[0][1], **options)
        total = self.parts[0][0] * loss_of(logits, self.parts[0][1], **options)
        for weight, target in self.parts[1:]:
            total = total + weight * loss_of(logits, target, **options)
        return total


TargetsOf = Callable[[torch.Tensor], torch.Tensor]  # labels -> what the loss is given
EpochMix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Mixture]]


def mixup(images: torch.Tensor, lam: float, permutation: torch.Tensor) -> torch.Tensor:
    """x = lam * x + (1 - lam) * x[perm]."""
    return images.mul(lam).add_(images[permutation], alpha=1 - lam)


def draw_mixup(
    batch_size: int, alpha: float, rng: np.random.Generator, generator: torch.Generator
) -> tuple[float, torch.Tensor]:
    """One lam ~ Beta(alpha, alpha) and one partner permutation for a batch."""
    lam = float(rng.beta(alpha, alpha))
    permutation = torch.randperm(batch_size, generator=generator, device=generator.device)
    return lam, permutation


def paste_box(
    images: torch.Tensor, patches: torch.Tensor, box: tuple[int, int, int, int]
) -> torch.Tensor:
    """`images` with the box (x1, y1, x2, y2) of each image replaced by `patches`' (CutMix)."""
    x1, y1, x2, y2 = box
    images[:, :, y1:y2, x1:x2] = patches[:, :, y1:y2, x1:x2]
    return images


class Mixer:
    """No mixing: each batch's targets as they are."""

    def __init__(self, targets: TargetsOf, config: TrainConfig):
        self.targets, self.seed, self.epochs = targets, config.seed, config.epochs

    def active(self, epoch: int) -> bool:
        return False

    def for_epoch(self, epoch: int) -> EpochMix:
        if not self.active(epoch):
            return lambda images, labels: (images, Mixture.of(self.targets(labels)))
        return self.mixing(epoch)

    def mixing(self, epoch: int) -> EpochMix:
        raise NotImplementedError

    def streams(self, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
        """The epoch's numpy stream (lam, coins) and a CPU torch stream (partners, boxes)."""
        key = derive_seed(self.seed, epoch, MIXUP)
        return np.random.default_rng(key), torch.Generator().manual_seed(key)


class Mixup(Mixer):
    """x = lam x + (1 - lam) x[perm] with lam ~ Beta(alpha, alpha) per batch, off in the final
    `--mixup-off-epochs` epochs."""

    def __init__(self, targets: TargetsOf, config: TrainConfig, device: torch.device):
        super().__init__(targets, config)
        self.alpha, self.off_epochs, self.device = (
            config.mixup_alpha,
            config.mixup_off_epochs,
            device,
        )

    def active(self, epoch: int) -> bool:
        return epoch < self.epochs - self.off_epochs

    def mixing(self, epoch: int) -> EpochMix:
        rng = np.random.default_rng(derive_seed(self.seed, epoch, MIXUP))
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, epoch, MIXUP))

        def mix(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Mixture]:
            lam, permutation = draw_mixup(len(labels), self.alpha, rng, generator)
            target = self.targets(labels)
            mixed = Mixture(((lam, target), (1 - lam, target[permutation])))
            return mixup(images, lam, permutation), mixed

        return mix


class CutMix(Mixer):
    """With probability `--cutmix-prob` per batch: lam ~ Beta(beta, beta), the box of
    `rand_bbox` filled from a permutation of the batch, lam corrected to the box's area."""

    def __init__(self, targets: TargetsOf, config: TrainConfig):
        super().__init__(targets, config)
        self.beta, self.probability = config.cutmix_beta, config.cutmix_prob

    def active(self, epoch: int) -> bool:
        return True

    def mixing(self, epoch: int) -> EpochMix:
        rng, generator = self.streams(epoch)

        def mix(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Mixture]:
            target = self.targets(labels)
            if not rng.random() < self.probability:
                return images, Mixture.of(target)
            lam = float(rng.beta(self.beta, self.beta))
            permutation = torch.randperm(len(labels), generator=generator).to(images.device)
            height, width = images.shape[-2:]
            box = rand_bbox(height, width, lam, generator)
            images = paste_box(images, images[permutation], box)
            lam = box_area_lam(box, height, width)
            return images, Mixture(((lam, target), (1 - lam, target[permutation])))

        return mix


class CMO(Mixer):
    """Context-rich minority oversampling: in epochs 4 to E - 4 and with probability
    `--cmo-prob` per batch, a CutMix box from a second batch, drawn with per-sample weights
    n_y**-alpha (`--cmo-weight-alpha`; 1: every class equally likely), pasted on the
    instance-sampled batch."""

    def __init__(
        self,
        targets: TargetsOf,
        config: TrainConfig,
        loader: DeviceLoader | TorchLoader,
        train_set: CIFAR10,
        world: World,
    ):
        super().__init__(targets, config)
        self.beta, self.probability, self.loader = config.cutmix_beta, config.cmo_prob, loader
        # Weights n_y**-alpha per sample make class j's probability n_j**(1 - alpha) / Z.
        self.minority = ClassBalancedSampler(
            train_set.targets,
            1.0 - config.cmo_weight_alpha,
            seed=derive_seed(config.seed, MINORITY),
            num_classes=len(train_set.class_counts),
            num_replicas=world.size,
            rank=world.rank,
        )

    def active(self, epoch: int) -> bool:
        return CMO_START_AFTER < epoch < self.epochs - CMO_END_BEFORE

    def minority_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.minority.set_epoch(epoch)
        return self.loader.batches(self.minority, epoch, stream=MINORITY)

    def mixing(self, epoch: int) -> EpochMix:
        rng, generator = self.streams(epoch)
        minority = self.minority_batches(epoch)

        def mix(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Mixture]:
            images2, labels2 = next(minority)  # every step, so the two passes stay in step
            target = self.targets(labels)
            if not rng.random() < self.probability:
                return images, Mixture.of(target)
            lam = float(rng.beta(self.beta, self.beta))
            height, width = images.shape[-2:]
            box = rand_bbox(height, width, lam, generator)
            images = paste_box(images, images2[: len(labels)], box)
            lam = box_area_lam(box, height, width)
            return images, Mixture(((lam, target), (1 - lam, self.targets(labels2[: len(labels)]))))

        return mix


# A mixer builder: (config, targets of labels, training loader, training set, world, device).
MIXERS: Registry[Callable[..., Mixer]] = Registry("mix")
MIXERS.register("none")(lambda config, targets, **parts: Mixer(targets, config))
MIXERS.register("mixup")(lambda config, targets, device, **parts: Mixup(targets, config, device))
MIXERS.register("cutmix")(lambda config, targets, **parts: CutMix(targets, config))
MIXERS.register("cmo")(
    lambda config, targets, loader, train_set, world, **parts: CMO(
        targets, config, loader, train_set, world
    )
)
