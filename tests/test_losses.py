"""Losses, weights, margins and smoothing against formulas written here, independently
of ltfast: torch's own losses and the field's definitions (LDAM-DRW's LDAMLoss and
FocalLoss, Balanced Softmax, the logit-adjusted loss, MiSLAS's label-aware smoothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltfast.losses import (
    LOSSES,
    build_loss,
    class_balanced_weights,
    inverse_frequency_weights,
    label_aware_epsilons,
    ldam_margins,
    smoothed_targets,
)

CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # imbalance 100
C = len(CIFAR10_LT)
generator = torch.Generator().manual_seed(0)
LOGITS = torch.randn(32, C, generator=generator) * 2
LABELS = torch.randint(0, C, (32,), generator=generator)
WEIGHT = torch.rand(C, generator=generator) + 0.2


# ----- weights, margins, epsilons ------------------------------------------------------------


def test_class_balanced_weights_formula_and_specs_figures():
    n = np.array(CIFAR10_LT, dtype=np.float64)
    raw = (1 - 0.9999) / (1 - 0.9999**n)
    expected = raw / raw.sum() * C
    weights = class_balanced_weights(CIFAR10_LT, 0.9999)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    assert round(float(weights[0]), 4) == 0.0506 and round(float(weights[-1]), 4) == 3.9927
    torch.testing.assert_close(class_balanced_weights(CIFAR10_LT, 0.0), torch.ones(C))


def test_inverse_frequency_weights():
    n = np.array(CIFAR10_LT, dtype=np.float64)
    np.testing.assert_allclose(
        inverse_frequency_weights(CIFAR10_LT).numpy(), (1 / n) / (1 / n).sum() * C, rtol=1e-6
    )
    root = n**-0.5
    np.testing.assert_allclose(
        inverse_frequency_weights(CIFAR10_LT, q=0.5).numpy(), root / root.sum() * C, rtol=1e-6
    )


def test_ldam_margins_formula_and_specs_figures():
    n = np.array(CIFAR10_LT, dtype=np.float64)
    expected = 0.5 * n**-0.25 / (n**-0.25).max()
    margins = ldam_margins(CIFAR10_LT, 0.5)
    np.testing.assert_allclose(margins.numpy(), expected, rtol=1e-6)
    assert round(float(margins[0]), 3) == 0.158 and float(margins[-1]) == pytest.approx(0.5)


def test_label_aware_epsilons_follow_mislas_concave_curve():
    eps = label_aware_epsilons(CIFAR10_LT, head=0.3, tail=0.0).numpy()
    for n, e in zip(CIFAR10_LT, eps, strict=True):
        expected = 0.0 + (0.3 - 0.0) * math.sin(math.pi / 2 * (n - 50) / (5000 - 50))
        assert e == pytest.approx(expected, abs=1e-6)
    assert eps[0] == pytest.approx(0.3) and eps[-1] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: class_balanced_weights(CIFAR10_LT, 1.0), r"beta must be in \[0, 1\)"),
        (lambda: ldam_margins(CIFAR10_LT, -1), "max_m must be >= 0"),
        (lambda: label_aware_epsilons(CIFAR10_LT, 1.2, 0), "head must be in"),
        (lambda: class_balanced_weights([[1, 2]], 0.9), "1-D sequence of counts"),
        (lambda: build_loss("hinge", CIFAR10_LT), "loss must be one of ce, focal, ldam"),
        (lambda: build_loss("focal", CIFAR10_LT, gamma=-1), "gamma must be >= 0"),
        (lambda: build_loss("ce", CIFAR10_LT, gamma=2), "loss 'ce' takes the options none"),
        (lambda: build_loss("ldam", CIFAR10_LT, tau=1), "takes the options max_m, s, got tau"),
        (lambda: build_loss("ce", CIFAR10_LT, torch.ones(3)), "one entry per class"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----- each loss at one-hot targets, against the field's definition ---------------------------


def ldam_drw_ldam_loss(logits, labels, weight=None, max_m=0.5, s=30.0):
    """LDAM-DRW's LDAMLoss.forward, transcribed."""
    m_list = 1.0 / np.sqrt(np.sqrt(np.array(CIFAR10_LT, dtype=np.float64)))
    m_list = torch.tensor(m_list * (max_m / np.max(m_list)), dtype=torch.float32)
    index = F.one_hot(labels, C).bool()
    batch_m = (m_list[None, :] @ index.float().T).view(-1, 1)
    output = torch.where(index, logits - batch_m, logits)
    return F.cross_entropy(s * output, labels, weight=weight)


