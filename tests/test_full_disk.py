"""A real full disk: a run folder on a small tmpfs, mounted by the test (as root; skipped
otherwise). The run that fills it exits 1 with a message instead of a traceback, its last
checkpoint stays intact and loadable, and once there is room again --resume finishes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ltfast import checkpoint
from ltfast.train import main

FLAGS = ["--dataset", "synthetic", "--synthetic-size", "40", "--imb-factor", "0.2", "--quiet"]
FLAGS += ["--batch-size", "32", "--epochs", "3", "--warmup-epochs", "0", "--precision", "float32"]


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs: room for one checkpoint, not for last.pt and best.pt together."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_stops_the_run_with_its_last_checkpoint_intact(small_disk, data_root, capsys):
    out = small_disk / "run"
    with pytest.raises(SystemExit) as exit_:
        main([*FLAGS, "--data-root", str(data_root), "--out", str(out)])
    error = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "the disk is full (or over quota) while writing the checkpoint" in error
    assert f"continue with --resume {out}" in error
    assert "Traceback" not in error
    state = checkpoint.load(out)  # the last checkpoint is whole
    assert (state["epoch"], state["step"]) == (1, 0)
    assert not list(out.glob(".*.partial"))  # no half-written file left to fill the disk
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    main(["--resume", str(out)])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert json.loads((out / "summary.json").read_text())["final"]["epoch"] == 3


def test_a_full_disk_while_writing_the_metrics_is_said_too(tmp_path, data_root, capsys):
    """Not a checkpoint but a metrics line: its append goes to /dev/full, which fails every
    write with ENOSPC as a full disk does."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("builtins.open", _redirect_metrics_appends(open))
        with pytest.raises(SystemExit) as exit_:
            main([*FLAGS, "--data-root", str(data_root), "--out", str(out)])
    error = capsys.readouterr().err
    assert exit_.value.code == 1
    assert f"the disk is full (or over quota) while writing {out / 'metrics.jsonl'};" in error
    assert "no checkpoint was written yet" in error and f"--resume {out}" in error


def _redirect_metrics_appends(original_open):
    def opener(file, mode="r", *args, **kwargs):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            return original_open("/dev/full", "w", *args, **kwargs)
        return original_open(file, mode, *args, **kwargs)

    return opener
