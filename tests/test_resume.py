"""Checkpoints: an interrupted and resumed run equals an uninterrupted one, bit for bit, in
exact float32 and under the bf16 fast path alike."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from ltfast import checkpoint
from ltfast.train import main

TIMING = {"images_per_s", "train_s", "epoch_s"}


def flags(data_root: Path, out: Path, *extra: str, precision: str = "float32") -> list[str]:
    return [
        "--precision", precision,
        "--dataset", "synthetic", "--synthetic-size", "40", "--imb-factor", "0.2", "--quiet",
        "--batch-size", "32", "--epochs", "3", "--warmup-epochs", "1", "--lr", "0.05",
        "--mix", "mixup", "--mixup-off-epochs", "1", "--label-smoothing", "0.1",
        "--sampler", "pb", "--sampler-start-epoch", "1",
        "--data-root", str(data_root), "--out", str(out), *extra,
    ]  # fmt: skip


def metrics(out: Path) -> list[dict]:
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(out)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole"
    main(flags(data_root, out))
    return out


# LDAM-DRW in small: the class-balanced weights switch on at epoch 2 (0-based), the third.
DRW = ["--loss", "ldam", "--classifier", "normed", "--reweight", "class_balanced"]
DRW += ["--reweight-start-epoch", "2"]


@pytest.fixture(scope="module")
def uninterrupted_drw(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole-drw"
    main(flags(data_root, out, *DRW))
    return out


def interrupt_at_step(monkeypatch, step: int) -> None:
    """Sends this process SIGTERM during training step number `step` (counted from 1): in its
    optimiser step, which counts steps whatever the loss is called for."""
    calls = {"n": 0}
    original = torch.optim.SGD.step

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            signal.raise_signal(signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", counting)


STEPS_PER_EPOCH = 7  # 199 training images in batches of 32


@pytest.mark.parametrize("stop_step", [10, 15])  # inside epoch 2; just into epoch 3
def test_sigterm_then_resume_equals_an_uninterrupted_run(
    tmp_path, data_root, uninterrupted, monkeypatch, stop_step
):
    out = tmp_path / "interrupted"
    interrupt_at_step(monkeypatch, stop_step)
    with pytest.raises(SystemExit) as exit_:
        main(flags(data_root, out))
    assert exit_.value.code == 128 + signal.SIGTERM
    state = checkpoint.load(out)
    assert (state["epoch"], state["step"]) == divmod(stop_step, STEPS_PER_EPOCH)
    monkeypatch.undo()
    main(["--resume", str(out)])
    assert metrics(out) == metrics(uninterrupted)
    resumed, whole = weights(out), weights(uninterrupted)
    assert resumed.keys() == whole.keys()
    for name in whole:
        assert torch.equal(resumed[name], whole[name]), name


@pytest.fixture(scope="module")
def uninterrupted_bf16(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole-bf16"
    main(flags(data_root, out, precision="bf16"))
    return out


def test_a_bf16_resume_equals_an_uninterrupted_bf16_run(
    tmp_path, data_root, uninterrupted_bf16, monkeypatch
):
    """Exact, not within a tolerance: autocast keeps the weights, optimiser state and loss in
    float32 (the checkpoint holds them exactly), and the bf16 kernels are deterministic for a
    given thread count, so the resumed steps repeat the uninterrupted ones bit for bit."""
    out = tmp_path / "interrupted"
    interrupt_at_step(monkeypatch, 10)
    with pytest.raises(SystemExit):
        main(flags(data_root, out, precision="bf16"))
    monkeypatch.undo()
    main(["--resume", str(out)])
    records = metrics(out)
    assert records == metrics(uninterrupted_bf16)
    assert {r["numerics"] for r in records} == {"bf16 autocast, channels_last"}
    resumed, whole = weights(out), weights(uninterrupted_bf16)
    for name in whole:
        assert torch.equal(resumed[name], whole[name]), name


@pytest.mark.parametrize("stop_step", [10, 15])  # before the switch; inside the first DRW epoch
def test_a_resume_across_the_drw_switch_equals_an_uninterrupted_run(
    tmp_path, data_root, uninterrupted_drw, monkeypatch, stop_step
):
    out = tmp_path / "interrupted"
    interrupt_at_step(monkeypatch, stop_step)
    with pytest.raises(SystemExit):
        main(flags(data_root, out, *DRW))
    monkeypatch.undo()
    main(["--resume", str(out)])
    records = metrics(out)
    assert records == metrics(uninterrupted_drw)
    assert records[1]["class_weights"] == [1.0] * 10 and records[2]["class_weights"] != [1.0] * 10
    resumed, whole = weights(out), weights(uninterrupted_drw)
    for name in whole:
        assert torch.equal(resumed[name], whole[name]), name


# CMO is active in epochs 4 to E - 4: with 9 epochs, in epoch 4 alone, under AutoAugment and
# Cutout throughout.
STRONG = ["--augment", "autoaugment", "--cutout", "8", "--mix", "cmo", "--cmo-prob", "0.7"]
STRONG += ["--epochs", "9", "--loss", "balanced_softmax"]


@pytest.mark.slow
def test_a_resume_inside_a_cmo_and_autoaugment_epoch_equals_an_uninterrupted_run(
    tmp_path, data_root, monkeypatch
):
    out = interrupted_and_resumed(tmp_path, data_root, monkeypatch, STRONG, 4 * STEPS_PER_EPOCH + 3)
    assert_same_run(out, tmp_path / "whole")


def test_a_resume_inside_a_sam_epoch_equals_an_uninterrupted_run(tmp_path, data_root, monkeypatch):
    sam = ["--optimizer", "sam", "--sam-rho", "0.5"]
    out = interrupted_and_resumed(tmp_path, data_root, monkeypatch, sam, 10)  # epoch 1, step 3
    assert_same_run(out, tmp_path / "whole")


def test_a_resume_across_the_ib_switch_with_max_norm_equals_an_uninterrupted_run(
    tmp_path, data_root, monkeypatch
):
    """Interrupted in epoch 1, the first influence-balanced epoch, between MaxNorm's
    projections of epochs 0 and 1: its threshold comes back from the checkpoint."""
    extra = ["--loss", "ib", "--ib-start-epoch", "1", "--reweight", "inverse"]
    extra += ["--reweight-start-epoch", "1", "--max-norm", "0.3"]
    out = interrupted_and_resumed(tmp_path, data_root, monkeypatch, extra, 10)
    assert_same_run(out, tmp_path / "whole")


def test_a_resume_inside_an_imbsam_epoch_with_gcls_clouds_equals_an_uninterrupted_run(
    tmp_path, data_root, monkeypatch
):
    extra = ["--loss", "gcl", "--classifier", "normed", "--optimizer", "imbsam"]
    extra += ["--imbsam-eta", "20", "--sam-rho", "0.3"]
    out = interrupted_and_resumed(tmp_path, data_root, monkeypatch, extra, 10)
    assert_same_run(out, tmp_path / "whole")


def interrupted_and_resumed(tmp_path, data_root, monkeypatch, extra, stop_step) -> Path:
    """Trains `extra` whole into tmp_path/whole, then again interrupted during step
    `stop_step` and resumed; returns the resumed run's folder."""
    main(flags(data_root, tmp_path / "whole", *extra))
    out = tmp_path / "interrupted"
    interrupt_at_step(monkeypatch, stop_step)
    with pytest.raises(SystemExit):
        main(flags(data_root, out, *extra))
    assert (checkpoint.load(out)["epoch"], checkpoint.load(out)["step"]) == divmod(
        stop_step, STEPS_PER_EPOCH
    )
    monkeypatch.undo()
    main(["--resume", str(out)])
    return out


