"""Augmentation of whole uint8 batches on the training device, with no per-image Python: the
standard crop, flip and normalisation (`standard`), torchvision's ops with one op and one
magnitude per image (`ops`), AutoAugment, RandAugment and Cutout (`policies`), and the boxes
of CutMix and Cutout (`boxes`)."""

from ltfast.augment.ops import OPS, apply_ops
from ltfast.augment.standard import (
    MEAN,
    STD,
    Crops,
    Normalize,
    crop_flip,
    draw_crop_flip,
    random_crop_flip,
)

__all__ = [
    "MEAN",
    "OPS",
    "STD",
    "Crops",
    "Normalize",
    "apply_ops",
    "crop_flip",
    "draw_crop_flip",
    "random_crop_flip",
]
