"""Write an export directory atomically: build it in a hidden sibling, rename it into place only on success.

Every hidden directory a run makes beside its output (``.NAME.KIND-<random>``: the staging directory, scratch) has
a sibling ``.owner`` file naming the process that made it (pid and start time). A run killed with SIGKILL cannot
remove them; the next run on the same output does (``sweep``), leaving those of live runs alone.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mt5lite.errors import InputError


def refuse_existing(output: Path, force: bool) -> None:
    """``InputError`` when ``output`` exists and ``force`` is not given."""
    if output.exists() and not force:
        raise InputError(f"{output} already exists; use --force to overwrite it")


#: A hidden directory with no owner file (made by an older version, or killed before its owner was written) is swept
#: once it is this old.
UNOWNED_STALE_S = 600


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (/proc), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _alive(owner: str) -> bool:
    """Whether the process an owner file names (``"pid start"``) still runs: the pid alone could be reused."""
    pid, _, start = owner.partition(" ")
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        return True
    now = _start_time(int(pid))
    return now is None or now == start


def _owner_file(directory: Path) -> Path:
    return directory.with_name(directory.name + ".owner")


def sweep(output: str | os.PathLike) -> list[Path]:
    """Remove the hidden directories beside ``output`` that runs on it left when they were killed (their owner
    process is gone); returns them."""
    output = Path(output)
    removed = []
    for path in output.parent.glob(f".{glob.escape(output.name)}.*-*"):
        if not path.is_dir():
            continue
        try:
            owner = _owner_file(path).read_text(encoding="utf-8")
        except OSError:
            owner = None
        stale = (not _alive(owner)) if owner else time.time() - path.stat().st_mtime > UNOWNED_STALE_S
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            _owner_file(path).unlink(missing_ok=True)
            removed.append(path)
    return removed


def hidden_directory(output: str | os.PathLike, kind: str) -> Path:
    """A new empty hidden directory beside ``output`` (``.NAME.KIND-<random>``) owned by this process; the caller
    removes it, with ``remove_hidden``."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)  # an output in a folder not made yet
    path = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.{kind}-"))
    _owner_file(path).write_text(f"{os.getpid()} {_start_time(os.getpid())}", encoding="utf-8")
    return path


def remove_hidden(path: Path) -> None:
    """Remove a ``hidden_directory`` (if still there) and its owner file."""
    shutil.rmtree(path, ignore_errors=True)
    _owner_file(path).unlink(missing_ok=True)


@contextmanager
def scratch_directory(output: str | os.PathLike, kind: str = "scratch") -> Iterator[Path]:
    """A ``hidden_directory`` beside ``output`` for the block's scratch files, removed when the block ends."""
    path = hidden_directory(output, kind)
    try:
        yield path
    finally:
        remove_hidden(path)


@contextmanager
def staged_directory(output: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``output``; when the block succeeds, replace ``output`` with it
    (only with ``force`` if ``output`` exists). On any failure, or interruption, the staging directory is removed
    and ``output`` is left as it was."""
    output = Path(output)
    refuse_existing(output, force)
    sweep(output)  # what killed runs on this output left
    staging = hidden_directory(output, "tmp")  # makes the output's folder if need be
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; an export is for everyone to read
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
        _owner_file(staging).unlink(missing_ok=True)
    except BaseException:
        remove_hidden(staging)
        raise
