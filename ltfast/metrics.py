"""What the field reports: top-1, per-class and balanced accuracy, many/medium/few-shot
accuracy by training-set class size (> 100 many, < 20 few, the rest medium), and the expected
calibration error (ECE) over 15 equal-width confidence bins, as MiSLAS computes it.

Reports are built from per-class counts and per-bin sums, which add up across ranks: summing
those of every rank's shard gives exactly the one-process evaluation.
"""

from __future__ import annotations

import numpy as np

MANY_ABOVE = 100
FEW_BELOW = 20
ECE_BINS = 15


def expected_calibration_error(
    count: np.ndarray, confidence_sum: np.ndarray, correct_sum: np.ndarray
) -> float:
    """sum_b |B_b| / N * |acc(B_b) - conf(B_b)| from each bin's size, summed confidence and
    number of correct predictions (bin b holds confidences in (b/15, (b+1)/15])."""
    count = np.asarray(count, np.float64)
    gaps = np.abs(np.asarray(correct_sum, np.float64) - np.asarray(confidence_sum, np.float64))
    return float(gaps.sum() / count.sum())


def shot_groups(train_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean class masks of the many-, medium- and few-shot groups."""
    counts = np.asarray(train_counts)
    many, few = counts > MANY_ABOVE, counts < FEW_BELOW
    return {"many": many, "medium": ~many & ~few, "few": few}


def classification_report(
    correct: np.ndarray, seen: np.ndarray, train_counts: np.ndarray
) -> dict[str, object]:
    """test_top1, test_balanced_acc, group accuracies (None for a group without classes)
    and per_class, as fractions in [0, 1], from per-class (correct, seen) counts."""
    correct, seen = np.asarray(correct, np.float64), np.asarray(seen)
    per_class = np.divide(correct, seen, out=np.full(len(seen), np.nan), where=seen > 0)
    report: dict[str, object] = {
        "test_top1": float(correct.sum() / seen.sum()),
        "test_balanced_acc": float(np.nanmean(per_class)),
    }
    for name, members in shot_groups(train_counts).items():
        values = per_class[members & (seen > 0)]
        report[name] = float(values.mean()) if values.size else None
    report["per_class"] = [None if np.isnan(v) else float(v) for v in per_class]
    return report
