"""``manifest.json``: the contract between an export and every runtime (lean: standard library and numpy).

The exporter writes it; runtimes read every tensor name, shape, length and special id from it, and refuse files
whose sha256 does not match before any engine opens them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mt5lite.contract import (
    LENGTHS,
    ROLES,
    GraphSpec,
    Role,
    batch_axis,
    contract_dtype,
    decoder_batches,
    graph_names,
    length_axis,
    parse_role,
    role_kind,
    source_axis,
    source_buckets,
)
from mt5lite.errors import ModelFileError, first_line

MANIFEST_NAME = "manifest.json"
FORMAT = "mt5lite-export"
#: 2: every manifest names its ``engine`` (version 1 left ONNX Runtime implied). 3: weights stored once: an ONNX
#: graph lists its ``external_data`` files, and a TFLite graph names its ``signature`` in the one ``.tflite``. 4: the
#: decoder step takes its cross K/V and cache one layer per input (``cross_k_0``; ``mt5lite.contract``).
FORMAT_VERSION = 4
REQUIRED_KEYS = ("format", "format_version", "engine", "export_id", "graphs", "files", "tokenizer", "special_tokens",
                 "max_source_length", "max_target_length", "vocab_size", "model")
#: What every graph entry names, whatever the engine (engines may need more, e.g. LiteRT a ``signature``).
GRAPH_KEYS = ("file", "inputs", "outputs")


@dataclass(frozen=True)
class SpecialTokens:
    """The ids the host feeds and stops on."""

    pad: int
    eos: int
    decoder_start: int


@dataclass(frozen=True)
class TokenizerFile:
    """The export's sentencepiece model and its piece count."""

    file: str
    pieces: int | None = None


@dataclass(frozen=True)
class ModelDims:
    """The source checkpoint's sizes, as its ``config.json`` gives them."""

    d_model: int
    d_kv: int
    d_ff: int
    num_heads: int
    num_layers: int
    num_decoder_layers: int
    feed_forward_proj: str
    tie_word_embeddings: bool


