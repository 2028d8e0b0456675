"""Optimisers, keyed by the config's `optimizer`: sgd, and sam (Foret et al.; the long-tail
form of Rangwani et al., NeurIPS 2022, SPEC section 8.1).

Every optimiser is stepped the same way, with a closure that zeroes the gradients, computes
the loss, calls `backward()` and returns the loss, as torch's closure optimisers (LBFGS) take
it: `loss = optimizer.step(closure)`. SGD calls it once; SAM twice. The training loop so names
no optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import torch

from ltfast.registry import Registry

if TYPE_CHECKING:
    from ltfast.config import TrainConfig

Closure = Callable[[], torch.Tensor]


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


def step(optimizer: torch.optim.Optimizer, closure: Closure) -> torch.Tensor:
    """`optimizer.step(closure)`, the closure's loss returned (torch types it as a float)."""
    return cast(torch.Tensor, optimizer.step(cast(Callable[[], float], closure)))


def _sgd_options(config: TrainConfig) -> dict[str, Any]:
    return {"lr": config.lr, "momentum": config.momentum, "nesterov": config.nesterov}


# An optimiser builder: (parameter groups, config) -> the optimiser.
OPTIMIZERS: Registry[Callable[[list[dict], TrainConfig], torch.optim.Optimizer]] = Registry(
    "optimizer"
)
OPTIMIZERS.register("sgd")(lambda groups, config: torch.optim.SGD(groups, **_sgd_options(config)))
OPTIMIZERS.register("sam")(
    lambda groups, config: SAM(groups, rho=config.sam_rho, **_sgd_options(config))
)
