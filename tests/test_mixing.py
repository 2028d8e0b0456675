"""Batch mixing (mixup, CutMix, CMO) against their codes' formulas, written out here: the
field's `rand_bbox`, the lam correction, the two-criterion loss and CMO's minority draw."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltfast.augment.boxes import box_area_lam, rand_bbox
from ltfast.config import TrainConfig
from ltfast.distributed import World
from ltfast.losses import build_loss, class_balanced_weights, smoothed_targets
from ltfast.mixing import CMO, MIXERS, CutMix, Mixture, draw_mixup, mixup
from ltfast.seeds import MINORITY
from tests.stats import Z_1E4, fits

COUNTS = [500, 300, 180, 108, 65, 39, 23, 14, 8, 5]
C = len(COUNTS)
gen = torch.Generator().manual_seed(0)
LOGITS = torch.randn(16, C, generator=gen)
LABELS = torch.randint(0, C, (16,), generator=gen)


def field_rand_bbox(size: tuple[int, ...], lam: float, cx: int, cy: int) -> tuple[int, ...]:
    """CutMix's rand_bbox (Yun et al.; CMO's copy), its centre given: W = size[2] (rows)."""
    W, H = size[2], size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(W * cut_rat), int(H * cut_rat)
    bbx1, bby1 = np.clip(cx - cut_w // 2, 0, W), np.clip(cy - cut_h // 2, 0, H)
    bbx2, bby2 = np.clip(cx + cut_w // 2, 0, W), np.clip(cy + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


@pytest.mark.parametrize("lam", [0.0, 0.13, 0.5, 0.77, 0.999, 1.0])
def test_rand_bbox_is_the_fields_formula(lam):
    for seed in range(50):
        x1, y1, x2, y2 = rand_bbox(32, 32, lam, torch.Generator().manual_seed(seed))
        again = torch.Generator().manual_seed(seed)
        cx, cy = (int(torch.randint(32, (1,), generator=again)) for _ in range(2))
        # The field's first axis is the row axis; on a square image it is our x drawn first.
        assert (x1, y1, x2, y2) == field_rand_bbox((1, 3, 32, 32), lam, cx, cy)
        corrected = 1 - (x2 - x1) * (y2 - y1) / (32 * 32)
        assert box_area_lam((x1, y1, x2, y2), 32, 32) == corrected
    with pytest.raises(ValueError, match="lam must be in"):
        rand_bbox(32, 32, 1.5, torch.Generator())


def test_rand_bbox_centres_are_uniform():
    generator = torch.Generator().manual_seed(1)
    lefts = [rand_bbox(32, 32, 0.99, generator)[0] for _ in range(6000)]  # cut 3: x1 = cx - 1
    counts = np.bincount(np.asarray(lefts) + 1, minlength=33)[1:]  # cx = x1 + 1, for cx >= 1
    assert fits(counts[1:31], np.full(30, 1 / 30))


def test_mixup_by_hand():
    images = torch.tensor([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0]])
    # row 0: 0.75 * [1, 2] + 0.25 * [7, 11]; row 1: 0.75 * [3, 5] + 0.25 * [1, 2]; ...
    mixed = mixup(images, 0.75, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(mixed, torch.tensor([[2.5, 4.25], [2.5, 4.25], [6.0, 9.5]]))


def test_a_mixture_is_the_fields_two_criteria_with_class_weights():
    """lam * CrossEntropyLoss(weight=w)(out, y_a) + (1 - lam) * the same for y_b: each part
    normalised by its own labels' weights, as the field's codes compute a mixed batch."""
    weight = class_balanced_weights(COUNTS, 0.9999)
    permutation = torch.randperm(16, generator=torch.Generator().manual_seed(2))
    mixture = Mixture(((0.3, LABELS), (0.7, LABELS[permutation])))
    expected = 0.3 * F.cross_entropy(LOGITS, LABELS, weight=weight) + 0.7 * F.cross_entropy(
        LOGITS, LABELS[permutation], weight=weight
    )
    torch.testing.assert_close(mixture.loss(build_loss("ce", COUNTS, weight), LOGITS), expected)


def test_mixed_smoothed_loss_is_the_mix_of_torchs_two_losses():
    lam, permutation = draw_mixup(16, 1.0, np.random.default_rng(0), torch.Generator())
    assert 0 <= lam <= 1 and sorted(permutation.tolist()) == list(range(16))
    soft = smoothed_targets(LABELS, C, 0.1)
    mixture = Mixture(((lam, soft), (1 - lam, soft[permutation])))
    expected = lam * F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1) + (
        1 - lam
    ) * F.cross_entropy(LOGITS, LABELS[permutation], label_smoothing=0.1)
    torch.testing.assert_close(mixture.loss(build_loss("ce", COUNTS), LOGITS), expected)


def identity(labels: torch.Tensor) -> torch.Tensor:
    return labels


def numbered(batch: int) -> torch.Tensor:
    """Images whose every pixel holds its image's number, so a pasted patch shows its source."""
    return (
        torch.arange(batch, dtype=torch.float32).view(-1, 1, 1, 1).expand(batch, 3, 32, 32).clone()
    )


