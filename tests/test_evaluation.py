"""Evaluation: the expected calibration error against MiSLAS's way of computing it, the
standalone `ltfast.evaluate` against training's own report of the same model, and
`ltfast.tau_norm`'s report of every tau."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ltfast.augment import Normalize
from ltfast.evaluate import main as evaluate_main
from ltfast.evaluation import evaluate
from ltfast.loader import DeviceLoader
from ltfast.tau_norm import main as tau_norm_main
from ltfast.tau_norm import parse_taus


def reference_calibration(labels, predicted, confidences, bins=15) -> float:
    """MiSLAS's utils/metric.py calibration(): np.digitize(right=True) into 15 bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(confidences, edges, right=True)
    total = 0.0
    for b in range(bins):
        members = index == b + 1
        if members.any():
            gap = np.mean(labels[members] == predicted[members]) - np.mean(confidences[members])
            total += abs(gap) * members.sum()
    return total / len(labels)


def test_ece_and_accuracies_match_a_per_image_reference():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (1500, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 1500)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    torch.manual_seed(0)
    nn.init.normal_(model[1].weight, std=0.05)  # confidences spread over many bins
    loader = DeviceLoader(images, labels, 128, torch.device("cpu"), augment=False)
    counts = np.array([500, 300, 200, 120, 100, 60, 40, 20, 12, 5])
    report = evaluate(model, loader.batches(), counts, logit_tau=1.0)

    with torch.no_grad():
        logits = model(Normalize(torch.device("cpu"))(torch.from_numpy(images)))
    for scores, found in (
        (logits, report),
        (logits - torch.log(torch.tensor(counts / counts.sum())), report["adjusted"]),
    ):
        probabilities = scores.double().softmax(1).numpy()
        predicted = scores.argmax(1).numpy()
        confidence = probabilities.max(1)
        assert len(np.unique(np.digitize(confidence, np.linspace(0, 1, 16)))) > 5
        assert found["ece"] == pytest.approx(
            reference_calibration(labels, predicted, confidence), abs=1e-6
        )
        assert found["test_top1"] == pytest.approx(np.mean(predicted == labels))
        per_class = [np.mean(predicted[labels == c] == c) for c in range(10)]
        np.testing.assert_allclose(found["per_class"], per_class)


def final_record(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def test_evaluate_repeats_the_report_of_training(trained_run, tmp_path, capsys):
    report = evaluate_main([str(trained_run), "--out", str(tmp_path / "eval")])
    record = final_record(trained_run)
    for key in ("test_top1", "test_balanced_acc", "many", "medium", "few", "per_class", "ece"):
        assert report[key] == pytest.approx(record[key]), key
    written = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert written["ece"] == report["ece"] and written["checkpoint"].endswith("last.pt")
    assert "| as trained |" in (tmp_path / "eval" / "evaluation.md").read_text()
    assert "| as trained |" in capsys.readouterr().out


def test_evaluate_with_a_logit_tau_adds_the_adjusted_report(trained_run):
    report = evaluate_main([str(trained_run / "best.pt"), "--eval-logit-tau", "1"])
    assert report["adjusted"]["tau"] == 1.0 and 0 <= report["adjusted"]["ece"] <= 1


def test_evaluate_replaces_its_files_elsewhere_only_when_told(trained_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "evaluation.md").write_text("my notes")
    with pytest.raises(SystemExit) as exit_:
        evaluate_main([str(trained_run), "--out", str(out)])
    assert exit_.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert (out / "evaluation.md").read_text() == "my notes"
    evaluate_main([str(trained_run), "--out", str(out), "--overwrite"])
    assert "ltfast evaluation" in (out / "evaluation.md").read_text()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda run: (run / "last.pt").write_bytes(b"not a checkpoint"),
            "not a readable checkpoint",
        ),
        (lambda run: (run / "last.pt").unlink(), "nothing to resume"),
    ],
)
def test_evaluate_names_a_missing_or_damaged_checkpoint(
    trained_run, tmp_path, capsys, damage, message
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage(run)
    with pytest.raises(SystemExit) as exit_:
        evaluate_main([str(run)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_tau_norm_reports_every_tau_and_tau_zero_is_the_model(trained_run, tmp_path):
    reports = tau_norm_main(
        [str(trained_run), "--taus", "0:1:0.5", "--quiet", "--out", str(tmp_path)]
    )
    assert [r["tau"] for r in reports] == [0.0, 0.5, 1.0]
    record = final_record(trained_run)
    assert reports[0]["per_class"] == pytest.approx(record["per_class"])
    assert reports[0]["ece"] == pytest.approx(record["ece"])
    written = json.loads((tmp_path / "tau_norm.json").read_text())
    assert [r["tau"] for r in written["reports"]] == [0.0, 0.5, 1.0]
    markdown = (tmp_path / "tau_norm.md").read_text()
    assert "| 0.5 |" in markdown and "none is chosen" in markdown
    assert (tmp_path / "tau_norm.png").stat().st_size > 0


@pytest.mark.parametrize("text", ["0:2", "1:0:0.1", "0:1:0", "a,b", "0,nan"])
def test_bad_taus_are_named(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=r"expected start:stop:step|finite"):
        parse_taus(text)


def test_taus_parse_as_documented():
    assert parse_taus("0:2:0.1") == pytest.approx([i / 10 for i in range(21)])
    assert parse_taus("0.5,1") == [0.5, 1.0]


@pytest.mark.parametrize("text", ["0:1e12:1", "0:1:1e-300", "0:1000:1", ",".join(["1"] * 1001)])
def test_a_tau_count_past_the_cap_is_refused_when_parsed(text, capsys):
    from ltfast.tau_norm import MAX_TAUS, main

    with pytest.raises(SystemExit) as exit_:  # refused by argparse, before any model is read
        main(["no-such-run", "--taus", text])
    assert exit_.value.code == 2
    assert f"more than {MAX_TAUS}" in capsys.readouterr().err
    assert len(parse_taus("0:999:1")) == MAX_TAUS
