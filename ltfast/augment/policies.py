"""AutoAugment, RandAugment and Cutout on device batches, with torchvision's semantics and
one random choice per image.

Each is a callable `t(images, generator)` on a uint8 (B, 3, H, W) batch with a
`torch.Generator` on the batch's device, made of two halves: `plan(batch, generator)` draws
every image's choices, `apply(images, plan)` carries them out. A loader can so draw per step
and apply once to several steps' images (the ops cost mostly per call, not per image).
AutoAugment draws a sub-policy uniformly per image
and applies each of its two ops with its probability (u <= p, as torchvision), at the
sub-policy's magnitude bin with a random sign for signed ops. RandAugment draws `num_ops`
ops uniformly with replacement per image, always applied. The sub-policy tables are
torchvision's own (`torchvision.transforms.AutoAugment(policy).policies`); the magnitude bins
are written out below and tested against torchvision's.
"""

from __future__ import annotations

import torch
from torchvision.transforms import AutoAugment as TorchvisionAutoAugment
from torchvision.transforms import AutoAugmentPolicy

from ltfast.augment.boxes import cutout_masks
from ltfast.augment.ops import OPS, Fill, apply_ops

SIGNED = frozenset(
    {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
    | {"Brightness", "Color", "Contrast", "Sharpness"}
)


def magnitude_bins(op: str, num_bins: int, height: int, width: int) -> torch.Tensor:
    """The unsigned magnitudes of `op` by bin, float64, as torchvision's
    `_augmentation_space` lays them out (its float32 values, as `float()` reads them)."""
    spans = {
        "ShearX": 0.3,
        "ShearY": 0.3,
        "TranslateX": 150.0 / 331.0 * width,
        "TranslateY": 150.0 / 331.0 * height,
        "Rotate": 30.0,
        "Brightness": 0.9,
        "Color": 0.9,
        "Contrast": 0.9,
        "Sharpness": 0.9,
    }
    if op in spans:
        bins = torch.linspace(0.0, spans[op], num_bins)
    elif op == "Posterize":  # 8 bits down to 4
        bins = 8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round().int()
    elif op == "Solarize":  # a threshold from 255 down to 0
        bins = torch.linspace(255.0, 0.0, num_bins)
    else:  # AutoContrast, Equalize, Invert, Identity: no magnitude
        bins = torch.zeros(num_bins)
    return bins.to(torch.float64)


def _apply_plan(
    images: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor], fill: Fill
) -> torch.Tensor:
    """Each image's ops, in order, at their magnitudes: plan = (ops, magnitudes), (B, K)."""
    ops, magnitudes = plan
    for position in range(ops.shape[1]):
        images = apply_ops(images, ops[:, position], magnitudes[:, position], fill)
    return images


_SIGNED_TABLE = torch.tensor([name in SIGNED for name in OPS])


def _signed(codes: torch.Tensor) -> torch.Tensor:
    return _SIGNED_TABLE.to(codes.device)[codes]


