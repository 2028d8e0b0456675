"""The parts a training run is made of, built from the config by small builders: the data
(DATASETS), the model (ltfast.models.MODELS, prepared for two-stage training by
ltfast.stages.STAGE2, which also gives the optimiser's parameter groups), the loss
(ltfast.losses.LOSSES), what runs after each training pass (ltfast.hooks.EPOCH_END_HOOKS),
the augmentation pipeline (ltfast.augment.pipelines.PIPELINES), the
batch mixing (ltfast.mixing.MIXERS), and the schedules of sampling (ltfast.schedules.SAMPLERS),
loss weights (REWEIGHTINGS) and target smoothing. The trainer receives them; a new method is a
builder and a registry entry here or in those modules, not an edit of the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ltfast.augment.pipelines import build_pipeline
from ltfast.datasets import CIFAR10, DatasetError, LongTailCIFAR10, LongTailCIFAR100
from ltfast.distributed import World
from ltfast.hooks import EpochEndHook, build_epoch_end_hooks
from ltfast.loader import DeviceLoader, TorchLoader
from ltfast.losses import (
    LOSS_OPTIONS,
    ClassLoss,
    build_loss,
    label_aware_epsilons,
    smoothed_targets,
)
from ltfast.mixing import MIXERS, Mixer
from ltfast.models import LongTailNet, build_model
from ltfast.numerics import Numerics, resolve_precision
from ltfast.registry import Registry
from ltfast.schedules import SamplingSchedule, WeightSchedule
from ltfast.stages import prepare_model
from ltfast.synthetic import learnable_cifar10

if TYPE_CHECKING:  # the config imports this module's registry to check --dataset
    from ltfast.config import TrainConfig

Splits = tuple[CIFAR10, CIFAR10]
TEST_BATCH = 1000  # images per evaluation batch

# ----- data -----------------------------------------------------------------------------------

DATASETS: Registry[Callable[[TrainConfig], Splits]] = Registry("dataset")


def _long_tail(
    kind: type[LongTailCIFAR10 | LongTailCIFAR100], root: Path, config: TrainConfig
) -> Splits:
    imbalance = config.imb_factor, config.imb_type
    try:  # the fast path: tensors, batched fetches (see ltfast.datasets)
        train = kind(
            root,
            *imbalance,
            config.subset_seed,
            download=config.download,
            output="tensor",
            subset=config.subset,
        )
        test = kind(root, *imbalance, train=False, output="tensor")
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\nOn the command line: add --download, point --data-root at the data, or "
            f"use --dataset synthetic to train offline on generated images"
        ) from None
    return train, test


@DATASETS.register("cifar10")
def cifar10_lt(config: TrainConfig) -> Splits:
    return _long_tail(LongTailCIFAR10, Path(config.data_root), config)


@DATASETS.register("cifar100")
def cifar100_lt(config: TrainConfig) -> Splits:
    return _long_tail(LongTailCIFAR100, Path(config.data_root), config)


@DATASETS.register("synthetic")
def synthetic_lt(config: TrainConfig) -> Splits:
    """The built-in learnable set, generated once under --data-root (see ltfast.synthetic)."""
    root = Path(config.data_root)
    try:
        root = learnable_cifar10(root, config.synthetic_size)
    except OSError as error:
        raise OSError(
            error.errno,
            f"cannot write the synthetic data under {root} ({error.strerror}); pass a "
            f"writable --data-root",
        ) from None
    try:
        return _long_tail(LongTailCIFAR10, root, config)
    except DatasetError as error:
        raise DatasetError(
            f"the generated synthetic data in {root} is damaged ({error.__cause__ or error}). "
            f"Delete {root}: the next run generates it again"
        ) from None


def load_data(config: TrainConfig) -> Splits:
    """The long-tailed training split and the balanced test split."""
    return DATASETS[config.dataset](config)


def numerics(config: TrainConfig, device: torch.device) -> Numerics:
    """The run's numerics on `device` (see ltfast.numerics), `auto` precision resolved."""
    return Numerics(device, resolve_precision(config.precision, device), config.memory_format)


def make_loaders(config: TrainConfig, train: CIFAR10, test: CIFAR10, device, world: World):
    """The training loader, and this rank's strided shard of the test split."""
    return make_train_loader(config, train, device), make_test_loader(config, test, device, world)


def make_train_loader(config: TrainConfig, train: CIFAR10, device) -> DeviceLoader | TorchLoader:
    """Augmented batches of --batch-size, of the indices each epoch's sampler draws."""
    computes, pipeline = numerics(config, device), build_pipeline(config)
    if config.loader == "torch":
        return TorchLoader(
            train,
            config.batch_size,
            device,
            True,
            config.workers,
            computes.channels_last,
            pipeline=pipeline,
            drop_last=config.drop_last,
        )
    return DeviceLoader(
        *train.tensors(),
        config.batch_size,
        device,
        augment=True,
        seed=config.seed,
        dtype=computes.batch_dtype,
        channels_last=computes.channels_last,
        pipeline=pipeline,
        drop_last=config.drop_last,
    )


