"""What runs at the end of each training pass, before the evaluation: EPOCH_END_HOOKS, builders
keyed by name that return a hook for the run, or None where its config does not ask for one.
Weight Balancing's MaxNorm projection is one (its code projects once an epoch, after the
training pass). A hook keeps in `state_dict` what a resumed run needs to go on exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

from ltfast.models import LongTailNet
from ltfast.optim import MaxNorm
from ltfast.registry import Registry

if TYPE_CHECKING:
    from ltfast.config import TrainConfig


class EpochEndHook(Protocol):
    def after_training(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


EPOCH_END_HOOKS: Registry[Callable[[LongTailNet, TrainConfig], EpochEndHook | None]] = Registry(
    "epoch-end hook"
)


class MaxNormProjection:
    """`--max-norm FRACTION`: the classifier's rows projected onto MaxNorm's ball after each
    training pass, the threshold taken from the classifier the run starts with (Weight
    Balancing's stage 2: the stage-1 classifier)."""

    def __init__(self, model: LongTailNet, fraction: float):
        if not isinstance(model.classifier, nn.Linear):
            raise ValueError(
                f"max_norm projects the rows of a linear classifier, not a "
                f"{type(model.classifier).__name__}"
            )
        self.max_norm = MaxNorm(model.classifier.weight, fraction)

    def after_training(self, epoch: int) -> None:
        self.max_norm.project_()

    def state_dict(self) -> dict[str, Any]:
        return self.max_norm.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_norm.load_state_dict(state)


@EPOCH_END_HOOKS.register("max_norm")
def _max_norm(model: LongTailNet, config: TrainConfig) -> EpochEndHook | None:
    return None if config.max_norm is None else MaxNormProjection(model, config.max_norm)


def build_epoch_end_hooks(model: LongTailNet, config: TrainConfig) -> dict[str, EpochEndHook]:
    """The hooks this run's config asks for, by name."""
    built = {name: EPOCH_END_HOOKS[name](model, config) for name in EPOCH_END_HOOKS}
    return {name: hook for name, hook in built.items() if hook is not None}