def assert_same_run(out: Path, whole: Path) -> None:
    assert metrics(out) == metrics(whole)
    resumed, uninterrupted = weights(out), weights(whole)
    for name in uninterrupted:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_resume_refuses_another_experiment(tmp_path, uninterrupted, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--resume", str(uninterrupted), "--model", "resnet20", "--imb-factor", "0.5"])
    error = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "model: 'resnet32' in the checkpoint, 'resnet20' now" in error
    assert "imb_factor: 0.2 in the checkpoint, 0.5 now" in error


def test_resume_of_a_finished_run_needs_more_epochs(uninterrupted, capsys):
    with pytest.raises(SystemExit):
        main(["--resume", str(uninterrupted)])
    assert "finished 3 of 3 epochs; pass a larger --epochs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a readable checkpoint"),
        (lambda p: torch.save({"model": {}}, p), "was not written by ltfast"),
        (lambda p: p.unlink(), "no checkpoint at"),
    ],
)
def test_damaged_checkpoints_are_named(tmp_path, uninterrupted, capsys, damage, message):
    copy = tmp_path / "last.pt"
    copy.write_bytes((uninterrupted / "last.pt").read_bytes())
    damage(copy)
    with pytest.raises(SystemExit):
        main(["--resume", str(copy)])
    assert message in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"good": torch.ones(3)}, path)
    before = path.read_bytes()

    def failing_save(obj, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save({"bad": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_mid_epoch_resume_under_another_batch_size_is_refused(
    tmp_path, data_root, monkeypatch, capsys
):
    out = tmp_path / "interrupted"
    interrupt_at_step(monkeypatch, 10)  # epoch 2, step 3 of 7
    with pytest.raises(SystemExit):
        main(flags(data_root, out))
    monkeypatch.undo()
    with pytest.raises(SystemExit) as exit_:
        main(["--resume", str(out), "--batch-size", "16"])
    assert exit_.value.code == 2
    assert (
        "batch_size: 32 in the checkpoint, 16 now (the checkpoint is in the middle of an epoch)"
        in capsys.readouterr().err
    )


def test_between_epochs_the_batch_size_may_change(tmp_path, data_root, uninterrupted):
    out = tmp_path / "longer"
    main(["--resume", str(uninterrupted), "--out", str(out), "--epochs", "4", "--batch-size", "16"])
    assert [r["epoch"] for r in metrics(out)] == [1, 2, 3, 4]
