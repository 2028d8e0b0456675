"""Two-stage training on the synthetic set: --init-from starts from trained weights, each
stage-2 method changes exactly the parameters it should, shifted BN changes the running
statistics alone, tau-norm at tau = 0 is the model as trained, and the cosine schedule is
MiSLAS's."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TRAINED_RUN as QUICK

from ltfast import checkpoint
from ltfast.augment import Normalize
from ltfast.config import TrainConfig, problems
from ltfast.evaluation import open_trained
from ltfast.schedules import cosine_factor, shifted_cosine_factor
from ltfast.stages import tau_normalised
from ltfast.train import main

STAGE2 = ["--epochs", "2", "--sampler", "class", "--lr-schedule", "cosine", "--warmup-epochs", "0"]
STAGE2 += ["--lr", "0.01"]  # the tiny stage-1 model's features are large: a small lr


def train(data_root: Path, out: Path, *flags: str) -> dict:
    summary = main([*QUICK, "--data-root", str(data_root), "--out", str(out), *flags])
    assert summary is not None
    return summary


@pytest.fixture
def stage1(trained_run: Path) -> Path:
    """The stage-1 model of these tests: a finished CE run (conftest)."""
    return trained_run


def weights(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(run)["model"]


def changed(before: dict, after: dict) -> set[str]:
    """The state entries whose bytes differ (entries of only one side count as changed)."""
    return {k for k in before.keys() | after.keys() if not _same(before.get(k), after.get(k))}


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return a is not None and b is not None and a.dtype == b.dtype and torch.equal(a, b)


def test_crt_changes_the_classifier_alone(tmp_path, data_root, stage1):
    train(data_root, tmp_path / "crt", "--init-from", str(stage1), "--stage2", "crt", *STAGE2)
    before, after = weights(stage1), weights(tmp_path / "crt")
    assert changed(before, after) == {"classifier.weight", "classifier.bias"}
    assert any("running_mean" in k for k in before)  # BatchNorm buffers were compared too


def test_lws_changes_the_scales_alone(tmp_path, data_root, stage1):
    train(data_root, tmp_path / "lws", "--init-from", str(stage1), "--stage2", "lws", *STAGE2)
    before, after = weights(stage1), weights(tmp_path / "lws")
    # The wrapped classifier keeps stage 1's weights under a new name.
    renamed = {k.replace("classifier.classifier.", "classifier."): v for k, v in after.items()}
    assert changed(before, renamed) == {"classifier.scales"}
    assert not torch.equal(after["classifier.scales"], torch.ones(10))


def test_shift_bn_changes_the_running_statistics_and_nothing_else(tmp_path, data_root, stage1):
    flags = ["--init-from", str(stage1), "--stage2", "crt", "--shift-bn", *STAGE2]
    train(data_root, tmp_path / "shifted", *flags)
    before, after = weights(stage1), weights(tmp_path / "shifted")
    statistics = {k for k in before if k.endswith(("running_mean", "running_var", "tracked"))}
    assert changed(before, after) == statistics | {"classifier.weight", "classifier.bias"}


def test_mislas_stage2_trains_classifier_and_scales_on_a_frozen_backbone(
    tmp_path, data_root, stage1
):
    flags = ["--init-from", str(stage1), "--stage2", "mislas", *STAGE2]
    train(data_root, tmp_path / "mislas", *flags, "--label-smoothing-head", "0.3")
    before, after = weights(stage1), weights(tmp_path / "mislas")
    renamed = {k.replace("classifier.classifier.", "classifier."): v for k, v in after.items()}
    assert changed(before, renamed) == {"classifier.weight", "classifier.bias", "classifier.scales"}


def test_init_from_starts_from_the_weights_with_a_fresh_optimiser(tmp_path, data_root, stage1):
    flags = [
        "--init-from",
        str(stage1),
        "--epochs",
        "1",
        "--lr",
        "1e-12",
        "--warmup-epochs",
        "0",
    ]
    summary = train(data_root, tmp_path / "next", *flags)
    before, after = weights(stage1), weights(tmp_path / "next")
    assert torch.allclose(before["conv1.weight"], after["conv1.weight"], atol=1e-9)
    state = checkpoint.load(tmp_path / "next")
    assert state["epoch"] == 1 and len(state["records"]) == 1  # its own epochs, from 0
    assert summary["config"]["init_from"] == str(stage1)


def test_an_interrupted_stage2_resumes_without_its_init_run(tmp_path, data_root, stage1):
    copy = tmp_path / "stage1"
    shutil.copytree(stage1, copy)
    train(data_root, tmp_path / "crt", "--init-from", str(copy), "--stage2", "crt", *STAGE2)
    state = checkpoint.load(tmp_path / "crt")
    state["epoch"] = 1  # as if stopped after its first epoch
    state["records"] = state["records"][:1]
    checkpoint.save(state, tmp_path / "crt" / "last.pt")
    shutil.rmtree(copy)  # the resume restores its own weights
    summary = main(["--resume", str(tmp_path / "crt"), "--quiet"])
    assert summary is not None and summary["final"]["epoch"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "resnet20"], "model: 'resnet32' in"),
        (["--dataset", "cifar10", "--data-root", "{synthetic}"], "dataset: 'synthetic' in"),
    ],
)
def test_init_from_another_model_is_named(tmp_path, data_root, stage1, capsys, flags, message):
    flags = [f.format(synthetic=data_root / "synthetic-60-0") for f in flags]
    with pytest.raises(SystemExit) as exit_:
        train(data_root, tmp_path / "run", "--init-from", str(stage1), *flags, "--epochs", "1")
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_init_from_a_stage2_model_or_an_unfinished_run_is_refused(
    tmp_path, data_root, stage1, capsys
):
    train(data_root, tmp_path / "crt", "--init-from", str(stage1), "--stage2", "crt", *STAGE2)
    with pytest.raises(SystemExit):
        train(data_root, tmp_path / "again", "--init-from", str(tmp_path / "crt"), "--epochs", "1")
    assert "--init-from takes a stage-1 model" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(stage1, unfinished)
    (unfinished / "summary.json").unlink()
    with pytest.raises(SystemExit):
        train(data_root, tmp_path / "run", "--init-from", str(unfinished), "--epochs", "1")
    assert "has not finished" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stage2": "crt"}, "stage2: --stage2 crt retrains the classifier of a trained model"),
        ({"shift_bn": True}, "shift_bn: --shift-bn applies to a frozen backbone"),
        ({"init_from": "configs/ce.yaml"}, "init_from: configs/ce.yaml is a config"),
        ({"stage2": "decouple"}, "stage2: must be one of none, crt, wb, gcl, lws, mislas"),
        ({"lr_schedule": "linear"}, "lr_schedule: must be one of step, cosine, cosine_shifted"),
        ({"max_norm": 1.5}, "max_norm: must be a fraction in [0, 1]"),
        (
            {"max_norm": 0.1, "loss": "ldam", "classifier": "normed"},
            "max_norm: MaxNorm projects the rows of a linear classifier",
        ),
        ({"classifier_weight_decay": -1.0}, "classifier_weight_decay: must be >= 0"),
    ],
)
def test_two_stage_settings_that_cannot_work_are_named(tmp_path, fields, message):
    config = TrainConfig(out=str(tmp_path / "run"), **fields)
    assert any(message in problem for problem in problems(config)), problems(config)


def test_tau_norm_at_zero_is_the_model_as_trained(stage1):
    trained = open_trained(stage1, {})
    model = trained.model.eval()
    images = Normalize(torch.device("cpu"))(trained.test_set.tensors()[0][:200].contiguous())
    with torch.no_grad():
        logits = model(images)
        original = model.classifier
        model.classifier = tau_normalised(original, 0.0)
        assert torch.equal(model(images), logits)
        model.classifier = tau_normalised(original, 1.0)
        norms = model.classifier.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(10))


def test_tau_norm_refuses_a_normed_classifier():
    from ltfast.models import NormedLinear

    with pytest.raises(ValueError, match="not a NormedLinear"):
        tau_normalised(NormedLinear(64, 10), 1.0)


def test_the_cosine_schedule_is_mislas_stage2():
    expected = [0.5 * (1 + math.cos(e / 10 * 3.1415926535)) for e in range(10)]
    assert [cosine_factor(e, 0, 10) for e in range(10)] == pytest.approx(expected, abs=1e-9)
    assert [cosine_factor(e, 2, 12) for e in range(2)] == [0.5, 1.0]  # warm-up first


def test_the_shifted_cosine_is_torchs_cosine_stepped_at_each_epochs_start():
    """ImbSAM and Weight Balancing call CosineAnnealingLR.step() before training an epoch."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=0)
    theirs = []
    for _ in range(10):
        optimizer.step()  # (torch warns about a scheduler step before an optimiser step)
        scheduler.step()
        theirs.append(optimizer.param_groups[0]["lr"])
    assert [shifted_cosine_factor(e, 0, 10) for e in range(10)] == pytest.approx(theirs, abs=1e-9)
    assert shifted_cosine_factor(9, 0, 10) == pytest.approx(0.0, abs=1e-12)


