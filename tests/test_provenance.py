"""A run's provenance: the code, libraries and data files in summary.json, and the machine,
threads and numerics of each epoch in metrics.jsonl."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import torch

import ltfast
from ltfast.provenance import NOT_A_CHECKOUT, git_state


def test_the_summary_names_the_code_libraries_and_data_files(trained_run):
    summary = json.loads((trained_run / "summary.json").read_text())
    code = summary["code"]
    assert (code["ltfast"], code["torch"], code["numpy"]) == (
        ltfast.__version__, torch.__version__, np.__version__,
    )  # fmt: skip
    root = Path(summary["config"]["data_root"])
    files = {p.name: p for p in root.rglob("*") if p.name in summary["data_files"]}
    assert set(files) == {f"data_batch_{i}.bin" for i in range(1, 6)} | {
        "test_batch.bin", "batches.meta.txt",
    }  # fmt: skip
    for name, path in files.items():
        assert summary["data_files"][name] == hashlib.md5(path.read_bytes()).hexdigest(), name


def test_every_epoch_names_its_machine_threads_and_numerics(trained_run):
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    summary = json.loads((trained_run / "summary.json").read_text())
    assert len(records) == 3
    for record in records:
        assert record["machine"] == summary["machine"] and summary["machine"].strip()
        assert record["threads"] == torch.get_num_threads()
        assert record["numerics"] == summary["numerics"]


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_commit_and_dirty_flag_come_from_git(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "pkg").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "pkg" / "module.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git(repo, "rev-parse", "HEAD")
    assert git_state(repo / "pkg") == {"git_commit": commit, "git_dirty": False}
    (repo / "pkg" / "untracked.txt").write_text("not the code\n")
    assert git_state(repo / "pkg")["git_dirty"] is False
    (repo / "pkg" / "module.py").write_text("x = 2\n")
    assert git_state(repo / "pkg") == {"git_commit": commit, "git_dirty": True}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert git_state(outside) == {"git_commit": NOT_A_CHECKOUT, "git_dirty": None}
