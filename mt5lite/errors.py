"""Typed errors. Libraries raise them; the CLI turns them into one-line messages and exit code 2.

This module has no dependencies, so the lean runtimes import it too.
"""

from __future__ import annotations

import errno

#: errno -> what the user can do about it, for the system errors a command meets writing its output.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space, or write the output elsewhere",
    errno.EDQUOT: "free some space, or write the output elsewhere",
    errno.EROFS: "choose a writable output directory",
    errno.EACCES: "check the permissions, or choose another directory",
    errno.EPERM: "check the permissions, or choose another directory",
}


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): what a one-line error
    quotes of an engine's or a library's own error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def os_error_line(exc: OSError) -> str:
    """A system error (disk full, read-only or forbidden path, ...) as one line: the path when known, the reason,
    and the fix for the ones a user can fix."""
    where = f"{exc.filename}: " if exc.filename else ""
    fix = OS_ERROR_FIXES.get(exc.errno)
    return f"{where}{(exc.strerror or first_line(exc)).lower()}" + (f"; {fix}" if fix else "")


class Mt5LiteError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InputError(Mt5LiteError, ValueError):
    """Bad user input: empty or over-long text, invalid UTF-8, a malformed data file, a bad option value."""


class UnknownNameError(InputError, KeyError):
    """A name that no registry entry has (an engine, a recipe, a precision, a node group, an op); the message
    lists the known names. A ``KeyError`` too, so registries behave as mappings."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(Mt5LiteError):
    """A model directory that is missing, incomplete, unsafe to load or not a T5/mT5 checkpoint."""


class ModelFileError(Mt5LiteError):
    """An exported model file that is missing, unreadable, truncated or does not belong to its manifest."""


class QualityGateError(Mt5LiteError):
    """A derived export (int8, fp16) that misses the quality gate against the fp32 export it was made from; the
    export is kept for inspection and ``report`` holds the comparison."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class ParityError(Mt5LiteError):
    """Exported outputs differ from PyTorch beyond the tolerance; one line per output with the numbers."""

    def __init__(self, stage: str, rows: list[dict], reference: str = "PyTorch"):
        self.stage = stage
        self.rows = rows
        lines = [f"{stage}: outputs differ from {reference} beyond the tolerance"]
        for row in rows:
            verdict = "ok" if row["max_abs_diff"] <= row["tolerance"] else "FAIL"  # NaN fails
            lines.append(f"  {row['output']}: shape {row['shape']}, max |diff| {row['max_abs_diff']:.3g} "
                         f"(tolerance {row['tolerance']:.2e}) {verdict}")
        super().__init__("\n".join(lines))
