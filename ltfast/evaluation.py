"""Evaluating a model on the test split, as training does after each epoch and as
`python -m ltfast.evaluate` and `python -m ltfast.tau_norm` do for a saved one: the
classification report (top-1, balanced, many / medium / few, per class), the expected
calibration error, and the same for post-hoc logit-adjusted predictions when asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ltfast import checkpoint, distributed
from ltfast.config import TrainConfig, from_mapping, resolve
from ltfast.datasets import CIFAR10
from ltfast.distributed import World, pick_device
from ltfast.loader import DeviceLoader, TorchLoader
from ltfast.losses import log_prior
from ltfast.metrics import ECE_BINS, classification_report, expected_calibration_error
from ltfast.models import LongTailNet
from ltfast.parts import load_data, make_model, make_test_loader, numerics


def _tally(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One batch's counts: correct predictions per class, then per confidence bin the number
    of predictions, their summed confidence and the number of them that are correct."""
    probabilities = scores.float().softmax(1)
    confidence = probabilities.max(1).values
    hits = scores.argmax(1) == labels
    # torch.bucketize is numpy's digitize(right=True): bin b holds (b/15, (b+1)/15].
    edges = torch.linspace(0, 1, ECE_BINS + 1, device=scores.device)
    bins = (torch.bucketize(confidence, edges) - 1).clamp_(0, ECE_BINS - 1)
    return torch.cat([
        torch.bincount(labels[hits], minlength=num_classes).double(),
        torch.bincount(bins, minlength=ECE_BINS).double(),
        torch.bincount(bins, weights=confidence.double(), minlength=ECE_BINS),
        torch.bincount(bins, weights=hits.double(), minlength=ECE_BINS),
    ])  # fmt: skip


def _report(tally: np.ndarray, seen: np.ndarray, class_counts: np.ndarray) -> dict:
    correct, bins = tally[: len(seen)], tally[len(seen) :].reshape(3, ECE_BINS)
    return {
        **classification_report(correct, seen, class_counts),
        "ece": expected_calibration_error(*bins),
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    class_counts: np.ndarray,
    world: World | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
    logit_tau: float = 0.0,
) -> dict[str, object]:
    """The report of `model` on the test split's `batches` of (inputs, labels) (each rank
    holding a shard; the counts add).
    With `logit_tau`, also the report of the post-hoc adjusted predictions
    argmax(z - tau log pi), pi the training class frequencies, under "adjusted"."""
    model.eval()
    num_classes = len(class_counts)
    device = next(model.parameters()).device
    adjustment = (logit_tau * log_prior(class_counts)).to(device)
    scorings = 2 if logit_tau != 0 else 1
    width = num_classes + 3 * ECE_BINS
    tally = torch.zeros(num_classes + scorings * width, dtype=torch.float64, device=device)
    for inputs, labels in batches:
        with autocast or contextlib.nullcontext():
            logits = model(inputs).float()
        tally[:num_classes] += torch.bincount(labels, minlength=num_classes)
        for index, scores in enumerate((logits, logits - adjustment)[:scorings]):
            start = num_classes + index * width
            tally[start : start + width] += _tally(scores, labels, num_classes)
    totals = distributed.all_sum(tally, world or World()).cpu().numpy()
    seen = totals[:num_classes]
    report = _report(totals[num_classes : num_classes + width], seen, class_counts)
    if scorings == 2:
        report["adjusted"] = {"tau": logit_tau, **_report(totals[-width:], seen, class_counts)}
    return report


@dataclass
class Trained:
    """A saved model with the data it was trained on, ready to evaluate."""

    config: TrainConfig
    model: LongTailNet
    train_set: CIFAR10
    test_set: CIFAR10
    source: Path  # the checkpoint file
    position: tuple[int, int] = (0, 0)  # (epochs done, steps of the next): where it stopped

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def test_loader(self) -> DeviceLoader | TorchLoader:
        return make_test_loader(self.config, self.test_set, self.device, World())

    def autocast(self) -> torch.autocast:
        return numerics(self.config, self.device).autocast()

    def evaluate(self, logit_tau: float = 0.0) -> dict:
        """The report of the model on the test split."""
        batches = self.test_loader().batches()
        counts = self.train_set.class_counts
        return evaluate(self.model, batches, counts, autocast=self.autocast(), logit_tau=logit_tau)

    @torch.inference_mode()
    def test_features(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The backbone's features of the test split, batch by batch as the model sees them:
        evaluating a classifier on them is evaluating the model with that classifier."""
        self.model.eval()
        with self.autocast():
            return [(self.model.features(x), y) for x, y in self.test_loader().batches()]

    def evaluate_classifier(self, classifier: nn.Module, features: list) -> dict:
        """The report of the model with `classifier` in place of its own, on `features`."""
        counts = self.train_set.class_counts
        return evaluate(classifier, features, counts, autocast=self.autocast())


def open_trained(path: Path, overrides: dict) -> Trained:
    """The checkpoint at `path` (a run folder's last.pt, or a file) with its model and data;
    `overrides` replace config fields (data_root, device, eval_logit_tau). Raises ValueError
    or OSError naming what is wrong."""
    source = checkpoint.locate(path)
    state = checkpoint.load(source)
    saved = TrainConfig(**from_mapping(state["config"], f"the config in {source}"))
    saved = dataclasses.replace(saved, overwrite=False)
    # Nothing is written to the run folder: a run on a read-only mount can be evaluated.
    config = resolve({"out": str(source.parent), **overrides}, base=saved, writing=False)
    train_set, test_set = load_data(dataclasses.replace(config, download=False))
    device = pick_device(config.device, World())
    model, _ = make_model(config, len(train_set.class_counts), device, start_from_init=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"{source} does not fit the model its config describes: {error}") from None
    return Trained(config, model, train_set, test_set, source, (state["epoch"], state["step"]))