def make_test_loader(
    config: TrainConfig, test: CIFAR10, device, world: World
) -> DeviceLoader | TorchLoader:
    """Batches of TEST_BATCH of this rank's strided shard of the test split, not augmented."""
    shard = slice(world.rank, None, world.size)
    computes = numerics(config, device)
    if config.loader == "torch":
        indices = range(len(test))[shard]
        return TorchLoader(
            test, TEST_BATCH, device, False, config.workers, computes.channels_last, indices
        )
    images, targets = test.tensors()
    return DeviceLoader(
        images[shard],
        targets[shard],
        TEST_BATCH,
        device,
        augment=False,
        dtype=computes.batch_dtype,
        channels_last=computes.channels_last,
    )


# ----- model, loss and targets ----------------------------------------------------------------


def loss_options(config: TrainConfig) -> dict[str, float | int]:
    """The options of the chosen loss, read from their config fields."""
    return {option: getattr(config, field) for option, field in LOSS_OPTIONS[config.loss].items()}


def make_loss(config: TrainConfig, class_counts: np.ndarray) -> ClassLoss:
    return build_loss(config.loss, class_counts, None, **loss_options(config))


def smoothing_epsilons(config: TrainConfig, class_counts: np.ndarray) -> torch.Tensor | float:
    """One label-smoothing epsilon, or one per class (MiSLAS's label-aware smoothing)."""
    if config.label_smoothing_head > 0 or config.label_smoothing_tail > 0:
        return label_aware_epsilons(
            class_counts, config.label_smoothing_head, config.label_smoothing_tail
        )
    return config.label_smoothing


class Targets:
    """What the loss is given for a batch's labels: the labels themselves, or soft targets
    when they are smoothed."""

    def __init__(self, config: TrainConfig, class_counts: np.ndarray, device: torch.device):
        epsilons = smoothing_epsilons(config, class_counts)
        self.epsilons = epsilons.to(device) if isinstance(epsilons, torch.Tensor) else epsilons
        self.smoothing = isinstance(epsilons, torch.Tensor) or epsilons > 0
        self.num_classes = len(class_counts)

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        if not self.smoothing:
            return labels
        return smoothed_targets(labels, self.num_classes, self.epsilons)


def make_model(
    config: TrainConfig, num_classes: int, device: torch.device, start_from_init: bool = True
) -> tuple[LongTailNet, list[dict]]:
    """The model, started from --init-from's weights (unless `start_from_init` is False) and
    prepared for --stage2, on `device`; and the optimiser's parameter groups."""
    model = build_model(config.model, num_classes, config.classifier)
    param_groups = prepare_model(model, config, start_from_init)
    model = model.to(device).to(memory_format=numerics(config, device).torch_memory_format)
    return model, param_groups


# ----- all of them ----------------------------------------------------------------------------


@dataclass
class Parts:
    train_set: CIFAR10
    test_set: CIFAR10
    model: LongTailNet
    loss: ClassLoss
    param_groups: list[dict]
    sampling: SamplingSchedule
    weighting: WeightSchedule
    targets: Targets
    mixer: Mixer
    train_loader: DeviceLoader | TorchLoader
    test_loader: DeviceLoader | TorchLoader
    epoch_end_hooks: dict[str, EpochEndHook]


def build_parts(
    config: TrainConfig, world: World, device: torch.device, start_from_init: bool = True
) -> Parts:
    """Every part of a run, on `device`; opening the data is the slow step. A resume passes
    `start_from_init=False`: its checkpoint replaces the --init-from weights."""
    train_set, test_set = load_data(config)
    counts = train_set.class_counts
    model, param_groups = make_model(config, len(counts), device, start_from_init)
    train_loader, test_loader = make_loaders(config, train_set, test_set, device, world)
    targets = Targets(config, counts, device)
    mixer = MIXERS[config.mix](
        config, targets, loader=train_loader, train_set=train_set, world=world, device=device
    )
    return Parts(
        train_set=train_set,
        test_set=test_set,
        model=model,
        loss=make_loss(config, counts).to(device),
        param_groups=param_groups,
        sampling=SamplingSchedule(config, train_set.targets, len(counts), world.size, world.rank),
        weighting=WeightSchedule(config, counts),
        targets=targets,
        mixer=mixer,
        train_loader=train_loader,
        test_loader=test_loader,
        epoch_end_hooks=build_epoch_end_hooks(model, config),
    )
