"""ResNet-32 training and evaluation throughput: ltfast's numerics and loader against the
field's plain PyTorch loop, measured in the same run.

    python benchmarks/train_step.py [--steps 30] [--root R] [--device D] [--no-compile]
                                    [--methods-only] [--profile] [--json PATH]

Training: `--steps` SGD steps (batch 128, CIFAR-10-LT at imbalance 100, progressive-balanced
sampling, crop + flip, cross-entropy) after a warm-up. The reference row is the loop as the
field writes it: a DataLoader (2 workers) over PIL images with torchvision transforms and a
WeightedRandomSampler, float32, NCHW. Then ltfast's DeviceLoader under each numerics: float32
and bf16 autocast, NCHW (contiguous) and channels_last, eager and `torch.compile`d; the
field's DataLoader under ltfast's default numerics (does the loader still matter?). Then each
method's step (its loss and optimiser, through the trainer's closure) under the default
numerics, against cross-entropy's: `--methods-only` measures these alone.

Evaluation: the 10,000 test images, as `ltfast.evaluation.evaluate` does it after each epoch
(inference mode, batches of 1000, the default numerics) against the field's loop (DataLoader
of batch 100 with ToTensor + Normalize, float32 NCHW, `torch.no_grad`).

Ratios are each row's time over the reference's: below 1 is faster. `--profile` also prints
where a step of the default numerics spends its time (torch.profiler, by operator).
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
from torchvision import transforms

from ltfast import ProgressiveBalancedSampler, kernels, optim
from ltfast.augment import MEAN, STD
from ltfast.config import TrainConfig
from ltfast.evaluation import evaluate
from ltfast.loader import DeviceLoader
from ltfast.losses import build_loss, class_balanced_weights
from ltfast.mixing import Mixture
from ltfast.models import build_model
from ltfast.numerics import Numerics, keep_freed_memory, resolve_precision
from ltfast.optim import OPTIMIZERS
from ltfast.parts import TEST_BATCH
from ltfast.train import loss_closure

WARMUP_STEPS = 3
FIELD_TEST_BATCH = 100  # LDAM-DRW's and MiSLAS's evaluation batch


# The methods whose step cost is shown against CE's: (what, loss, its options, classifier,
# optimiser). ImbSAM's tail on CIFAR-10-LT: the classes under 100 images (eta 20 leaves none).
METHODS = {
    "ce": ("cross-entropy, SGD", "ce", {}, "linear", "sgd"),
    "ldam_drw": ("LDAM, normed classifier, class-balanced weights", "ldam", {}, "normed", "sgd"),
    "balanced_softmax": ("Balanced Softmax", "balanced_softmax", {}, "linear", "sgd"),
    "vs": ("VS loss (gamma 0.2, tau 1.2)", "vs", {"gamma": 0.2, "tau": 1.2}, "linear", "sgd"),
    "ib": ("influence-balanced loss, with the features", "ib", {}, "linear", "sgd"),
    "gcl": ("GCL's Gaussian clouds, normed classifier", "gcl", {}, "normed", "sgd"),
    "class_balanced_bce": ("Weight Balancing's class-balanced BCE", "class_balanced_bce", {},
                           "linear", "sgd"),
    "sam": ("cross-entropy, SAM (two passes a step)", "ce", {}, "linear", "sam"),
    "imbsam": ("cross-entropy, ImbSAM (two passes, three backwards)", "ce", {}, "linear",
               "imbsam"),
}  # fmt: skip


def stepper(numerics: Numerics, counts, method: str = "ce", compiled: bool = False):
    """One training step of ResNet-32 under `numerics`, as ltfast.train takes it: the
    method's loss and optimiser through the trainer's closure."""
    _, loss_name, options, classifier, optimizer_name = METHODS[method]
    model = build_model("resnet32", 10, classifier)
    model = model.to(numerics.device, memory_format=numerics.torch_memory_format)
    config = TrainConfig(optimizer=optimizer_name, sam_rho=0.5, imbsam_eta=100, lr=0.1)
    groups = [{"params": list(model.parameters()), "weight_decay": 2e-4}]
    optimizer = OPTIMIZERS[optimizer_name](groups, config, counts)
    weight = class_balanced_weights(counts, 0.9999) if loss_name == "ldam" else None
    loss_of = build_loss(loss_name, counts, weight, **options).to(numerics.device)
    forward = torch.compile(model) if compiled else model
    autocast = numerics.autocast()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss_of.start_step(0, 0)
        targets = Mixture.of(labels)
        optim.step(optimizer, loss_closure(forward, optimizer, autocast, images, targets, loss_of))

    return step, model


def device_loader(numerics: Numerics, images, targets, batch_size: int, augment: bool):
    """ltfast's loader, handing batches in `numerics`' dtype and memory format."""
    return DeviceLoader(
        images,
        targets,
        batch_size,
        numerics.device,
        augment=augment,
        dtype=numerics.batch_dtype,
        channels_last=numerics.channels_last,
    )


def endless(make_epoch):
    """Batches across epoch boundaries, so a timed run never pays for an epoch's start twice."""
    for epoch in itertools.count():
        yield from make_epoch(epoch)


