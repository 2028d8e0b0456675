"""Soft-target cross-entropy, label smoothing and mixup (SPEC section 4).

The loss is linear in the target, so mixing smoothed targets equals mixing the two smoothed
losses: lam * L(y) + (1 - lam) * L(y[perm]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(1 - eps) * onehot + eps / K, as float32."""
    onehot = F.one_hot(labels, num_classes).float()
    return onehot * (1 - smoothing) + smoothing / num_classes


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-(targets * log_softmax(logits)).sum(1).mean(), computed in float32."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def mixup(
    images: torch.Tensor, targets: torch.Tensor, lam: float, permutation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x = lam * x + (1 - lam) * x[perm], and the same for the soft targets."""
    mixed = images.mul(lam).add_(images[permutation], alpha=1 - lam)
    return mixed, targets.mul(lam).add_(targets[permutation], alpha=1 - lam)


def draw_mixup(
    batch_size: int, alpha: float, rng: np.random.Generator, generator: torch.Generator
) -> tuple[float, torch.Tensor]:
    """One lam ~ Beta(alpha, alpha) and one partner permutation for a batch."""
    lam = float(rng.beta(alpha, alpha))
    permutation = torch.randperm(batch_size, generator=generator, device=generator.device)
    return lam, permutation