def ldam_drw_focal_loss(logits, labels, gamma):
    """LDAM-DRW's FocalLoss without weights: (1 - p)^gamma * CE, plain mean."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return ((1 - torch.exp(-ce)) ** gamma * ce).mean()


def log_prior(counts=CIFAR10_LT):
    n = torch.tensor(counts, dtype=torch.float32)
    return torch.log(n / n.sum())


def vs_loss(logits, labels, weight, gamma, tau):
    """VS's VSLoss.forward, transcribed: Delta_j = (1/n_j)**gamma / min_k (1/n_k)**gamma,
    iota_j = tau * log(n_j / N), CE of z / Delta + iota (CDT with tau 0)."""
    n = np.array(CIFAR10_LT, dtype=np.float64)
    temp = (1.0 / n) ** gamma
    delta = torch.tensor(temp / np.min(temp), dtype=torch.float32)
    iota = torch.tensor(tau * np.log(n / n.sum()), dtype=torch.float32)
    return F.cross_entropy(logits / delta + iota, labels, weight=weight)


def cb_bce_per_sample(logits, labels, beta):
    n = np.array(CIFAR10_LT, dtype=np.float64)
    weights = (1.0 - beta) / (1.0 - np.power(beta, n))
    weights = torch.tensor(weights / np.sum(weights) * C, dtype=torch.float32)
    one_hot = F.one_hot(labels, C).float()
    bce = F.binary_cross_entropy(logits.softmax(dim=1), one_hot, reduction="none")
    return weights[labels] * bce.mean(dim=1)


def weight_balancing_cb_loss(logits, labels, beta):
    """Weight Balancing's CB_loss(labels, logits, counts, C, "softmax", beta, gamma),
    transcribed: per-sample weights w_y repeated over the classes, then
    F.binary_cross_entropy(softmax(z), one_hot, weight=...) with its mean over B x C."""
    n = np.array(CIFAR10_LT, dtype=np.float64)
    effective_num = 1.0 - np.power(beta, n)
    weights = (1.0 - beta) / np.array(effective_num)
    weights = weights / np.sum(weights) * C
    labels_one_hot = F.one_hot(labels, C).float()
    weights = torch.tensor(weights).float().unsqueeze(0)
    weights = (weights.repeat(labels_one_hot.shape[0], 1) * labels_one_hot).sum(1)
    weights = weights.unsqueeze(1).repeat(1, C)
    pred = logits.softmax(dim=1)
    return F.binary_cross_entropy(input=pred, target=labels_one_hot, weight=weights)


REFERENCES = {
    "ce": (
        {},
        lambda z, y, w: F.cross_entropy(z, y, weight=w),
    ),
    "focal": ({"gamma": 2.0}, None),  # weighted form checked separately
    "ldam": ({"max_m": 0.5, "s": 30.0}, ldam_drw_ldam_loss),
    "balanced_softmax": (
        {},
        lambda z, y, w: F.cross_entropy(z + torch.log(torch.tensor(CIFAR10_LT).float()), y, w),
    ),
    "logit_adjusted": (
        {"tau": 0.7},
        lambda z, y, w: F.cross_entropy(z + 0.7 * log_prior(), y, weight=w),
    ),
    "vs": ({"gamma": 0.2, "tau": 1.2}, lambda z, y, w: vs_loss(z, y, w, 0.2, 1.2)),
    "cdt": ({"gamma": 0.2}, lambda z, y, w: vs_loss(z, y, w, 0.2, 0.0)),
    "class_balanced_bce": ({"beta": 0.9999}, None),  # its own weights: checked separately
}


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("weighted", [False, True])
def test_each_loss_equals_its_definition_at_one_hot_targets(name, weighted):
    options, reference = REFERENCES[name]
    weight = WEIGHT if weighted else None
    loss = build_loss(name, CIFAR10_LT, weight, **options)
    if name == "class_balanced_bce":
        expected = weight_balancing_cb_loss(LOGITS, LABELS, 0.9999)
        if weighted:  # an extra weight re-weights the mean as for every loss
            per_sample = cb_bce_per_sample(LOGITS, LABELS, 0.9999)
            w = WEIGHT[LABELS]
            expected = (w * per_sample).sum() / w.sum()
    elif name == "focal":
        if weighted:
            ce = F.cross_entropy(LOGITS, LABELS, reduction="none")
            focal = (1 - torch.exp(-ce)) ** 2 * ce
            expected = (WEIGHT[LABELS] * focal).sum() / WEIGHT[LABELS].sum()
        else:
            expected = ldam_drw_focal_loss(LOGITS, LABELS, 2.0)
    else:
        expected = reference(LOGITS, LABELS, weight)
    torch.testing.assert_close(loss(LOGITS, LABELS), expected)
    # One-hot float targets take the soft path, with the same result.
    torch.testing.assert_close(loss(LOGITS, F.one_hot(LABELS, C).float()), expected)


def test_vs_temperatures_at_specs_figures_and_cdts_deferred_start():
    vs = build_loss("vs", CIFAR10_LT, gamma=0.2, tau=1.2)
    assert float(vs.temperatures[0]) == 1.0 and round(float(vs.temperatures[-1]), 3) == 2.512
    assert (
        round(float(vs.adjustment[0]), 2) == -1.09 and round(float(vs.adjustment[-1]), 2) == -6.62
    )
    deferred = build_loss("cdt", CIFAR10_LT, gamma=0.2, start_epoch=160)
    for epoch, expected in [(0, F.cross_entropy(LOGITS, LABELS)), (159, None), (160, "cdt")]:
        deferred.set_epoch(epoch)
        if expected == "cdt":
            torch.testing.assert_close(
                deferred(LOGITS, LABELS), vs_loss(LOGITS, LABELS, None, 0.2, 0)
            )
        else:
            torch.testing.assert_close(deferred(LOGITS, LABELS), F.cross_entropy(LOGITS, LABELS))


def test_logit_adjusted_at_tau_one_is_balanced_softmax():
    adjusted = build_loss("logit_adjusted", CIFAR10_LT, tau=1.0)
    balanced = build_loss("balanced_softmax", CIFAR10_LT)
    torch.testing.assert_close(adjusted(LOGITS, LABELS), balanced(LOGITS, LABELS))


def test_ce_with_smoothed_targets_equals_torchs_label_smoothing():
    loss = build_loss("ce", CIFAR10_LT)
    for eps in (0.0, 0.1, 0.3):
        ours = loss(LOGITS, smoothed_targets(LABELS, C, eps))
        torch.testing.assert_close(ours, F.cross_entropy(LOGITS, LABELS, label_smoothing=eps))


def test_label_aware_smoothing_equals_mislas_loss():
    eps = label_aware_epsilons(CIFAR10_LT, 0.3, 0.0)
    ours = build_loss("ce", CIFAR10_LT)(LOGITS, smoothed_targets(LABELS, C, eps))
    log_p = F.log_softmax(LOGITS, dim=1)
    e = eps[LABELS]
    mislas = ((1 - e) * -log_p[torch.arange(32), LABELS] + e * -log_p.mean(dim=1)).mean()
    torch.testing.assert_close(ours, mislas)


# ----- soft targets: the mixture of one-hot losses ------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCES))
def test_unweighted_soft_targets_are_the_mixture_of_one_hot_losses(name):
    loss = build_loss(name, CIFAR10_LT, **REFERENCES[name][0])
    lam, permutation = 0.3, torch.randperm(32, generator=torch.Generator().manual_seed(1))
    mixed = mix_one_hots(LABELS, lam, permutation)
    expected = lam * loss(LOGITS, LABELS) + (1 - lam) * loss(LOGITS, LABELS[permutation])
    torch.testing.assert_close(loss(LOGITS, mixed), expected)


def mix_one_hots(labels, lam, permutation):
    onehot = F.one_hot(labels, C).float()
    return lam * onehot + (1 - lam) * onehot[permutation]


def class_loss_matrix(name, options):
    """L[i, c]: the loss of sample i had its label been c, one label at a time."""
    loss = build_loss(name, CIFAR10_LT, **options)
    columns = []
    for c in range(C):
        labels = torch.full((32,), c)
        per_sample = [loss(LOGITS[i : i + 1], labels[i : i + 1]) for i in range(32)]
        columns.append(torch.stack(per_sample))
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_weighted_soft_targets_follow_the_stated_normalisation(name):
    options = REFERENCES[name][0]
    targets = torch.softmax(torch.randn(32, C, generator=torch.Generator().manual_seed(2)), 1)
    sample_losses = (targets * class_loss_matrix(name, options)).sum(1)
    sample_weights = targets @ WEIGHT
    expected = (sample_weights * sample_losses).sum() / sample_weights.sum()
    loss = build_loss(name, CIFAR10_LT, WEIGHT, **options)
    torch.testing.assert_close(loss(LOGITS, targets), expected)


def test_weighted_losses_are_not_linear_in_the_target():
    """The weighted mean divides by the batch's weights, so mixing targets is not mixing
    losses: stated in the module's docstring."""
    loss = build_loss("ce", CIFAR10_LT, WEIGHT)
    permutation = torch.roll(torch.arange(32), 1)
    mixed = mix_one_hots(LABELS, 0.5, permutation)
    mixture = 0.5 * loss(LOGITS, LABELS) + 0.5 * loss(LOGITS, LABELS[permutation])
    assert not torch.allclose(loss(LOGITS, mixed), mixture)


