"""ResNets for CIFAR (He et al. 2016, section 4.2) as the long-tail codebases build them:
three stages of n basic blocks (16/32/64 channels), option-A zero-padding shortcuts,
Kaiming-normal initialisation, global average pooling and a classifier: linear, or LDAM-DRW's
normalised one (cosine logits). `resnet32x4` is GLMC's 4x wide ResNet-32 (64/128/256
channels, a 64-channel stem; 256-d features). And `resnet34_cifar`, the backbone of Weight
Balancing and ImbSAM: torchvision's ResNet-34 with a 3x3 stride-1 stem and no max-pool (512-d
features).
`model.features(x)` and `model.classifier` are separate, for methods that retrain or rescale
the classifier alone: `freeze_backbone()` keeps the backbone as it is (BatchNorm statistics
included), `reset_classifier()` re-initialises the classifier, and `ScaledClassifier` adds
one learned scale per class (LWS).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet34

from ltfast.registry import Registry

DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        changes_shape = stride != 1 or in_channels != channels
        self.shortcut = ZeroPadShortcut(channels - in_channels) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class NormedLinear(nn.Module):
    """LDAM-DRW's `NormedLinear`: logits are cosines between the L2-normalised features and
    the L2-normalised weight columns, in [-1, 1] (the loss scales them)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        # LDAM-DRW's initialisation: uniform(-1, 1), each column renormalised.
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)


class ScaledClassifier(nn.Module):
    """Kang et al.'s learnable weight scaling (LWS): the wrapped classifier's logits times one
    learned scale per class, starting at 1 (so the model starts as it was)."""

    def __init__(self, classifier: nn.Module, num_classes: int):
        super().__init__()
        self.classifier = classifier
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x) * self.scales


CLASSIFIERS: Registry[Callable[[int, int], nn.Module]] = Registry("classifier")
CLASSIFIERS.register("linear")(nn.Linear)
CLASSIFIERS.register("normed")(NormedLinear)


class LongTailNet(nn.Module):
    """A backbone whose pooled features a separate classifier reads: what every model of
    ltfast is, so that the two-stage methods can retrain or rescale the classifier alone."""

    def __init__(self, feature_dim: int, num_classes: int, classifier: str):
        super().__init__()
        self.feature_dim, self.classifier_name, self.num_classes = (
            feature_dim,
            classifier,
            num_classes,
        )
        self.classifier: nn.Module = self.new_classifier()
        self.frozen, self.shift_bn = False, False

    def new_classifier(self) -> nn.Module:
        """A classifier as a new model's is initialised."""
        return CLASSIFIERS[self.classifier_name](self.feature_dim, self.num_classes)

    def backbone(self) -> list[nn.Module]:
        """Every module before the classifier."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier reads, (B, feature_dim)."""
        raise NotImplementedError

    def reset_classifier(self) -> None:
        """A new classifier, initialised as a new model's is (cRT's re-initialisation); it
        stays on the model's device."""
        device = next(self.parameters()).device
        self.classifier = self.new_classifier().to(device)

    def freeze_backbone(self, shift_bn: bool = False) -> None:
        """No gradient reaches the backbone, and it stays in eval mode when the model trains,
        so its BatchNorm statistics stay as they are too. With `shift_bn` (MiSLAS's shifted
        BatchNorm) the BatchNorm layers alone run in training mode: their running statistics
        follow the new data while their affine parameters stay frozen."""
        for module in self.backbone():
            module.requires_grad_(False)
        self.frozen, self.shift_bn = True, shift_bn
        self.train(self.training)

    def train(self, mode: bool = True) -> LongTailNet:
        super().train(mode)
        if self.frozen and mode:
            for part in self.backbone():
                part.eval()
                for module in part.modules() if self.shift_bn else ():
                    if isinstance(module, nn.BatchNorm2d):
                        module.train()
        return self

    def forward(
        self, x: torch.Tensor, with_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The logits; with `with_features`, (logits, pooled features), for losses that read
        the features too (the influence-balanced loss)."""
        features = self.features(x)
        logits = self.classifier(features)
        return (logits, features) if with_features else logits


class CifarResNet(LongTailNet):
    """n basic blocks a stage; `width` multiplies every stage's channels and the stem's
    (GLMC's ResNet-32 is width 4, its `nf = 64`)."""

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        classifier: str = "linear",
        width: int = 1,
    ):
        super().__init__(64 * width, num_classes, classifier)
        self.conv1 = nn.Conv2d(3, 16 * width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16 * width)
        stages, in_channels = [], 16 * width
        for channels, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, channels, stride if b == 0 else 1))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    def new_classifier(self) -> nn.Module:
        classifier = super().new_classifier()
        if isinstance(classifier, nn.Linear):  # the field's init of every conv and linear
            nn.init.kaiming_normal_(classifier.weight)
        return classifier

    def backbone(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features, 64 x width of them."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


class ResNet34Cifar(LongTailNet):
    """Weight Balancing's and ImbSAM's backbone: torchvision's ResNet-34 (its initialisation,
    projection shortcuts) with the ImageNet stem replaced by a 3x3 stride-1 convolution and
    the max-pool skipped, so 32x32 images reach the last stage at 4x4; average-pooled 512-d
    features, and the classifier (torchvision's `fc`) separate."""

    def __init__(self, num_classes: int = 100, classifier: str = "linear"):
        super().__init__(512, num_classes, classifier)
        body = resnet34()
        body.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")
        body.maxpool, body.fc = nn.Identity(), nn.Identity()
        self.body = body

    def backbone(self) -> list[nn.Module]:
        return [self.body]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


MODELS: Registry[Callable[[int, str], LongTailNet]] = Registry("model")
for _name, _blocks in DEPTHS.items():
    MODELS.register(_name)(functools.partial(CifarResNet, _blocks))
MODELS.register("resnet32x4")(functools.partial(CifarResNet, DEPTHS["resnet32"], width=4))
MODELS.register("resnet34_cifar")(ResNet34Cifar)


def build_model(name: str, num_classes: int, classifier: str = "linear") -> LongTailNet:
    """`name` is one of resnet20, resnet32 (the field's default), resnet44, resnet56, resnet110,
    resnet32x4, resnet34_cifar; `classifier` linear or normed."""
    return MODELS[name](num_classes, classifier)