def timed_steps(batches, step, steps: int, numerics: Numerics):
    device, memory_format = numerics.device, numerics.torch_memory_format

    def run() -> None:
        for images, labels in itertools.islice(batches, steps):
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            step(images, labels.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize()

    for images, labels in itertools.islice(batches, WARMUP_STEPS):
        step(images.to(device, memory_format=memory_format), labels.to(device))
    return run


def training_rows(dataset, device: torch.device, args) -> list[Row]:
    sampler = ProgressiveBalancedSampler(dataset.targets, epochs=200)
    default = Numerics(device, resolve_precision("auto", device))

    def device_epochs(numerics: Numerics):
        loader = device_loader(numerics, *dataset.tensors(), 128, augment=True)

        def epoch(number: int):
            sampler.set_epoch(number % 200)
            return loader.batches(sampler, number)

        return endless(epoch)

    def field_epochs():
        torch_loader = field_loader(dataset, sampler.class_probabilities(), workers=2)
        return endless(lambda _epoch: iter(torch_loader))

    reference = Numerics(device, "float32", "contiguous")
    cases = [
        (
            "field_reference",
            "DataLoader (2 workers) + PIL + torchvision transforms, float32 NCHW",
            field_epochs(),
            reference,
            "ce",
            False,
        )
    ]
    for compiled in (False, True)[: 1 if args.no_compile else 2]:
        for precision in ("float32", "bf16"):
            for memory_format in ("contiguous", "channels_last"):
                numerics = Numerics(device, precision, memory_format)
                how = "torch.compile" if compiled else "eager"
                name = f"ltfast_{precision}_{memory_format}" + ("_compiled" if compiled else "")
                what = f"DeviceLoader, {numerics.describe()}, {how}"
                cases.append((name, what, device_epochs(numerics), numerics, "ce", compiled))
    cases.append(
        (
            "field_loader_fast_numerics",
            f"DataLoader (2 workers) + PIL + torchvision, {default.describe()}",
            field_epochs(),
            default,
            "ce",
            False,
        )
    )
    if args.methods_only:
        cases = []
    cases += [
        (f"method_{name}", f"{what}, {default.describe()}", device_epochs(default), default, name)
        for name, (what, *_) in METHODS.items()
    ]
    rows = []
    for name, what, batches, numerics, method, *compiled in cases:
        step, _ = stepper(numerics, dataset.class_counts, method, *compiled)
        run = timed_steps(batches, step, args.steps, numerics)
        # One untimed run too: the first row otherwise pays for oneDNN's kernel choice and
        # the allocator's growth (measured: 10-20 % slower than the same row again).
        seconds = median_seconds(run, args.repeats, warmup=1)
        rows.append(Row(name, f"{what} ({device.type})", seconds, args.steps * 128))
    return rows


def evaluation_rows(test_set, counts, device: torch.device, args) -> list[Row]:
    """The test split evaluated as ltfast does it (`counts`: the training class sizes, for the
    many / medium / few groups), and as the field's loop does."""
    default = Numerics(device, resolve_precision("auto", device))
    loader = device_loader(default, *test_set.tensors(), TEST_BATCH, augment=False)
    _, model = stepper(default, counts)

    def ltfast_evaluation() -> None:
        evaluate(model, loader.batches(), counts, autocast=default.autocast())

    field_model = build_model("resnet32", 10, "linear").to(device)
    field_test = FieldTestSet(test_set)
    field_batches = torch.utils.data.DataLoader(field_test, FIELD_TEST_BATCH, num_workers=2)

    @torch.no_grad()
    def field_evaluation() -> None:
        field_model.eval()
        for x, y in field_batches:
            predictions = field_model(x.to(device)).argmax(1)
            (predictions.cpu() == y).sum().item()

    return [
        Row(
            "field_evaluation",
            f"DataLoader (batch {FIELD_TEST_BATCH}, 2 workers) + ToTensor + Normalize, float32 "
            f"NCHW, no_grad ({device.type})",
            median_seconds(field_evaluation, args.repeats),
            len(test_set),
        ),
        Row(
            "ltfast_evaluation",
            f"ltfast.evaluation.evaluate: DeviceLoader (batch {TEST_BATCH}), "
            f"{default.describe()}, inference_mode, full report ({device.type})",
            median_seconds(ltfast_evaluation, args.repeats),
            len(test_set),
        ),
    ]


class FieldTestSet(torch.utils.data.Dataset):
    """The field's test pipeline: a PIL image per item, ToTensor, Normalize."""

    def __init__(self, test_set):
        self.data, self.targets = test_set.data, test_set.targets
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
        )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def print_profile(dataset, device: torch.device, steps: int) -> None:
    """Where a training step of the default numerics spends its time, by operator."""
    from torch.profiler import ProfilerActivity, profile

    numerics = Numerics(device, resolve_precision("auto", device))
    step, _ = stepper(numerics, dataset.class_counts)
    loader = device_loader(numerics, *dataset.tensors(), 128, augment=True)
    batches = endless(lambda epoch: loader.batches(None, epoch))
    run = timed_steps(batches, step, steps, numerics)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        run()
    print(f"\n### Profile of {steps} steps, {numerics.describe()} ({device.type})\n")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> tuple[list[Row], list[Row]]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--root", type=Path, help="data root holding cifar-10-batches-bin/")
    args.add_argument("--steps", type=int, default=30)
    args.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args.add_argument("--no-compile", action="store_true", help="skip the compiled rows")
    args.add_argument("--profile", action="store_true", help="print a profile of a step")
    args.add_argument(
        "--methods-only", action="store_true", help="only the methods' step costs against CE's"
    )
    args = args.parse_args(argv)
    args.repeats = min(args.repeats, 3)
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as ltfast.train does on the CPU, for every row alike
    kernels.warmup()
    with tempfile.TemporaryDirectory() as scratch:
        dataset = long_tail_cifar10(args.root, Path(scratch))  # decoded: the files can go
        test_root = Path(dataset.root)
        test_set = type(dataset)(test_root, imb_factor=0.01, train=False, output="tensor")
    training = training_rows(dataset, device, args)
    methods = [row for row in training if row.name.startswith("method_")]
    training = [row for row in training if not row.name.startswith("method_")]
    title = f"ResNet-32 training, {args.steps} steps of 128"
    if training:
        publish_time_ratios(title, training, args.json)
    methods_json = args.json.with_suffix(".methods.json") if args.json else None
    publish_time_ratios(f"{title}: each method's step against CE's", methods, methods_json)
    if args.methods_only:
        return training + methods, []
    evaluation = evaluation_rows(test_set, dataset.class_counts, device, args)
    json_path = args.json.with_suffix(".evaluation.json") if args.json else None
    publish_time_ratios("Evaluating the 10,000 test images", evaluation, json_path)
    if args.profile:
        print_profile(dataset, device, args.steps)
    return training, evaluation


if __name__ == "__main__":
    main()
