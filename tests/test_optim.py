"""SAM against a hand-written two-pass reference, and the optimiser registry."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltfast.config import TrainConfig
from ltfast.optim import OPTIMIZERS, SAM, step

generator = torch.Generator().manual_seed(0)
X = torch.randn(64, 8, generator=generator)
Y = torch.randint(0, 3, (64,), generator=generator)


def small_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def reference_sam_steps(model: nn.Module, steps: int, rho: float, **sgd) -> None:
    """SADDLE's loop with davda54's sam.py, written out: loss and gradient at w; the norm of
    every gradient; w + rho g / (||g|| + 1e-12); loss and gradient there (both passes in train
    mode); w restored; torch's SGD steps with the second gradient."""
    base = torch.optim.SGD(model.parameters(), **sgd)
    params = [p for p in model.parameters()]
    for i in range(steps):
        x, y = X[8 * i : 8 * i + 8], Y[8 * i : 8 * i + 8]
        base.zero_grad()
        F.cross_entropy(model(x), y).backward()
        norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in params]), p=2)
        old = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.add_(p.grad * (rho / (norm + 1e-12)))
        base.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p, o in zip(params, old, strict=True):
                p.copy_(o)
        base.step()


def sam_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    losses = []
    for i in range(steps):
        x, y = X[8 * i : 8 * i + 8], Y[8 * i : 8 * i + 8]

        def closure(x=x, y=y):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(float(step(optimizer, closure).detach()))
    return losses


@pytest.mark.parametrize("sgd", [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9, "weight_decay": 2e-4}])
def test_sam_equals_the_two_pass_reference_weight_for_weight(sgd):
    ours, reference = small_model(), small_model()
    sam_steps(ours, SAM(ours.parameters(), rho=0.5, **sgd), steps=6)
    reference_sam_steps(reference, steps=6, rho=0.5, **sgd)
    for (name, a), b in zip(
        ours.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    # BatchNorm's running statistics moved on both passes: 12 updates in 6 steps.
    assert int(ours[1].num_batches_tracked) == 12


def test_sam_returns_the_first_pass_loss_and_needs_a_closure():
    model = small_model()
    optimizer = SAM(model.parameters(), rho=0.1, lr=0.1)
    first = F.cross_entropy(copy.deepcopy(model)(X[:8]), Y[:8]).detach()
    assert sam_steps(model, optimizer, 1)[0] == pytest.approx(float(first))
    with pytest.raises(ValueError, match="SAM needs a closure"):
        optimizer.step()
    with pytest.raises(ValueError, match="rho must be >= 0"):
        SAM(model.parameters(), rho=-1.0, lr=0.1)


def test_sam_checkpoints_sgds_momentum():
    model = small_model()
    optimizer = SAM(model.parameters(), rho=0.1, lr=0.1, momentum=0.9)
    sam_steps(model, optimizer, 2)
    state = optimizer.state_dict()
    assert all("momentum_buffer" in s for s in state["state"].values())
    again = SAM(model.parameters(), rho=0.1, lr=0.1, momentum=0.9)
    again.load_state_dict(state)
    for p in model.parameters():
        assert torch.equal(
            again.base.state[p]["momentum_buffer"], optimizer.base.state[p]["momentum_buffer"]
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(again, lambda epoch: 0.5)
    assert scheduler.get_last_lr() == [0.05] and again.base.param_groups[0]["lr"] == 0.05


def test_optimizers_are_registered_by_the_configs_names():
    assert set(OPTIMIZERS) == {"sgd", "sam"}
    groups = [{"params": small_model().parameters(), "weight_decay": 2e-4}]
    sam = OPTIMIZERS["sam"](groups, TrainConfig(optimizer="sam", sam_rho=0.8, nesterov=True))
    assert isinstance(sam, SAM) and sam.param_groups[0]["rho"] == 0.8
    assert sam.param_groups[0]["nesterov"] and sam.param_groups[0]["weight_decay"] == 2e-4
