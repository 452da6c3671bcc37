"""One way for every config to check itself (lean: standard library only).

A config is a frozen dataclass deriving from ``Checked``: ``problems()`` names each bad value, one line each, and a
config with any cannot be made. Construction, ``dataclasses.replace`` included, raises one ``InputError`` listing
them all, so every function that takes a config can rely on it.
"""

from __future__ import annotations

from mt5lite.errors import InputError


class Checked:
    """Base of the toolkit's config dataclasses: ``problems()`` is checked when an instance is made."""

    def problems(self) -> list[str]:
        """Every bad value, one line each (none by default); subclasses extend their base's list."""
        return []

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise InputError("; ".join(found))
