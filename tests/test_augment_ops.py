"""The batched ops, policies and Cutout against torchvision, image by image, and the
policies' draws against their tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import AutoAugment as TorchvisionAutoAugment
from torchvision.transforms import AutoAugmentPolicy, InterpolationMode
from torchvision.transforms import RandAugment as TorchvisionRandAugment

from ltfast.augment import OPS, apply_ops
from ltfast.augment.boxes import cutout_masks
from ltfast.augment.policies import SIGNED, AutoAugment, Cutout, RandAugment, magnitude_bins
from tests.stats import Z_1E4, fits

NEAREST = InterpolationMode.NEAREST
IMAGES = torch.randint(
    0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
)
# Half the batch low-contrast, so AutoContrast and Equalize have work beyond the identity.
IMAGES[48:] = IMAGES[48:] // 4 + 60


def torchvision_op(image: torch.Tensor, op: str, m: float, fill=None) -> torch.Tensor:
    """torchvision.transforms.autoaugment._apply_op, written out with v2's functionals."""
    if op in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(m))
        shear = [degrees, 0.0] if op == "ShearX" else [0.0, degrees]
        return TF.affine(
            image, 0.0, [0, 0], 1.0, shear, interpolation=NEAREST, fill=fill, center=[0, 0]
        )
    if op in ("TranslateX", "TranslateY"):
        shift = [int(m), 0] if op == "TranslateX" else [0, int(m)]
        return TF.affine(image, 0.0, shift, 1.0, [0.0, 0.0], interpolation=NEAREST, fill=fill)
    functions = {
        "Identity": lambda x: x,
        "Rotate": lambda x: TF.rotate(x, m, interpolation=NEAREST, fill=fill),
        "Brightness": lambda x: TF.adjust_brightness(x, 1.0 + m),
        "Color": lambda x: TF.adjust_saturation(x, 1.0 + m),
        "Contrast": lambda x: TF.adjust_contrast(x, 1.0 + m),
        "Sharpness": lambda x: TF.adjust_sharpness(x, 1.0 + m),
        "Posterize": lambda x: TF.posterize(x, int(m)),
        "Solarize": lambda x: TF.solarize(x, m),
        "AutoContrast": TF.autocontrast,
        "Equalize": TF.equalize,
        "Invert": TF.invert,
    }
    return functions[op](image)


SPANS = {"ShearX": 0.3, "ShearY": 0.3, "TranslateX": 14.5, "TranslateY": 14.5, "Rotate": 30.0}
SPANS.update(Brightness=0.9, Color=0.9, Contrast=0.9, Sharpness=0.9)


