"""Train a CIFAR ResNet on long-tailed CIFAR: `python -m ltfast.train --help`.

A run folder (`--out`) receives the resolved `config.yaml`, `metrics.jsonl` (one line per
epoch) and `summary.json` (final and best epoch).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ltfast import kernels
from ltfast.config import TrainConfig, dump, parser, resolve
from ltfast.datasets import LongTailCIFAR10, LongTailCIFAR100
from ltfast.loader import DeviceLoader, TorchLoader
from ltfast.losses import draw_mixup, mixup, smoothed_targets, soft_cross_entropy
from ltfast.metrics import FEW_BELOW, MANY_ABOVE, classification_report
from ltfast.models import build_model
from ltfast.schedules import SamplingSchedule, lr_factor
from ltfast.seeds import MIXUP, derive_seed
from ltfast.synthetic import learnable_cifar10

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name} was asked for, but torch sees no CUDA device")
    return device


def load_data(config: TrainConfig) -> tuple[LongTailCIFAR10, LongTailCIFAR10]:
    """The long-tailed training split and the balanced test split."""
    root = Path(config.data_root)
    if config.dataset == "synthetic":
        root = learnable_cifar10(root, config.synthetic_size)
    kind = LongTailCIFAR100 if config.dataset == "cifar100" else LongTailCIFAR10
    common = {"imb_factor": config.imb_factor, "imb_type": config.imb_type}
    try:
        train = kind(root, seed=config.subset_seed, download=config.download, **common)
        test = kind(root, train=False, **common)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\nOn the command line: add --download, point --data-root at the data, or "
            f"use --dataset synthetic to train offline on generated images"
        ) from None
    return train, test


def make_loaders(config: TrainConfig, train, test, device: torch.device):
    cuda = device.type == "cuda"
    if config.loader == "torch":
        return (
            TorchLoader(train, config.batch_size, device, True, config.workers, cuda),
            TorchLoader(test, 1000, device, False, config.workers, cuda),
        )
    dtype = torch.bfloat16 if config.amp and cuda else torch.float32
    common = {"device": device, "dtype": dtype, "channels_last": cuda}
    return (
        DeviceLoader(
            train.data, train.targets, config.batch_size, augment=True, seed=config.seed, **common
        ),
        DeviceLoader(test.data, test.targets, 1000, augment=False, **common),
    )


def prepare_run_folder(config: TrainConfig) -> Path:
    out = Path(config.out)
    if (out / "metrics.jsonl").exists():
        if not config.overwrite:
            raise ValueError(f"out: {out} already holds a run; pass --overwrite to replace it")
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    dump(config, out / "config.yaml")
    return out


class Trainer:
    """One model, its optimiser and data, trained epoch by epoch."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.device = pick_device(config.device)
        torch.manual_seed(config.seed)
        kernels.warmup()
        self.train_set, self.test_set = load_data(config)
        self.num_classes = len(self.train_set.classes)
        model = build_model(config.model, self.num_classes).to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.step_model = torch.compile(model) if config.compile else model
        self.optimizer = torch.optim.SGD(
            model.parameters(),
            config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda e: lr_factor(e, config.warmup_epochs, config.lr_milestones, config.lr_decay),
        )
        self.train_loader, self.test_loader = make_loaders(
            config, self.train_set, self.test_set, self.device
        )
        self.sampling = SamplingSchedule(config, self.train_set.targets, self.num_classes)
        self.autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=config.amp)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        config, device = self.config, self.device
        self.model.train()
        mixing = config.mixup_alpha > 0 and epoch < config.epochs - config.mixup_off_epochs
        rng = np.random.default_rng(derive_seed(config.seed, epoch, MIXUP))
        generator = torch.Generator(device=device)
        generator.manual_seed(derive_seed(config.seed, epoch, MIXUP))
        sampler = self.sampling.sampler(epoch)
        total, seen, start = torch.zeros((), device=device), 0, time.perf_counter()
        bar = tqdm(
            total=len(sampler),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="img",
            disable=config.quiet,
            leave=False,
            file=sys.stderr,
        )
        for step, (images, labels) in enumerate(self.train_loader.batches(sampler, epoch)):
            targets = smoothed_targets(labels, self.num_classes, config.label_smoothing)
            if mixing:
                lam, permutation = draw_mixup(len(labels), config.mixup_alpha, rng, generator)
                images, targets = mixup(images, targets, lam, permutation)
            with self.autocast:
                logits = self.step_model(images)
            loss = soft_cross_entropy(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(labels)
            seen += len(labels)
            bar.update(len(labels))
            if step % 20 == 0:  # a sync every 20 steps to catch a diverged run early
                check_finite(loss.item(), epoch, step)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        mean_loss = (total / max(seen, 1)).item()
        check_finite(mean_loss, epoch, None)
        elapsed = time.perf_counter() - start
        return {"train_loss": mean_loss, "images_per_s": seen / elapsed, "train_s": elapsed}

    @torch.no_grad()
    def evaluate(self) -> dict[str, object]:
        self.model.eval()
        predictions, labels = [], []
        for images, batch_labels in self.test_loader.batches():
            with self.autocast:
                predictions.append(self.step_model(images).argmax(1))
            labels.append(batch_labels)
        return classification_report(
            torch.cat(predictions).cpu().numpy(),
            torch.cat(labels).cpu().numpy(),
            self.train_set.class_counts,
        )

    def run_epoch(self, epoch: int) -> dict[str, object]:
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        probabilities = self.sampling.class_probabilities(epoch)
        stats = self.train_epoch(epoch)
        self.scheduler.step()
        report = self.evaluate()
        return {
            "epoch": epoch + 1,
            "lr": lr,
            **stats,
            **report,
            "epoch_s": time.perf_counter() - start,
            "sampler": type(self.sampling.sampler(epoch)).__name__,
            "class_probabilities": probabilities.tolist(),
        }


def check_finite(loss: float, epoch: int, step: int | None) -> None:
    if not math.isfinite(loss):
        where = f"epoch {epoch + 1}" + ("" if step is None else f", step {step}")
        raise FloatingPointError(
            f"the training loss is {loss} at {where}: the run diverged. Lower --lr, or check "
            f"the data and --label-smoothing / --mixup-alpha"
        )


def summarize(records: list[dict], config: TrainConfig, wall_s: float, trainer: Trainer) -> dict:
    keys = ("epoch", "test_top1", "test_balanced_acc", "many", "medium", "few", "train_loss")
    best = max(records, key=lambda r: r["test_top1"])
    return {
        "final": {k: records[-1][k] for k in keys},
        "best": {k: best[k] for k in keys},
        "best_is_chosen_on": "test_top1 (the field's habit; the final epoch is the honest number)",
        "thresholds": {"many_above": MANY_ABOVE, "few_below": FEW_BELOW},
        "train_images": len(trainer.train_set),
        "class_counts": trainer.train_set.class_counts.tolist(),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": str(trainer.device),
        "wall_s": wall_s,
        "config": asdict(config),
    }


def percent(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"


def print_summary(summary: dict, out: Path) -> None:
    config = summary["config"]
    print(
        f"\n{config['model']} on {config['dataset']}-LT (imbalance {1 / config['imb_factor']:g}, "
        f"{config['imb_type']}), {summary['train_images']} training images, sampler "
        f"{config['sampler']}, {config['epochs']} epochs on {summary['device']} in "
        f"{summary['wall_s']:.0f} s"
    )
    print("              top-1  balanced   many  medium    few")
    for name in ("final", "best"):
        row = summary[name]
        cells = " ".join(
            percent(row[k]) for k in ("test_top1", "test_balanced_acc", "many", "medium", "few")
        )
        print(f"{name:5} (ep {row['epoch']:3}) {cells}")
    print(
        f"many > {MANY_ABOVE}, few < {FEW_BELOW} training images; 'best' is the epoch with the "
        f"highest test top-1. Run folder: {out}"
    )


def train(config: TrainConfig) -> dict:
    """Runs the whole training and returns the summary (also written to the run folder)."""
    start = time.perf_counter()
    out = prepare_run_folder(config)
    trainer = Trainer(config)
    records = []
    with open(out / "metrics.jsonl", "a") as log:
        for epoch in range(config.epochs):
            record = trainer.run_epoch(epoch)
            records.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if not config.quiet:
                print(
                    f"epoch {record['epoch']:3}: loss {record['train_loss']:.4f}, top-1 "
                    f"{100 * record['test_top1']:.2f}%, {record['images_per_s']:.0f} img/s",
                    file=sys.stderr,
                )
    summary = summarize(records, config, time.perf_counter() - start, trainer)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, out)
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parser()
    namespace = args.parse_args(argv)
    flags = {k: v for k, v in vars(namespace).items() if k not in ("config", "resume")}
    try:
        config = resolve(flags, namespace.config)
        return train(config)
    except (ValueError, FileNotFoundError) as error:
        args.exit(2, f"{args.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
