"""Optimisers, keyed by the config's `optimizer`: sgd, sam (Foret et al.; the long-tail form
of Rangwani et al., NeurIPS 2022, SPEC section 8.1) and imbsam (Zhou et al., ICCV 2023, SPEC
section 8.2); and MaxNorm, Weight Balancing's projection of the classifier's rows (SPEC 8.13).

Every optimiser is stepped the same way, with a closure that zeroes the gradients, computes
the loss, calls `backward()` and returns the loss, as torch's closure optimisers (LBFGS) take
it: `loss = optimizer.step(closure)`. SGD calls it once; SAM twice. A closure called with
`class_scales`, a (K, C) tensor, instead returns K losses from one forward pass, not yet
differentiated: loss k scales each sample's loss by row k's entry for its label (ImbSAM's
head and tail losses). The training loop so names no optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ltfast.registry import Registry

if TYPE_CHECKING:
    from ltfast.config import TrainConfig

Closure = Callable[..., torch.Tensor]  # () -> the loss, differentiated; (class_scales) -> K losses


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation around SGD, as the field's `sam.py` (davda54's, used by
    SADDLE) computes it. `step(closure)`: the closure's gradient g at w; e = rho * g /
    (||g|| + 1e-12), the norm over every parameter with a gradient (BatchNorm's affine ones
    too; with `adaptive`, ASAM's |w|-scaled form); w + e; the closure again (BatchNorm's
    running statistics update on both passes, as there); w restored exactly; then SGD's step
    with the gradient taken at w + e, its weight decay on w. Returns the first pass's loss.

    `sgd_options` are torch.optim.SGD's (lr, momentum, weight_decay, nesterov, ...)."""

    def __init__(
        self,
        params: Iterable[Any],
        rho: float = 0.05,
        adaptive: bool = False,
        **sgd_options: Any,
    ):
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        super().__init__(params, {"rho": rho, "adaptive": adaptive, **sgd_options})
        self.base = torch.optim.SGD(self.param_groups, **sgd_options)
        self.param_groups = self.base.param_groups  # one set: a scheduler's lr reaches both

    def _grad_norm(self) -> torch.Tensor:
        norms = [
            ((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        return torch.norm(torch.stack(norms), p=2)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("SAM needs a closure: it evaluates the loss twice per step")
        with torch.enable_grad():
            loss = closure()
        scale_of = self._grad_norm().add(1e-12).reciprocal()
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        for group in self.param_groups:
            scale = group["rho"] * scale_of
            for p in group["params"]:
                if p.grad is None:
                    continue
                saved.append((p, p.detach().clone()))
                p.add_((p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p))
        with torch.enable_grad():
            closure()
        for p, original in saved:
            p.copy_(original)
        self.base.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        # SGD's momentum buffers are the base's state: a resume needs them, not the
        # perturbation (rebuilt every step).
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups


class ImbSAM(SAM):
    """ImbSAM (its `imbsam.py` with the loop of its `trainval.py`): from one forward pass at w,
    the head classes' loss sum_{i not in T} l_i / B and the tail classes' 2 sum_{i in T} l_i / B
    (the x2 of its current code), each differentiated on its own: g_h and g_t. Then w + e with
    e = rho * g_t / (||g_t|| + 1e-16); the tail loss and its gradient again at w + e, from a
    forward pass over the whole batch (BatchNorm's statistics update on both passes, as
    there); w - e (a subtraction, as its code does: w is back to within rounding); and SGD's
    step with g_h(w) + g_tail(w + e). `tail` marks the tail classes (C,) bool: ImbSAM's are
    those with fewer than eta = 20 training images. Returns the plain loss at w."""

    def __init__(
        self,
        params: Iterable[Any],
        tail: torch.Tensor,
        rho: float = 0.05,
        **sgd_options: Any,
    ):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            raise ValueError(
                "optimizer imbsam differentiates one forward pass twice, which "
                "DistributedDataParallel's gradient sync does not allow: train it in one process"
            )
        super().__init__(params, rho=rho, **sgd_options)
        tail = torch.as_tensor(tail, dtype=torch.bool)
        self.scales = torch.stack([(~tail).float(), 2.0 * tail.float()])  # head, tail rows

    def _gradients(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [(p, p.grad) for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("ImbSAM needs a closure: it evaluates the loss twice per step")
        with torch.enable_grad():
            head_loss, tail_loss = closure(self.scales)
            head_loss.backward(retain_graph=True)
            head_gradients = self._gradients()
            for p, _ in head_gradients:
                p.grad = None
            tail_loss.backward()
        norm = self._grad_norm()
        moved: list[tuple[torch.Tensor, torch.Tensor]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * (group["rho"] / (norm + 1e-16)).to(p)
                p.add_(e)
                moved.append((p, e))
        with torch.enable_grad():
            perturbed = closure(self.scales[1:])[0]
            for p, _ in head_gradients:
                p.grad = None
            perturbed.backward()
        for p, e in moved:
            p.sub_(e)
        for p, head_gradient in head_gradients:
            if head_gradient is not None:
                p.grad = head_gradient if p.grad is None else p.grad.add_(head_gradient)
        self.base.step()
        return (head_loss + tail_loss / 2).detach()


class MaxNorm:
    """Weight Balancing's MaxNorm by projected gradient descent (`MaxNorm_via_PGD` of its
    `regularizers.py`): a threshold t = min_j ||w_j|| + fraction (max_j ||w_j|| - min_j ||w_j||)
    over the rows w_j of `weight` (one class each) as it is at construction, and
    `project_()`, which rescales every row longer than t to length t. Biases are never
    projected. The threshold is state: a resumed run restores it (`state_dict`)."""

    def __init__(self, weight: torch.Tensor, fraction: float):
        if not 0 <= fraction <= 1:
            raise ValueError(f"MaxNorm's fraction must be in [0, 1], got {fraction}")
        if weight.ndim != 2:
            raise ValueError(
                f"MaxNorm projects the rows of a 2-D classifier weight, got shape "
                f"{tuple(weight.shape)}"
            )
        self.weight = weight
        norms = weight.detach().norm(dim=1)
        self.threshold = float(norms.min() + fraction * (norms.max() - norms.min()))

    @torch.no_grad()
    def project_(self) -> None:
        norms = self.weight.norm(dim=1, keepdim=True)
        self.weight.mul_(torch.where(norms > self.threshold, self.threshold / norms, 1.0))

    def state_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.threshold = float(state["threshold"])


def step(optimizer: torch.optim.Optimizer, closure: Closure) -> torch.Tensor:
    """`optimizer.step(closure)`, the closure's loss returned (torch types it as a float)."""
    return cast(torch.Tensor, optimizer.step(cast(Callable[[], float], closure)))


def _sgd_options(config: TrainConfig) -> dict[str, Any]:
    return {"lr": config.lr, "momentum": config.momentum, "nesterov": config.nesterov}


def tail_classes(class_counts: Any, eta: int) -> torch.Tensor:
    """ImbSAM's tail classes: those with fewer than `eta` training images, (C,) bool."""
    return torch.as_tensor(np.asarray(class_counts)) < eta


# An optimiser builder: (parameter groups, config, the training set's class counts) -> the
# optimiser.
OptimizerBuilder = Callable[[list[dict], "TrainConfig", Any], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
OPTIMIZERS.register("sgd")(
    lambda groups, config, counts: torch.optim.SGD(groups, **_sgd_options(config))
)
OPTIMIZERS.register("sam")(
    lambda groups, config, counts: SAM(groups, rho=config.sam_rho, **_sgd_options(config))
)
OPTIMIZERS.register("imbsam")(
    lambda groups, config, counts: ImbSAM(
        groups,
        tail_classes(counts, config.imbsam_eta),
        rho=config.sam_rho,
        **_sgd_options(config),
    )
)
