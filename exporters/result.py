"""What every exporter returns: the export it wrote, its sealed manifest, the validation numbers, the gate's verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mt5lite.manifest import Manifest


@dataclass(frozen=True)
class Validation:
    """An export checked against its source on held-out text, per output compared."""

    samples: int
    rows: tuple[Mapping[str, Any], ...]  # per output: ``output``, ``max_abs_diff``, ``tolerance``
    languages: tuple[str, ...] = ()
    checked_against_tolerance: bool = True  # False: reduced precision, numbers reported and the gate judges

    @property
    def max_abs_diff(self) -> float:
        """The largest |difference| over every output."""
        return max(row["max_abs_diff"] for row in self.rows)


@dataclass(frozen=True)
class ExportResult:
    """One export, written and checked. The CLI and the reports format it; nothing here is printed."""

    path: Path  # the export directory, in place
    manifest: Manifest  # as sealed into ``path``
    validation: Validation | None = None  # against the source (None: judged by the gate instead)
    gate: Mapping[str, Any] | None = None  # the quality gate's report (``passed``, ``failures``, report paths)
    details: Mapping[str, Any] = field(default_factory=dict)  # the exporter's own facts (quantize: graph summary)

    @property
    def gate_passed(self) -> bool | None:
        """Whether the gate passed (None when no gate judged the export)."""
        return None if self.gate is None else bool(self.gate["gate"]["passed"])
