"""One writer per folder, with real processes: two trainings or two sweeps started together
into one folder make one clean run, and a sweep killed with SIGKILL takes its trainings with it
(they checkpoint), so that rerunning it finishes each run with its epochs exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ltfast.processes import alive
from ltfast.run_folder import LOCK, FolderBusy, FolderLock, RunFolder

TINY = {
    "dataset": "synthetic",
    "synthetic_size": 40,
    "imb_factor": 0.2,
    "epochs": 3,
    "warmup_epochs": 0,
    "lr": 0.05,
    "batch_size": 32,
    "precision": "float32",
}


def epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_command(out: Path, data_root: Path) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    return [sys.executable, "-m", "ltfast.train", *flags, "--quiet", "--data-root", str(data_root),
            "--out", str(out)]  # fmt: skip


def sweep_command(config: Path, out: Path, data_root: Path) -> list[str]:
    return [sys.executable, "-m", "ltfast.sweep", str(config), "--out", str(out),
            "--set", f"data_root={data_root}"]  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_folder_lock_admits_one_writer_and_names_it(tmp_path):
    first, second = FolderLock(tmp_path), FolderLock(tmp_path)
    first.acquire()
    with pytest.raises(FolderBusy, match=rf"is being written by process {os.getpid()} on "):
        second.acquire()
    assert second.busy() is not None and f"process {os.getpid()}" in second.busy()
    first.release()
    assert second.busy() is None
    second.acquire()  # free again
    second.release()


def test_two_trainings_started_together_into_one_folder_make_one_run(tmp_path, data_root):
    out = tmp_path / "run"
    RunFolder(tmp_path / "warm").path.mkdir()  # the synthetic data exists before the race:
    assert subprocess.run(train_command(tmp_path / "warm", data_root), check=False).returncode == 0
    processes = [start(train_command(out, data_root)) for _ in range(2)]
    outcomes = sorted(finish(p) for p in processes)
    codes = [code for code, _ in outcomes]
    assert codes == [0, 2], outcomes
    refused = outcomes[1][1]
    assert "is being written by process" in refused or "already holds a run" in refused
    assert epochs(out) == [1, 2, 3]


def test_two_identical_sweeps_started_together_make_one_sweep(tmp_path, data_root):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "sweep"
    processes = [start(sweep_command(config, out, data_root)) for _ in range(2)]
    outcomes = [finish(p) for p in processes]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 2]), outcomes  # refused at once, or found nothing left to do
    if codes == [0, 2]:
        assert any("is being written by process" in text for _, text in outcomes)
    assert epochs(out / "tiny" / "seed0") == [1, 2, 3]


def test_a_sweep_killed_with_sigkill_takes_its_trainings_with_it(tmp_path, data_root):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "epochs": 6, "synthetic_size": 200}))
    out = tmp_path / "sweep"
    command = sweep_command(config, out, data_root)
    sweep = start(command)
    run = out / "tiny" / "seed0"
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").is_file() or not epochs(run):  # an epoch is done
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()
        time.sleep(0.05)
    trainer = json.loads((run / LOCK).read_text())["pid"]
    sweep.kill()  # SIGKILL: the sweep cannot tell its training anything
    sweep.communicate()
    rerun = start(command)  # at once, while the old training may still be ending
    deadline = time.monotonic() + 60
    while alive(trainer):
        assert time.monotonic() < deadline, "the training outlived its sweep (an orphan)"
        time.sleep(0.05)
    code, output = finish(rerun)
    assert code == 0, output
    assert epochs(run) == [1, 2, 3, 4, 5, 6]
    log = (out / "logs" / "tiny-seed0.log").read_text()
    assert "checkpoint written" in log  # the old training stopped with a checkpoint


def test_a_resume_while_another_process_writes_the_run_is_refused(tmp_path, trained_run, capsys):
    from ltfast.train import main

    holder = FolderLock(trained_run)
    holder.acquire()
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["--resume", str(trained_run), "--epochs", "4"])
    finally:
        holder.release()
    assert exit_.value.code == 2
    assert f"is being written by process {os.getpid()}" in capsys.readouterr().err