def test_every_registered_loss_is_covered_here():
    assert set(LOSSES) == set(REFERENCES) | {"ib", "gcl"}  # those two: tested below


def test_a_loss_follows_the_logits_device():
    loss = build_loss("ldam", CIFAR10_LT, WEIGHT)
    logits = LOGITS.to("meta")  # any device but the one the loss was built on
    assert loss(logits, LABELS.to("meta")).device.type == "meta"
    assert loss.margins.device.type == "meta" and loss.weight.device.type == "meta"


def test_gradients_flow_and_weights_can_change_between_epochs():
    loss = build_loss("ldam", CIFAR10_LT)
    logits = LOGITS.clone().requires_grad_()
    unweighted = loss(logits, LABELS)
    loss.set_weight(class_balanced_weights(CIFAR10_LT, 0.9999))
    weighted = loss(logits, LABELS)
    assert not torch.allclose(unweighted, weighted)
    weighted.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    loss.set_weight(None)
    torch.testing.assert_close(loss(logits, LABELS), unweighted)


# ----- smoothing ----------------------------------------------------------------------------------


def test_smoothed_targets_formula():
    targets = smoothed_targets(torch.tensor([2, 0]), 4, 0.1)
    expected = torch.tensor([[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]])
    torch.testing.assert_close(targets, expected)


