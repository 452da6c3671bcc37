"""A small registry: named entries of one kind, where an unknown name is an error that lists the known ones.

Engines, quantization recipes, TFLite precisions, node groups and ONNX -> TensorFlow ops each live in one, so that
adding one is one entry, and everything about a key lives in that entry (no parallel tables, no ``if key is``
chains).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from mt5lite.errors import UnknownNameError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name, in registration order; ``registry[name]`` raises ``UnknownNameError`` (an ``InputError``)
    listing the known names."""

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (a name may be registered once)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
