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
