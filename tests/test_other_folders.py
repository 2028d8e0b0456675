"""Folders that are not the writer's own: another run's folder is never written without
--overwrite, a run on a read-only mount can be evaluated, a stage 2 cannot replace its own
stage 1, an unfinished run says so, and an unreadable last.pt is named as such."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ltfast.evaluate import main as evaluate_main
from ltfast.report import main as report_main
from ltfast.tau_norm import main as tau_norm_main
from ltfast.train import main as train_main


@pytest.fixture
def two_runs(tmp_path, trained_run) -> tuple[Path, Path]:
    return (
        Path(shutil.copytree(trained_run, tmp_path / "a")),
        Path(shutil.copytree(trained_run, tmp_path / "b")),
    )


def test_evaluate_out_into_another_runs_folder_needs_overwrite(two_runs, capsys):
    a, b = two_runs
    evaluate_main([str(a), "--out", str(a)])  # its own folder: fine
    before = (a / "evaluation.md").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        evaluate_main([str(b), "--out", str(a)])
    assert exit_.value.code == 2
    assert "already holds another run's evaluation.json" in capsys.readouterr().err
    assert (a / "evaluation.md").read_bytes() == before
    evaluate_main([str(b), "--out", str(a), "--overwrite"])
    assert str(b) in (a / "evaluation.md").read_text()


def test_report_out_into_another_runs_folder_needs_overwrite(two_runs, capsys):
    a, b = two_runs
    before = (a / "report.md").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        report_main([str(b), "--out", str(a)])
    assert exit_.value.code == 2
    assert "already holds another run's report.md" in capsys.readouterr().err
    assert (a / "report.md").read_bytes() == before
    report_main([str(a)])  # a run's own report is rewritten in place


@pytest.fixture
def read_only_run(tmp_path, trained_run):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    if subprocess.run(["mount", "--bind", str(trained_run), str(mount_point)]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount_point)], check=True)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_run_on_a_read_only_mount_is_evaluated(read_only_run, tmp_path, capsys):
    report = evaluate_main([str(read_only_run)])  # writes nothing there
    assert 0 <= report["test_top1"] <= 1
    evaluate_main([str(read_only_run), "--out", str(tmp_path / "elsewhere")])
    assert (tmp_path / "elsewhere" / "evaluation.json").is_file()
    tau_norm_main([str(read_only_run), "--taus", "0,1", "--out", str(tmp_path / "taus")])
    assert (tmp_path / "taus" / "tau_norm.json").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        tau_norm_main([str(read_only_run), "--taus", "0,1"])
    assert "pass --out DIR to write the tau-norm report elsewhere" in capsys.readouterr().err


def test_a_stage_2_into_its_own_stage_1_is_refused(trained_run, capsys):
    for start in (trained_run, trained_run / "last.pt"):
        with pytest.raises(SystemExit) as exit_:
            train_main(["--init-from", str(start), "--stage2", "crt", "--out", str(trained_run)])
        error = capsys.readouterr().err
        assert exit_.value.code == 2
        assert "the new run would replace the stage-1 run it starts from" in error
        assert "--overwrite" not in error
    assert (trained_run / "summary.json").is_file()


def test_a_symlink_loop_is_named_not_a_traceback(tmp_path, trained_run, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # a real loop: resolve() raises RuntimeError on Python 3.11
    for argv, field in (
        (
            ["--init-from", str(loop), "--stage2", "crt", "--out", str(tmp_path / "new")],
            "init_from",
        ),
        (["--dataset", "synthetic", "--epochs", "1", "--out", str(loop)], "out"),
        (["--dataset", "synthetic", "--epochs", "1", "--out", str(loop / "run")], "out"),
    ):
        with pytest.raises(SystemExit) as exit_:
            train_main(argv)
        error = capsys.readouterr().err
        assert exit_.value.code == 2
        assert f"{field}: {loop}" in error and "loop" in error.split(f"{field}: ")[1]
        assert "Traceback" not in error
    assert loop.is_symlink() and not (tmp_path / "new").exists()


def test_an_unfinished_run_says_where_it_stopped(tmp_path, trained_run, capsys):
    from ltfast import checkpoint

    state = checkpoint.load(trained_run)
    state.update(epoch=0, step=7)
    stopped = Path(shutil.copytree(trained_run, tmp_path / "stopped"))
    fields = {k: v for k, v in state.items() if k not in ("format", "version")}
    checkpoint.save(fields, stopped / "last.pt")
    evaluate_main([str(stopped)])
    assert "unfinished: epoch 1, step 7 of 3 epochs" in capsys.readouterr().out
    evaluate_main([str(trained_run)])
    assert "after 3 epochs" in capsys.readouterr().out


def test_an_unreadable_last_pt_is_named_unreadable(tmp_path, trained_run, capsys):
    broken = Path(shutil.copytree(trained_run, tmp_path / "broken"))
    (broken / "last.pt").unlink()
    (broken / "last.pt").symlink_to("/dev/null")
    with pytest.raises(SystemExit):
        train_main(["--resume", str(broken)])
    error = capsys.readouterr().err
    assert "is not a readable checkpoint: not a regular file" in error
    assert "before its first checkpoint" not in error
