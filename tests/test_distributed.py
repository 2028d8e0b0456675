"""torchrun with two CPU processes (gloo): strided shards of one draw, metrics written once
and equal to a one-process evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ltfast import checkpoint
from ltfast.config import TrainConfig
from ltfast.distributed import World, pick_device
from ltfast.losses import ClassLoss
from ltfast.parts import load_data
from ltfast.schedules import SamplingSchedule
from ltfast.train import Trainer, main


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    out = root / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "ltfast.train", "--dataset", "synthetic", "--synthetic-size", "40",
        "--imb-factor", "0.2", "--batch-size", "32", "--epochs", "2", "--warmup-epochs", "1",
        "--sampler", "class", "--sampler-start-epoch", "1", "--save-draws", "--quiet",
        "--data-root", str(root / "data"), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def trainer_targets(config: TrainConfig) -> np.ndarray:
    train, _ = load_data(config)
    return np.asarray(train.targets)


def test_ranks_take_disjoint_strides_of_the_one_process_draw(ddp_run):
    config = TrainConfig(**yaml.safe_load((ddp_run / "config.yaml").read_text()))
    counts = json.loads((ddp_run / "dataset.json").read_text())["class_counts"]
    train_targets = trainer_targets(config)
    assert np.bincount(train_targets, minlength=10).tolist() == counts
    one_process = SamplingSchedule(config, train_targets, 10)
    for epoch in range(2):
        ranks = [np.load(ddp_run / "draws" / f"epoch{epoch}-rank{r}.npy") for r in range(2)]
        assert len(ranks[0]) == len(ranks[1])
        woven = np.empty(2 * len(ranks[0]), dtype=np.int64)
        woven[0::2], woven[1::2] = ranks
        draw = one_process.sampler(epoch).indices()
        np.testing.assert_array_equal(woven[: len(draw)], draw)  # positions r::2 of one draw
        padding = len(woven) - len(draw)
        assert padding == len(draw) % 2


def test_metrics_are_written_once_and_equal_one_process_evaluation(ddp_run):
    records = [json.loads(x) for x in (ddp_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    config = TrainConfig(**yaml.safe_load((ddp_run / "config.yaml").read_text()))
    trainer = Trainer(config, World())
    trainer.model.load_state_dict(checkpoint.load(ddp_run)["model"])
    report = trainer.evaluate()
    assert report["per_class"] == records[-1]["per_class"]
    assert report["test_top1"] == records[-1]["test_top1"]
    assert sorted(p.name for p in ddp_run.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]


def test_a_mid_epoch_checkpoint_resumes_only_with_as_many_processes(tmp_path, monkeypatch):
    """One process stopped by SIGTERM at step 3 of epoch 1; two processes would split the rest
    of that epoch differently, so torchrun with 2 refuses, naming both counts."""
    out = tmp_path / "run"
    original = ClassLoss.forward
    calls = {"n": 0}

    def stop_at_step_3(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGTERM)
        return original(self, *args)

    monkeypatch.setattr(ClassLoss, "forward", stop_at_step_3)
    with pytest.raises(SystemExit):
        main([
            "--dataset", "synthetic", "--synthetic-size", "40", "--imb-factor", "0.2",
            "--batch-size", "32", "--epochs", "2", "--quiet",
            "--data-root", str(tmp_path / "data"), "--out", str(out),
        ])  # fmt: skip
    assert checkpoint.load(out)["step"] == 3
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "ltfast.train", "--resume", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode != 0
    assert "in the middle of an epoch with 1 processes; resume it with the same number (now 2)" in (
        result.stderr
    )


def test_a_stage2_under_torchrun_changes_the_classifier_and_statistics_alone(ddp_run, tmp_path):
    out = tmp_path / "crt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "ltfast.train", "--config", str(ddp_run / "config.yaml"), "--init-from",
        str(ddp_run), "--stage2", "crt", "--shift-bn", "--epochs", "1", "--lr", "0.01",
        "--lr-schedule", "cosine", "--warmup-epochs", "0", "--sampler-start-epoch", "0",
        "--no-save-draws", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, cwd=ddp_run.parent, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    before, after = checkpoint.load(ddp_run)["model"], checkpoint.load(out)["model"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    statistics = {k for k in before if k.endswith(("running_mean", "running_var", "tracked"))}
    assert changed == statistics | {"classifier.weight", "classifier.bias"}


def test_a_gpu_without_an_index_becomes_the_current_one(monkeypatch):
    """torch.cuda.set_device refuses torch.device("cuda") (torch 2.11 on an H200: "Expected a
    torch.device with a specified index"), so --device cuda resolves to the current GPU, and
    under torchrun to the rank's own."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert pick_device("cuda", World()) == torch.device("cuda", 1)
    assert pick_device("auto", World()) == torch.device("cuda", 1)
    assert pick_device("cuda:0", World()) == torch.device("cuda", 0)
    assert pick_device("cuda", World(1, 2, 0)) == torch.device("cuda", 0)
    assert pick_device("cpu", World()) == torch.device("cpu")
