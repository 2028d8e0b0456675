"""The training configuration: one typed dataclass, read from defaults, then an optional YAML
file (`--config`), then command-line flags, and checked as a whole before any work starts."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ltfast.augment.pipelines import CUTOUT_FILLS, PIPELINES
from ltfast.longtail import IMB_TYPES, SUBSETS, images_per_class
from ltfast.losses import LOSS_OPTIONS, LOSSES, build_loss, label_aware_epsilons, simplest_loss
from ltfast.mixing import MIXERS
from ltfast.models import CLASSIFIERS, MODELS
from ltfast.numerics import MEMORY_FORMATS, PRECISIONS
from ltfast.optim import OPTIMIZERS
from ltfast.parts import DATASETS, loss_options
from ltfast.run_folder import writable_folder_problem
from ltfast.samplers import CONVENTIONS
from ltfast.schedules import LR_SCHEDULES, REWEIGHTINGS, SAMPLERS
from ltfast.stages import STAGE2

# Classes of each dataset (its training split holds 50,000 / classes images per class).
CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
MAX_SYNTHETIC_SIZE = 5000  # CIFAR-10's size; generating it takes ~5 GB of memory at the peak
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LOADERS = ("device", "torch")
AUTOAUGMENT_POLICIES = ("cifar10", "imagenet", "svhn")
COSINE_LOSSES = ("ldam", "gcl")  # losses made for the normed classifier's cosine logits


def option(default, description: str):
    """A config field with its --help text."""
    return field(default=default, metadata={"help": description})


@dataclass
class TrainConfig:
    # data
    dataset: str = option("cifar10", "cifar10, cifar100, or synthetic (generated, offline)")
    data_root: str = option("data", "folder holding cifar-10-batches-bin/ or cifar-100-binary/")
    download: bool = option(False, "download the official archive if the data is absent")
    imb_factor: float = option(0.01, "n_min / n_max of the training set (0.01: imbalance 100)")
    imb_type: str = option("exp", "long-tail profile: exp or step")
    subset: str = option(
        "ldam",
        "the long-tailed subset: ldam (LDAM-DRW's seeded shuffle per class: the standard) or "
        "first_n (each class's first images in file order: Weight Balancing, ImbSAM, SHIKE)",
    )
    subset_seed: int = option(0, "seed of the ldam subset")
    # model and optimisation (SPEC section 5)
    model: str = option(
        "resnet32",
        "resnet20, resnet32, resnet44, resnet56, resnet110 (option-A CIFAR ResNets) or "
        "resnet34_cifar (Weight Balancing's and ImbSAM's ResNet-34)",
    )
    classifier: str = option("linear", "linear, or normed (cosine logits; for --loss ldam)")
    epochs: int = option(200, "training epochs")
    batch_size: int = option(128, "images per step")
    drop_last: bool = option(
        False,
        "drop each epoch's last training batch when it is smaller than --batch-size "
        "(BagofTricks-LT's DataLoader); otherwise only a last batch of one image is dropped",
    )
    lr: float = option(0.1, "peak learning rate (SGD)")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(False, "SGD with Nesterov momentum (BagofTricks-LT's recipes)")
    optimizer: str = option(
        "sgd",
        "sgd, sam (sharpness-aware: two passes a step) or imbsam (SAM's perturbation from the "
        "tail classes' loss only)",
    )
    sam_rho: float = option(0.05, "SAM's and ImbSAM's neighbourhood radius rho")
    imbsam_eta: int = option(20, "ImbSAM: tail classes have fewer than this many training images")
    weight_decay: float = option(2e-4, "L2 weight decay")
    classifier_weight_decay: float | None = option(
        None, "the classifier's L2 weight decay, where it differs from --weight-decay"
    )
    max_norm: float | None = option(
        None,
        "MaxNorm (Weight Balancing): after each training pass, classifier rows longer than "
        "min + FRACTION (max - min) of the starting rows' norms are shortened to it",
    )
    warmup_epochs: int = option(5, "linear learning-rate warm-up epochs")
    lr_milestones: list[int] = field(
        default_factory=lambda: [160, 180],
        metadata={"help": "epochs at which the lr is multiplied by lr_decay"},
    )
    lr_decay: float = option(0.01, "factor applied at each milestone")
    lr_schedule: str = option(
        "step",
        "step (warm-up, then x lr_decay from each milestone), cosine (warm-up, then to 0), "
        "cosine_shifted (torch's cosine stepped at each epoch's start: ImbSAM, Weight "
        "Balancing), bot (BagofTricks-LT's WarmupMultiStepLR) or paco (PaCo's: warm-up through "
        "epoch warmup_epochs, then x lr_decay after each milestone)",
    )
    # augmentation and batch mixing (SPEC sections 8.7 to 8.12)
    augment: str = option(
        "standard",
        "after crop and flip: standard (nothing more), autoaugment or randaugment (torchvision's "
        "policies, batched on the device)",
    )
    autoaugment_policy: str = option("cifar10", "AutoAugment's policy: cifar10, imagenet or svhn")
    randaugment_ops: int = option(2, "RandAugment's ops per image")
    randaugment_magnitude: int = option(9, "RandAugment's magnitude bin, 0..30")
    cutout: int = option(0, "Cutout's square side in pixels, after the policy; 0: no Cutout")
    cutout_fill: str = option(
        "black",
        "black (Cutout before normalising: PaCo, CMO, NCL) or mean (after normalising, where 0 is "
        "the dataset mean: the original Cutout)",
    )
    mix: str = option("none", "batch mixing: none, mixup, cutmix or cmo")
    mixup_alpha: float = option(1.0, "mixup's lam ~ Beta(alpha, alpha)")
    mixup_off_epochs: int = option(0, "no mixup in the final this many epochs")
    cutmix_beta: float = option(1.0, "CutMix's and CMO's lam ~ Beta(beta, beta)")
    cutmix_prob: float = option(0.5, "the probability that CutMix mixes a batch")
    cmo_prob: float = option(0.5, "the probability that CMO pastes a minority patch on a batch")
    cmo_weight_alpha: float = option(
        1.0, "CMO's minority sampling weights n_y**-alpha, in [0, 1] (1: classes equally likely)"
    )
    # tricks
    label_smoothing: float = option(0.0, "label smoothing epsilon")
    label_smoothing_head: float = option(
        0.0, "label-aware smoothing (MiSLAS): epsilon of the largest class"
    )
    label_smoothing_tail: float = option(
        0.0, "label-aware smoothing (MiSLAS): epsilon of the smallest class"
    )
    sampler: str = option(
        "instance", "instance (shuffle), sqrt, class or pb (progressive-balanced)"
    )
    sampler_start_epoch: int = option(
        0,
        "instance sampling before this epoch (deferred re-sampling; a progressive-balanced "
        "schedule still counts t over the whole run, as BagofTricks-LT's DRS-PB)",
    )
    pb_convention: str = option("t/T", "progressive-balanced schedule: t/T or (t-1)/(T-1)")
    # loss-side methods (SPEC section 7)
    loss: str = option(
        "ce",
        "ce, focal, ldam, balanced_softmax, logit_adjusted, vs (vector scaling), cdt, ib "
        "(influence-balanced), gcl (Gaussian clouded logits), or class_balanced_bce (Weight "
        "Balancing's stage 2)",
    )
    focal_gamma: float = option(1.0, "focal loss gamma")
    ldam_max_m: float = option(0.5, "LDAM's largest margin")
    ldam_s: float = option(30.0, "LDAM's logit scale")
    logit_tau: float = option(1.0, "logit-adjusted loss tau")
    vs_gamma: float = option(0.3, "VS loss: temperatures (n_max / n_j)**gamma")
    vs_tau: float = option(1.0, "VS loss: the logit adjustment tau * log pi_j")
    cdt_gamma: float = option(0.2, "CDT: temperatures (n_max / n_j)**gamma")
    cb_bce_beta: float = option(0.9999, "class_balanced_bce: the class-balanced weights' beta")
    cdt_start_epoch: int = option(
        0, "CDT: temperatures 1 before this epoch (BagofTricks-LT's DRW-CDT: 160)"
    )
    ib_alpha: float = option(1000.0, "influence-balanced loss: alpha")
    ib_start_epoch: int = option(
        100, "influence-balanced loss: plain cross-entropy before this epoch (IB-Loss: 100)"
    )
    gcl_s: float = option(30.0, "GCL: the logit scale s (its stage 2: 20)")
    gcl_m: float = option(0.0, "GCL: the target's margin m (its stage 2: 0.1)")
    gcl_noise_mul: float = option(0.5, "GCL: the Gaussian cloud's size")
    gcl_gamma: float = option(0.0, "GCL: the focal gamma (its stage 2: 1)")
    reweight: str = option("none", "per-class loss weights: none, inverse or class_balanced")
    reweight_beta: float = option(0.9999, "class_balanced re-weighting beta")
    reweight_start_epoch: int = option(
        0, "unit weights before this epoch (deferred re-weighting, DRW)"
    )
    eval_logit_tau: float = option(
        0.0, "post-hoc logit adjustment at evaluation (z - tau log pi); 0: off"
    )
    # two-stage training (SPEC section 7)
    init_from: str = option(
        "", "run folder or checkpoint whose weights this run starts from (fresh optimiser)"
    )
    stage2: str = option(
        "none",
        "none, crt, lws, mislas, wb or gcl (Weight Balancing's and GCL's: the classifier "
        "fine-tuned alone): retrain or rescale the classifier of --init-from",
    )
    shift_bn: bool = option(
        False, "stage 2: re-estimate the frozen backbone's BatchNorm statistics (MiSLAS)"
    )
    classifier_lr_factor: float = option(
        0.5, "--stage2 mislas: the classifier's lr as a fraction of --lr (the scales' is --lr)"
    )
    # machinery
    loader: str = option("device", "device (batched on the training device) or torch (DataLoader)")
    workers: int = option(2, "DataLoader workers for --loader torch")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option(
        "auto",
        "auto (bf16 autocast where the device computes bf16 natively, else float32), bf16, "
        "or float32 (exact float32)",
    )
    memory_format: str = option(
        "channels_last", "channels_last or contiguous (NCHW): of the model and its batches"
    )
    compile: bool = option(False, "torch.compile the model")
    seed: int = option(0, "seed of initialisation, sampling, augmentation and mixup")
    synthetic_size: int = option(
        500, "synthetic training images per class (balanced, before long-tail)"
    )
    out: str = option("runs/latest", "run folder for the config, metrics and summary")
    overwrite: bool = option(False, "replace a run folder that already holds a run")
    quiet: bool = option(False, "no progress bars")
    tensorboard: bool = option(False, "also log scalars to OUT/tensorboard (needs tensorboard)")
    save_draws: bool = option(False, "save each rank's epoch draw to OUT/draws/ (audits)")
    # what a recipe reproduces (configs/); training ignores these
    published_top1: float | None = option(None, "the published top-1 (%%) of this recipe")
    source: str = option("", "where the published figure comes from")


def _choice(value, allowed) -> str | None:
    return None if value in allowed else f"must be one of {', '.join(allowed)}, got {value!r}"


def _finite_problems(config: TrainConfig) -> dict[str, str]:
    return {
        f.name: f"must be a finite number, got {getattr(config, f.name)}"
        for f in dataclasses.fields(config)
        if _field_type(f) is float
        and getattr(config, f.name) is not None
        and not math.isfinite(getattr(config, f.name))
    }


def _size_problem(c: TrainConfig) -> tuple[str, str] | None:
    """A training subset too small for one step, or a synthetic set too large to generate."""
    if c.dataset == "synthetic" and not 1 <= c.synthetic_size <= MAX_SYNTHETIC_SIZE:
        return "synthetic_size", f"must be in 1..{MAX_SYNTHETIC_SIZE}, got {c.synthetic_size}"
    if c.dataset not in CLASSES or c.imb_type not in IMB_TYPES or not 0 < c.imb_factor <= 1:
        return None  # named by their own checks
    per_class = c.synthetic_size if c.dataset == "synthetic" else None  # None: 50,000 / C
    images = sum(images_per_class(CLASSES[c.dataset], c.imb_factor, c.imb_type, per_class))
    if images >= c.batch_size:
        return None
    name = "synthetic_size" if c.dataset == "synthetic" else "batch_size"
    return name, (
        f"the long-tailed training set has {images} images, fewer than one batch of "
        f"{c.batch_size}: raise --synthetic-size or --imb-factor, or lower --batch-size"
    )


# The options of every method, checked whatever --loss and --stage2 select (a config file is
# reused with other methods): (low, high, low included). Beyond these bounds a run cannot
# train: the logits overflow (s, tau), the gradient vanishes (gamma) or the margins exceed
# the cosine range. The published settings sit well inside: gamma 0.5-2, s 30, max_m 0.5,
# tau 1, classifier lr factor 0.2-0.5.
METHOD_RANGES: dict[str, tuple[float, float, bool]] = {
    "focal_gamma": (0.0, 10.0, True),
    "ldam_s": (0.0, 100.0, False),
    "ldam_max_m": (0.0, 2.0, False),
    "logit_tau": (-10.0, 10.0, True),
    "vs_gamma": (0.0, 2.0, True),
    "sam_rho": (0.0, 10.0, True),
    "vs_tau": (-10.0, 10.0, True),
    "cdt_gamma": (0.0, 2.0, True),
    "ib_alpha": (0.0, 1e6, False),
    "gcl_s": (0.0, 100.0, False),
    "gcl_m": (0.0, 2.0, True),
    "gcl_noise_mul": (0.0, 10.0, True),
    "gcl_gamma": (0.0, 10.0, True),
    "eval_logit_tau": (-10.0, 10.0, True),
    "classifier_lr_factor": (0.0, 10.0, False),
}  # the label-smoothing pair: by label_aware_epsilons, in _method_problems
# Which setting an option needs to have any effect: (field, the values that use it).
NEEDS: dict[str, tuple[str, tuple[object, ...]]] = {
    "focal_gamma": ("loss", ("focal",)),
    "ldam_s": ("loss", ("ldam",)),
    "ldam_max_m": ("loss", ("ldam",)),
    "logit_tau": ("loss", ("logit_adjusted",)),
    "vs_gamma": ("loss", ("vs",)),
    "vs_tau": ("loss", ("vs",)),
    "cdt_gamma": ("loss", ("cdt",)),
    "cdt_start_epoch": ("loss", ("cdt",)),
    "cb_bce_beta": ("loss", ("class_balanced_bce",)),
    "sam_rho": ("optimizer", ("sam", "imbsam")),
    "imbsam_eta": ("optimizer", ("imbsam",)),
    "ib_alpha": ("loss", ("ib",)),
    "gcl_s": ("loss", ("gcl",)),
    "gcl_m": ("loss", ("gcl",)),
    "gcl_noise_mul": ("loss", ("gcl",)),
    "gcl_gamma": ("loss", ("gcl",)),
    "ib_start_epoch": ("loss", ("ib",)),
    "reweight_beta": ("reweight", ("class_balanced",)),
    "reweight_start_epoch": ("reweight", ("inverse", "class_balanced")),
    "classifier_lr_factor": ("stage2", ("mislas",)),
    "pb_convention": ("sampler", ("pb",)),
    "subset_seed": ("subset", ("ldam",)),
    "autoaugment_policy": ("augment", ("autoaugment",)),
    "randaugment_ops": ("augment", ("randaugment",)),
    "randaugment_magnitude": ("augment", ("randaugment",)),
    "cutout_fill": ("cutout", ()),  # (): any value above 0
    "mixup_alpha": ("mix", ("mixup",)),
    "mixup_off_epochs": ("mix", ("mixup",)),
    "cutmix_beta": ("mix", ("cutmix", "cmo")),
    "cutmix_prob": ("mix", ("cutmix",)),
    "cmo_prob": ("mix", ("cmo",)),
    "cmo_weight_alpha": ("mix", ("cmo",)),
    "workers": ("loader", ("torch",)),
}


def _range_problems(c: TrainConfig) -> dict[str, str]:
    found = {}
    for name, (low, high, low_included) in METHOD_RANGES.items():
        value = getattr(c, name)
        if not math.isfinite(value):
            continue  # named by _finite_problems
        above_low = value >= low if low_included else value > low
        if not (above_low and value <= high):
            bracket = "[" if low_included else "("
            found[name] = f"must be in {bracket}{low:g}, {high:g}], got {value:g}"
    return found


def _used(c: TrainConfig, option: str) -> bool:
    """Whether the config's methods use `option` (see NEEDS)."""
    needs, values = NEEDS[option]
    return getattr(c, needs) > 0 if not values else getattr(c, needs) in values


