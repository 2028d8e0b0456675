"""What every benchmark shares: timing, the machine stamp, the Markdown table and --json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np
import torch

import ltfast
from ltfast.numerics import cpu_name


def median_seconds(run: Callable[[], object], repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class Row:
    name: str
    what: str
    median_s: float
    work: float  # bytes, images or samples handled per run, for the throughput column
    ratio_to_reference: float = float("nan")


def machine_stamp() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {device}; Python {platform.python_version()}, "
        f"ltfast {ltfast.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
        f"torch {torch.__version__}"
    )


def print_table(title: str, rows: list[Row], unit: str, scale: float, reference: str) -> None:
    """Prints a Markdown table: time, throughput in `unit` (work / scale per second), ratio."""
    print(f"\n### {title}\n\n{machine_stamp()}\n")
    print(f"| name | what | median ms | {unit} | ratio to {reference} |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        rate = row.work / row.median_s / scale if row.median_s == row.median_s else float("nan")
        print(
            f"| {row.name} | {row.what} | {row.median_s * 1e3:.1f} | {rate:,.2f} | "
            f"{row.ratio_to_reference:.2f} |"
        )


def write_json(path: Path | None, rows: list[Row], ratio_key: str, **extra: object) -> None:
    if path is None:
        return
    payload = [{**asdict(row), ratio_key: row.ratio_to_reference} for row in rows]
    for item in payload:
        del item["ratio_to_reference"]
    Path(path).write_text(
        json.dumps({"machine": machine_stamp(), **extra, "rows": payload}, indent=2) + "\n"
    )


def publish_time_ratios(title: str, rows: list[Row], json_path: Path | None) -> None:
    """Rows timed against the first (ltfast's), as images/s with time ratios."""
    for row in rows:
        row.ratio_to_reference = row.median_s / rows[0].median_s
    print_table(title, rows, "images/s", 1, f"{rows[0].name} (time)")
    write_json(json_path, rows, "time_ratio_to_ltfast")


def parser(description: str) -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--repeats", type=int, default=7, help="timed runs per row (median)")
    args.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return args


def long_tail_cifar10(root: Path | None, scratch: Path) -> ltfast.LongTailCIFAR10:
    """CIFAR-10-LT at imbalance 100 (12,406 images): from `root` when given, else from
    synthetic CIFAR-10-sized files written to `scratch`."""
    from ltfast.synthetic import random_cifar10

    return ltfast.LongTailCIFAR10(root if root else random_cifar10(scratch).parent, imb_factor=0.01)


class FieldDataset(torch.utils.data.Dataset):
    """What the long-tail codebases do: NHWC uint8 in memory, a PIL image per item, then
    torchvision transforms (IMBALANCECIFAR10 subclasses torchvision's CIFAR10)."""

    def __init__(self, dataset: ltfast.LongTailCIFAR10, transform):
        self.data = dataset.data  # (N, 32, 32, 3) uint8, as torchvision's
        self.targets = dataset.targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


class FieldCutout:
    """Cutout as the field writes it (DeVries and Taylor; PaCo's and CMO's copies): one hole,
    a numpy mask on the CHW tensor after ToTensor, before Normalize."""

    def __init__(self, length: int = 16):
        self.length = length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[1:]
        mask = np.ones((height, width), np.float32)
        y, x = np.random.randint(height), np.random.randint(width)  # noqa: NPY002 (as the field)
        half = self.length // 2
        y1, y2 = np.clip(y - half, 0, height), np.clip(y + half, 0, height)
        x1, x2 = np.clip(x - half, 0, width), np.clip(x + half, 0, width)
        mask[y1:y2, x1:x2] = 0.0
        return image * torch.from_numpy(mask).expand_as(image)


def field_transform(strong: bool = False):
    """The field's per-image pipeline on PIL images; `strong` adds AutoAugment's CIFAR10
    policy and Cutout 16 as PaCo and CMO place them."""
    from torchvision import transforms

    from ltfast.augment import MEAN, STD

    policy = [transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10)] if strong else []
    cutout = [FieldCutout(16)] if strong else []
    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            *policy,
            transforms.ToTensor(),
            *cutout,
            transforms.Normalize(MEAN, STD),
        ]
    )


def field_loader(
    dataset: ltfast.LongTailCIFAR10,
    probabilities,
    workers: int,
    batch_size: int = 128,
    strong: bool = False,
):
    """DataLoader + WeightedRandomSampler with per-sample weights p[y] / n[y]."""
    weights = torch.from_numpy(
        ltfast.kernels.sample_weights(np.asarray(dataset.targets), probabilities)
    )
    sampler = torch.utils.data.WeightedRandomSampler(weights, len(weights))
    return torch.utils.data.DataLoader(
        FieldDataset(dataset, field_transform(strong)),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
