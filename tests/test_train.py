"""The training CLI end to end on the synthetic set, its configuration and its errors."""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ltfast.numerics
import ltfast.train
from ltfast import checkpoint
from ltfast.config import TrainConfig, resolve
from ltfast.parts import load_data, make_train_loader
from ltfast.schedules import LR_SCHEDULES, SamplingSchedule, lr_factor
from ltfast.train import main

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--dataset", "synthetic", "--synthetic-size", "100", "--quiet", "--batch-size", "64"]


def run(tmp_path: Path, data_root: Path, *flags: str) -> dict:
    return main([*QUICK, "--data-root", str(data_root), "--out", str(tmp_path / "run"), *flags])


def test_synthetic_run_learns_and_writes_its_folder(tmp_path, data_root):
    summary = run(
        tmp_path,
        data_root,
        "--epochs",
        "5",
        "--imb-factor",
        "0.1",
        "--warmup-epochs",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
    )
    assert summary["final"]["test_top1"] > 0.3  # chance is 0.1
    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    for key in (
        "lr",
        "train_loss",
        "test_top1",
        "test_balanced_acc",
        "many",
        "medium",
        "few",
        "per_class",
        "images_per_s",
        "epoch_s",
    ):
        assert key in records[0], key
    assert records[0]["many"] is None  # 100 images per class at most: no class has > 100
    assert len(records[0]["per_class"]) == 10
    assert yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 5
    saved = json.loads((out / "summary.json").read_text())
    assert (
        saved["final"]["epoch"] == 5 and saved["best"]["test_top1"] >= saved["final"]["test_top1"]
    )
    assert saved["class_counts"] == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    for name in ("report.md", "learning_curves.png", "last.pt", "best.pt", "dataset.json"):
        assert (out / name).is_file(), name


def test_tricks_and_the_torch_loader_run(tmp_path, data_root):
    summary = run(
        tmp_path,
        data_root,
        "--epochs",
        "2",
        "--mix",
        "mixup",
        "--mixup-off-epochs",
        "1",
        "--label-smoothing",
        "0.1",
        "--sampler",
        "pb",
        "--sampler-start-epoch",
        "1",
        "--loader",
        "torch",
        "--workers",
        "0",
    )
    assert np.isfinite(summary["final"]["train_loss"])
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["sampler"] for r in records] == ["ShuffleSampler", "ProgressiveBalancedSampler"]
    np.testing.assert_allclose(records[1]["class_probabilities"], [0.1] * 10)  # t/T = 2/2


@pytest.mark.parametrize("loader", ["device", "torch"])
def test_drop_last_drops_the_short_final_batch_as_bagoftricks_loader_does(data_root, loader):
    flags = {"dataset": "synthetic", "synthetic_size": 100, "imb_factor": 0.1, "batch_size": 64}
    flags |= {"data_root": str(data_root), "loader": loader, "workers": 0}
    train, _ = load_data(resolve(flags))
    assert len(train) == 403  # 6 batches of 64 and one of 19

    def sizes(drop_last: bool) -> list[int]:
        config = resolve({**flags, "drop_last": drop_last})
        loader = make_train_loader(config, train, torch.device("cpu"))
        sizes = [len(labels) for _, labels in loader.batches(None, epoch=0)]
        assert loader.images_per_pass(len(train)) == sum(sizes)  # the progress bar's total
        return sizes

    assert sizes(False) == [64] * 6 + [19]
    assert sizes(True) == [64] * 6


def test_existing_run_is_not_overwritten(tmp_path, data_root, capsys):
    run(tmp_path, data_root, "--epochs", "1")
    with pytest.raises(SystemExit) as exit_:
        run(tmp_path, data_root, "--epochs", "1")
    assert (
        exit_.value.code == 2 and "already holds a run; pass --overwrite" in capsys.readouterr().err
    )
    run(tmp_path, data_root, "--epochs", "1", "--overwrite")


def test_diverging_loss_stops_with_a_message(tmp_path, data_root):
    with pytest.raises(FloatingPointError, match=r"the training loss is .* the run diverged"):
        run(tmp_path, data_root, "--epochs", "1", "--lr", "1e30", "--warmup-epochs", "0")


def test_absent_data_says_how_to_get_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--data-root", str(tmp_path), "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert "--download" in error and "--dataset synthetic" in error


def test_invalid_values_are_all_named_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--epochs", "0", "--lr", "-1", "--sampler", "balanced", "--out", str(tmp_path / "x")])
    error = capsys.readouterr().err
    assert exit_.value.code == 2
    for text in ("epochs: must be >= 1", "lr: must be > 0", "sampler: must be one of"):
        assert text in error
    assert not (tmp_path / "x").exists()


def test_yaml_then_flags_override_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 30\nlr: 0.05\nlr-milestones: [10, 20]\nmixup_alpha: 1.0\n")
    config = resolve({"lr": 0.2}, path)
    assert (config.epochs, config.lr, config.lr_milestones, config.mixup_alpha) == (
        30,
        0.2,
        [10, 20],
        1.0,
    )
    assert config.batch_size == TrainConfig().batch_size
    path.write_text("epochs: many\n")
    with pytest.raises(ValueError, match="epochs: expected an integer, got 'many'"):
        resolve({}, path)
    path.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="unknown config field 'epoch'"):
        resolve({}, path)


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0
    for flag in (
        "--mixup-alpha",
        "--label-smoothing",
        "--sampler-start-epoch",
        "--imb-factor",
        "--amp",
        "--compile",
        "--config",
        "--lr-milestones",
        "(default: 0.1)",
    ):
        assert flag in text


