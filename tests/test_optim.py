"""SAM and ImbSAM against hand-written references of the field's loops, MaxNorm against its
definition, and the optimiser registry."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltfast.config import TrainConfig
from ltfast.optim import OPTIMIZERS, SAM, ImbSAM, MaxNorm, step, tail_classes

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
    assert set(OPTIMIZERS) == {"sgd", "sam", "imbsam"}
    groups = [{"params": small_model().parameters(), "weight_decay": 2e-4}]
    config = TrainConfig(optimizer="sam", sam_rho=0.8, nesterov=True)
    sam = OPTIMIZERS["sam"](groups, config, [5, 1, 1])
    assert isinstance(sam, SAM) and sam.param_groups[0]["rho"] == 0.8
    assert sam.param_groups[0]["nesterov"] and sam.param_groups[0]["weight_decay"] == 2e-4


# ----- ImbSAM -------------------------------------------------------------------------------

TAIL = torch.tensor([False, True, True])  # classes 1 and 2: the tail


def reference_imbsam_steps(model: nn.Module, steps: int, rho: float, **sgd) -> None:
    """ImbSAM's `trainval.py` ('imbsam') with its `imbsam.py`, written out: per-sample CE;
    the head part sum / B backward (graph kept), g_h saved, gradients zeroed; the tail part
    2 sum / B backward; w + rho g_t / (||g_t|| + 1e-16); a second forward over the whole
    batch, its tail part backward; w - e; g += g_h; SGD's step."""
    base = torch.optim.SGD(model.parameters(), **sgd)
    params = list(model.parameters())
    for i in range(steps):
        x, y = X[8 * i : 8 * i + 8], Y[8 * i : 8 * i + 8]
        tail = TAIL[y]
        base.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        (losses * ~tail).sum().div(len(y)).backward(retain_graph=True)
        head = [p.grad.clone() for p in params]
        base.zero_grad()
        (2 * (losses * tail).sum() / len(y)).backward()
        norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in params]), p=2)
        moves = [p.grad * rho / (norm + 1e-16) for p in params]
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                p.add_(e)
        base.zero_grad()
        again = F.cross_entropy(model(x), y, reduction="none")
        (2 * (again * tail).sum() / len(y)).backward()
        with torch.no_grad():
            for p, e, g in zip(params, moves, head, strict=True):
                p.sub_(e)
                p.grad.add_(g)
        base.step()


def imbsam_closure(model, optimizer, x, y):
    def closure(class_scales=None):
        optimizer.zero_grad()
        logits = model(x)
        if class_scales is None:
            loss = F.cross_entropy(logits, y)
            loss.backward()
            return loss
        losses = F.cross_entropy(logits, y, reduction="none")
        return torch.stack([(losses * scale[y]).mean() for scale in class_scales])

    return closure


@pytest.mark.parametrize("sgd", [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}])
def test_imbsam_equals_its_loop_weight_for_weight(sgd):
    ours, reference = small_model(), small_model()
    optimizer = ImbSAM(ours.parameters(), TAIL, rho=0.5, **sgd)
    losses = []
    for i in range(6):
        x, y = X[8 * i : 8 * i + 8], Y[8 * i : 8 * i + 8]
        losses.append(float(step(optimizer, imbsam_closure(ours, optimizer, x, y))))
    reference_imbsam_steps(reference, steps=6, rho=0.5, **sgd)
    for (name, a), b in zip(
        ours.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert int(ours[1].num_batches_tracked) == 12  # BatchNorm moved on both forward passes
    first = F.cross_entropy(small_model()(X[:8]), Y[:8]).detach()
    assert losses[0] == pytest.approx(float(first))


def test_imbsams_tail_is_the_classes_below_eta():
    counts = [500, 100, 20, 19, 5]
    assert tail_classes(counts, 20).tolist() == [False, False, False, True, True]
    config = TrainConfig(optimizer="imbsam", sam_rho=0.05, imbsam_eta=20)
    built = OPTIMIZERS["imbsam"]([{"params": small_model().parameters()}], config, counts)
    assert isinstance(built, ImbSAM)
    assert built.scales.tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 2, 2]]


# ----- MaxNorm ------------------------------------------------------------------------------


def test_max_norm_thresholds_from_the_starting_rows_and_projects_only_longer_rows():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [0.0, 2.0]])  # norms 5 1 10 2
    max_norm = MaxNorm(weight, 0.1)
    assert max_norm.threshold == pytest.approx(1 + 0.1 * (10 - 1))  # 1.9
    weight.mul_(1.0)  # training moves the rows; the threshold stays
    max_norm.project_()
    norms = weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.tensor([1.9, 1.0, 1.9, 1.9]))
    torch.testing.assert_close(weight[0] / norms[0], torch.tensor([0.6, 0.8]))  # direction kept
    again = MaxNorm(torch.ones(4, 2), 0.5)
    again.load_state_dict(max_norm.state_dict())
    assert again.threshold == max_norm.threshold
    with pytest.raises(ValueError, match="fraction must be in"):
        MaxNorm(weight, 1.5)
    with pytest.raises(ValueError, match="2-D classifier weight"):
        MaxNorm(torch.ones(3), 0.1)


def test_imbsam_refuses_distributed_training(tmp_path):
    """Its two backward passes through one forward pass would break DDP's gradient sync."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        with pytest.raises(ValueError, match="train it in one process"):
            ImbSAM(small_model().parameters(), TAIL, rho=0.05, lr=0.1)
    finally:
        dist.destroy_process_group()