def test_wb_stage2_fine_tunes_the_classifier_under_max_norm(tmp_path, data_root, stage1):
    """Weight Balancing's stage 2: the stage-1 classifier (not re-initialised) trained alone,
    its own weight decay, every row at most MaxNorm's threshold after each epoch; the
    BatchNorm statistics follow the data (--shift-bn), the backbone's weights do not move."""
    out = tmp_path / "wb"
    flags = ["--init-from", str(stage1), "--stage2", "wb", "--max-norm", "0.1", "--shift-bn"]
    flags += ["--loss", "class_balanced_bce", "--classifier-weight-decay", "0.1", *STAGE2]
    train(data_root, out, *flags)
    before, after = weights(stage1), weights(out)
    moved = changed(before, after)
    assert {"classifier.weight", "classifier.bias"} <= moved
    assert all("running" in k or "num_batches" in k or k.startswith("classifier") for k in moved)
    start = before["classifier.weight"].norm(dim=1)
    threshold = float(start.min() + 0.1 * (start.max() - start.min()))
    state = checkpoint.load(out)
    assert state["epoch_end_hooks"]["max_norm"]["threshold"] == pytest.approx(threshold)
    assert float(after["classifier.weight"].norm(dim=1).max()) <= threshold * (1 + 1e-5)
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [0.1]


def test_a_classifier_weight_decay_splits_the_groups_of_one_stage_training():
    from ltfast.models import build_model
    from ltfast.stages import prepare_model

    model = build_model("resnet20", 10)
    one = prepare_model(model, TrainConfig())
    assert len(one) == 1 and one[0]["weight_decay"] == 2e-4
    two = prepare_model(model, TrainConfig(classifier_weight_decay=0.1))
    assert [g["weight_decay"] for g in two] == [2e-4, 0.1]
    assert two[1]["params"] == list(model.classifier.parameters())
    assert sum(len(g["params"]) for g in two) == len(list(model.parameters()))
