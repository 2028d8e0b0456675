"""Reports: plots and the Markdown table from run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from ltfast.config import TrainConfig
from ltfast.report import PLOTS, main, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(folder: Path, sampler: str, top1: list[float]) -> Path:
    """A run folder as training writes it, with chosen accuracies."""
    folder.mkdir(parents=True)
    counts = [500, 200, 120, 80, 50, 30, 19, 12, 8, 5]
    config = {
        **TrainConfig().__dict__,
        "dataset": "synthetic",
        "sampler": sampler,
        "epochs": len(top1),
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "dataset.json").write_text(json.dumps({"class_counts": counts}))
    records = []
    for epoch, accuracy in enumerate(top1, start=1):
        per_class = [min(1.0, accuracy * (1.5 - c / 10)) for c in range(10)]
        records.append({
            "epoch": epoch, "lr": 0.1, "train_loss": 2.0 / epoch, "test_top1": accuracy,
            "test_balanced_acc": accuracy, "many": sum(per_class[:2]) / 2,
            "medium": sum(per_class[2:6]) / 4, "few": sum(per_class[6:]) / 4,
            "per_class": per_class, "class_probabilities": [0.1] * 10,
        })  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_one_run_report(tmp_path):
    run = fake_run(tmp_path / "ce", "instance", [0.3, 0.5, 0.45])
    written = write_report([run], run)
    assert sorted(p.name for p in written) == sorted([f"{n}.png" for n in PLOTS] + ["report.md"])
    for path in written[:-1]:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    text = (run / "report.md").read_text()
    assert "many > 100, medium 20..100, few < 20" in text
    assert "| ce | 3/3 | 45.00 | 45.00 |" in text
    assert "| 50.00 (2) |" in text  # best epoch, stated as such
    assert "- sampler: instance" in text


def test_runs_side_by_side_from_the_command_line(tmp_path, capsys):
    first = fake_run(tmp_path / "ce", "instance", [0.3, 0.4])
    second = fake_run(tmp_path / "pb", "pb", [0.35, 0.5])
    main([str(first), str(second), "--out", str(tmp_path / "both")])
    text = (tmp_path / "both" / "report.md").read_text()
    assert "| sampler | instance | pb |" in text
    assert "| pb | 2/2 | 50.00 |" in text
    assert str(tmp_path / "both" / "report.md") in capsys.readouterr().out


def test_not_a_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "is not a complete run folder: it has no metrics.jsonl" in capsys.readouterr().err


def test_a_truncated_last_line_is_named_and_the_rest_reported(tmp_path, capsys):
    run = fake_run(tmp_path / "ce", "instance", [0.3, 0.5, 0.45])
    metrics = run / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:-40])  # killed while writing epoch 3
    main([str(run)])
    err = capsys.readouterr().err
    assert f"warning: {metrics} line 3 is not valid JSON" in err
    assert "| ce | 2/3 | 50.00 |" in (run / "report.md").read_text()


def test_a_line_lacking_fields_is_named(tmp_path, capsys):
    run = fake_run(tmp_path / "ce", "instance", [0.3, 0.5])
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"epoch": 3, "lr": 0.1}\n')
    main([str(run)])
    assert "line 3 is not a record of an epoch (it lacks train_loss, test_top1" in (
        capsys.readouterr().err
    )
    assert "| ce | 2/2 |" in (run / "report.md").read_text()


def test_report_files_of_another_folder_are_not_replaced_without_overwrite(tmp_path, capsys):
    run = fake_run(tmp_path / "ce", "instance", [0.3])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    with pytest.raises(SystemExit) as exit_:
        main([str(run), "--out", str(out)])
    assert exit_.value.code == 2
    assert "already holds report.md; pass --overwrite" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "my notes"
    main([str(run), "--out", str(out), "--overwrite"])
    assert "| ce | 1/1 |" in (out / "report.md").read_text()


def test_without_matplotlib_the_table_is_still_written(tmp_path, monkeypatch, capsys):
    run = fake_run(tmp_path / "ce", "instance", [0.3, 0.4])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    written = write_report([run], run)
    assert [p.name for p in written] == ["report.md"]
    assert "pip install 'ltfast[plots]'" in (run / "report.md").read_text()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_tilde_paths_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_run(tmp_path / "ce", "instance", [0.3])
    main(["~/ce", "--out", "~/report"])
    assert (tmp_path / "report" / "report.md").is_file()
