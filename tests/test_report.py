"""Reports: plots and the Markdown table from run folders."""

from __future__ import annotations

import json
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
    assert "is not a run folder: it has no metrics.jsonl" in capsys.readouterr().err
