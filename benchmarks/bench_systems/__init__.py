"""The systems `make bench` compares, one registry entry each: how a system is built from a checkpoint, and how it
decodes.

A system builds its artifact once from the checkpoint (cached under the model's work folder) and is then loaded in
its own worker process (``bench_worker.py``), so no system's thread pool can slow another. Every runner decodes
token ids of the checkpoint's own sentencepiece model:

- ``forced(ids, new_tokens)``: exactly ``new_tokens`` greedy steps for a ``[B, S]`` batch (eos ignored, so every
  system does the same work); returns the seconds taken, encoder included;
- ``beams(ids, new_tokens, beams)``: beam search of a ``[1, S]`` input, at most ``new_tokens`` steps (a peer
  that can is held to exactly that many); returns the seconds taken, encoder included, and the steps run. A runner
  with no beam search has no ``beams`` and says why in ``no_beam_search``;
- ``greedy(text)``: natural greedy decoding of one input up to eos; returns the text (the quality columns).

A system that cannot run here raises ``Unavailable`` with a one-line reason; the table keeps its row. One module
per family: ``ours``, ``pytorch``, ``optimum``, ``ctranslate2``, ``llama_cpp``, ``openvino``.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mt5lite.registry import Registry

MAX_NEW_TOKENS = 64  # natural greedy decoding (quality): the demo task's targets are far shorter


class Unavailable(Exception):
    """This system cannot be built or run here; the message is the one-line reason."""


@dataclass(frozen=True)
class System:
    """One benchmarked system: who makes it, the bytes per weight its decoder step reads, and how it is built and
    loaded."""

    family: str  # the project or library: "ours", "PyTorch", "optimum-onnx", "CTranslate2"
    weight_bytes: float  # bytes per weight read by a decoder step (int8: 1, fp16: 2, fp32: 4)
    build: Callable[[Path, Path], Path]  # (checkpoint, work folder) -> artifact, built once
    load: Callable[[Path, int], object]  # (artifact, threads) -> runner with forced() and greedy()
    batched: bool = True  # False: batch-1 graphs (static shapes), no batch-8 row
    environment: str | None = None  # a peer environment of its own (``peer_envs.ENVIRONMENTS``); None: ours


SYSTEMS: Registry[System] = Registry("benchmark system")


def reason(exc: Exception) -> str:
    """An exception as the one-line reason a system's row carries."""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


#: What an artifact depends on besides its checkpoint: the toolkit's code (a bench must not time a stale export).
SOURCES = ("mt5lite", "exporters", "runtimes", "compression")
REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _source_hash() -> str:
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes())
    for path in sorted(f for folder in SOURCES for f in (REPO / folder).rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(checkpoint: Path) -> str:
    """What a built artifact was made from: the toolkit's code and the checkpoint's files (names, sizes, times)."""
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in Path(checkpoint).iterdir() if f.is_file())
    return hashlib.sha256(f"{_source_hash()} {files}".encode()).hexdigest()


def built(path: Path, make: Callable[[Path], None], checkpoint: Path) -> Path:
    """``path``, made by ``make(staging)`` (staged beside it, renamed when complete) unless it is there and was made
    from the same code and ``checkpoint`` (its ``.built-from`` stamp)."""
    stamp = fingerprint(checkpoint)
    if (path / ".built-from").is_file() and (path / ".built-from").read_text() == stamp:
        return path
    staging = path.with_name(f".{path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    make(staging)
    (staging / ".built-from").write_text(stamp)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return path


# Each family registers its systems (imported last: they build on the names above), ours first: the table's order.
# isort: off
from benchmarks.bench_systems import ours, pytorch, optimum, ctranslate2, llama_cpp, openvino  # noqa: E402, F401
# isort: on
