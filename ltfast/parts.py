"""The parts a training run is made of, built from the config by small builders: the data
(DATASETS), the model (ltfast.models.MODELS), the loss (ltfast.losses.LOSSES), the optimiser's
parameter groups, and the schedules of sampling (ltfast.schedules.SAMPLERS), loss weights
(REWEIGHTINGS) and target smoothing. The trainer receives them; a new method is a builder and
a registry entry here or in those modules, not an edit of the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ltfast.datasets import CIFAR10, DatasetError, LongTailCIFAR10, LongTailCIFAR100
from ltfast.distributed import World
from ltfast.loader import DeviceLoader, TorchLoader
from ltfast.losses import (
    LOSS_OPTIONS,
    ClassLoss,
    build_loss,
    label_aware_epsilons,
    smoothed_targets,
)
from ltfast.models import build_model
from ltfast.registry import Registry
from ltfast.schedules import SamplingSchedule, WeightSchedule
from ltfast.synthetic import learnable_cifar10

if TYPE_CHECKING:  # the config imports this module's registry to check --dataset
    from ltfast.config import TrainConfig

Splits = tuple[CIFAR10, CIFAR10]

# ----- data -----------------------------------------------------------------------------------

DATASETS: Registry[Callable[[TrainConfig], Splits]] = Registry("dataset")


def _long_tail(
    kind: type[LongTailCIFAR10 | LongTailCIFAR100], root: Path, config: TrainConfig
) -> Splits:
    imbalance = config.imb_factor, config.imb_type
    try:
        train = kind(root, *imbalance, seed=config.subset_seed, download=config.download)
        test = kind(root, *imbalance, train=False)
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


def input_format(device: torch.device, amp: bool) -> tuple[torch.dtype, bool]:
    """(dtype, channels_last) of the batches the device loader hands the model: on CUDA,
    channels_last (what tensor-core convolutions read) and, under --amp, already bf16;
    float32 NCHW elsewhere. The model's memory format follows."""
    cuda = device.type == "cuda"
    return (torch.bfloat16 if amp and cuda else torch.float32), cuda


def make_loaders(config: TrainConfig, train: CIFAR10, test: CIFAR10, device, world: World):
    """The training loader, and this rank's strided shard of the test split."""
    cuda = device.type == "cuda"
    shard = slice(world.rank, None, world.size)
    if config.loader == "torch":
        shard_indices = range(len(test))[shard]
        return (
            TorchLoader(train, config.batch_size, device, True, config.workers, cuda),
            TorchLoader(test, 1000, device, False, config.workers, cuda, shard_indices),
        )
    dtype, channels_last = input_format(device, config.amp)
    test_targets = np.asarray(test.targets)[shard]
    return (
        DeviceLoader(
            train.data,
            train.targets,
            config.batch_size,
            device,
            augment=True,
            seed=config.seed,
            dtype=dtype,
            channels_last=channels_last,
        ),
        DeviceLoader(
            test.data[shard],
            test_targets,
            1000,
            device,
            augment=False,
            dtype=dtype,
            channels_last=channels_last,
        ),
    )


# ----- model, loss and targets ----------------------------------------------------------------


def loss_options(config: TrainConfig) -> dict[str, float]:
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
    when they are smoothed or will be mixed."""

    def __init__(self, config: TrainConfig, class_counts: np.ndarray, device: torch.device):
        epsilons = smoothing_epsilons(config, class_counts)
        self.epsilons = epsilons.to(device) if isinstance(epsilons, torch.Tensor) else epsilons
        self.smoothing = isinstance(epsilons, torch.Tensor) or epsilons > 0
        self.num_classes = len(class_counts)

    def __call__(self, labels: torch.Tensor, soft: bool) -> torch.Tensor:
        if not (soft or self.smoothing):
            return labels
        return smoothed_targets(labels, self.num_classes, self.epsilons)


def parameter_groups(config: TrainConfig, model: nn.Module) -> list[dict]:
    """The optimiser's parameter groups: one, every parameter at --lr and --weight-decay."""
    return [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]


# ----- all of them ----------------------------------------------------------------------------


@dataclass
class Parts:
    train_set: CIFAR10
    test_set: CIFAR10
    model: nn.Module
    loss: ClassLoss
    param_groups: list[dict]
    sampling: SamplingSchedule
    weighting: WeightSchedule
    targets: Targets
    train_loader: DeviceLoader | TorchLoader
    test_loader: DeviceLoader | TorchLoader


def build_parts(config: TrainConfig, world: World, device: torch.device) -> Parts:
    """Every part of a run, on `device`; opening the data is the slow step."""
    train_set, test_set = load_data(config)
    counts = train_set.class_counts
    model = build_model(config.model, len(train_set.classes), config.classifier).to(device)
    if input_format(device, config.amp)[1]:
        model = model.to(memory_format=torch.channels_last)
    train_loader, test_loader = make_loaders(config, train_set, test_set, device, world)
    return Parts(
        train_set=train_set,
        test_set=test_set,
        model=model,
        loss=make_loss(config, counts).to(device),
        param_groups=parameter_groups(config, model),
        sampling=SamplingSchedule(config, train_set.targets, len(counts), world.size, world.rank),
        weighting=WeightSchedule(config, counts),
        targets=Targets(config, counts, device),
        train_loader=train_loader,
        test_loader=test_loader,
    )