# ----- the influence-balanced loss (IB-Loss's IBLoss) and GCL's Gaussian clouds ----------------

FEATURES = torch.rand(32, 64, generator=generator) * 3  # pooled features after a ReLU: >= 0


def ib_loss_reference(z, y, features, alpha, weight=None):
    """IB-Loss's `IBLoss.forward` written out: its model hands the loss sum |f|."""
    grads = (torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1])).abs().sum(dim=1)
    influence = alpha / (grads * features.abs().sum(dim=1) + 1e-3)
    return (F.cross_entropy(z, y, reduction="none", weight=weight) * influence).mean()


@pytest.mark.parametrize("weighted", [False, True])
def test_ib_equals_ib_losss_formula_and_is_not_detached(weighted):
    weight = WEIGHT if weighted else None
    loss = build_loss("ib", CIFAR10_LT, weight, alpha=1000.0)
    logits, features = LOGITS.clone().requires_grad_(), FEATURES.clone().requires_grad_()
    ours = loss(logits, LABELS, features=features)
    ours_grads = torch.autograd.grad(ours, (logits, features))
    logits_ref, features_ref = LOGITS.clone().requires_grad_(), FEATURES.clone().requires_grad_()
    expected = ib_loss_reference(logits_ref, LABELS, features_ref, 1000.0, weight)
    expected_grads = torch.autograd.grad(expected, (logits_ref, features_ref))
    torch.testing.assert_close(ours, expected)
    for got, want in zip(ours_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)  # gradients reach p and h: not detached
    assert ours_grads[1].abs().sum() > 0
    one_hot = F.one_hot(LABELS, C).float()
    torch.testing.assert_close(loss(LOGITS, one_hot, features=FEATURES), expected.detach())


