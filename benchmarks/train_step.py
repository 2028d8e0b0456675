"""End-to-end ResNet-32 training throughput with each loader: does the loader still matter?

    python benchmarks/train_step.py [--steps 30] [--amp] [--root R] [--json PATH]

Times `--steps` SGD steps (batch 128, CIFAR-10-LT at imbalance 100, progressive-balanced
sampling, crop + flip) after a warm-up of 3 steps, fed by ltfast's device loader or by the
field's DataLoader pipeline (PIL + torchvision transforms, WeightedRandomSampler), with
cross-entropy; then the device loader with LDAM (normed classifier, class-balanced weights,
LDAM-DRW after its switch) and with Balanced Softmax. Ratios are time over the first row's.
"""

from __future__ import annotations

import itertools
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
from ltfast.loader import DeviceLoader
from ltfast.losses import build_loss, class_balanced_weights
from ltfast.models import build_model

WARMUP_STEPS = 3


def stepper(device: torch.device, amp: bool, counts, loss_name: str = "ce"):
    classifier = "normed" if loss_name == "ldam" else "linear"
    model = build_model("resnet32", 10, classifier).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=2e-4)
    weight = class_balanced_weights(counts, 0.9999) if loss_name == "ldam" else None
    loss_of = build_loss(loss_name, counts, weight).to(device)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            logits = model(images)
        loss = loss_of(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def endless(make_epoch):
    """Batches across epoch boundaries, so a timed run never pays for an epoch's start twice."""
    for epoch in itertools.count():
        yield from make_epoch(epoch)


def timed_steps(batches, step, steps: int, device: torch.device):
    def run() -> None:
        for images, labels in itertools.islice(batches, steps):
            step(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize()

    for images, labels in itertools.islice(batches, WARMUP_STEPS):
        step(images.to(device), labels.to(device))
    return run


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--root", type=Path, help="data root holding cifar-10-batches-bin/")
    args.add_argument("--steps", type=int, default=30)
    args.add_argument("--amp", action="store_true", help="bf16 autocast")
    args.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = args.parse_args(argv)
    args.repeats = min(args.repeats, 3)
    device = torch.device(args.device)
    kernels.warmup()
    with tempfile.TemporaryDirectory() as scratch:
        dataset = long_tail_cifar10(args.root, Path(scratch))  # decoded: the files can go
    sampler = ProgressiveBalancedSampler(dataset.targets, epochs=200)
    dtype = torch.bfloat16 if args.amp and device.type == "cuda" else torch.float32
    loader = DeviceLoader(
        *dataset.tensors(),
        128,
        device,
        True,
        dtype=dtype,
        channels_last=device.type == "cuda",
    )

    def device_epoch(epoch: int):
        sampler.set_epoch(epoch % 200)
        return loader.batches(sampler, epoch)

    probabilities = sampler.class_probabilities()
    cases = [("ltfast_device_loader", "ResNet-32 CE steps fed by DeviceLoader", device_epoch, "ce")]
    for workers in (0, 2):
        torch_loader = field_loader(dataset, probabilities, workers)
        cases.append(
            (
                f"torch_dataloader_{workers}w",
                f"ResNet-32 CE steps fed by DataLoader + PIL + torchvision, {workers} workers",
                lambda _epoch, loader=torch_loader: iter(loader),
                "ce",
            )
        )
    cases += [
        ("ldam_drw", "LDAM, normed classifier, class-balanced weights", device_epoch, "ldam"),
        ("balanced_softmax", "Balanced Softmax", device_epoch, "balanced_softmax"),
    ]
    rows = []
    for name, what, epochs, loss_name in cases:
        step = stepper(device, args.amp, dataset.class_counts, loss_name)
        run = timed_steps(endless(epochs), step, args.steps, device)
        rows.append(
            Row(
                name,
                f"{what} ({device.type}{', bf16' if args.amp else ''})",
                median_seconds(run, args.repeats, warmup=0),
                args.steps * 128,
            )
        )
    publish_time_ratios(f"ResNet-32 training, {args.steps} steps of 128", rows, args.json)
    return rows


if __name__ == "__main__":
    main()
