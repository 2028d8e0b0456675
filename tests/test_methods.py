"""The loss-side methods in training runs: each family trains, DRW switches its weights at the
start epoch, post-hoc logit adjustment is evaluated as the formula says, and pairs that do
not compose are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ltfast import checkpoint
from ltfast.augment import Normalize
from ltfast.config import TrainConfig, problems
from ltfast.losses import LOSS_OPTIONS, LOSSES, ClassLoss, class_balanced_weights
from ltfast.models import build_model
from ltfast.parts import load_data
from ltfast.train import main

QUICK = ["--dataset", "synthetic", "--synthetic-size", "60", "--quiet", "--batch-size", "32"]
FAMILIES = {
    "ce": [],
    "focal": ["--loss", "focal", "--focal-gamma", "2"],
    "ldam": ["--loss", "ldam", "--classifier", "normed"],
    "balanced_softmax": ["--loss", "balanced_softmax"],
    "logit_adjusted": ["--loss", "logit_adjusted", "--logit-tau", "0.5"],
    "vs": ["--loss", "vs", "--vs-gamma", "0.2", "--vs-tau", "1.2"],
    "cdt": ["--loss", "cdt", "--cdt-start-epoch", "1", "--nesterov", "--lr-schedule", "bot"],
    "ib": ["--loss", "ib", "--ib-start-epoch", "1"],
    "gcl": ["--loss", "gcl", "--classifier", "normed"],
}


def run(data_root: Path, out: Path, *flags: str) -> list[dict]:
    main([*QUICK, "--data-root", str(data_root), "--out", str(out), *flags])
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_loss_family_trains_with_mixup_smoothing_and_resampling(tmp_path, data_root, family):
    flags = [*FAMILIES[family], "--epochs", "2", "--mix", "mixup", "--sampler", "class"]
    flags += ["--label-smoothing-head", "0.2", "--reweight", "inverse"]
    records = run(data_root, tmp_path / "run", *flags)
    assert [r["loss"] for r in records] == [family] * 2
    assert all(np.isfinite(r["train_loss"]) for r in records)
    assert records[0]["class_weights"][-1] > records[0]["class_weights"][0]  # inverse frequency


def test_drw_switches_the_weights_exactly_at_the_start_epoch(tmp_path, data_root, monkeypatch):
    seen: list[torch.Tensor | None] = []
    original = ClassLoss.forward

    def spy(self, logits, target):
        seen.append(None if self.weight is None else self.weight.clone())
        return original(self, logits, target)

    monkeypatch.setattr(ClassLoss, "forward", spy)
    flags = ["--epochs", "3", "--reweight", "class_balanced", "--reweight-start-epoch", "2"]
    records = run(data_root, tmp_path / "run", *flags)
    counts = json.loads((tmp_path / "run" / "dataset.json").read_text())["class_counts"]
    expected = class_balanced_weights(counts, 0.9999)
    steps = len(seen) // 3  # the same number of steps in each epoch
    assert all(w is None for w in seen[: 2 * steps])
    assert all(torch.equal(w, expected) for w in seen[2 * steps :])
    assert [r["class_weights"] == [1.0] * 10 for r in records] == [True, True, False]
    np.testing.assert_allclose(records[2]["class_weights"], expected.numpy())


def test_post_hoc_logit_adjustment_is_the_formula_on_the_saved_model(tmp_path, data_root):
    out = tmp_path / "run"
    record = run(data_root, out, "--epochs", "1", "--eval-logit-tau", "1")[-1]
    config = TrainConfig(**checkpoint.load(out)["config"])
    train, test = load_data(config)
    model = build_model(config.model, 10)
    model.load_state_dict(checkpoint.load(out)["model"])
    model.eval()
    with torch.no_grad():
        logits = model(Normalize(torch.device("cpu"))(test.tensors()[0].contiguous()))
    labels = torch.tensor(test.targets)
    prior = torch.tensor(train.class_counts, dtype=torch.float32)
    adjusted = (logits - torch.log(prior / prior.sum())).argmax(1)
    assert record["adjusted"]["tau"] == 1
    assert record["adjusted"]["test_top1"] == pytest.approx((adjusted == labels).float().mean())
    assert record["test_top1"] == pytest.approx((logits.argmax(1) == labels).float().mean())
    assert "Post-hoc logit adjustment" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"loss": "ldam"}, "classifier: --loss ldam or gcl goes with --classifier normed"),
        ({"loss": "gcl"}, "classifier: --loss ldam or gcl goes with --classifier normed"),
        ({"classifier": "normed"}, "classifier: --loss ldam or gcl goes with --classifier normed"),
        (
            {"label_smoothing": 0.1, "label_smoothing_tail": 0.1},
            "label_smoothing: choose one",
        ),
        ({"reweight_start_epoch": 200}, "reweight_start_epoch: must be in 0..epochs-1"),
        ({"loss": "hinge"}, "loss: must be one of ce, focal, ldam, balanced_softmax"),
        ({"reweight": "sqrt"}, "reweight: must be one of none, inverse, class_balanced"),
        ({"loss": "focal", "focal_gamma": -1.0}, "loss: gamma must be >= 0"),
        ({"label_smoothing_head": 1.5}, "label smoothing head must be in [0, 1)"),
        ({"reweight_beta": 1.0}, "reweight_beta: must be in [0, 1)"),
        ({"eval_logit_tau": float("nan")}, "eval_logit_tau: must be a finite number"),
    ],
)
def test_settings_that_do_not_work_or_compose_are_named(tmp_path, fields, message):
    config = TrainConfig(out=str(tmp_path / "run"), **fields)
    assert any(message in problem for problem in problems(config)), problems(config)


def test_a_new_loss_is_one_class_and_one_registry_entry(tmp_path, data_root, monkeypatch):
    class BrierLoss(ClassLoss):
        def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
            p = torch.softmax(logits, dim=1)  # sum_j (p_j - [j = c])^2 for each label c
            return (p**2).sum(1, keepdim=True) - 2 * p + 1

    # What `@register_loss("brier")` on a builder does, undone after the test.
    monkeypatch.setitem(LOSSES._builders, "brier", BrierLoss)
    monkeypatch.setitem(LOSS_OPTIONS, "brier", {})
    records = run(data_root, tmp_path / "run", "--loss", "brier", "--epochs", "1")
    assert records[0]["loss"] == "brier" and np.isfinite(records[0]["train_loss"])


STRONG = {
    "autoaugment_cutmix": ["--augment", "autoaugment", "--mix", "cutmix", "--cutmix-prob", "1"],
    "randaugment_cutout_mean": [
        "--augment", "randaugment", "--cutout", "8", "--cutout-fill", "mean",
    ],
    "torch_loader_autoaugment_cutout": [
        "--loader", "torch", "--workers", "0", "--augment", "autoaugment", "--cutout", "16",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", list(STRONG))
def test_each_strong_pipeline_and_mixer_trains(tmp_path, data_root, name):
    out = tmp_path / "run"
    records = run(data_root, out, *STRONG[name], "--epochs", "2", "--loss", "balanced_softmax")
    assert len(records) == 2 and all(np.isfinite(r["train_loss"]) for r in records)
    saved = checkpoint.load(out)["config"]
    flags = dict(zip(STRONG[name][::2], STRONG[name][1::2], strict=True))
    assert saved["augment"] == flags["--augment"]
    assert saved["mix"] == flags.get("--mix", "none")