def inert_options(c: TrainConfig) -> list[str]:
    """Options set away from their defaults that the chosen methods do not use, as warnings."""
    defaults = TrainConfig()
    found = []
    for name, (needs, values) in NEEDS.items():
        if getattr(c, name) == getattr(defaults, name):
            continue
        if not _used(c, name):
            flag = f"--{needs.replace('_', '-')}"
            wanted = f"{flag} > 0" if not values else f"{flag} {' or '.join(map(str, values))}"
            found.append(
                f"--{name.replace('_', '-')} {getattr(c, name)} has no effect without {wanted}"
            )
    return found


# Fields that say where a run reads and writes and how it prints, not what it trains.
PLACE_AND_OUTPUT = (
    "data_root", "download", "out", "overwrite", "quiet", "tensorboard", "save_draws",
)  # fmt: skip


def experiment(c: TrainConfig) -> tuple[str, str]:
    """What the run trains, as a key equal for two configs exactly when they train the same
    (every field but PLACE_AND_OUTPUT and the published figure, the options its methods do
    not use at their defaults, and its loss in the simplest form: see losses.simplest_loss),
    with the reason of that form ('' where the loss is already simplest)."""
    defaults = TrainConfig()
    skipped = {*PLACE_AND_OUTPUT, "published_top1", "source"}
    fields = {k: v for k, v in dataclasses.asdict(c).items() if k not in skipped}
    for name in NEEDS:
        if not _used(c, name):
            fields[name] = getattr(defaults, name)
    loss_fields = {
        option: field
        for option, field in LOSS_OPTIONS[c.loss].items()
        if NEEDS.get(field, ("",))[0] == "loss"
    }
    options = {option: getattr(c, field) for option, field in loss_fields.items()}
    name, simplest, reason = simplest_loss(c.loss, options)
    if name != c.loss:
        for field in loss_fields.values():
            fields[field] = getattr(defaults, field)
        fields["loss"] = name
        fields.update({LOSS_OPTIONS[name][option]: v for option, v in simplest.items()})
    return repr(sorted(fields.items())), reason