class AutoAugment:
    """torchvision's AutoAugment (policy "cifar10", "imagenet" or "svhn") on device batches."""

    def __init__(self, policy: str = "cifar10", fill: Fill = 0, image_size: int = 32):
        policies = {p.value: p for p in AutoAugmentPolicy}
        if policy not in policies:
            raise ValueError(f"policy must be one of {', '.join(policies)}, got {policy!r}")
        self.policy, self.fill = policy, fill
        table = TorchvisionAutoAugment(policies[policy]).policies
        self.ops = torch.tensor([[OPS.index(op) for op, _, _ in sub] for sub in table])
        self.probabilities = torch.tensor([[p for _, p, _ in sub] for sub in table])
        self.magnitudes = torch.tensor(
            [
                [
                    0.0 if m is None else float(magnitude_bins(op, 10, image_size, image_size)[m])
                    for op, _, m in sub
                ]
                for sub in table
            ],
            dtype=torch.float64,
        )

    def plan(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image its two ops (positions in OPS; Identity where an op is not applied) and
        signed magnitudes, each (B, 2): a sub-policy uniformly, u <= p to apply each op, and
        a fair coin for the sign of signed ops (negative on 0), as torchvision draws them."""
        device = generator.device
        policy = torch.randint(len(self.ops), (batch,), generator=generator, device=device)
        u = torch.rand((batch, 2), generator=generator, device=device)
        sign = torch.randint(2, (batch, 2), generator=generator, device=device)
        ops = self.ops.to(device)[policy]
        magnitudes = self.magnitudes.to(device)[policy]
        magnitudes = torch.where(_signed(ops) & (sign == 0), -magnitudes, magnitudes)
        applied = u <= self.probabilities.to(device)[policy]
        return torch.where(applied, ops, OPS.index("Identity")), magnitudes

    def apply(self, images: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return _apply_plan(images, plan, self.fill)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.plan(len(images), generator))

    def __repr__(self) -> str:
        return f"AutoAugment(policy={self.policy!r}, fill={self.fill})"


# RandAugment's ops, in torchvision's order (Invert is not among them).
RANDAUGMENT_OPS = tuple(op for op in OPS if op != "Invert")


class RandAugment:
    """torchvision's RandAugment(num_ops, magnitude, num_magnitude_bins) on device batches."""

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        fill: Fill = 0,
        image_size: int = 32,
    ):
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(
                f"magnitude must be in 0..{num_magnitude_bins - 1} (num_magnitude_bins - 1), "
                f"got {magnitude}"
            )
        self.num_ops, self.magnitude, self.fill = num_ops, magnitude, fill
        self.num_magnitude_bins = num_magnitude_bins
        self.ops = torch.tensor([OPS.index(op) for op in RANDAUGMENT_OPS])
        self.magnitudes = torch.tensor(
            [
                float(magnitude_bins(op, num_magnitude_bins, image_size, image_size)[magnitude])
                for op in RANDAUGMENT_OPS
            ],
            dtype=torch.float64,
        )

    def plan(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image its `num_ops` ops (positions in OPS), drawn uniformly with replacement,
        and their signed magnitudes, each (B, num_ops); signed ops are negative on a coin's
        1, as torchvision draws it."""
        device = generator.device
        chosen = torch.randint(
            len(self.ops), (batch, self.num_ops), generator=generator, device=device
        )
        negative = torch.randint(2, (batch, self.num_ops), generator=generator, device=device) == 1
        ops = self.ops.to(device)[chosen]
        magnitudes = self.magnitudes.to(device)[chosen]
        return ops, torch.where(_signed(ops) & negative, -magnitudes, magnitudes)

    def apply(self, images: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return _apply_plan(images, plan, self.fill)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.plan(len(images), generator))

    def __repr__(self) -> str:
        return (
            f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"num_magnitude_bins={self.num_magnitude_bins}, fill={self.fill})"
        )


class Cutout:
    """Cutout (DeVries and Taylor, one hole of `length`): per image a square about a centre
    uniform over the image, clipped at the edges, set to 0. On uint8 images before
    normalising, 0 is black (PaCo's, CMO's and NCL's form); on normalised images it is the
    dataset mean (the original repository's)."""

    def __init__(self, length: int = 16, image_size: int = 32):
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length, self.image_size = length, image_size

    def plan(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """The holes: bool (B, 1, size, size), True inside."""
        size = self.image_size
        return cutout_masks(batch, size, size, self.length, generator)

    def apply(self, images: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        if plan.shape[0] != images.shape[0] or plan.shape[-2:] != images.shape[-2:]:
            raise ValueError(
                f"Cutout's holes are {tuple(plan.shape)}, for images {tuple(images.shape)}"
            )
        holes = plan.to(images.device)
        if images.dtype == torch.uint8:
            # x * keep is the same pixels, and 20-50x faster on the CPU than masked_fill with
            # a mask broadcast over the channels.
            return images * ~holes
        return images.masked_fill(holes, 0)  # normalised pixels: +0.0, as masked_fill sets

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch, _, height, width = images.shape
        return self.apply(images, cutout_masks(batch, height, width, self.length, generator))

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"
