"""``manifest.json``: the contract between an export and every runtime (lean: standard library and numpy).

The exporter writes it; runtimes read every tensor name, shape, length and special id from it, and refuse files
whose sha256 does not match before any engine opens them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from mt5lite.contract import LENGTHS, name_problems, spec_problems
from mt5lite.errors import ModelFileError

MANIFEST_NAME = "manifest.json"
FORMAT = "mt5lite-export"
#: 2: every manifest names its ``engine`` (version 1 left ONNX Runtime implied). 3: weights stored once: an ONNX
#: graph lists its ``external_data`` files, and a TFLite graph names its ``signature`` in the one ``.tflite``.
FORMAT_VERSION = 3
REQUIRED_KEYS = ("format", "format_version", "engine", "export_id", "graphs", "files", "tokenizer", "special_tokens",
                 "max_source_length", "max_target_length", "vocab_size", "model")
#: What every graph entry names, whatever the engine (engines may need more, e.g. LiteRT a ``signature``).
GRAPH_KEYS = ("file", "inputs", "outputs")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def lfs_hint(path: Path) -> str:
    """A hint to add to an error about ``path`` when it is a Git LFS pointer file standing in for the real one
    (a clone without ``git lfs``); empty otherwise."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(LFS_POINTER))
    except OSError:
        return ""
    return "; it is a Git LFS pointer, not the file: fetch it with git lfs pull" if head == LFS_POINTER else ""


def inside(root: Path, name: str) -> Path:
    """``root / name``, refusing absolute names and names that escape ``root`` (``..``, symlinks)."""
    candidate = (root / name).resolve()
    if Path(name).is_absolute() or not candidate.is_relative_to(root.resolve()):
        raise ModelFileError(f"{root}: file name {name!r} points outside the model folder; refusing it")
    return candidate


def graph_files(manifest: dict, role: str) -> list[str]:
    """The files graph ``role`` of an export consists of: the graph, then the external-data files it points into
    (``weights.bin``, shared by both graphs of an ONNX export)."""
    graph = manifest["graphs"][role]
    return [graph["file"], *graph.get("external_data", [])]


def write_manifest(directory: Path, manifest: dict) -> Path:
    """Write ``manifest.json`` into ``directory``."""
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def seal_export(staging: Path, manifest: dict) -> dict:
    """Finish an export staged in ``staging``: ``manifest`` gets the sha256 of every file there (``files``) and is
    written beside them. Every exporter ends with it; returns the manifest."""
    staging = Path(staging)
    manifest["files"] = {path.name: sha256_file(path) for path in sorted(staging.iterdir())
                         if path.is_file() and path.name != MANIFEST_NAME}
    write_manifest(staging, manifest)
    return manifest


def copy_companions(source: Path, manifest: dict, staging: Path) -> list[str]:
    """Copy the files of the export ``source`` (its ``manifest``) that no graph consists of, the tokenizer's, into
    ``staging``, for an export made from it; their names."""
    in_graphs = {name for role in manifest["graphs"] for name in graph_files(manifest, role)}
    copied = [name for name in manifest["files"] if name not in in_graphs]
    for name in copied:
        shutil.copy2(inside(Path(source), name), Path(staging) / name)
    return copied


def load_manifest(directory: str | Path, verify_hashes: bool = True) -> dict:
    """Read and check ``manifest.json`` in ``directory``: its keys, that every file is there, inside the folder,
    and (by default) has the recorded sha256, and that the graphs name their tensors as the contract does.
    Raises ``ModelFileError`` naming each problem."""
    root = Path(directory)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ModelFileError(f"{root}: no such export directory")
    if not path.is_file():
        raise ModelFileError(f"{root}: no {MANIFEST_NAME}; is this an mt5lite export directory?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    header = manifest if isinstance(manifest, dict) else {}
    version = header.get("format_version")
    if header.get("format") == FORMAT and isinstance(version, int) and version > FORMAT_VERSION:  # before its keys
        raise ModelFileError(f"{path}: written by a newer mt5lite (format version {version}); this mt5lite reads "
                             f"version {FORMAT_VERSION}: upgrade mt5lite (pip install -U mt5lite)")
    missing = [key for key in REQUIRED_KEYS if key not in manifest] if isinstance(manifest, dict) else ["all"]
    if missing:
        raise ModelFileError(f"{path}: missing keys {', '.join(missing)}; re-export the model")
    if manifest["format"] != FORMAT or version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format {manifest['format']!r} version {manifest['format_version']!r}; "
                             f"this runtime reads {FORMAT!r} version {FORMAT_VERSION}; re-export the model")
    graphs = manifest["graphs"] if isinstance(manifest["graphs"], dict) else {}
    unnamed = [f"graphs.{role}: no {key!r}" for role, graph in graphs.items() if isinstance(graph, dict)
               for key in GRAPH_KEYS if key not in graph]
    tokenizer = manifest["tokenizer"].get("file") if isinstance(manifest["tokenizer"], dict) else None
    if not isinstance(manifest["files"], dict) or tokenizer not in manifest["files"]:
        unnamed.append(f"the tokenizer file {tokenizer!r} is not among the hashed files")
    if unnamed:
        raise ModelFileError(f"{path}: " + "; ".join(unnamed) + "; re-export the model")
    named = name_problems(manifest["graphs"])
    contract = named or spec_problems(manifest["graphs"], {k: manifest[k] for k in LENGTHS})
    if contract:
        raise ModelFileError(f"{path}: " + "; ".join(f"graphs: {problem}" for problem in contract)
                             + "; re-export the model")
    problems = []
    for name, expected in manifest["files"].items():
        file = inside(root, name)
        if not file.is_file():
            problems.append(f"{name}: missing")
        elif verify_hashes and sha256_file(file) != expected:
            problems.append(f"{name}: sha256 does not match the manifest (truncated, modified, or from another "
                            f"export){lfs_hint(file)}")
    if problems:
        raise ModelFileError(f"{root}: " + "; ".join(problems))
    return manifest