def divergence_suspects(c: TrainConfig) -> list[str]:
    """The options that can make this run's loss non-finite, for the message that says so."""
    suspects = [f"--lr {c.lr:g}"]
    suspects += {
        "ldam": [f"--ldam-s {c.ldam_s:g}", f"--ldam-max-m {c.ldam_max_m:g}"],
        "focal": [f"--focal-gamma {c.focal_gamma:g}"],
        "logit_adjusted": [f"--logit-tau {c.logit_tau:g}"],
        "vs": [f"--vs-gamma {c.vs_gamma:g}", f"--vs-tau {c.vs_tau:g}"],
        "cdt": [f"--cdt-gamma {c.cdt_gamma:g}"],
        "ib": [f"--ib-alpha {c.ib_alpha:g}"],
        "gcl": [f"--gcl-s {c.gcl_s:g}", f"--gcl-m {c.gcl_m:g}"],
    }.get(c.loss, [])
    if c.reweight != "none":
        suspects.append(f"--reweight {c.reweight}")
    if c.mix != "none":
        suspects.append(f"--mix {c.mix}")
    if c.optimizer in ("sam", "imbsam"):
        suspects.append(f"--sam-rho {c.sam_rho:g}")
    if c.label_smoothing > 0:
        suspects.append(f"--label-smoothing {c.label_smoothing:g}")
    if c.label_smoothing_head > 0 or c.label_smoothing_tail > 0:
        suspects.append("--label-smoothing-head / --label-smoothing-tail")
    return suspects


