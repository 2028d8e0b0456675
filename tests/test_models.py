"""ResNets for CIFAR: shape, parameter count, option-A shortcuts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ltfast.models import DEPTHS, build_model


def expected_parameters(blocks: int, num_classes: int) -> int:
    """Counted by hand: 3x3 convolutions without bias, two per block, batch norm (2 per
    channel), option-A shortcuts without parameters, a linear classifier with bias."""
    stem = 3 * 16 * 9 + 2 * 16
    total, in_channels = stem, 16
    for channels in (16, 32, 64):
        for _ in range(blocks):
            total += in_channels * channels * 9 + channels * channels * 9 + 4 * channels
            in_channels = channels
    return total + 64 * num_classes + num_classes


@pytest.mark.parametrize("name", list(DEPTHS))
def test_parameter_count_and_output_shape(name):
    model = build_model(name, 10)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(DEPTHS[name], 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet32_is_the_fields_0_46_m_parameter_network():
    assert sum(p.numel() for p in build_model("resnet32", 10).parameters()) == 464_154
    assert build_model("resnet32", 100)(torch.zeros(1, 3, 32, 32)).shape == (1, 100)


def test_shortcut_subsamples_and_zero_pads():
    block = build_model("resnet20", 10).layer2[0].shortcut
    x = torch.randn(2, 16, 32, 32)
    y = block(x)
    assert y.shape == (2, 32, 16, 16)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_unknown_model():
    with pytest.raises(ValueError, match="model must be one of resnet20"):
        build_model("resnet18", 10)


def test_a_model_exposes_its_features_and_its_classifier():
    model = build_model("resnet20", 10).eval()
    x = torch.randn(4, 3, 32, 32)
    features = model.features(x)
    assert features.shape == (4, 64)
    torch.testing.assert_close(model.classifier(features), model(x))


def test_the_normed_classifier_gives_cosines():
    model = build_model("resnet20", 10, "normed").eval()
    x = torch.randn(4, 3, 32, 32)
    features, weight = model.features(x), model.classifier.weight
    cosines = torch.stack(
        [torch.stack([F.cosine_similarity(f, w, dim=0) for w in weight.T]) for f in features]
    )
    torch.testing.assert_close(model(x), cosines)
    assert weight.shape == (64, 10) and model(x).abs().max() <= 1 + 1e-6
    assert sum(p.numel() for p in model.classifier.parameters()) == 640  # no bias


def test_unknown_classifier():
    with pytest.raises(ValueError, match="classifier must be one of linear, normed"):
        build_model("resnet20", 10, "mlp")


def resnet34_cifar_parameters(num_classes: int) -> int:
    """Counted by hand: a 3x3 stem of 64 channels, basic blocks [3, 4, 6, 3] of 64 to 512
    channels with 1x1 projection shortcuts (and their batch norm) where the shape changes,
    and a 512-d linear classifier."""
    total, in_channels = 3 * 64 * 9 + 2 * 64, 64
    for channels, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for _ in range(blocks):
            total += in_channels * channels * 9 + channels * channels * 9 + 4 * channels
            if in_channels != channels:
                total += in_channels * channels + 2 * channels
            in_channels = channels
    return total + 512 * num_classes + num_classes


def test_resnet34_cifar_is_weight_balancings_backbone():
    import torchvision

    model = build_model("resnet34_cifar", 100).eval()
    count = sum(p.numel() for p in model.parameters())
    assert count == resnet34_cifar_parameters(100) == 21_328_292  # "about 21.3 M"
    # Weight Balancing's construction: torchvision's ResNet-34, 3x3 stride-1 stem, no max-pool.
    theirs = torchvision.models.resnet34(num_classes=100)
    theirs.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    theirs.maxpool = torch.nn.Identity()
    assert sum(p.numel() for p in theirs.parameters()) == count
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 512) and model(x).shape == (2, 100)
    assert build_model("resnet34_cifar", 100, "normed")(x).abs().max() <= 1 + 1e-6
    model.freeze_backbone()
    model.train()
    assert not any(p.requires_grad for p in model.body.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters()) and not model.body.training
    before = model.classifier.weight.clone()
    model.reset_classifier()
    assert not torch.equal(model.classifier.weight, before)


def glmc_resnet32_parameters(num_classes: int) -> int:
    """GLMC's `resnet32` (ResNet_modify, nf = 64) counted by hand: a 3x3 stem of 64 channels
    and its BatchNorm, five basic blocks a stage at 64/128/256 channels with option-A
    (parameter-free) shortcuts, and one 256-d linear classifier. GLMC's own model adds a
    second classifier and its projection heads (+ 256 C + C + 256 * 128 + 128 + 128 * 128 +
    128), which belong to its method, not its backbone."""
    total, in_channels = 3 * 64 * 9 + 2 * 64, 64
    for channels in (64, 128, 256):
        for _ in range(5):
            total += in_channels * channels * 9 + channels * channels * 9 + 4 * channels
            in_channels = channels
    return total + 256 * num_classes + num_classes


def test_resnet32x4_is_glmcs_wide_resnet32():
    model = build_model("resnet32x4", 100)
    count = sum(p.numel() for p in model.parameters())
    assert count == glmc_resnet32_parameters(100) == 7_409_316
    assert sum(p.numel() for p in build_model("resnet32x4", 10).parameters()) == 7_386_186
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 256)
    assert model.layer2[0].shortcut.extra == 64  # 64 -> 128: 32 zero channels each side
    logits, features = model(x, with_features=True)
    torch.testing.assert_close(logits, model.classifier(features))
