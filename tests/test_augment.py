"""Batched crop, flip and normalisation against torchvision, image by image, and the device
loader's pipelines."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from ltfast.augment import MEAN, STD, Crops, Normalize, crop_flip, random_crop_flip
from ltfast.augment.pipelines import build_pipeline
from ltfast.config import TrainConfig
from ltfast.loader import DeviceLoader
from ltfast.samplers import ClassBalancedSampler, ShuffleSampler
from ltfast.seeds import AUGMENT, POLICY, derive_seed


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


def test_crops_of_chosen_images_equal_torchvision_with_repeats_in_any_order():
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    crops = Crops(F.pad(images, (4, 4, 4, 4)))
    generator = torch.Generator().manual_seed(1)
    index = torch.randint(0, 20, (300,), generator=generator)  # repeats, the last image too
    index[-1] = 19
    top, left = torch.randint(0, 9, (2, 300), generator=generator)
    flip = torch.randint(0, 2, (300,), generator=generator)
    out = crops.crop_flip(index, top, left, flip, size=32)
    assert len(crops) == 20 and out.shape == (300, 3, 32, 32)
    for b in range(300):
        expected = reference(images[int(index[b])], int(top[b]), int(left[b]), bool(flip[b]))
        assert torch.equal(out[b], expected), b


@pytest.mark.parametrize(
    ("top", "left", "message"),
    [
        (
            [0, 9],
            [0, 0],
            r"top offsets must be in 0\.\.8 for 32-pixel crops of 40x40 images, got 0\.\.9",
        ),
        ([0, 0], [-1, 2], r"left offsets must be in 0\.\.8 .* got -1\.\.2"),
        ([0.5, 0.0], [0, 0], "top must be 2 integer offsets"),
        ([0], [0, 0], "top must be 2 integer offsets"),
    ],
)
def test_crop_offsets_outside_the_padded_image_are_named(top, left, message):
    padded = torch.zeros(2, 3, 40, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match=message):
        crop_flip(padded, torch.tensor(top), torch.tensor(left), torch.zeros(2), size=32)


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


def test_drop_last_leaves_the_earlier_batches_and_their_draws_as_they_were():
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
    targets = np.arange(300) % 3
    sampler = ClassBalancedSampler(targets, num_samples=300, seed=1)
    common = dict(batch_size=64, device="cpu", augment=True, seed=2)
    kept = list(DeviceLoader(images, targets, **common).batches(sampler, epoch=1))
    dropped = list(DeviceLoader(images, targets, **common, drop_last=True).batches(sampler, 1))
    assert [len(y) for _, y in kept] == [64, 64, 64, 64, 44]
    assert len(dropped) == 4
    plain = DeviceLoader(images, targets, **common)
    assert (plain.images_per_pass(257), plain.images_per_pass(300)) == (256, 300)
    for (x, y), (x2, y2) in zip(kept, dropped, strict=False):
        assert torch.equal(x, x2) and torch.equal(y, y2)


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


def test_the_standard_pipeline_is_bit_identical_to_before_strong_pipelines():
    """The digest of an epoch's batches as ltfast 0.1.0 at commit a7eed64 (before the strong
    pipelines and the `stream` argument) produced them: the standard path draws the same."""
    images = np.random.default_rng(0).integers(0, 256, (300, 3, 32, 32), dtype=np.uint8)
    loader = DeviceLoader(
        torch.from_numpy(images), np.arange(300) % 10, 64, "cpu", augment=True, seed=5
    )
    sampler = ShuffleSampler(300, seed=2)
    sampler.set_epoch(3)
    digest = hashlib.sha256()
    for x, y in loader.batches(sampler, 3):
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
    assert digest.hexdigest() == "52eb7eed82f4e42e32f9ff7be19319a03a55162dd38edf4886eede9de2d8d339"


def test_a_strong_pipeline_follows_crop_and_flip_with_per_step_draws():
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    targets = np.arange(100) % 10
    config = TrainConfig(augment="autoaugment", cutout=16)
    pipeline = build_pipeline(config)
    assert [type(s.batched).__name__ for s in pipeline.before_normalize] == [
        "AutoAugment",
        "Cutout",
    ]
    strong = DeviceLoader(images, targets, 32, "cpu", augment=True, seed=4, pipeline=pipeline)
    plain = DeviceLoader(images, targets, 32, "cpu", augment=True, seed=4)
    normalize = Normalize(torch.device("cpu"))
    scale = normalize.scale.flatten()
    shift = normalize.shift.flatten()
    for step, ((x, _), (crop, _)) in enumerate(
        zip(strong.batches(None, 2), plain.batches(None, 2), strict=True)
    ):
        # Undo the normalisation of the plain batch to get its uint8 crops back.
        pixels = ((crop - shift.view(1, 3, 1, 1)) / scale.view(1, 3, 1, 1)).round().to(torch.uint8)
        generator = torch.Generator().manual_seed(derive_seed(4, 2, AUGMENT, POLICY, step))
        for each in pipeline.before_normalize:
            pixels = each.batched(pixels, generator)
        assert torch.equal(x, normalize(pixels)), step
    again = [x for x, _ in strong.batches(None, 2)]
    assert torch.equal(again[1], list(strong.batches(None, 2))[1][0])
    with pytest.raises(ValueError, match="needs augment=True"):
        DeviceLoader(images, targets, 32, "cpu", augment=False, pipeline=pipeline)


def test_cutout_after_normalising_leaves_the_dataset_mean():
    images = torch.full((8, 3, 32, 32), 200, dtype=torch.uint8)
    config = TrainConfig(cutout=16, cutout_fill="mean")
    pipeline = build_pipeline(config)
    assert not pipeline.before_normalize and len(pipeline.after_normalize) == 1
    loader = DeviceLoader(images, [0] * 8, 8, "cpu", augment=True, pipeline=pipeline)
    ((x, _),) = loader.batches(None, 0)
    # Zero after normalising is the mean; the crop's zero padding is -mean/std, not 0.
    assert bool((x == 0).any()) and bool((x == 0).all(dim=1).flatten(1).any(1).all())