def _method_problems(c: TrainConfig) -> dict[str, str]:
    """The loss, weighting and smoothing settings, checked by the components themselves on
    a two-class example, and the pairs that do not compose."""
    found: dict[str, str] = {}
    if c.loss in LOSSES:
        try:
            build_loss(c.loss, [2, 1], None, **loss_options(c))
        except (ValueError, TypeError) as error:
            found["loss"] = str(error)
    try:
        label_aware_epsilons([2, 1], c.label_smoothing_head, c.label_smoothing_tail)
    except (ValueError, TypeError) as error:
        found["label_smoothing_head"] = str(error)
    if not 0 <= c.reweight_beta < 1:
        found["reweight_beta"] = f"must be in [0, 1), got {c.reweight_beta}"
    if c.label_smoothing > 0 and (c.label_smoothing_head > 0 or c.label_smoothing_tail > 0):
        found["label_smoothing"] = (
            "choose one: --label-smoothing (one epsilon) or --label-smoothing-head / -tail "
            "(label-aware)"
        )
    if (c.loss in COSINE_LOSSES) != (c.classifier == "normed"):
        found["classifier"] = (
            f"--loss {' or '.join(COSINE_LOSSES)} goes with --classifier normed and only with "
            f"it: their margins and scales are made for cosine logits, and other losses do not "
            f"scale them"
        )
    return found


