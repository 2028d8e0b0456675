"""Label smoothing and mixup against the formulas and torch's own loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ltfast.losses import draw_mixup, mixup, smoothed_targets, soft_cross_entropy


def test_smoothed_targets_formula():
    targets = smoothed_targets(torch.tensor([2, 0]), 4, 0.1)
    expected = torch.tensor([[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]])
    torch.testing.assert_close(targets, expected)


def test_smoothed_loss_equals_torchs_label_smoothing():
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 10
    for eps in (0.0, 0.1, 0.3):
        ours = soft_cross_entropy(logits, smoothed_targets(labels, 10, eps))
        torch.testing.assert_close(ours, F.cross_entropy(logits, labels, label_smoothing=eps))
        by_hand = (
            -((1 - eps) * F.log_softmax(logits, 1)[torch.arange(16), labels]).mean()
            - (eps / 10 * F.log_softmax(logits, 1).sum(1)).mean()
        )
        torch.testing.assert_close(ours, by_hand)


def test_mixup_by_hand():
    images = torch.tensor([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0]])
    targets = torch.eye(3)
    # row 0: 0.75 * [1, 2] + 0.25 * [7, 11]; row 1: 0.75 * [3, 5] + 0.25 * [1, 2]; ...
    mixed, mixed_targets = mixup(images, targets, 0.75, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(mixed, torch.tensor([[2.5, 4.25], [2.5, 4.25], [6.0, 9.5]]))
    torch.testing.assert_close(
        mixed_targets,
        torch.tensor([[0.75, 0.0, 0.25], [0.25, 0.75, 0.0], [0.0, 0.25, 0.75]]),
    )


def test_mixed_loss_is_the_mix_of_the_two_losses():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=generator)
    labels = torch.randint(0, 5, (8,), generator=generator)
    lam, permutation = draw_mixup(8, 1.0, np.random.default_rng(0), generator)
    assert 0 <= lam <= 1 and sorted(permutation.tolist()) == list(range(8))
    smoothed = smoothed_targets(labels, 5, 0.1)
    _, mixed = mixup(torch.zeros(8, 1), smoothed, lam, permutation)
    expected = lam * F.cross_entropy(logits, labels, label_smoothing=0.1) + (
        1 - lam
    ) * F.cross_entropy(logits, labels[permutation], label_smoothing=0.1)
    torch.testing.assert_close(soft_cross_entropy(logits, mixed), expected)
