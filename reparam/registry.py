"""A tiny name -> class registry with option validation, shared by latents and likelihoods.

Registration is by decorator (the way ``torch.distributions.register_kl`` works), so
adding a component never touches an if/elif chain.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to constructors; ``build`` checks options against the signature."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def lookup(self, name: str) -> type[T]:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._items[name]

    def options(self, name: str) -> dict[str, Any]:
        """Keyword options the component takes beyond the positional ones, with defaults."""
        params = inspect.signature(self.lookup(name).__init__).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}

    def build(self, name: str, *args: Any, **options: Any) -> T:
        valid = self.options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            listed = ", ".join(sorted(valid)) or "none"
            raise ConfigError(
                f"{self.kind} {name!r} takes no option {unknown[0]!r}; its options: {listed}"
            )
        return self.lookup(name)(*args, **options)