def _max_norm_problem(c: TrainConfig) -> str | None:
    if c.max_norm is None:
        return None
    if not 0 <= c.max_norm <= 1:
        return f"must be a fraction in [0, 1], got {c.max_norm}"
    if c.classifier != "linear" or c.stage2 in ("lws", "mislas"):
        return (
            "MaxNorm projects the rows of a linear classifier: it needs --classifier linear and "
            "no scaled classifier (--stage2 lws or mislas)"
        )
    return None


def _stage_problems(c: TrainConfig) -> dict[str, str]:
    """A stage 2 needs a trained model to start from; --init-from names a run, not a recipe."""
    found: dict[str, str] = {}
    if c.init_from.endswith((".yaml", ".yml")):
        found["init_from"] = (
            f"{c.init_from} is a config: train it first and pass its run folder to "
            f"--init-from, or run both stages with python -m ltfast.sweep"
        )
    if c.stage2 in STAGE2 and c.stage2 != "none" and not c.init_from:
        found["stage2"] = (
            f"--stage2 {c.stage2} retrains the classifier of a trained model: pass --init-from "
            f"RUN_DIR"
        )
    if c.init_from and c.out.strip():
        start, out = _resolved(c.init_from), _resolved(c.out)
        if start is None:
            found["init_from"] = f"{c.init_from} is a symlink loop: pass the run folder itself"
        elif out is not None and out == (start.parent if start.is_file() else start):
            found["init_from"] = (
                f"{c.init_from} is in --out {c.out}: the new run would replace the stage-1 run "
                f"it starts from. Choose another --out"
            )
    if c.shift_bn and c.stage2 == "none":
        found["shift_bn"] = "--shift-bn applies to a frozen backbone: it needs --stage2"
    return found