def random_magnitudes(op: str, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if op in SPANS:  # signed, continuous
        return (torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1) * SPANS[op]
    if op == "Posterize":
        return torch.randint(0, 9, (count,), generator=generator).double()
    if op == "Solarize":
        return torch.rand(count, generator=generator, dtype=torch.float64) * 255
    return torch.zeros(count, dtype=torch.float64)


GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


@pytest.mark.parametrize("op", OPS)
def test_each_op_equals_torchvision_image_by_image(op):
    magnitudes = random_magnitudes(op, len(IMAGES), OPS.index(op))
    out = apply_ops(IMAGES, [op] * len(IMAGES), magnitudes)
    same = sum(
        int((out[b] == torchvision_op(IMAGES[b], op, float(magnitudes[b]))).sum())
        for b in range(len(IMAGES))
    )
    if op in GEOMETRIC:  # float64 tensor trigonometry, not Python's: allowed 0.1 %
        assert same >= 0.999 * IMAGES.numel(), (op, IMAGES.numel() - same)
    else:
        assert same == IMAGES.numel(), (op, IMAGES.numel() - same)


def test_a_mixed_batch_gives_each_image_its_own_op():
    generator = torch.Generator().manual_seed(5)
    ops = [OPS[i] for i in torch.randint(len(OPS), (len(IMAGES),), generator=generator)]
    magnitudes = torch.stack([random_magnitudes(op, 1, b)[0] for b, op in enumerate(ops)])
    out = apply_ops(IMAGES, ops, magnitudes)
    for b, op in enumerate(ops):
        assert torch.equal(out[b], torchvision_op(IMAGES[b], op, float(magnitudes[b]))), (b, op)
    by_position = apply_ops(IMAGES, torch.tensor([OPS.index(op) for op in ops]), magnitudes)
    assert torch.equal(by_position, out)


def test_a_fill_colour_matches_torchvision_on_uncovered_pixels():
    fill = [128.0, 64.0, 0.0]
    for op, m in [("TranslateX", 9.0), ("Rotate", -20.0), ("ShearY", 0.25)]:
        out = apply_ops(IMAGES[:8], [op] * 8, torch.full((8,), m), fill=fill)
        for b in range(8):
            assert torch.equal(out[b], torchvision_op(IMAGES[b], op, m, fill=fill)), op


@pytest.mark.parametrize(
    ("ops", "magnitudes", "message"),
    [
        (["Blur"], [0.0], "unknown ops ['Blur']"),
        (["Identity", "Invert"], [0.0], "one op per image (1), got 2"),
        (["Brightness"], [-1.5], "image 0: Brightness needs 1 + magnitude >= 0"),
        (["Posterize"], [9.0], "image 0: Posterize needs bits in 0..8"),
        (["Solarize"], [300.0], "image 0: Solarize needs a threshold of at most 255"),
        (["Rotate"], [math.nan], "magnitudes must be finite"),
        (torch.tensor([99]), [0.0], "op positions must be in 0..14"),
        (torch.tensor([0.5]), [0.0], "an integer tensor of shape (1,)"),
    ],
)
def test_bad_ops_and_magnitudes_are_named(ops, magnitudes, message):
    with pytest.raises(ValueError) as error:
        apply_ops(IMAGES[:1], ops, torch.tensor(magnitudes, dtype=torch.float64))
    assert message in str(error.value)


@pytest.mark.parametrize("fill", [300.0, -1.0, [0.0, 0.0], "grey", None, math.nan])
def test_a_fill_out_of_uint8_range_is_named(fill):
    with pytest.raises(ValueError, match="fill must be one value or one per channel"):
        apply_ops(IMAGES[:1], ["Rotate"], [10.0], fill=fill)


def test_images_must_be_uint8_rgb_batches():
    for bad in (IMAGES.float(), IMAGES[0], IMAGES[:, :1]):
        with pytest.raises(ValueError, match="images must"):
            apply_ops(bad, ["Identity"] * len(bad), torch.zeros(len(bad)))


def test_the_input_batch_is_left_alone():
    before = IMAGES.clone()
    apply_ops(IMAGES, ["Invert"] * len(IMAGES), torch.zeros(len(IMAGES)))
    assert torch.equal(IMAGES, before)


# ----- the policies' tables and draws ----------------------------------------------------------


@pytest.mark.parametrize("num_bins", [10, 31])
def test_magnitude_bins_are_torchvisions(num_bins):
    space = TorchvisionRandAugment()._augmentation_space(num_bins, (32, 32))
    space.update(
        {k: v for k, v in TorchvisionAutoAugment()._augmentation_space(num_bins, (32, 32)).items()}
    )
    for op, (bins, signed) in space.items():
        expected = bins.double() if bins.ndim else torch.zeros(num_bins, dtype=torch.float64)
        assert torch.equal(magnitude_bins(op, num_bins, 32, 32), expected), op
        assert (op in SIGNED) == signed, op


def test_autoaugment_tables_are_torchvisions_cifar10_policy():
    policy = TorchvisionAutoAugment(AutoAugmentPolicy.CIFAR10).policies
    ours = AutoAugment("cifar10")
    assert len(policy) == len(ours.ops) == 25
    for k, sub in enumerate(policy):
        for i, (op, p, m) in enumerate(sub):
            assert OPS[int(ours.ops[k, i])] == op and float(
                ours.probabilities[k, i]
            ) == pytest.approx(p)
            expected = 0.0 if m is None else float(magnitude_bins(op, 10, 32, 32)[m])
            assert float(ours.magnitudes[k, i]) == expected


def test_autoaugment_draws_follow_the_policy_table():
    """Sub-policies uniform, each op applied with its probability, signs fair."""
    policy = AutoAugment("cifar10")
    batch = 50_000
    generator = torch.Generator().manual_seed(11)
    chosen = torch.randint(25, (batch,), generator=torch.Generator().manual_seed(11))
    ops, magnitudes = policy.plan(batch, generator)
    assert fits(np.bincount(chosen.numpy(), minlength=25), np.full(25, 1 / 25))
    identity = OPS.index("Identity")
    for k in range(25):
        rows = chosen == k
        for i in range(2):
            p, op = float(policy.probabilities[k, i]), int(policy.ops[k, i])
            applied = (ops[rows, i] == op).double()
            assert bool(((ops[rows, i] == op) | (ops[rows, i] == identity)).all())
            n = int(rows.sum())
            spread = math.sqrt(max(p * (1 - p), 1e-12) / n)
            assert abs(float(applied.mean()) - p) <= Z_1E4 * spread + 1e-9, (k, i)
            m = magnitudes[rows, i].abs()
            assert bool((m == float(policy.magnitudes[k, i])).all())
            if OPS[op] in SIGNED and float(policy.magnitudes[k, i]) > 0:
                negative = float((magnitudes[rows, i] < 0).double().mean())
                assert abs(negative - 0.5) <= Z_1E4 * math.sqrt(0.25 / n), (k, i)


def test_randaugment_draws_ops_uniformly_with_their_bin():
    policy = RandAugment(num_ops=2, magnitude=9)
    ops, magnitudes = policy.plan(40_000, torch.Generator().manual_seed(3))
    names = [op for op in OPS if op != "Invert"]
    counts = np.bincount(ops.flatten().numpy(), minlength=len(OPS))
    assert counts[OPS.index("Invert")] == 0
    assert fits(counts[[OPS.index(n) for n in names]], np.full(14, 1 / 14))
    for name in names:
        picked = magnitudes[ops == OPS.index(name)]
        assert bool((picked.abs() == float(magnitude_bins(name, 31, 32, 32)[9])).all()), name
    assert float(magnitude_bins("Rotate", 31, 32, 32)[9]) == pytest.approx(9.0)
    assert int(float(magnitude_bins("TranslateX", 31, 32, 32)[9])) == 4  # int(4.35) pixels


@pytest.mark.parametrize("policy", [AutoAugment("cifar10"), RandAugment(2, 9)])
def test_a_policy_is_its_plan_applied_with_torchvision_ops(policy):
    images = IMAGES[:32]
    out = policy(images, torch.Generator().manual_seed(8))
    ops, magnitudes = policy.plan(len(images), torch.Generator().manual_seed(8))
    for b in range(len(images)):
        expected = images[b]
        for i in range(ops.shape[1]):
            expected = torchvision_op(expected, OPS[int(ops[b, i])], float(magnitudes[b, i]))
        assert torch.equal(out[b], expected), b


def test_policy_options_are_checked():
    with pytest.raises(ValueError, match="policy must be one of imagenet, cifar10, svhn"):
        AutoAugment("cifar100")
    with pytest.raises(ValueError, match=r"magnitude must be in 0\.\.30"):
        RandAugment(magnitude=31)
    with pytest.raises(ValueError, match="length must be >= 1"):
        Cutout(0)


# ----- Cutout ----------------------------------------------------------------------------------


def cutout_reference(height: int, width: int, length: int, y: int, x: int) -> np.ndarray:
    """DeVries and Taylor's Cutout for one hole at centre (y, x): 0 inside, 1 outside."""
    mask = np.ones((height, width), np.float32)
    y1, y2 = np.clip(y - length // 2, 0, height), np.clip(y + length // 2, 0, height)
    x1, x2 = np.clip(x - length // 2, 0, width), np.clip(x + length // 2, 0, width)
    mask[y1:y2, x1:x2] = 0.0
    return mask


def test_cutout_clips_its_square_at_the_edges_as_the_field_does():
    batch = 4000
    holes = cutout_masks(batch, 32, 32, 16, torch.Generator().manual_seed(4))
    again = torch.Generator().manual_seed(4)
    y = torch.randint(32, (batch,), generator=again)
    x = torch.randint(32, (batch,), generator=again)
    for b in range(200):
        expected = cutout_reference(32, 32, 16, int(y[b]), int(x[b])) == 0
        assert np.array_equal(holes[b, 0].numpy(), expected), b
    full = (holes.sum(dim=(1, 2, 3)) == 256).double().mean()
    p = (17 / 32) ** 2  # centres 8..24 on both axes
    assert abs(float(full) - p) <= Z_1E4 * math.sqrt(p * (1 - p) / batch)


def test_cutout_zeroes_every_channel_of_the_hole():
    images = IMAGES[:16]
    out = Cutout(16)(images, torch.Generator().manual_seed(2))
    holes = cutout_masks(16, 32, 32, 16, torch.Generator().manual_seed(2)).expand_as(images)
    assert bool((out[holes] == 0).all()) and torch.equal(out[~holes], images[~holes])
    normalised = images.float() - 100
    out = Cutout(16)(normalised, torch.Generator().manual_seed(2))
    assert bool((out[holes] == 0).all()) and torch.equal(out[~holes], normalised[~holes])
