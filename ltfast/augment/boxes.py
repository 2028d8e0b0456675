"""The rectangles of CutMix and Cutout, by their codes' formulas (SPEC sections 8.8, 8.9)."""

from __future__ import annotations

import math

import torch


def _uniform_below(bound: int, generator: torch.Generator) -> int:
    return int(torch.randint(bound, (1,), generator=generator, device=generator.device))


def rand_bbox(
    height: int, width: int, lam: float, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """CutMix's box (Yun et al., `rand_bbox`) for a mixing weight `lam`: sides
    int(W sqrt(1 - lam)) and int(H sqrt(1 - lam)) about a centre uniform over the image,
    clipped at its edges. Returns (x1, y1, x2, y2): columns x1..x2-1, rows y1..y2-1.

    The code names the row axis W (its images are square); here x is the column."""
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    ratio = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(width * ratio), int(height * ratio)
    cx, cy = _uniform_below(width, generator), _uniform_below(height, generator)
    x1, x2 = (min(max(v, 0), width) for v in (cx - cut_w // 2, cx + cut_w // 2))
    y1, y2 = (min(max(v, 0), height) for v in (cy - cut_h // 2, cy + cut_h // 2))
    return x1, y1, x2, y2


def box_area_lam(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """CutMix's corrected lam: the share of the image outside the pasted box."""
    x1, y1, x2, y2 = box
    return 1.0 - (x2 - x1) * (y2 - y1) / (width * height)


def cutout_masks(
    batch: int, height: int, width: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """Cutout's boxes (DeVries and Taylor, one hole): per image a centre uniform over all
    pixels and a length x length square about it, clipped at the edges. True inside, bool
    (B, 1, H, W) on the generator's device."""
    device = generator.device
    # The code draws y, then x (np.random.randint(h), randint(w)); here per image.
    y = torch.randint(height, (batch,), generator=generator, device=device)
    x = torch.randint(width, (batch,), generator=generator, device=device)
    half = length // 2
    y1, y2 = (y - half).clamp(0, height), (y + half).clamp(0, height)
    x1, x2 = (x - half).clamp(0, width), (x + half).clamp(0, width)
    rows = torch.arange(height, device=device)
    columns = torch.arange(width, device=device)
    inside_rows = (rows >= y1[:, None]) & (rows < y2[:, None])  # (B, H)
    inside_columns = (columns >= x1[:, None]) & (columns < x2[:, None])  # (B, W)
    return (inside_rows[:, :, None] & inside_columns[:, None, :]).unsqueeze(1)