def _resolved(path: str) -> Path | None:
    """The absolute path with its symlinks followed, or None for a symlink loop (which
    Path.resolve raises as RuntimeError; --out's own check names it)."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:
        return None


def problems(config: TrainConfig, writing: bool = True) -> list[str]:
    """Every invalid field, as 'field: what is wrong'; `writing=False` for a config that
    writes no run folder (one read to evaluate a saved model)."""
    c = config
    checks = {
        "dataset": _choice(c.dataset, DATASETS),
        "imb_factor": None if 0 < c.imb_factor <= 1 else f"must be in (0, 1], got {c.imb_factor}",
        "imb_type": _choice(c.imb_type, IMB_TYPES),
        "subset": _choice(c.subset, SUBSETS),
        "model": _choice(c.model, MODELS),
        "classifier": _choice(c.classifier, CLASSIFIERS),
        "loss": _choice(c.loss, LOSSES),
        "reweight": _choice(c.reweight, REWEIGHTINGS),
        "cdt_start_epoch": None
        if 0 <= c.cdt_start_epoch < c.epochs
        else f"must be in 0..epochs-1 ({c.epochs - 1}), got {c.cdt_start_epoch}",
        "ib_start_epoch": None
        if 0 <= c.ib_start_epoch < c.epochs or c.loss != "ib"
        else f"must be in 0..epochs-1 ({c.epochs - 1}), got {c.ib_start_epoch}",
        "imbsam_eta": None if c.imbsam_eta >= 1 else f"must be >= 1, got {c.imbsam_eta}",
        "reweight_start_epoch": None
        if 0 <= c.reweight_start_epoch < c.epochs
        else f"must be in 0..epochs-1 ({c.epochs - 1}), got {c.reweight_start_epoch}",
        "epochs": None if c.epochs >= 1 else f"must be >= 1, got {c.epochs}",
        "batch_size": None if c.batch_size >= 2 else f"must be >= 2, got {c.batch_size}",
        "lr": None if c.lr > 0 else f"must be > 0, got {c.lr}",
        "momentum": None if 0 <= c.momentum < 1 else f"must be in [0, 1), got {c.momentum}",
        "optimizer": _choice(c.optimizer, OPTIMIZERS),
        "nesterov": "Nesterov momentum needs --momentum > 0"
        if c.nesterov and c.momentum == 0
        else None,
        "weight_decay": None if c.weight_decay >= 0 else f"must be >= 0, got {c.weight_decay}",
        "classifier_weight_decay": None
        if c.classifier_weight_decay is None or c.classifier_weight_decay >= 0
        else f"must be >= 0, got {c.classifier_weight_decay}",
        "max_norm": _max_norm_problem(c),
        "warmup_epochs": None if c.warmup_epochs >= 0 else f"must be >= 0, got {c.warmup_epochs}",
        "lr_milestones": None
        if all(m > 0 for m in c.lr_milestones) and c.lr_milestones == sorted(set(c.lr_milestones))
        else f"must be increasing positive epochs, got {c.lr_milestones}",
        "lr_decay": None if 0 < c.lr_decay <= 1 else f"must be in (0, 1], got {c.lr_decay}",
        "lr_schedule": _choice(c.lr_schedule, LR_SCHEDULES),
        "stage2": _choice(c.stage2, STAGE2),
        "classifier_lr_factor": None
        if c.classifier_lr_factor > 0
        else f"must be > 0, got {c.classifier_lr_factor}",
        "augment": _choice(c.augment, PIPELINES),
        "autoaugment_policy": _choice(c.autoaugment_policy, AUTOAUGMENT_POLICIES),
        "randaugment_ops": None
        if 0 <= c.randaugment_ops <= 10
        else f"must be in 0..10, got {c.randaugment_ops}",
        "randaugment_magnitude": None
        if 0 <= c.randaugment_magnitude <= 30
        else f"must be in 0..30, got {c.randaugment_magnitude}",
        "cutout": None if 0 <= c.cutout <= 32 else f"must be in 0..32 pixels, got {c.cutout}",
        "cutout_fill": _choice(c.cutout_fill, CUTOUT_FILLS),
        "mix": _choice(c.mix, MIXERS),
        "mixup_alpha": None if c.mixup_alpha > 0 else f"must be > 0, got {c.mixup_alpha}",
        "cutmix_beta": None if c.cutmix_beta > 0 else f"must be > 0, got {c.cutmix_beta}",
        "cutmix_prob": None
        if 0 <= c.cutmix_prob <= 1
        else f"must be in [0, 1], got {c.cutmix_prob}",
        "cmo_prob": None if 0 <= c.cmo_prob <= 1 else f"must be in [0, 1], got {c.cmo_prob}",
        "cmo_weight_alpha": None
        if 0 <= c.cmo_weight_alpha <= 1
        else f"must be in [0, 1] (q = 1 - alpha of a class-balanced draw), got "
        f"{c.cmo_weight_alpha}",
        "mixup_off_epochs": None
        if 0 <= c.mixup_off_epochs <= c.epochs
        else f"must be in 0..epochs ({c.epochs}), got {c.mixup_off_epochs}",
        "label_smoothing": None
        if 0 <= c.label_smoothing < 1
        else f"must be in [0, 1), got {c.label_smoothing}",
        "sampler": _choice(c.sampler, SAMPLERS),
        "sampler_start_epoch": None
        if 0 <= c.sampler_start_epoch < c.epochs
        else f"must be in 0..epochs-1 ({c.epochs - 1}), got {c.sampler_start_epoch}",
        "pb_convention": _choice(c.pb_convention, CONVENTIONS),
        "loader": _choice(c.loader, LOADERS),
        "precision": _choice(c.precision, PRECISIONS),
        "memory_format": _choice(c.memory_format, MEMORY_FORMATS),
        "workers": None if c.workers >= 0 else f"must be >= 0, got {c.workers}",
        "device": None
        if DEVICE.fullmatch(c.device)
        else f"must be auto, cpu, cuda or cuda:N (N a GPU number), got {c.device!r}",
        "seed": None if 0 <= c.seed < 2**63 else f"must be in [0, 2**63), got {c.seed}",
        "subset_seed": None
        if 0 <= c.subset_seed < 2**32
        else f"must be in [0, 2**32), got {c.subset_seed}",
        "out": "must name a folder"
        if not c.out.strip()
        else writable_folder_problem(Path(c.out))
        if writing
        else None,
        "data_root": "must name a folder"
        if not c.data_root.strip()
        else f"{c.data_root} is a file; --data-root takes a folder"
        if Path(c.data_root).is_file()
        else None,
    }
    checks.update(_finite_problems(c))
    size = _size_problem(c)
    if size is not None:
        checks[size[0]] = size[1]
    if c.sampler == "pb" and c.pb_convention == "(t-1)/(T-1)" and c.epochs < 2:
        checks["pb_convention"] = "(t-1)/(T-1) needs at least 2 epochs (T is --epochs)"
    if c.lr_schedule in ("cosine", "cosine_shifted") and c.warmup_epochs >= c.epochs:
        checks["warmup_epochs"] = f"must be below epochs ({c.epochs}) for a cosine schedule"
    checks.update(_method_problems(c))
    checks.update(_range_problems(c))
    checks.update(_stage_problems(c))
    if c.tensorboard and importlib.util.find_spec("tensorboard") is None:
        checks["tensorboard"] = "the tensorboard package is not installed (pip install tensorboard)"
    return [f"{name}: {message}" for name, message in checks.items() if message]


# A run resumed under another value of these would no longer be the same experiment.
IDENTITY = (
    "dataset",
    "model",
    "classifier",
    "loss",
    "imb_factor",
    "imb_type",
    "subset",
    "subset_seed",
    "synthetic_size",
    "seed",
    "init_from",
    "stage2",
    "shift_bn",
    "max_norm",
)
# These set which images and mixup draws make up each step of an epoch: a resume in the middle
# of an epoch under other values would skip or repeat images.
WITHIN_EPOCH = (
    "batch_size",
    "drop_last",
    "loader",
    "sampler",
    "sampler_start_epoch",
    "pb_convention",
    "augment",
    "autoaugment_policy",
    "randaugment_ops",
    "randaugment_magnitude",
    "cutout",
    "cutout_fill",
    "mix",
    "mixup_alpha",
    "mixup_off_epochs",
    "cutmix_beta",
    "cutmix_prob",
    "cmo_prob",
    "cmo_weight_alpha",
    "epochs",
)


def incompatibilities(saved: TrainConfig, wanted: TrainConfig, mid_epoch: bool) -> list[str]:
    """The fields on which two configs may not differ for a resume, as 'field: saved, now'."""
    names = IDENTITY + (WITHIN_EPOCH if mid_epoch else ())
    return [
        f"{name}: {getattr(saved, name)!r} in the checkpoint, {getattr(wanted, name)!r} now"
        + (" (the checkpoint is in the middle of an epoch)" if name in WITHIN_EPOCH else "")
        for name in names
        if getattr(saved, name) != getattr(wanted, name)
    ]


def _field_type(f: dataclasses.Field) -> type:
    """The field's type: list, or the scalar type (of an optional field too)."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    if typing.get_origin(hint) is list:
        return list
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
    return kinds[0] if kinds else hint


