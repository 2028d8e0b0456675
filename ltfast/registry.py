"""Registries of builders keyed by the config's strings: a new loss, model, sampler or dataset
is one function and one `@REGISTRY.register("name")`, never an edit of the training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Builder = TypeVar("Builder", bound=Callable)


class Registry(Generic[Builder]):
    """Named builders of one kind of part ("loss", "model", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Builder] = {}

    def register(self, name: str) -> Callable[[Builder], Builder]:
        def add(builder: Builder) -> Builder:
            if name in self._builders:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return add

    def __getitem__(self, name: str) -> Builder:
        if name not in self._builders:
            raise ValueError(f"{self.kind} must be one of {', '.join(self)}, got {name!r}")
        return self._builders[name]

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)
