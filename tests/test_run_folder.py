"""The run folder and the training CLI's promises: no file of the user's is overwritten or
deleted without --overwrite, and every bad argument gets a short error (exit 2) before the
run folder is created."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

import ltfast.train
from ltfast import checkpoint
from ltfast.losses import ClassLoss
from ltfast.run_folder import LOCK, MARKER, RunFolder
from ltfast.train import main

QUICK = ["--dataset", "synthetic", "--synthetic-size", "60", "--quiet", "--batch-size", "32"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root) -> Path:
    """A complete one-epoch run, to copy from."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    main([*QUICK, "--data-root", str(data_root), "--out", str(out), "--epochs", "1"])
    return out


def train(data_root: Path, out: Path, *flags: str) -> dict | None:
    return main([*QUICK, "--data-root", str(data_root), "--out", str(out), "--epochs", "1", *flags])


def usage_error(capsys, *argv: str) -> str:
    """The message of a run refused with exit code 2 (and no traceback)."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name, content in snapshot(source).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(content)
    return target


def test_a_run_folder_is_marked(finished):
    assert json.loads((finished / MARKER).read_text())["format"] == "ltfast-run"
    assert RunFolder(finished).is_run()


def test_files_with_ltfast_names_in_an_unmarked_folder_are_never_touched(
    tmp_path, data_root, capsys
):
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("config.yaml", "report.md", "summary.json", "best.pt", "dataset.json"):
        (out / name).write_text(f"my own {name}")
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as exit_:
            train(data_root, out, *extra)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert (
            f"{out} is not an ltfast run folder (it has no {MARKER}) but holds config.yaml" in err
        )
        assert snapshot(out) == before


def test_a_folder_named_like_the_marker_is_named_as_such(tmp_path, data_root, capsys):
    out = tmp_path / "mine"
    (out / MARKER).mkdir(parents=True)
    (out / MARKER / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as exit_:
            train(data_root, out, *extra)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"{out / MARKER} is not ltfast's marker file (it is a folder" in err
        assert f"has no {MARKER}" not in err
        assert snapshot(out) == {f"{MARKER}/notes.txt": b"mine"}


def test_an_unmarked_folder_without_clashing_names_is_used_and_its_files_kept(tmp_path, data_root):
    out = tmp_path / "experiments"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    train(data_root, out)
    assert (out / "notes.txt").read_text() == "keep me" and RunFolder(out).is_run()


def test_resume_into_another_existing_run_is_refused(tmp_path, finished, capsys):
    other = copy_run(finished, tmp_path / "other")
    (other / "notes.txt").write_text("mine")
    before = snapshot(other)
    err = usage_error(capsys, "--resume", str(finished), "--out", str(other), "--epochs", "2")
    assert f"{other} already holds a run; pass --overwrite" in err
    assert snapshot(other) == before


def test_resume_into_a_new_folder_continues_there(tmp_path, finished):
    source = copy_run(finished, tmp_path / "source")
    before = snapshot(source)
    target = tmp_path / "continued"
    main(["--resume", str(source), "--out", str(target), "--epochs", "2"])
    assert snapshot(source) == before
    epochs = [json.loads(x)["epoch"] for x in (target / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and checkpoint.load(target)["epoch"] == 2


def test_overwrite_with_a_run_that_cannot_start_deletes_nothing(tmp_path, finished, capsys):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    empty = tmp_path / "no-data"
    err = usage_error(
        capsys, "--data-root", str(empty), "--out", str(out), "--overwrite", "--quiet"
    )
    assert "data not found" in err and "--dataset synthetic" in err
    assert snapshot(out) == before


def test_overwrite_removes_every_file_of_the_old_run_and_only_those(
    tmp_path, data_root, finished, monkeypatch
):
    out = copy_run(finished, tmp_path / "run")
    (out / "draws").mkdir()
    (out / "draws" / "epoch0-rank0.npy").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    # The new run is stopped at its first step: nothing of the old run may be left behind.
    original = ClassLoss.forward

    def stop_at_once(self, *args):
        signal.raise_signal(signal.SIGTERM)
        return original(self, *args)

    monkeypatch.setattr(ClassLoss, "forward", stop_at_once)
    with pytest.raises(SystemExit):
        train(data_root, out, "--overwrite")
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted(
        [MARKER, LOCK, "config.yaml", "dataset.json", "metrics.jsonl", "last.pt", "notes.txt"]
    )
    assert (out / "metrics.jsonl").read_text() == ""
    assert checkpoint.load(out)["step"] == 1


def test_a_run_killed_before_its_first_checkpoint(tmp_path, data_root, monkeypatch, capsys):
    out = tmp_path / "run"

    def killed(self):
        (Path(self.config.out) / ".last.pt.partial").write_bytes(b"half a checkpoint")
        raise SystemExit(137)  # what SIGKILL leaves: the folder as it was at this moment

    monkeypatch.setattr(ltfast.train.Trainer, "run_epoch", killed)
    with pytest.raises(SystemExit):
        train(data_root, out)
    monkeypatch.undo()
    # A rerun and a resume agree: there is nothing to resume, --overwrite starts it again.
    with pytest.raises(SystemExit):
        train(data_root, out)
    assert "stopped before its first checkpoint (nothing to resume); pass --overwrite" in (
        capsys.readouterr().err
    )
    err = usage_error(capsys, "--resume", str(out))
    assert "stopped before its first checkpoint: there is nothing to resume" in err
    assert f"--out {out} --overwrite" in err
    train(data_root, out, "--overwrite")
    assert not list(out.glob(".*.partial"))
    assert checkpoint.load(out)["epoch"] == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--device", "cuda:abc"], "device: must be auto, cpu, cuda or cuda:N"),
        (["--lr", "inf"], "lr: must be a finite number, got inf"),
        (["--weight-decay", "inf"], "weight_decay: must be a finite number, got inf"),
        (["--mixup-alpha", "inf"], "mixup_alpha: must be a finite number, got inf"),
        (["--synthetic-size", "3"], "fewer than one batch of 32: raise --synthetic-size"),
        (["--synthetic-size", "10000000"], "synthetic_size: must be in 1..5000"),
        (["--out", ""], "out: must name a folder"),
        pytest.param(
            ["--device", "cuda"],
            "device: cuda was asked for, but torch sees no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_bad_values_are_refused_before_the_folder_exists(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    err = usage_error(capsys, *QUICK, "--data-root", str(tmp_path), "--out", str(out), *flags)
    assert message in err and not out.exists()
    assert "Traceback" not in err


def test_a_data_root_that_is_a_file_or_unwritable_is_named(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("mine")
    err = usage_error(capsys, *QUICK, "--data-root", str(file), "--out", str(tmp_path / "r"))
    assert f"data_root: {file} is a file; --data-root takes a folder" in err
    if Path("/proc/self").is_dir():
        err = usage_error(capsys, *QUICK, "--data-root", "/proc/x", "--out", str(tmp_path / "r"))
        assert "cannot write the synthetic data under /proc/x" in err


def test_an_out_that_is_a_file_or_unwritable_is_refused(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("mine")
    err = usage_error(capsys, *QUICK, "--data-root", str(tmp_path), "--out", str(file))
    assert f"out: {file} is a file, not a folder" in err and file.read_text() == "mine"
    err = usage_error(capsys, *QUICK, "--data-root", str(tmp_path), "--out", str(file / "run"))
    assert f"out: {file} is a file, so {file / 'run'} cannot be a folder" in err
    if Path("/proc/self").is_dir():  # not writable even for root
        err = usage_error(capsys, *QUICK, "--out", "/proc/ltfast-run")
        assert "out: /proc is not writable" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"1: 2\n", "unknown config field 1"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not a text (YAML) file"),
        (b"[1, 2]\n", "must hold a mapping of field: value"),
        (b"epochs: [1\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_configs_are_named(tmp_path, capsys, content, message):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert message in usage_error(capsys, "--config", str(config), "--out", str(tmp_path / "r"))


def test_a_config_that_is_a_folder_is_named(tmp_path, capsys):
    err = usage_error(capsys, "--config", str(tmp_path), "--out", str(tmp_path / "r"))
    assert f"config file {tmp_path} is a folder" in err


def test_tilde_is_expanded_in_every_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "sweep.yaml").write_text("epochs: 1\n")
    main([*QUICK, "--data-root", "~/data", "--out", "~/run", "--config", "~/sweep.yaml"])
    assert RunFolder(tmp_path / "run").is_run() and (tmp_path / "data").is_dir()
    main(["--resume", "~/run", "--epochs", "2"])
    assert checkpoint.load(tmp_path / "run")["epoch"] == 2
    assert not Path("~").exists()


def test_a_full_disk_while_checkpointing_is_said_and_keeps_the_last_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"epoch": 1}, path)
    before = path.read_bytes()
    # Writes to /dev/full fail with ENOSPC, as on a full disk.
    (tmp_path / ".last.pt.partial").symlink_to("/dev/full")
    with pytest.raises(OSError, match="the disk is full") as error:
        checkpoint.save({"epoch": 2, "big": torch.zeros(1000)}, path)
    assert error.value.errno == errno.ENOSPC
    assert "the previous last.pt is intact" in str(error.value)
    assert path.read_bytes() == before and not (tmp_path / ".last.pt.partial").exists()


def test_the_cli_says_the_disk_is_full_without_a_traceback(
    tmp_path, data_root, capsys, monkeypatch
):
    out = tmp_path / "run"
    claim = RunFolder.claim

    def claim_then_fill_the_disk(self, *args):
        claim(self, *args)
        (self.path / ".last.pt.partial").symlink_to("/dev/full")

    monkeypatch.setattr(RunFolder, "claim", claim_then_fill_the_disk)
    with pytest.raises(SystemExit) as exit_:
        train(data_root, out)
    assert exit_.value.code == 1
    assert (
        "the disk is full (or over quota) while writing the checkpoint" in capsys.readouterr().err
    )


def crafted(tmp_path: Path, finished: Path, drop: str) -> Path:
    out = copy_run(finished, tmp_path / "crafted")
    state = checkpoint.load(finished)
    del state[drop]
    torch.save(state, out / "last.pt")
    return out


@pytest.mark.parametrize("field", ["model", "records", "rng", "step"])
def test_crafted_checkpoints_lacking_fields_are_named(tmp_path, finished, capsys, field):
    out = crafted(tmp_path, finished, field)
    err = usage_error(capsys, "--resume", str(out), "--epochs", "2")
    assert f"{out / 'last.pt'} is damaged: missing or invalid {field}" in err


def test_a_checkpoint_whose_weights_do_not_fit_is_named(tmp_path, finished, capsys):
    out = copy_run(finished, tmp_path / "run")
    state = checkpoint.load(out)
    state["model"] = {"conv1.weight": torch.zeros(1)}
    torch.save(state, out / "last.pt")
    err = usage_error(capsys, "--resume", str(out), "--epochs", "2")
    assert f"{out / 'last.pt'} is damaged and cannot be resumed" in err


def test_a_truncated_metrics_line_is_named_on_resume(tmp_path, finished, capsys):
    out = copy_run(finished, tmp_path / "run")
    metrics = out / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:-30])
    main(["--resume", str(out), "--epochs", "2"])
    assert f"warning: {metrics} line 1 is not valid JSON" in capsys.readouterr().err
    epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
    assert epochs == [1, 2]  # rewritten from the checkpoint


def test_damaged_synthetic_data_says_to_delete_it_not_to_download(tmp_path, capsys):
    main([*QUICK, "--data-root", str(tmp_path), "--out", str(tmp_path / "a"), "--epochs", "1"])
    batch = next(tmp_path.glob("synthetic-*/cifar-10-batches-bin/data_batch_1.bin"))
    batch.write_bytes(batch.read_bytes()[:-5])
    err = usage_error(capsys, *QUICK, "--data-root", str(tmp_path), "--out", str(tmp_path / "b"))
    assert "generated synthetic data" in err and "the next run generates it again" in err
    assert "download" not in err


def test_synthetic_data_of_an_older_ltfast_is_adopted_not_refused(tmp_path):
    main([*QUICK, "--data-root", str(tmp_path), "--out", str(tmp_path / "a"), "--epochs", "1"])
    manifest = next(tmp_path.glob("synthetic-*/cifar-10-batches-bin/.ltfast-md5.json"))
    manifest.unlink()  # as written before ltfast recorded digests
    main([*QUICK, "--data-root", str(tmp_path), "--out", str(tmp_path / "b"), "--epochs", "1"])
    assert manifest.is_file()


def test_resume_in_place_with_overwrite_is_refused(tmp_path, finished, capsys):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    err = usage_error(capsys, "--resume", str(out), "--epochs", "2", "--overwrite")
    assert "--overwrite would delete it" in err and snapshot(out) == before


def test_overwrite_is_not_inherited_by_a_resume(tmp_path, data_root):
    out = tmp_path / "run"
    train(data_root, out)
    train(data_root, out, "--overwrite")
    assert yaml.safe_load((out / "config.yaml").read_text())["overwrite"] is True
    main(["--resume", str(out), "--epochs", "2"])  # continues, deletes nothing
    assert checkpoint.load(out)["epoch"] == 2
    assert os.path.exists(out / "best.pt")