def test_lr_schedule_is_the_recipes():
    factors = [lr_factor(e, 5, [160, 180], 0.01) for e in range(200)]
    assert factors[:6] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    assert factors[159] == 1.0 and factors[160] == 0.01 and factors[180] == pytest.approx(1e-4)


def paco_adjust_learning_rate(epoch: int, lr: float) -> float:
    """PaCo's adjust_learning_rate (paco_cifar.py; CMO's paco_adjust_learning_rate), 0-based."""
    if epoch <= 10:
        return lr / 10 * (epoch + 1)
    if epoch > 360:
        return lr * 0.01
    if epoch > 320:
        return lr * 0.1
    return lr


def warmup_multistep_lr(last_epoch: int, lr: float) -> float:
    """BagofTricks-LT's WarmupMultiStepLR.get_lr (factor 1/3, 5 warm-up epochs, milestones
    160 and 180, gamma 0.01), transcribed."""
    warmup_factor = 1.0
    if last_epoch < 5:
        alpha = last_epoch / 5
        warmup_factor = (1 / 3) * (1 - alpha) + alpha
    return lr * warmup_factor * 0.01 ** bisect.bisect_right([160, 180], last_epoch)


def test_the_bot_schedule_is_its_code_as_its_loop_steps_it():
    config = TrainConfig(lr_schedule="bot")
    ours = [LR_SCHEDULES["bot"](e, config) for e in range(200)]
    # scheduler.step() in the constructor and at the start of each epoch: epoch e at e + 1.
    assert ours == pytest.approx([warmup_multistep_lr(e + 1, 1.0) for e in range(200)])
    assert ours[:5] == pytest.approx([0.4667, 0.6, 0.7333, 0.8667, 1.0], abs=1e-4)  # SPEC 8.4
    assert (ours[158], ours[159], ours[178], ours[179]) == pytest.approx((1, 0.01, 0.01, 1e-4))


def test_the_paco_schedule_is_its_code():
    config = TrainConfig(
        epochs=400, lr_schedule="paco", warmup_epochs=10, lr_milestones=[320, 360], lr_decay=0.1
    )
    ours = [LR_SCHEDULES["paco"](e, config) * 0.05 for e in range(400)]
    assert ours == pytest.approx([paco_adjust_learning_rate(e, 0.05) for e in range(400)])
    assert ours[10] == pytest.approx(1.1 * 0.05)  # the quirk, kept
    assert (ours[320], ours[321], ours[360], ours[361]) == pytest.approx((0.05, 5e-3, 5e-3, 5e-4))


def test_deferred_progressive_sampling_counts_t_over_the_whole_run():
    """BagofTricks-LT's DRS-PB: progress_p = e/E (1-based epoch e) once the switch is past."""
    config = TrainConfig(epochs=10, sampler="pb", sampler_start_epoch=6)
    targets = np.repeat(np.arange(3), [30, 10, 5])
    schedule = SamplingSchedule(config, targets, 3)
    np.testing.assert_allclose(schedule.class_probabilities(5), [30 / 45, 10 / 45, 5 / 45])
    counts = np.array([30, 10, 5])
    expected = 0.3 * counts / 45 + 0.7 / 3  # epoch 6 (0-based) is e = 7 of E = 10
    np.testing.assert_allclose(schedule.class_probabilities(6), expected)
    np.testing.assert_allclose(schedule.class_probabilities(9), [1 / 3] * 3)


def test_cli_runs_from_the_repository_root():
    """The flat-layout trap: `python -m ltfast.train` from the checkout imports the source
    package, which must still find the installed compiled module."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "ltfast.train", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--sampler" in result.stdout


def test_the_cuda_input_format_trains_on_the_cpu(tmp_path, data_root, monkeypatch):
    """The CUDA recipe (bf16 channels_last batches, channels_last model, bf16 autocast) run on
    the CPU, so that a first GPU run is not the first run of that code."""
    monkeypatch.setattr(ltfast.numerics.Numerics, "batch_dtype", torch.bfloat16)
    seen = []
    original = ltfast.train.Trainer.__init__

    def spy_on_inputs(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))

    monkeypatch.setattr(ltfast.train.Trainer, "__init__", spy_on_inputs)
    summary = run(tmp_path, data_root, "--epochs", "1", "--precision", "bf16")
    assert np.isfinite(summary["final"]["train_loss"]) and summary["final"]["test_top1"] > 0
    assert seen and all(x.dtype == torch.bfloat16 for x in seen)
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    weights = checkpoint.load(tmp_path / "run")["model"]["conv1.weight"]
    assert weights.dtype == torch.float32  # autocast computes in bf16, keeps fp32 weights


def test_classes_left_empty_by_the_subset_are_named(tmp_path, capsys):
    # 60 * 1e-300 ** (c / 9) rounds to 0 for every class but the first: a real empty subset.
    flags = ["--dataset", "synthetic", "--synthetic-size", "60", "--imb-factor", "1e-300"]
    summary = main(
        [*flags, "--epochs", "1", "--batch-size", "32", "--quiet", "--out", str(tmp_path / "run")]
    )
    warning = capsys.readouterr().err
    counts = summary["class_counts"]
    empty = [c for c, n in enumerate(counts) if n == 0]
    assert len(empty) == 9 and counts[0] == 60
    assert "warning: 9 of 10 classes have no training image: automobile, bird, cat" in warning
    assert np.isfinite(summary["final"]["train_loss"])
