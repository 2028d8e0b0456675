"""Batched crop, flip and normalisation against torchvision, image by image."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from ltfast.augment import MEAN, STD, Normalize, crop_flip, random_crop_flip
from ltfast.loader import DeviceLoader
from ltfast.samplers import ClassBalancedSampler


def reference(image: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    out = TF.crop(TF.pad(image, [4]), top, left, 32, 32)
    return TF.horizontal_flip(out) if flip else out


def test_crop_flip_equals_torchvision_for_every_offset():
    images = torch.randint(0, 256, (81 * 2, 3, 32, 32), dtype=torch.uint8)
    top = torch.arange(9).repeat_interleave(9).repeat(2)
    left = torch.arange(9).repeat(9 * 2)
    flip = torch.arange(162) >= 81
    out = crop_flip(F.pad(images, (4, 4, 4, 4)), top, left, flip, size=32)
    for b in range(len(images)):
        expected = reference(images[b], int(top[b]), int(left[b]), bool(flip[b]))
        assert torch.equal(out[b], expected), b


def test_random_offsets_are_within_bounds_and_reproducible():
    images = torch.randint(0, 256, (4000, 3, 32, 32), dtype=torch.uint8)
    padded = F.pad(images, (4, 4, 4, 4))
    first = random_crop_flip(padded, torch.Generator().manual_seed(3))
    again = random_crop_flip(padded, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    generator = torch.Generator().manual_seed(3)
    top, left = torch.randint(0, 9, (2, 4000), generator=generator)
    flip = torch.randint(0, 2, (4000,), generator=generator)
    assert top.min() == 0 and top.max() == 8 and 0.45 < flip.float().mean() < 0.55
    assert torch.equal(first, crop_flip(padded, top, left, flip, 32))


def test_normalize_formula():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = Normalize(torch.device("cpu"))(images)
    expected = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    channels_last = Normalize(torch.device("cpu"), torch.bfloat16, channels_last=True)(images)
    assert channels_last.dtype == torch.bfloat16
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def test_device_loader_serves_the_samplers_indices():
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
    targets = np.arange(300) % 3
    sampler = ClassBalancedSampler(targets, num_samples=257, seed=1)
    plain = DeviceLoader(images, targets, 64, torch.device("cpu"), augment=False)
    batches = list(plain.batches(sampler))
    assert [len(y) for _, y in batches] == [64, 64, 64, 64, 1]
    labels = torch.cat([y for _, y in batches]).numpy()
    np.testing.assert_array_equal(labels, targets[sampler.indices()])
    normalized = Normalize(torch.device("cpu"))(images[torch.from_numpy(sampler.indices())])
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), normalized)
    augmented = DeviceLoader(images, targets, 64, torch.device("cpu"), augment=True, seed=2)
    first = [x for x, _ in augmented.batches(sampler, epoch=4)]
    assert len(first) == 4  # a last batch of one image cannot train batch norm
    again = [x for x, _ in augmented.batches(sampler, epoch=4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = [x for x, _ in augmented.batches(sampler, epoch=5)]
    assert not torch.equal(first[0], other[0])


def test_device_loader_bf16_channels_last_output_equals_the_float32_output():
    """What the loader hands a CUDA model under --amp, checked on the CPU."""
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    targets = list(range(40))
    common = {"device": "cpu", "augment": True, "seed": 3}
    plain = DeviceLoader(images, targets, 16, **common)
    fast = DeviceLoader(images, targets, 16, dtype=torch.bfloat16, channels_last=True, **common)
    for (x, y), (x_fast, y_fast) in zip(plain.batches(), fast.batches(), strict=True):
        assert x_fast.dtype == torch.bfloat16
        assert x_fast.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x_fast, x.to(torch.bfloat16)) and torch.equal(y_fast, y)
