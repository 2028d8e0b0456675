"""The field's report from per-class counts, against values worked out by hand."""

from __future__ import annotations

import pytest

from ltfast.metrics import classification_report


def test_report_by_hand():
    # Three classes trained on 500, 50 and 5 images: one many-, one medium-, one few-shot.
    correct, seen = [8, 3, 0], [10, 5, 5]
    report = classification_report(correct, seen, [500, 50, 5])
    assert report["test_top1"] == pytest.approx(11 / 20)
    assert report["per_class"] == [0.8, 0.6, 0.0]
    assert report["test_balanced_acc"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert (report["many"], report["medium"], report["few"]) == (0.8, 0.6, 0.0)


def test_empty_groups_and_unseen_classes_are_none():
    report = classification_report([4, 1], [4, 0], [101, 100])  # boundaries: 101 many, 100 medium
    assert report["per_class"] == [1.0, None]
    assert report["many"] == 1.0 and report["medium"] is None and report["few"] is None
