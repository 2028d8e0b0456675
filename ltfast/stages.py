"""Two-stage training: a start from trained weights (`--init-from`), the stage-2 methods that
retrain or rescale the classifier of a trained model (STAGE2, keyed by `--stage2`), and
tau-normalisation (no training; see ltfast.tau_norm).

Decoupling (Kang et al., ICLR 2020) and MiSLAS (Zhong et al., CVPR 2021) keep the backbone of
a model trained on the long-tailed data and rebalance its classifier alone: cRT re-initialises
the classifier and retrains it, LWS learns one scale per class, MiSLAS fine-tunes the
classifier together with the scales. All three train under class-balanced sampling by default
(see the recipes in configs/).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ltfast import checkpoint
from ltfast.models import LongTailNet, ScaledClassifier
from ltfast.registry import Registry
from ltfast.run_folder import SUMMARY, RunFolder

if TYPE_CHECKING:
    from ltfast.config import TrainConfig

# Fields a stage-1 model must share with the run that starts from it, and fields that may
# differ but usually should not (a stage 2 on other data than stage 1's).
SAME_MODEL = ("dataset", "model", "classifier")
SAME_DATA = ("imb_factor", "imb_type", "subset", "subset_seed", "synthetic_size")

# A stage-2 method: prepares the model (freezing, re-initialising or wrapping parts of it)
# and returns the optimiser's parameter groups.
Stage2 = Callable[[LongTailNet, "TrainConfig"], list[dict]]
STAGE2: Registry[Stage2] = Registry("stage2")


def _group(params, config: TrainConfig, lr_factor: float = 1.0, classifier: bool = False) -> dict:
    """An optimiser's parameter group; the classifier's parameters take
    --classifier-weight-decay where it is set."""
    decay = config.weight_decay
    if classifier and config.classifier_weight_decay is not None:
        decay = config.classifier_weight_decay
    return {"params": list(params), "weight_decay": decay, "lr": config.lr * lr_factor}


@STAGE2.register("none")
def whole_model(model: LongTailNet, config: TrainConfig) -> list[dict]:
    """One-stage training: every parameter at --lr and --weight-decay, the classifier's at
    --classifier-weight-decay where it is set."""
    if config.classifier_weight_decay is None:
        return [_group(model.parameters(), config)]
    backbone = [p for part in model.backbone() for p in part.parameters()]
    return [
        _group(backbone, config),
        _group(model.classifier.parameters(), config, classifier=True),
    ]


@STAGE2.register("crt")
def classifier_retraining(model: LongTailNet, config: TrainConfig) -> list[dict]:
    """cRT: frozen backbone, a re-initialised classifier trained alone."""
    model.freeze_backbone(config.shift_bn)
    model.reset_classifier()
    return [_group(model.classifier.parameters(), config, classifier=True)]


@STAGE2.register("gcl")
@STAGE2.register("wb")
def classifier_fine_tuning(model: LongTailNet, config: TrainConfig) -> list[dict]:
    """The stage 2 of Weight Balancing and of GCL: frozen backbone; the stage-1 classifier,
    not re-initialised, trained alone (at --classifier-weight-decay where set: Weight
    Balancing's 0.1). Weight Balancing's code keeps the model in training mode, so
    BatchNorm's statistics follow the data (its recipe sets --shift-bn); GCL's keeps the
    backbone in eval mode (no --shift-bn)."""
    model.freeze_backbone(config.shift_bn)
    return [_group(model.classifier.parameters(), config, classifier=True)]


@STAGE2.register("lws")
def learnable_weight_scaling(model: LongTailNet, config: TrainConfig) -> list[dict]:
    """LWS: frozen backbone and classifier; one learned scale per class."""
    model.freeze_backbone(config.shift_bn)
    model.classifier.requires_grad_(False)
    model.classifier = ScaledClassifier(model.classifier, model.num_classes)
    return [_group([model.classifier.scales], config, classifier=True)]


@STAGE2.register("mislas")
def mislas_stage2(model: LongTailNet, config: TrainConfig) -> list[dict]:
    """MiSLAS's stage 2: frozen backbone; the stage-1 classifier (not re-initialised) at
    --classifier-lr-factor times the learning rate (MiSLAS: 0.5 on CIFAR-10, 0.2 on
    CIFAR-100), and one learned scale per class at the full rate."""
    model.freeze_backbone(config.shift_bn)
    classifier = model.classifier
    model.classifier = ScaledClassifier(classifier, model.num_classes)
    return [
        _group(classifier.parameters(), config, config.classifier_lr_factor, classifier=True),
        _group([model.classifier.scales], config, classifier=True),
    ]


def prepare_model(
    model: LongTailNet, config: TrainConfig, start_from_init: bool = True
) -> list[dict]:
    """Loads the --init-from weights (unless `start_from_init` is False: a resume restores
    its own), applies the --stage2 method, and returns the parameter groups to train."""
    if config.init_from and start_from_init:
        load_initial_weights(model, Path(config.init_from), config)
    return STAGE2[config.stage2](model, config)


def load_initial_weights(model: LongTailNet, path: Path, config: TrainConfig) -> None:
    """Copies the weights of a trained stage-1 model (a run folder's last.pt, or a checkpoint
    file) into `model`. Refuses an unfinished run, another model or other classes, naming the
    difference; warns when the training data differ."""
    if not path.exists():
        raise FileNotFoundError(
            f"init_from: {path} does not exist; pass a run folder or a checkpoint file"
        )
    if path.is_dir() and RunFolder(path).has_checkpoint() and not (path / SUMMARY).is_file():
        raise ValueError(
            f"init_from: the run in {path} has not finished; finish it (--resume {path}) or "
            f"pass one of its checkpoint files to start from that one"
        )
    state = checkpoint.load(path)
    source = checkpoint.locate(path)
    saved = state["config"]
    differences = [
        f"{name}: {saved.get(name)!r} in {source}, {getattr(config, name)!r} now"
        for name in SAME_MODEL
        if saved.get(name) != getattr(config, name)
    ]
    if saved.get("stage2", "none") != "none":
        differences.append(
            f"stage2: {source} is a stage-2 model ({saved['stage2']}); --init-from takes a "
            f"stage-1 model (evaluate a stage-2 model with python -m ltfast.evaluate)"
        )
    if differences:
        raise ValueError(
            "init_from: the checkpoint holds another model:\n  " + "\n  ".join(differences)
        )
    defaults = dataclasses.asdict(type(config)())  # what a checkpoint from before a field meant
    other_data = [
        name for name in SAME_DATA if saved.get(name, defaults[name]) != getattr(config, name)
    ]
    if other_data:
        warnings.warn(
            f"init_from: {source} was trained on other data ("
            + ", ".join(f"{n} {saved.get(n)!r}, now {getattr(config, n)!r}" for n in other_data)
            + ")",
            stacklevel=2,
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"init_from: {source} does not fit the model: {error}") from None


def tau_normalised(classifier: nn.Module, tau: float) -> nn.Linear:
    """A copy of a linear classifier whose row j (class j's weights) is divided by
    ||w_j||^tau; the bias is kept. tau = 0 is the classifier as it was."""
    if not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"tau-normalisation rescales the rows of a linear classifier, not a "
            f"{type(classifier).__name__}: the normed classifier's rows have unit length "
            f"already, and a stage-2 model's scales would undo it"
        )
    copy = nn.Linear(classifier.in_features, classifier.out_features, classifier.bias is not None)
    copy = copy.to(classifier.weight.device, classifier.weight.dtype)
    with torch.no_grad():
        norms = classifier.weight.norm(dim=1, keepdim=True)
        copy.weight.copy_(classifier.weight / norms.pow(tau))
        if classifier.bias is not None:
            copy.bias.copy_(classifier.bias)
    return copy
