"""Name -> component registries with one lookup and one error wording, shared by every component.

Registration is by decorator (the way ``torch.distributions.register_kl`` works), so
adding a component never touches an if/elif chain. Every unknown name, in every registry,
is refused with the same sentence: ``unknown <kind> 'name'; valid: a, b, c``; every unknown
option with ``<kind> 'name' takes no option 'x'; its options: ...``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(MutableMapping, Generic[T]):
    """Maps names to components (classes or functions); ``build`` checks options against the signature.

    ``kind`` names the registry in messages ("latent family", "objective.estimator").
    Names are listed sorted, or in registration order with ``ordered=True`` (where the
    order means something, e.g. baselines from none to the most elaborate).
    """

    def __init__(self, kind: str, ordered: bool = False):
        self.kind, self.ordered = kind, ordered
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if inspect.isclass(item):
                item.name = name  # type: ignore[attr-defined]
            self._items[name] = item
            return item

        return deco

    def names(self) -> list[str]:
        return list(self._items) if self.ordered else sorted(self._items)

    def lookup(self, name: str) -> T:
        """The component registered as ``name``; ConfigError (one line) for any other name."""
        if not isinstance(name, str) or name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._items[name]

    def options(self, name: str) -> dict[str, Any]:
        """Keyword options the component takes beyond the positional ones, with defaults."""
        item = self.lookup(name)
        target: Any = item.__init__ if inspect.isclass(item) else item
        params = inspect.signature(target).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}

    def build(self, name: str, *args: Any, **options: Any) -> T:
        """Call the component with ``options``, refusing (one line) an option it does not take."""
        valid = self.options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            listed = ", ".join(sorted(valid)) or "none"
            raise ConfigError(f"{self.kind} {name!r} takes no option {unknown[0]!r}; its options: {listed}")
        return self.lookup(name)(*args, **options)  # type: ignore[operator]

    # the mapping protocol: a registry reads like the dict it is
    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __setitem__(self, name: str, item: T) -> None:
        self._items[name] = item

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
