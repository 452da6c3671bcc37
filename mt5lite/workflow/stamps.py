"""What makes a pipeline stage reusable: a key hashed from its options, the content of the files it reads, the
keys of the stages it builds on and the toolkit's own code; kept in a stamp written once the stage is complete.

A stage whose stamp holds the same key, and whose outputs all exist, is reused; anything else runs again. A stamp
is written atomically after the stage's outputs, so a run killed at any point leaves either a complete stage with
its stamp or one that is redone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from mt5lite.reports import atomic_write

#: Where the stamps live, inside the pipeline's output directory.
STAMP_DIR = ".pipeline"


#: The subpackages whose folders may lie outside ``mt5lite/`` (a checkout maps them from the top level).
MAPPED_PACKAGES = ("mt5lite", "mt5lite.exporters", "mt5lite.runtimes", "mt5lite.compression")


@functools.cache
def code_hash() -> str:
    """sha256 of the toolkit's Python files, wherever the import system finds each subpackage (a wheel puts them
    all under ``mt5lite/``, a checkout maps some from the top level): new code rebuilds every stage."""
    import importlib.util

    files = set()
    for package in MAPPED_PACKAGES:
        for folder in importlib.util.find_spec(package).submodule_search_locations:
            files.update(path.resolve() for path in Path(folder).rglob("*.py"))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _file_hash(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(path: str | os.PathLike) -> str:
    """sha256 over a file's bytes, or over a folder's files (relative names and bytes; hidden files left out)."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return _file_hash(path.resolve(), stat.st_size, stat.st_mtime_ns)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts)):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + content_hash(file).encode())
    return digest.hexdigest()


def stage_key(stage: str, options: dict, inputs: dict[str, str]) -> str:
    """The key of one stage: its name, options, input hashes (files' contents, upstream stages' keys) and the
    code."""
    payload = {"stage": stage, "options": options, "inputs": inputs, "code": code_hash()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def stamp_path(output: Path, stage: str) -> Path:
    """Where stage ``stage``'s stamp is kept."""
    return Path(output) / STAMP_DIR / f"{stage}.json"


def read_stamp(output: Path, stage: str) -> dict | None:
    """The stamp of ``stage`` (its key, outputs, seconds and summary), or None when there is none readable."""
    try:
        return json.loads(stamp_path(output, stage).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(output: Path, stage: str, stamp: dict) -> None:
    """Record a completed stage (written to a temporary name, then renamed: never half a stamp)."""
    atomic_write(stamp_path(output, stage), json.dumps(stamp, indent=2, default=str))


def forget(output: Path, stage: str) -> None:
    """Remove ``stage``'s stamp (before it runs again: a kill while it runs must not leave the old stamp beside
    new, partial outputs)."""
    stamp_path(output, stage).unlink(missing_ok=True)
