"""A tiny name → factory registry (timm's ``@register_model`` habit).

Each plug-in package owns one ``Registry`` and imports its members explicitly in ``__init__`` so
that registration happens on import. Keys are lowercase; duplicates are refused; an unknown key
raises ``KeyError`` listing the valid names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class Registry:
    """Maps lowercase names to classes or factory functions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        """Decorator: ``@REG.register("name")`` (defaults to the object's lowercased name)."""

        def deco(obj: Any) -> Any:
            key = (name or obj.__name__).lower()
            if key in self._items:
                raise ValueError(f"{self.kind} registry: '{key}' is already registered by "
                                 f"{self._items[key]!r}; pick another name")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str, /) -> Any:
        key = name.lower()
        if key not in self._items:
            raise KeyError(f"unknown {self.kind} '{name}'; valid names: {', '.join(self.names())}")
        return self._items[key]

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Instantiate ``name`` with explicit keyword arguments (never an argparse namespace)."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
