"""Write an export directory atomically: build it in a hidden sibling, rename it into place only on success."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mt5lite.errors import InputError


def refuse_existing(output: Path, force: bool) -> None:
    """``InputError`` when ``output`` exists and ``force`` is not given."""
    if output.exists() and not force:
        raise InputError(f"{output} already exists; use --force to overwrite it")


@contextmanager
def staged_directory(output: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``output``; when the block succeeds, replace ``output`` with it
    (only with ``force`` if ``output`` exists). On any failure, or interruption, the staging directory is removed
    and ``output`` is left as it was."""
    output = Path(output)
    refuse_existing(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; an export is for everyone to read
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