def is_text_field(name: str) -> bool:
    """Whether config field `name` holds a string (a path, a name)."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    return name in fields and _field_type(fields[name]) is str


def _optional(f: dataclasses.Field) -> bool:
    return type(None) in typing.get_args(typing.get_type_hints(TrainConfig)[f.name])


def _coerce(name: object, value):
    """A YAML value as the field's type, or a ValueError naming the field."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if not isinstance(name, str) or name not in fields:
        raise ValueError(f"unknown config field {name!r}; known: {', '.join(fields)}")
    kind = _field_type(fields[name])
    if value is None and _optional(fields[name]):
        return None
    if kind is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name}: expected a list of integers, got {value!r}")
        return [_coerce_scalar(name, int, v) for v in value]
    return _coerce_scalar(name, kind, value)


def _coerce_scalar(name: str, kind: type, value):
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if kind is float and isinstance(value, str):
        value = _number(name, value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if kind is int and isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)  # a quoted integer
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return kind(value)


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {text!r}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice is an error naming both lines
    (PyYAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice, on lines {seen[key]} and {line}"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """YAML as ltfast reads config files: safe, and with no key given twice."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds no Python objects


# Any token that starts like a number is a value, not a flag: argparse's own rule misses
# exponents (-1e30) and lists (-1,0).
NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


def parser() -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(
        prog="python -m ltfast.train",
        description="Train a CIFAR ResNet on long-tailed CIFAR. Precedence: defaults < "
        "--config YAML < command-line flags.",
    )
    args._negative_number_matcher = NEGATIVE_NUMBER  # (private, stable since Python 3.2)
    args.add_argument("--config", type=user_path, help="YAML file of config fields")
    args.add_argument("--resume", type=user_path, help="run folder or checkpoint to continue")
    for f in dataclasses.fields(TrainConfig):
        flag, kind = "--" + f.name.replace("_", "-"), _field_type(f)
        default = getattr(TrainConfig(), f.name)
        help_text = f"{f.metadata['help']} (default: {default})"
        common: dict[str, Any] = {"dest": f.name, "help": help_text, "default": argparse.SUPPRESS}
        if kind is bool:
            args.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif kind is list:
            args.add_argument(flag, type=int, nargs="*", metavar="EPOCH", **common)
        else:
            args.add_argument(flag, type=kind, metavar=kind.__name__.upper(), **common)
    args.add_argument(
        "--amp",
        dest="precision",
        action="store_const",
        const="bf16",
        default=argparse.SUPPRESS,
        help="the same as --precision bf16 (its older name)",
    )
    return args


def user_path(text: str) -> Path:
    """A path as a shell user means it: `~` expanded."""
    return Path(text).expanduser()


def load_yaml(path: Path) -> dict:
    path = user_path(str(path))
    if path.is_dir():
        raise ValueError(f"config file {path} is a folder; --config takes a YAML file")
    try:
        values = parse_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not a text (YAML) file") from None
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of field: value")
    return from_mapping(values, f"config file {path}")


def from_mapping(values: dict, source: str) -> dict:
    """Config fields from a YAML or checkpoint mapping, each checked against its type."""
    try:
        fields = _older_mixup(dict(_renamed(_key(key), value) for key, value in values.items()))
        return {key: _coerce(key, value) for key, value in fields.items()}
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _key(key: object) -> object:
    return key.replace("-", "_") if isinstance(key, str) else key


def _renamed(key: object, value: object) -> tuple[object, object]:
    """Fields of older configs and checkpoints under their present names: `amp: true` was
    bf16 autocast, `amp: false` float32."""
    if key == "amp" and isinstance(value, bool):
        return "precision", "bf16" if value else "float32"
    return key, value


def _older_mixup(fields: dict) -> dict:
    """Configs and checkpoints from before `mix` switched mixup by `mixup_alpha` alone:
    above 0 it was on, 0 was off."""
    if "mix" in fields or "mixup_alpha" not in fields:
        return fields
    fields = dict(fields)
    alpha = fields["mixup_alpha"]
    if isinstance(alpha, int | float) and not isinstance(alpha, bool) and alpha == 0:
        del fields["mixup_alpha"]
        fields["mix"] = "none"
    else:
        fields["mix"] = "mixup"
    return fields


def resolve(
    flags: dict,
    yaml_path: Path | None = None,
    base: TrainConfig | None = None,
    writing: bool = True,
) -> TrainConfig:
    """`base` (defaults), updated by the YAML file, then by `flags`; checked (see problems)."""
    values = dataclasses.asdict(base or TrainConfig())
    if yaml_path is not None:
        values.update(load_yaml(yaml_path))
    values.update(flags)
    for name in ("data_root", "out"):  # an empty path stays empty, to be refused by name
        values[name] = str(user_path(values[name])) if values[name].strip() else ""
    values["init_from"] = str(user_path(values["init_from"])) if values["init_from"] else ""
    config = TrainConfig(**values)
    found = problems(config, writing)
    if found:
        raise ValueError("invalid configuration:\n  " + "\n  ".join(found))
    return config