@dataclass(frozen=True)
class Quantization:
    """What a quantized export's recipe did: the fields every recipe records, and the recipe's own (``details``)."""

    recipe: str
    source_export_id: str | None = None  # the fp32 export it was made from
    quantized_nodes: Mapping[str, int] = field(default_factory=dict)  # per graph
    calibration: Mapping[str, Any] | None = None  # the draw: file, samples per language, steps, masking constants
    outliers: Mapping[str, Any] | None = None  # what the outlier step smoothed, rotated or kept wide
    details: Mapping[str, Any] = field(default_factory=dict)  # the recipe's own fields (method, activations, ...)

    @property
    def masking_constants(self) -> dict[str, dict]:
        """Full int8: the attention-mask constant chosen per graph from calibration (empty otherwise)."""
        return dict((self.calibration or {}).get("masking_constants", {}))

    @property
    def calibration_languages(self) -> list[str]:
        """The languages the calibration draw covered (empty without calibration)."""
        return sorted((self.calibration or {}).get("languages", {}))

    @classmethod
    def from_dict(cls, block: dict) -> Quantization:
        """The block a manifest's JSON records."""
        known = {"recipe", "source_export_id", "quantized_nodes", "calibration", "outliers"}
        return cls(block["recipe"], block.get("source_export_id"), dict(block.get("quantized_nodes") or {}),
                   block.get("calibration"), block.get("outliers"),
                   {key: value for key, value in block.items() if key not in known})

    def to_dict(self) -> dict:
        """The manifest's JSON block."""
        return {"recipe": self.recipe, "source_export_id": self.source_export_id,
                "quantized_nodes": dict(self.quantized_nodes), **self.details,
                **({"calibration": self.calibration} if self.calibration is not None else {}),
                **({"outliers": self.outliers} if self.outliers is not None else {})}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` parsed: what an export is, the contract's graphs, and the sha256 of every file.

    Exporters build one and seal it (``seal_export``); runtimes get one from ``load_manifest``. The record blocks
    (``source``, ``export_config``, ``weights``, ``engine_info``) are kept as written; what the toolkit reads from
    them has a property here."""

    engine: str
    export_id: str
    graphs: Mapping[str, GraphSpec]
    tokenizer: TokenizerFile
    special_tokens: SpecialTokens
    max_source_length: int
    max_target_length: int
    vocab_size: int
    model: ModelDims
    precision: str = "fp32"
    quantization: Quantization | None = None
    static_shapes: bool = False
    files: Mapping[str, str] = field(default_factory=dict)  # name -> sha256, filled by seal_export
    toolkit_version: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict)  # the checkpoint it came from
    export_config: Mapping[str, Any] = field(default_factory=dict)  # the export's config, as given
    opset: int | None = None  # ONNX
    weights: Mapping[str, Any] = field(default_factory=dict)  # the weight file and how it is shared
    engine_info: Mapping[str, Any] = field(default_factory=dict)  # the engine's own block (``tflite``, ...)

    @property
    def batch_size(self) -> int | None:
        """1 for a static-shape export, None when the batch is symbolic."""
        return 1 if self.static_shapes else None

    @property
    def decoder_batches(self) -> dict[int, str]:
        """The batch sizes the decoder steps serve, each with its graph's role: ``{1: "decoder"}``, plus the
        batched steps (``decoder_b4``: beam search's 4 beams in one call) of a static export that has them; empty
        for a dynamic export (any batch)."""
        return decoder_batches(self.graphs) if self.static_shapes else {}

    @property
    def further_batches(self) -> list[int]:
        """The batch sizes of a static export's batched decoder steps (``decoder_b4``: 4), beyond batch 1."""
        return [batch for batch in self.decoder_batches if batch > 1]

    @property
    def source_lengths(self) -> list[int]:
        """The source lengths a static export's graphs take, ascending: its source-length buckets (``encoder_s16``
        and the decoder steps over 16 positions), then ``max_source_length``; empty for a dynamic export."""
        return [*source_buckets(self.graphs), self.max_source_length] if self.static_shapes else []

    def role_at(self, kind: str, batch: int = 1, source: int | None = None) -> str:
        """The role of the graph of ``kind`` at ``batch`` over ``source`` positions (None or ``max_source_length``:
        the full length), ``KeyError`` when the export has no such graph."""
        role = Role(kind, batch, None if source == self.max_source_length else source).name
        if role not in self.graphs:
            raise KeyError(role)
        return role

    @property
    def weights_file(self) -> str | None:
        """The file holding the weights (shared by both graphs)."""
        return self.weights.get("file")

    @property
    def weights_bytes(self) -> int:
        """Bytes of weights the export stores."""
        return int(self.weights.get("bytes", self.weights.get("buffer_bytes", 0)))

    @property
    def shared_weights(self) -> tuple[int, int]:
        """TFLite: ``(buffers, bytes)`` stored once for both signatures."""
        return int(self.weights.get("shared_buffers", 0)), int(self.weights.get("shared_bytes", 0))

    @property
    def engine_ops(self) -> dict[str, Any]:
        """Per graph, what the engine runs: TFLite's op names per signature, ExecuTorch's per-method facts."""
        return dict(self.engine_info.get("ops") or self.engine_info.get("methods") or {})

    @property
    def tolerance(self) -> tuple[float | None, float | None]:
        """``(atol, rtol)`` the export was validated with, when its config gives them."""
        return self.export_config.get("atol"), self.export_config.get("rtol")

    @property
    def output_shapes(self) -> dict[str, tuple]:
        """Every graph output's shape by name."""
        return {t.name: t.shape for graph in self.graphs.values() for t in graph.outputs}

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        """The manifest a checked JSON object describes (``load_manifest`` checks it first)."""
        engine_block = ENGINE_BLOCKS.get(data["engine"])
        quantization = data.get("quantization")
        return cls(
            engine=data["engine"], export_id=data["export_id"],
            graphs={role: GraphSpec.from_dict(graph) for role, graph in data["graphs"].items()},
            tokenizer=TokenizerFile(data["tokenizer"]["file"], data["tokenizer"].get("pieces")),
            special_tokens=SpecialTokens(**data["special_tokens"]),
            max_source_length=int(data["max_source_length"]), max_target_length=int(data["max_target_length"]),
            vocab_size=int(data["vocab_size"]), model=ModelDims(**data["model"]),
            precision=data.get("precision", "fp32"),
            quantization=Quantization.from_dict(quantization) if quantization else None,
            static_shapes=bool(data.get("static_shapes")), files=dict(data["files"]),
            toolkit_version=data.get("toolkit_version"), source=data.get("source") or {},
            export_config=data.get("export_config") or {}, opset=data.get("opset"),
            weights=data.get("weights") or {}, engine_info=data.get(engine_block) or {} if engine_block else {})

    def to_dict(self) -> dict:
        """The JSON object ``manifest.json`` holds."""
        data = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "engine": self.engine, "export_id": self.export_id,
            "toolkit_version": self.toolkit_version, "source": dict(self.source), "precision": self.precision,
            "quantization": self.quantization.to_dict() if self.quantization else None,
            "static_shapes": self.static_shapes, "batch_size": self.batch_size,
            "max_source_length": self.max_source_length, "max_target_length": self.max_target_length,
            "vocab_size": self.vocab_size, "model": asdict(self.model), "tokenizer": asdict(self.tokenizer),
            "special_tokens": asdict(self.special_tokens), "export_config": dict(self.export_config),
        }
        if self.opset is not None:
            data["opset"] = self.opset
        data["graphs"] = {role: graph.to_dict() for role, graph in self.graphs.items()}
        data["weights"] = dict(self.weights)
        data["files"] = dict(self.files)
        if ENGINE_BLOCKS.get(self.engine):
            data[ENGINE_BLOCKS[self.engine]] = dict(self.engine_info)
        return data


#: The key of each engine's own block in ``manifest.json``.
ENGINE_BLOCKS = {"litert": "tflite", "executorch": "executorch"}


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


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``directory``."""
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def seal_export(staging: Path, manifest: Manifest) -> Manifest:
    """Finish an export staged in ``staging``: ``manifest`` with the sha256 of every file there (``files``),
    written beside them. Every exporter ends with it; returns the sealed manifest."""
    staging = Path(staging)
    files = {path.name: sha256_file(path) for path in sorted(staging.iterdir())
             if path.is_file() and path.name != MANIFEST_NAME}
    sealed = replace(manifest, files=files)
    write_manifest(staging, sealed)
    return sealed


def copy_companions(source: Path, manifest: Manifest, staging: Path) -> list[str]:
    """Copy the files of the export ``source`` (its ``manifest``) that no graph consists of, the tokenizer's, into
    ``staging``, for an export made from it; their names."""
    in_graphs = {name for graph in manifest.graphs.values() for name in graph.files}
    copied = [name for name in manifest.files if name not in in_graphs]
    for name in copied:
        shutil.copy2(inside(Path(source), name), Path(staging) / name)
    return copied


def load_manifest(directory: str | Path, verify_hashes: bool = True) -> Manifest:
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
    model = manifest["model"] if isinstance(manifest["model"], dict) else {}
    named = _name_problems(manifest["graphs"], model.get("num_decoder_layers"))
    contract = named or _spec_problems(manifest["graphs"], {k: manifest[k] for k in LENGTHS})
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
    try:
        return Manifest.from_dict(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: malformed entry ({first_line(exc)}); re-export the model") from None


def _name_problems(graphs: dict, layers) -> list[str]:
    """How a manifest's ``graphs`` differ from the contract's tensor names (empty when they match): both roles
    present, no unknown role, every graph (a batched decoder step too) naming the tensors of its kind over the
    model's ``layers`` decoder layers."""
    graphs = graphs if isinstance(graphs, dict) else {}
    layers = layers if isinstance(layers, int) and layers > 0 else 0
    problems = [f"no {role} graph" for role in ROLES if not isinstance(graphs.get(role), dict)]
    for role, spec in graphs.items():
        kind = role_kind(role)
        if kind is None:
            problems.append(f"unknown graph {role!r} (the contract's are {', '.join(ROLES)}, decoder_bN, "
                            "encoder_sN, decoder_sN and decoder_bN_sN)")
            continue
        if not isinstance(spec, dict):
            problems += [] if role in ROLES else [f"{role} is not a graph entry"]
            continue
        for part, expected in zip(("inputs", "outputs"), graph_names(kind, layers), strict=True):
            found = [t.get("name") for t in spec.get(part, []) if isinstance(t, dict)]
            if sorted(found) != sorted(expected):
                problems.append(f"{role} {part} are {found}, the contract's are {list(expected)}")
    return problems


def _spec_problems(graphs: dict, lengths: dict) -> list[str]:
    """How a manifest's tensor entries (``graphs``, names already checked) disagree with the contract: a dtype
    other than the contract's, a shape that is not a list of sizes or names, a length the host builds its feeds
    from (``lengths``: ``max_target_length``, ``vocab_size``, ``max_source_length``) that the shapes contradict, a
    batched decoder step (``decoder_bN``) whose batch axes are not N, a source-length bucket (``encoder_sN``)
    whose source axes are not N or not shorter than ``max_source_length``, or one without each full-length graph
    (``decoder_b4`` -> ``decoder_b4_s16``)."""
    parsed = {role: parse_role(role) for role in graphs}
    problems = []
    for bucket in sorted({found.source for found in parsed.values() if found.source}):
        missing = [Role(found.kind, found.batch, bucket).name for found in parsed.values() if found.source is None
                   and Role(found.kind, found.batch, bucket).name not in graphs]
        problems += [f"source-length bucket {bucket} has no {', '.join(missing)}"] if missing else []
    for role, found in parsed.items():
        if found.source is not None and not (isinstance(lengths.get("max_source_length"), int)
                                             and found.source < lengths["max_source_length"]):
            problems.append(f"{role} is a source-length bucket not shorter than max_source_length "
                            f"({lengths.get('max_source_length')!r})")
        for entry in graphs[role]["inputs"] + graphs[role]["outputs"]:
            name, shape = entry["name"], entry.get("shape")
            dtype = contract_dtype(name)
            if entry.get("dtype") != dtype:
                problems.append(f"{role} {name} has dtype {entry.get('dtype')!r}, the contract's is {dtype!r}")
            if not isinstance(shape, list) or not all(isinstance(d, (int, str)) for d in shape):
                problems.append(f"{role} {name} has shape {shape!r}, not a list of sizes and names")
                continue
            axis, key = length_axis(name)
            size = shape[axis] if axis is not None and len(shape) > axis else None
            bucketed = found.source is not None and key == "max_source_length"  # checked as a source length below
            if isinstance(size, int) and size != lengths.get(key) and not bucketed:
                problems.append(f"{role} {name} has {size} along axis {axis}, but {key} is {lengths.get(key)!r}")
            for what, axis, size in (("batch", batch_axis(name), found.batch if found.batch > 1 else None),
                                     ("source length", source_axis(name), found.source)):
                if size is not None and axis is not None and shape[axis:axis + 1] != [size]:
                    problems.append(f"{role} {name} has shape {shape}, not {what} {size} along axis {axis}")
    return problems