def test_ib_is_linear_in_the_target_and_plain_ce_before_its_start():
    loss = build_loss("ib", CIFAR10_LT, alpha=100.0, start_epoch=100)
    loss.set_epoch(99)
    torch.testing.assert_close(loss(LOGITS, LABELS), F.cross_entropy(LOGITS, LABELS))
    loss.set_epoch(100)
    with pytest.raises(ValueError, match="needs the features"):
        loss(LOGITS, LABELS)
    permutation = torch.roll(torch.arange(32), 3)
    mixed = mix_one_hots(LABELS, 0.3, permutation)
    expected = 0.3 * ib_loss_reference(LOGITS, LABELS, FEATURES, 100.0) + 0.7 * (
        ib_loss_reference(LOGITS, LABELS[permutation], FEATURES, 100.0)
    )
    torch.testing.assert_close(loss(LOGITS, mixed, features=FEATURES), expected)


def gcl_cloud(shape, seed, epoch, step):
    """d ~ N(0, 1/3) clamped to [-1, 1], from the stream GCL's docstring names."""
    from ltfast.seeds import LOSS_NOISE, derive_seed

    stream = torch.Generator().manual_seed(derive_seed(seed, epoch, LOSS_NOISE, step))
    return (torch.randn(shape, generator=stream) / 3).clamp(-1, 1)


def gcl_reference(cosines, y, noise, s, m, noise_mul, gamma, weight=None):
    """GCLLoss's `GCLLoss.forward` written out, with its noise given."""
    margins = torch.log(torch.tensor(CIFAR10_LT, dtype=torch.float32))
    margins = margins.max() - margins
    cosines = cosines - noise_mul * noise.abs() / margins.max() * margins
    out = torch.where(F.one_hot(y, C).bool(), cosines - m, cosines)
    if gamma == 0:
        return F.cross_entropy(s * out, y, weight=weight)
    ce = F.cross_entropy(s * out, y, reduction="none", weight=weight)
    return ((1 - torch.exp(-ce).detach()) ** gamma * ce).mean()


COSINES = torch.tanh(LOGITS)


@pytest.mark.parametrize(
    "options", [{"s": 30.0, "m": 0.0, "gamma": 0.0}, {"s": 20.0, "m": 0.1, "gamma": 1.0}]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_gcl_equals_gcllosss_formula_on_its_seeded_cloud(options, weighted):
    weight = WEIGHT if weighted else None
    loss = build_loss("gcl", CIFAR10_LT, weight, noise_mul=0.5, seed=7, **options)
    loss.start_step(3, 11)
    first, second = loss(COSINES, LABELS), loss(COSINES, LABELS)
    noise = gcl_cloud((32, C), 7, 3, 11)
    torch.testing.assert_close(
        first, gcl_reference(COSINES, LABELS, noise, noise_mul=0.5, weight=weight, **options)
    )
    assert not torch.equal(first, second)  # a new cloud at each call, as GCL draws
    loss.start_step(3, 11)  # the same position: the same clouds (a resumed epoch)
    torch.testing.assert_close(loss(COSINES, LABELS), first)
    loss.start_step(3, 11)
    one_hot = F.one_hot(LABELS, C).float()
    torch.testing.assert_close(loss(COSINES, one_hot), first)  # the soft path: the same loss


def test_gcls_cloud_spares_the_head_and_has_specs_size():
    """With zero cosines and noise_mul 1, the clouded cosine of class j is -|d| m_j / max m:
    0 for the largest class, E|d| = sqrt(2 / pi) / 3 for the smallest."""
    loss = build_loss("gcl", CIFAR10_LT, noise_mul=1.0)
    loss.start_step(0, 0)
    clouded = loss.clouded(torch.zeros(20000, C))
    assert torch.equal(clouded[:, 0], torch.zeros(20000))
    assert abs(float(-clouded[:, -1].mean()) - math.sqrt(2 / math.pi) / 3) < 0.005
    assert float(clouded.min()) >= -1.0
