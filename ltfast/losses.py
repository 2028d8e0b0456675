"""The losses of long-tailed recognition on one reduction (SPEC sections 4 and 7).

Every loss here is defined by its class losses L_ic: the loss of sample i if its label were c
(cross-entropy: -log p_ic). A target is either int64 labels (B,), giving l_i = L_iy, or soft
targets (B, C) from label smoothing and mixup, giving l_i = sum_c t_ic L_ic: the expectation
of the one-hot loss over the target, so a soft target of mixed labels equals the mixture of
the one-hot losses exactly, for every loss. The batch mean is plain, or with per-class
weights w weighted as torch's `F.cross_entropy(weight=)` weights it (what LDAM-DRW trains
with): sum_i w_i l_i / sum_i w_i, where w_i = w_y, or sum_c t_ic w_c for a soft target.
That weighted form is not linear in the target (a product and a ratio of two linear terms).

A new loss is a subclass with `class_losses` and one `@register_loss` entry.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ltfast.checks import real
from ltfast.registry import Registry
from ltfast.seeds import LOSS_NOISE, derive_seed

Counts = Sequence[int] | np.ndarray | torch.Tensor

# ----- per-class weights, margins and smoothing ------------------------------------------------


def _counts(counts: Counts) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    if values.ndim != 1 or len(values) == 0 or bool((values < 0).any()):
        raise ValueError(f"class counts must be a 1-D sequence of counts >= 0, got {counts}")
    return values


def _sum_to_classes(weights: torch.Tensor) -> torch.Tensor:
    return (weights * len(weights) / weights.sum()).float()


def class_balanced_weights(counts: Counts, beta: float) -> torch.Tensor:
    """Cui et al.'s effective-number weights (1 - beta) / (1 - beta**n_j), scaled to sum to
    the number of classes; beta = 0 gives all ones (LDAM-DRW's DRW: 0.9999 after the switch).
    An empty class gets the weight of a class of one sample."""
    beta = real("beta", beta)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    n = _counts(counts).clamp(min=1)
    return _sum_to_classes((1 - beta) / (1 - beta**n))


def inverse_frequency_weights(counts: Counts, q: float = 1.0) -> torch.Tensor:
    """n_j**-q, scaled to sum to the number of classes (an empty class counts as one)."""
    q = real("q", q)
    return _sum_to_classes(_counts(counts).clamp(min=1) ** -q)


def ldam_margins(counts: Counts, max_m: float = 0.5) -> torch.Tensor:
    """LDAM's margins m_j proportional to n_j**(-1/4), the largest equal to max_m."""
    max_m = real("max_m", max_m)
    if max_m < 0:
        raise ValueError(f"max_m must be >= 0, got {max_m}")
    margins = _counts(counts).clamp(min=1) ** -0.25
    return (margins * (max_m / margins.max())).float()


def log_prior(counts: Counts) -> torch.Tensor:
    """log pi_j = log(n_j / N), an empty class counted as one sample (logit adjustment)."""
    n = _counts(counts).clamp(min=1)
    return torch.log(n / n.sum()).float()


def label_aware_epsilons(counts: Counts, head: float, tail: float) -> torch.Tensor:
    """MiSLAS's label-aware smoothing, concave form: eps_j runs from `head` (the largest
    class) to `tail` (the smallest) as tail + (head - tail) * sin(pi/2 * (n_j - n_min) /
    (n_max - n_min)). All classes of one size get `head`."""
    head, tail = real("head", head), real("tail", tail)
    for name, value in (("head", head), ("tail", tail)):
        if not 0 <= value < 1:
            raise ValueError(f"label smoothing {name} must be in [0, 1), got {value}")
    n = _counts(counts)
    spread = float(n.max() - n.min())
    position = (n - n.min()) / spread if spread > 0 else torch.ones_like(n)
    return (tail + (head - tail) * torch.sin(math.pi / 2 * position)).float()


def smoothed_targets(
    labels: torch.Tensor, num_classes: int, smoothing: float | torch.Tensor
) -> torch.Tensor:
    """(1 - eps) * onehot + eps / K, as float32; `smoothing` is one epsilon, or one per class
    (label-aware smoothing: sample i uses eps of its label)."""
    onehot = F.one_hot(labels, num_classes).float()
    eps = smoothing[labels].unsqueeze(1) if isinstance(smoothing, torch.Tensor) else smoothing
    return onehot * (1 - eps) + eps / num_classes


# ----- the losses -----------------------------------------------------------------------------


class ClassLoss(nn.Module):
    """A loss from its class losses L_ic (see the module's docstring), with optional per-class
    weights. Call it as `loss(logits, target)`; `weight` may be replaced between epochs
    (deferred re-weighting)."""

    weight: torch.Tensor | None
    counts: torch.Tensor

    def __init__(self, class_counts: Counts, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("counts", _counts(class_counts).float())
        self.register_buffer("weight", None)
        self.set_weight(weight)

    def set_weight(self, weight: torch.Tensor | None) -> None:
        if weight is not None:
            weight = torch.as_tensor(weight, dtype=torch.float32, device=self.counts.device)
            if weight.shape != self.counts.shape:
                raise ValueError(
                    f"weight must have one entry per class ({len(self.counts)}), got shape "
                    f"{tuple(weight.shape)}"
                )
        self.weight = weight

    def set_epoch(self, epoch: int) -> None:
        """Called before each training epoch (0-based), for losses that change in the run."""

    def start_step(self, epoch: int, step: int) -> None:
        """Called before each training step, for losses that draw random numbers: they draw
        from (seed, epoch, step) streams, so a resumed epoch draws as an uninterrupted one."""

    # Whether the loss reads the model's pooled features (`loss(..., features=)`): the
    # trainer passes them only to a loss that asks.
    wants_features = False

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        """L (B, C): the loss of each sample for each possible label, in float32."""
        raise NotImplementedError

    def label_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """l_i = L_iy for int64 labels; losses may compute this without all of L."""
        return self.class_losses(logits).gather(1, labels[:, None]).squeeze(1)

    def sample_losses(
        self, logits: torch.Tensor, target: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        """l_i for labels or soft targets (features: for a loss that `wants_features`)."""
        if target.dtype == torch.int64:
            return self.label_losses(logits, target)
        return (target * self.class_losses(logits)).sum(dim=1)

    def reduce(self, losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The batch mean: plain, or weighted as `F.cross_entropy(weight=)` weights it."""
        if weights is None:
            return losses.mean()
        return (weights * losses).sum() / weights.sum()

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        class_scale: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The batch's loss. `class_scale` (C,) multiplies each sample's loss by the entry of
        its label (its target's expectation of them) before the mean: ImbSAM's head and tail
        parts of a batch."""
        if self.counts.device != logits.device:  # follow the logits, as torch's losses do
            self.to(logits.device)
        logits = logits.float()
        losses = self.sample_losses(logits, target, features)
        labelled = target.dtype == torch.int64
        if class_scale is not None:
            losses = losses * (class_scale[target] if labelled else target @ class_scale)
        weights = None
        if self.weight is not None:
            weights = self.weight[target] if labelled else target @ self.weight
        return self.reduce(losses, weights)


class DeferredLoss(ClassLoss):
    """A loss whose method switches on at `start_epoch` (0: from the start); `started` says
    whether it has, set by `set_epoch`."""

    def __init__(
        self, class_counts: Counts, weight: torch.Tensor | None = None, start_epoch: int = 0
    ):
        super().__init__(class_counts, weight)
        self.start_epoch, self.started = int(start_epoch), start_epoch <= 0

    def set_epoch(self, epoch: int) -> None:
        self.started = epoch >= self.start_epoch


class CrossEntropy(ClassLoss):
    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(logits, dim=1)

    def label_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, reduction="none")


class FocalLoss(ClassLoss):
    """Lin et al.: (1 - p_c)**gamma * -log p_c, LDAM-DRW's `FocalLoss` without weights.

    With weights, LDAM-DRW multiplies the cross-entropy by w_y inside the focal term and takes a
    plain mean; here w_y multiplies the focal loss and the mean is weighted like every other
    loss's (Cui et al.'s class-balanced focal loss): a deliberate difference, README."""

    def __init__(
        self, class_counts: Counts, weight: torch.Tensor | None = None, gamma: float = 1.0
    ):
        super().__init__(class_counts, weight)
        self.gamma = real("gamma", gamma)
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        return (1 - log_p.exp()).pow(self.gamma) * -log_p


class LDAMLoss(ClassLoss):
    """Cao et al.: cross-entropy of s * (z - m_y e_y), margins from `ldam_margins`; use it
    with the normalised classifier (`--classifier normed`), whose logits are cosines."""

    margins: torch.Tensor

    def __init__(
        self,
        class_counts: Counts,
        weight: torch.Tensor | None = None,
        max_m: float = 0.5,
        s: float = 30.0,
    ):
        super().__init__(class_counts, weight)
        self.register_buffer("margins", ldam_margins(class_counts, max_m))
        self.s = real("s", s)
        if self.s <= 0:
            raise ValueError(f"s must be > 0, got {s}")

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        # Row c of `shifted` holds the logits with class c's margin subtracted: one
        # cross-entropy per possible label, a (B, C, C) tensor (128 x 100 x 100 at most).
        shifted = self.s * (logits[:, None, :] - torch.diag(self.margins))
        return torch.logsumexp(shifted, dim=2) - shifted.diagonal(dim1=1, dim2=2)

    def label_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        margin = F.one_hot(labels, len(self.margins)) * self.margins
        return F.cross_entropy(self.s * (logits - margin), labels, reduction="none")


class VectorScalingLoss(DeferredLoss):
    """Kini et al.'s VS loss: cross-entropy of z_j / Delta_j + iota_j, Delta_j =
    (n_max / n_j)**gamma and iota_j = tau * log pi_j, as VS's code computes it (its paper's
    (n_j / n_max)**gamma * z_j is the same). tau = 0 is Ye et al.'s CDT (class-dependent
    temperatures); gamma = 0 the logit-adjusted loss. Before `start_epoch` the temperatures
    are 1 (BagofTricks-LT's deferred "DRW-CDT"). An empty class counts as one sample."""

    temperatures: torch.Tensor
    adjustment: torch.Tensor

    def __init__(
        self,
        class_counts: Counts,
        weight: torch.Tensor | None = None,
        gamma: float = 0.3,
        tau: float = 1.0,
        start_epoch: int = 0,
    ):
        super().__init__(class_counts, weight, start_epoch)
        self.gamma, self.tau = real("gamma", gamma), real("tau", tau)
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        n = _counts(class_counts).clamp(min=1).double()
        self.register_buffer("temperatures", ((n.max() / n) ** self.gamma).float())
        self.register_buffer("adjustment", self.tau * log_prior(class_counts))

    def adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        scaled = logits / self.temperatures if self.started and self.gamma else logits
        return scaled + self.adjustment

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(self.adjusted(logits), dim=1)

    def label_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.adjusted(logits), labels, reduction="none")


class LogitAdjustedLoss(VectorScalingLoss):
    """Menon et al.: cross-entropy of z + tau * log pi_j, the VS loss without temperatures.
    tau = 1 is Balanced Softmax (Ren et al.: z + log n_j, the same softmax). An empty class
    counts as one sample."""

    def __init__(self, class_counts: Counts, weight: torch.Tensor | None = None, tau: float = 1.0):
        super().__init__(class_counts, weight, gamma=0.0, tau=tau)


class InfluenceBalancedLoss(DeferredLoss):
    """Park et al.'s influence-balanced loss (IB-Loss's `IBLoss`; BagofTricks-LT's has the same
    formula): w_y * CE_i * alpha / (||p_i - e_y||_1 * ||h_i||_1 + 1e-3), h_i the model's pooled
    features, averaged with a plain mean (the weight inside, as its code reduces it, not
    torch's weighted mean). The influence factor is not detached: gradients flow through
    p and h, as there. ||p - e_c||_1 = 2 (1 - p_c), so the class losses are
    L_ic = -log p_ic * alpha / (2 (1 - p_ic) ||h_i||_1 + 1e-3). Before `start_epoch` it is
    plain cross-entropy (IB-Loss trains CE to epoch 100, then switches)."""

    wants_features = True

    def __init__(
        self,
        class_counts: Counts,
        weight: torch.Tensor | None = None,
        alpha: float = 1000.0,
        start_epoch: int = 0,
    ):
        super().__init__(class_counts, weight, start_epoch)
        self.alpha = real("alpha", alpha)
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")

    def influence_losses(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        spread = features.float().abs().sum(dim=1, keepdim=True)
        return -log_p * self.alpha / (2 * (1 - log_p.exp()) * spread + 1e-3)

    def sample_losses(
        self, logits: torch.Tensor, target: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.started:
            return super().sample_losses(logits, target, None)
        if features is None:
            raise ValueError("the influence-balanced loss needs the features: loss(..., features=)")
        losses = self.influence_losses(logits, features)
        if target.dtype == torch.int64:
            return losses.gather(1, target[:, None]).squeeze(1)
        return (target * losses).sum(dim=1)

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(logits, dim=1)  # cross-entropy's: the loss before start_epoch

    def reduce(self, losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if not self.started:
            return super().reduce(losses, weights)
        return (losses if weights is None else weights * losses).mean()


class GaussianCloudLoss(ClassLoss):
    """Li et al.'s Gaussian clouded logit loss (GCLLoss's `GCLLoss`) on cosine logits (use it
    with `--classifier normed`): each cosine less noise_mul * |d| * m_j / max m, with d ~
    N(0, 1/3) per logit clamped to [-1, 1] and m_j = log n_max - log n_j (no cloud on the
    largest class); the target's cosine less the margin m; cross-entropy of s times that.
    With gamma > 0 (its stage 2), GCL's focal form (1 - p_y)**gamma * CE with p_y detached,
    weights (where given) inside the cross-entropy and a plain mean, as its code reduces it;
    with gamma = 0, torch's weighted mean, as there.
    The noise is drawn anew at every call (a mixed batch's two losses draw two clouds, as
    there), from the (seed, epoch, step) stream `start_step` sets."""

    clouds: torch.Tensor

    def __init__(
        self,
        class_counts: Counts,
        weight: torch.Tensor | None = None,
        s: float = 30.0,
        m: float = 0.0,
        noise_mul: float = 0.5,
        gamma: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(class_counts, weight)
        self.s, self.m, self.noise_mul = real("s", s), real("m", m), real("noise_mul", noise_mul)
        self.gamma = real("gamma", gamma)
        if self.s <= 0 or self.gamma < 0 or self.noise_mul < 0:
            raise ValueError(
                f"GCL needs s > 0, gamma >= 0, noise_mul >= 0; got {s}, {gamma}, {noise_mul}"
            )
        margins = _counts(class_counts).clamp(min=1).log()
        margins = margins.max() - margins
        spread = float(margins.max())
        self.register_buffer("clouds", (margins / spread if spread > 0 else margins).float())
        self.seed = int(seed)
        self.generator: torch.Generator | None = None
        self.position = (0, 0)

    def start_step(self, epoch: int, step: int) -> None:
        self.position, self.generator = (epoch, step), None

    def clouded(self, cosines: torch.Tensor) -> torch.Tensor:
        if self.generator is None or self.generator.device != cosines.device:
            epoch, step = self.position
            key = derive_seed(self.seed, epoch, LOSS_NOISE, step)
            self.generator = torch.Generator(cosines.device).manual_seed(key)
        noise = torch.randn(cosines.shape, generator=self.generator, device=cosines.device).mul_(
            1 / 3
        )
        return cosines - self.noise_mul * noise.clamp_(-1, 1).abs_() * self.clouds

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(logits.shape[1], device=logits.device)
        shifted = self.s * (self.clouded(logits)[:, None, :] - self.m * eye)
        return torch.logsumexp(shifted, dim=2) - shifted.diagonal(dim1=1, dim2=2)

    def label_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        margin = self.m * F.one_hot(labels, logits.shape[1])
        return F.cross_entropy(self.s * (self.clouded(logits) - margin), labels, reduction="none")

    def sample_losses(
        self, logits: torch.Tensor, target: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        if self.gamma == 0:
            return super().sample_losses(logits, target, features)
        # The focal form: the weight inside the cross-entropy, then (1 - e^-x)**gamma * x.
        weight = self.weight if self.weight is not None else torch.ones_like(self.counts)
        if target.dtype == torch.int64:
            return self.focal(weight[target] * self.label_losses(logits, target))
        return (target * self.focal(weight * self.class_losses(logits))).sum(dim=1)

    def focal(self, losses: torch.Tensor) -> torch.Tensor:
        return (1 - torch.exp(-losses).detach()).pow(self.gamma) * losses

    def reduce(self, losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if self.gamma == 0:
            return super().reduce(losses, weights)
        return losses.mean()  # weighted inside already


class ClassBalancedBCE(ClassLoss):
    """Weight Balancing's stage-2 loss (its `CB_loss(..., "softmax")`): binary cross-entropy of
    the softmax probabilities against the one-hot target, weighted per sample by the
    class-balanced weight of its label (beta), averaged over the B x C entries: a plain mean,
    as `F.binary_cross_entropy(weight=)` takes it. Not weighted cross-entropy. Its class
    losses are L_ic = w_c * (-log p_ic - sum_{k != c} log(1 - p_ik)) / C, which is that loss at
    one-hot targets (Weight Balancing uses no others). The log terms are clamped at -100, as
    torch's BCE clamps them; log(1 - p_k) is computed as the log-sum-exp of the other logits
    less that of all, finite with a finite gradient where p_k rounds to 1 (1 - p would not
    be)."""

    balance: torch.Tensor

    def __init__(
        self, class_counts: Counts, weight: torch.Tensor | None = None, beta: float = 0.9999
    ):
        super().__init__(class_counts, weight)
        self.register_buffer("balance", class_balanced_weights(class_counts, beta))

    def class_losses(self, logits: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        total = torch.logsumexp(logits, dim=1, keepdim=True)
        others = logits[:, None, :].masked_fill(
            torch.eye(classes, dtype=torch.bool, device=logits.device), float("-inf")
        )
        log_p = (logits - total).clamp(min=-100)
        log_not_p = (torch.logsumexp(others, dim=2) - total).clamp(min=-100)
        total_not = log_not_p.sum(dim=1, keepdim=True)
        per_label = -(log_p + total_not - log_not_p) / logits.shape[1]
        return per_label * self.balance


# ----- the registry ---------------------------------------------------------------------------

LossBuilder = Callable[..., ClassLoss]
LOSSES: Registry[LossBuilder] = Registry("loss")
# For each loss, its options and the config fields that set them (`--focal-gamma`, ...).
LOSS_OPTIONS: dict[str, dict[str, str]] = {}


def register_loss(name: str, **config_fields: str) -> Callable[[LossBuilder], LossBuilder]:
    """Registers a loss builder `(class_counts, weight=None, **options)`; `config_fields` map
    its options to the config fields that set them."""
    LOSS_OPTIONS[name] = config_fields
    return LOSSES.register(name)


# Each loss class is its own builder, `(class_counts, weight=None, **options)`; the order
# is the one --help and the messages list them in.
register_loss("ce")(CrossEntropy)
register_loss("focal", gamma="focal_gamma")(FocalLoss)
register_loss("ldam", max_m="ldam_max_m", s="ldam_s")(LDAMLoss)


@register_loss("balanced_softmax")
def balanced_softmax(class_counts: Counts, weight: torch.Tensor | None = None) -> ClassLoss:
    """Ren et al.: the logit-adjusted loss at tau = 1."""
    return LogitAdjustedLoss(class_counts, weight, tau=1.0)


register_loss("logit_adjusted", tau="logit_tau")(LogitAdjustedLoss)
register_loss("vs", gamma="vs_gamma", tau="vs_tau")(VectorScalingLoss)


@register_loss("cdt", gamma="cdt_gamma", start_epoch="cdt_start_epoch")
def class_dependent_temperatures(
    class_counts: Counts,
    weight: torch.Tensor | None = None,
    gamma: float = 0.2,
    start_epoch: int = 0,
) -> ClassLoss:
    """Ye et al.: VS without its logit adjustment (gamma 0.2: BagofTricks-LT's)."""
    return VectorScalingLoss(class_counts, weight, gamma, tau=0.0, start_epoch=start_epoch)


register_loss("ib", alpha="ib_alpha", start_epoch="ib_start_epoch")(InfluenceBalancedLoss)
register_loss(
    "gcl", s="gcl_s", m="gcl_m", noise_mul="gcl_noise_mul", gamma="gcl_gamma", seed="seed"
)(GaussianCloudLoss)
register_loss("class_balanced_bce", beta="cb_bce_beta")(ClassBalancedBCE)


def simplest_loss(name: str, options: dict[str, float]) -> tuple[str, dict[str, float], str]:
    """The same loss in its simplest registered form, with the reason ('' when it is already
    simplest): the identities between the registered losses, so that two recipes that train
    the same loss under two names can be told apart from two experiments."""
    reasons: list[str] = []
    while True:
        simpler = _SIMPLER.get(name, lambda options: None)(options)
        if simpler is None:
            return name, options, "; ".join(reasons)
        reasons.append(f"{name} with {_listed(options)} is {simpler[0]}")
        name, options = simpler


def _listed(options: dict[str, float]) -> str:
    return ", ".join(f"{option} {value:g}" for option, value in options.items())


# name -> (options -> the simpler (name, options), or None where none is).
_SIMPLER: dict[str, Callable[[dict[str, float]], tuple[str, dict[str, float]] | None]] = {
    "focal": lambda o: ("ce", {}) if o["gamma"] == 0 else None,
    "logit_adjusted": lambda o: (
        ("balanced_softmax", {}) if o["tau"] == 1 else ("ce", {}) if o["tau"] == 0 else None
    ),
    "vs": lambda o: ("logit_adjusted", {"tau": o["tau"]}) if o["gamma"] == 0 else None,
    "cdt": lambda o: ("ce", {}) if o["gamma"] == 0 else None,
}


def build_loss(
    name: str, class_counts: Counts, weight: torch.Tensor | None = None, **options: float | int
) -> ClassLoss:
    """The loss `name` (ce, focal, ldam, balanced_softmax, logit_adjusted, vs, cdt, ib, gcl,
    class_balanced_bce) for these class counts, optionally weighted per class; called as
    `loss(logits, target)` (and `features=` for a loss that `wants_features`)."""
    builder = LOSSES[name]
    try:
        inspect.signature(builder).bind(class_counts, weight, **options)
    except TypeError:
        known = ", ".join(LOSS_OPTIONS[name]) or "none"
        raise ValueError(
            f"loss {name!r} takes the options {known}, got {', '.join(options)}"
        ) from None
    return builder(class_counts, weight, **options)
