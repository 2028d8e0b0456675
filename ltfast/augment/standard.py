"""Batched augmentation on the device: random crop with zero padding, horizontal flip and
normalisation of whole uint8 batches, with no per-image Python."""

from __future__ import annotations

import torch

# The long-tail codebases' normalisation (LDAM-DRW, BagofTricks-LT, MiSLAS), for CIFAR-10 and
# CIFAR-100 alike. The std is not the training set's (0.2470, 0.2435, 0.2616): it is their
# convention, kept for comparable results.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)


def crop_flip(
    padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """size x size crops of the zero-padded images `padded` (B, C, H, W) at (top[b], left[b]),
    mirrored left-right where flip[b]: torchvision's RandomCrop(padding) then
    RandomHorizontalFlip, for a whole batch in one gather."""
    batch, channels, _, padded_width = padded.shape
    steps = torch.arange(size, device=padded.device)
    rows = top[:, None] + steps  # (B, size)
    columns = torch.where(flip[:, None].bool(), size - 1 - steps, steps) + left[:, None]
    source = (rows[:, :, None] * padded_width + columns[:, None, :]).reshape(batch, 1, -1)
    picked = padded.reshape(batch, channels, -1).gather(2, source.expand(-1, channels, -1))
    return picked.reshape(batch, channels, size, size)


def draw_crop_flip(
    batch: int, generator: torch.Generator, padding: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offsets (top, left) uniform in 0..2*padding and a fair coin for the flip, per image."""
    device = generator.device
    top, left = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=device)
    flip = torch.randint(0, 2, (batch,), generator=generator, device=device)
    return top, left, flip


def random_crop_flip(
    padded: torch.Tensor, generator: torch.Generator, padding: int = 4
) -> torch.Tensor:
    """crop_flip of images padded by `padding`, with draw_crop_flip's offsets and flips."""
    top, left, flip = draw_crop_flip(padded.shape[0], generator, padding)
    return crop_flip(padded, top, left, flip, padded.shape[-1] - 2 * padding)


class Normalize:
    """uint8 -> (x / 255 - mean) / std as a multiply and an add, in `dtype` and
    `memory_format`."""

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
    ):
        std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale = 1 / (255 * std_t)
        self.shift = -torch.tensor(mean, device=device).view(1, -1, 1, 1) / std_t
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # In place on the fresh float copy: broadcasting into a third tensor is 2x slower.
        # The dtype first, then the layout: moving 2-byte bf16 values into channels_last
        # measured 1.7x faster on the CPU than converting and moving in one copy.
        out = images.float().mul_(self.scale).add_(self.shift)
        return out.to(self.dtype).contiguous(memory_format=self.memory_format)