def test_cutmix_pastes_one_box_from_a_partner_and_corrects_lam():
    mix = CutMix(identity, TrainConfig(mix="cutmix", cutmix_prob=1.0)).for_epoch(0)
    for _ in range(20):
        images, mixture = mix(numbered(16), LABELS)
        (lam, first), (rest, second) = mixture.parts
        assert lam + rest == pytest.approx(1) and torch.equal(first, LABELS)
        source = images[:, 0].long()  # (B, H, W): the image each pixel came from
        changed = source != torch.arange(16).view(-1, 1, 1)
        if not bool(changed.any()):  # an empty box (lam 1), or only fixed points
            continue
        box = changed[changed.flatten(1).any(1)][0]  # one box for the whole batch
        partner = source[:, box][:, 0]
        assert bool((source[:, box] == partner[:, None]).all())
        assert bool((source[:, ~box] == torch.arange(16)[:, None]).all())
        assert torch.equal(second, LABELS[partner])
        assert float(box.double().mean()) == pytest.approx(1 - lam)


def test_cutmix_mixes_a_batch_with_its_probability():
    mix = CutMix(identity, TrainConfig(mix="cutmix", cutmix_prob=0.3)).for_epoch(3)
    mixed = sum(len(mix(numbered(4), LABELS[:4])[1].parts) == 2 for _ in range(4000))
    assert abs(mixed / 4000 - 0.3) <= Z_1E4 * math.sqrt(0.21 / 4000)


class MinorityLoader:
    """Stands for the training loader: serves each sampler draw as numbered images."""

    def __init__(self, labels: np.ndarray, batch_size: int):
        self.labels, self.batch_size, self.calls = labels, batch_size, []

    def batches(self, sampler, epoch, stream):
        self.calls.append((epoch, stream))
        drawn = np.asarray(sampler.indices())
        for start in range(0, len(drawn), self.batch_size):
            chosen = torch.from_numpy(drawn[start : start + self.batch_size])
            images = (chosen.float() + 1000).view(-1, 1, 1, 1).expand(len(chosen), 3, 32, 32)
            yield images.clone(), torch.from_numpy(self.labels)[chosen]


def cmo(epochs: int = 200, **options) -> tuple[CMO, MinorityLoader, np.ndarray]:
    labels = np.repeat(np.arange(C), COUNTS)
    loader = MinorityLoader(labels, 16)
    train_set = SimpleNamespace(targets=labels, class_counts=np.asarray(COUNTS))
    config = TrainConfig(mix="cmo", epochs=epochs, **options)
    return CMO(identity, config, loader, train_set, World()), loader, labels


def test_cmo_is_active_in_the_epochs_its_code_uses():
    mixer, _, _ = cmo(epochs=200)
    assert [e for e in range(200) if mixer.active(e)] == list(range(4, 197))
    mixer, _, _ = cmo(epochs=400)
    assert [e for e in range(400) if mixer.active(e)] == list(range(4, 397))


def test_cmo_draws_classes_equally_with_alpha_one_and_as_n_to_1_minus_alpha_otherwise():
    for alpha in (1.0, 0.5):
        mixer, _, labels = cmo(cmo_weight_alpha=alpha)
        mixer.minority.set_epoch(7)
        drawn = labels[mixer.minority.indices()]
        # WeightedRandomSampler with per-sample weights n_y**-alpha: class j ~ n_j**(1 - alpha)
        weights = np.asarray(COUNTS, dtype=np.float64) ** -alpha
        expected = np.asarray(COUNTS) * weights / (np.asarray(COUNTS) * weights).sum()
        assert len(drawn) == sum(COUNTS)
        assert fits(np.bincount(drawn, minlength=C), expected), alpha


def test_cmo_pastes_the_minority_batch_into_the_instance_batch():
    mixer, loader, labels = cmo(cmo_prob=1.0)
    mix = mixer.for_epoch(5)
    mixer.minority.set_epoch(5)
    minority = np.asarray(mixer.minority.indices())
    for step in range(10):
        batch_labels = torch.from_numpy(labels[:16])
        images, mixture = mix(numbered(16), batch_labels)
        (lam, first), (_, second) = mixture.parts
        assert loader.calls == [(5, MINORITY)]  # one pass of the epoch's minority draw
        expected_second = torch.from_numpy(labels[minority[16 * step : 16 * step + 16]])
        assert torch.equal(first, batch_labels) and torch.equal(second, expected_second)
        pasted = images[:, 0] >= 1000
        sources = images[:, 0][pasted] - 1000
        row_of = pasted.nonzero()[:, 0]
        assert torch.equal(
            sources, torch.from_numpy(minority[16 * step : 16 * step + 16]).float()[row_of]
        )
        assert float(pasted.double().mean()) == pytest.approx(1 - lam)


def test_mixers_are_registered_by_the_configs_names():
    assert set(MIXERS) == {"none", "mixup", "cutmix", "cmo"}
    plain = MIXERS["none"](TrainConfig(), identity).for_epoch(0)
    images = numbered(4)
    out, mixture = plain(images, LABELS[:4])
    ((weight, target),) = mixture.parts
    assert out is images and weight == 1.0 and torch.equal(target, LABELS[:4])
