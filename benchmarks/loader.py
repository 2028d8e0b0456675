"""Training input throughput: ltfast's device loader against the field's DataLoader pipeline.

    python benchmarks/loader.py [--root R] [--json PATH] [--strong-json PATH]

One epoch of CIFAR-10-LT (12,406 images, imbalance 100) in batches of 128, delivered as
normalised float tensors with random crop (4-pixel padding) and flip, progressive-balanced
sampling; then the same epoch with AutoAugment's CIFAR10 policy and Cutout 16 (the strong
pipeline of PaCo, CMO and NCL). Ratios are the time of each row over ltfast's device loader's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import (
    Row,
    field_loader,
    long_tail_cifar10,
    median_seconds,
    parser,
    publish_time_ratios,
)

from ltfast import ProgressiveBalancedSampler, kernels
from ltfast.augment.pipelines import build_pipeline
from ltfast.config import TrainConfig
from ltfast.loader import DeviceLoader, TorchLoader


def consume(batches) -> None:
    for images, _ in batches:
        assert images.dtype == torch.float32 or images.dtype == torch.bfloat16


def measure(dataset, device: torch.device, repeats: int) -> list[Row]:
    sampler = ProgressiveBalancedSampler(dataset.targets, epochs=200)
    sampler.set_epoch(100)
    probabilities = sampler.class_probabilities()
    device_loader = DeviceLoader(*dataset.tensors(), 128, device, augment=True)
    epochs = iter(range(10**9))
    cases = [
        (
            "ltfast_device_loader",
            f"DeviceLoader on {device.type}: gather + crop + flip + normalise",
            lambda: consume(device_loader.batches(sampler, next(epochs))),
        ),
    ]
    for workers in (0, 2):
        torch_loader = TorchLoader(dataset, 128, device, augment=True, workers=workers)
        cases.append(
            (
                f"ltfast_dataset_dataloader_{workers}w",
                f"ltfast Dataset + DataLoader, v2 transforms on uint8 tensors, {workers} workers",
                lambda loader=torch_loader: consume(loader.batches(sampler)),
            )
        )
    for workers in (0, 2):
        loader = field_loader(dataset, probabilities, workers)
        cases.append(
            (
                f"torch_dataloader_{workers}w",
                f"DataLoader, PIL + torchvision transforms, weighted sampler, {workers} workers",
                lambda loader=loader: consume((x.to(device), y.to(device)) for x, y in loader),
            )
        )
    return [
        Row(name, what, median_seconds(run, repeats), len(dataset)) for name, what, run in cases
    ]


def measure_strong(dataset, device: torch.device, repeats: int) -> list[Row]:
    """AutoAugment (CIFAR10 policy) + Cutout 16 after crop and flip, three ways."""
    sampler = ProgressiveBalancedSampler(dataset.targets, epochs=200)
    sampler.set_epoch(100)
    pipeline = build_pipeline(TrainConfig(augment="autoaugment", cutout=16))
    device_loader = DeviceLoader(*dataset.tensors(), 128, device, augment=True, pipeline=pipeline)
    torch_loader = TorchLoader(dataset, 128, device, augment=True, workers=2, pipeline=pipeline)
    field = field_loader(dataset, sampler.class_probabilities(), 2, strong=True)
    epochs = iter(range(10**9))
    cases = [
        (
            "ltfast_device_autoaugment_cutout",
            f"DeviceLoader on {device.type}: batched AutoAugment + Cutout, per-image draws",
            lambda: consume(device_loader.batches(sampler, next(epochs))),
        ),
        (
            "torchvision_v2_uint8_2w",
            "ltfast Dataset + DataLoader, v2 AutoAugment + Cutout on uint8 tensors, 2 workers",
            lambda: consume(torch_loader.batches(sampler)),
        ),
        (
            "torch_dataloader_pil_2w",
            "DataLoader, PIL + torchvision AutoAugment + the field's Cutout, 2 workers",
            lambda: consume((x.to(device), y.to(device)) for x, y in field),
        ),
    ]
    return [
        Row(name, what, median_seconds(run, repeats), len(dataset)) for name, what, run in cases
    ]


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--root", type=Path, help="data root holding cifar-10-batches-bin/")
    args.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args.add_argument("--strong-json", type=Path, help="write the strong pipeline's rows here")
    args = args.parse_args(argv)
    kernels.warmup()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        dataset = long_tail_cifar10(args.root, Path(scratch))
        rows = measure(dataset, device, args.repeats)
        strong = measure_strong(dataset, device, args.repeats)
    publish_time_ratios("One epoch of CIFAR-10-LT training input (12,406 images)", rows, args.json)
    publish_time_ratios(
        "The same epoch with AutoAugment (CIFAR10 policy) + Cutout 16", strong, args.strong_json
    )
    return rows + strong


if __name__ == "__main__":
    main()
