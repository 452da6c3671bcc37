"""Export a T5/mT5 checkpoint as the contract's two ONNX graphs, validate them, and write the export atomically.

Pipeline (one function, readable top to bottom): load -> trace both graphs -> check (ONNX checker with full shape
inference) -> stamp metadata -> copy the tokenizer -> manifest with hashes -> validate against PyTorch -> rename
into place. Nothing is written at the output path unless every step passed.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mt5lite import __version__, contract
from mt5lite.checked import Checked
from mt5lite.contract import GraphSpec
from mt5lite.exporters.result import ExportResult
from mt5lite.manifest import Manifest, ModelDims, SpecialTokens, TokenizerFile, sha256_file

TWO_GB = 2**31
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def length_problems(max_source_length: int, max_target_length: int, validate_samples: int) -> list[str]:
    """What is wrong with an export's lengths and validation sample count (every export config has them)."""
    problems = []
    if max_source_length < 2:
        problems.append(f"max_source_length must be at least 2, got {max_source_length}")
    if max_target_length < 1:
        problems.append(f"max_target_length must be at least 1, got {max_target_length}")
    if validate_samples < 1:
        problems.append(f"validate_samples must be at least 1, got {validate_samples}")
    return problems


@dataclass(frozen=True)
class OnnxExportConfig(Checked):
    """What to export and how to check it."""

    max_source_length: int = 128  # S: longest input in tokens (eos included); fixed in static graphs
    max_target_length: int = 64  # T_max: positions in the self-attention cache
    static_shapes: bool = False  # batch 1 and S fixed, for TFLite; otherwise batch and S are dynamic
    opset: int = 17
    validate_samples: int = 16  # held-out multilingual inputs compared with PyTorch before the export is kept
    atol: float = 1e-4  # max |difference| allowed on logits and encoder outputs (fp32) ...
    # ... plus rtol x the output's largest |value|: about 32 fp32 ulps, the floor of two fp32 implementations.
    # Measured on a random model of mt5-small's shape (logits up to 135): PyTorch fp32 itself is 1.3e-4 from fp64.
    rtol: float = 4e-6
    external_data_bytes: int = TWO_GB  # weights at least this large go to one external-data file beside the graph
    # static_shapes: the further batch sizes the decoder step is exported at (decoder_b4.onnx: beam search's 4
    # beams in one call instead of 4), each sharing every weight with the batch-1 step
    decoder_batches: tuple[int, ...] = (4,)
    # static_shapes: the shorter source lengths the graphs are exported at too (encoder_s16, decoder_s16, ...), so a
    # short input does not pay for S positions; None: 16 and 32, those below max_source_length
    source_buckets: tuple[int, ...] | None = None

    def problems(self) -> list[str]:
        """Every bad value."""
        from mt5lite.exporters.onnx.batched import batch_problems
        from mt5lite.exporters.onnx.buckets import bucket_problems

        problems = length_problems(self.max_source_length, self.max_target_length, self.validate_samples)
        problems += batch_problems(self.decoder_batches)
        problems += bucket_problems(self.source_buckets or (), self.max_source_length)
        if not 11 <= self.opset <= 21:
            problems.append(f"opset must be between 11 and 21, got {self.opset}")
        return problems


def graph_specs(model_config, config, files: dict[str, str] | None = None) -> dict[str, GraphSpec]:
    """Names, dtypes and shapes of both graphs of ``model_config``'s export (``mt5lite.contract``): ``config`` gives
    the lengths and ``static_shapes`` (an ``OnnxExportConfig`` or any export config with them), ``files`` each
    graph's file (default: the ONNX export's)."""
    dims = contract.ContractDims(
        layers=model_config.num_decoder_layers, heads=model_config.num_heads, d_kv=model_config.d_kv,
        d_model=model_config.d_model, vocab_size=model_config.vocab_size,
        max_source_length=config.max_source_length, max_target_length=config.max_target_length,
        static_shapes=config.static_shapes)
    return contract.graph_specs(dims, files or {"encoder": ENCODER_FILE, "decoder": DECODER_FILE})


def _dynamic_axes(spec: GraphSpec) -> dict:
    return {t.name: {axis: dim for axis, dim in enumerate(t.shape) if isinstance(dim, str)}
            for t in spec.tensors.values()}


def sample_inputs(spec: GraphSpec, pad_id: int = 0) -> tuple:
    """Zero-filled example inputs for tracing (symbolic dims set to 2); ``position`` is 0, ids are ``pad_id``."""
    import torch

    def make(t):
        shape = [2 if isinstance(d, str) else d for d in t.shape]
        dtype = torch.int64 if t.dtype == "int64" else torch.float32
        if t.name.endswith("attention_mask"):
            return torch.ones(shape, dtype=dtype)
        return torch.full(shape, pad_id, dtype=dtype) if dtype == torch.int64 else torch.zeros(shape, dtype=dtype)

    return tuple(make(t) for t in spec.inputs)


def _export_graph(module, spec: GraphSpec, path: Path, config: OnnxExportConfig, metadata: dict[str, str],
                  fingerprints: dict[tuple, str]) -> None:
    """Trace ``module`` into ``path``, name its weight nodes after their modules, stamp ``metadata_props``, and
    check the result with full shape inference. Weights reaching ``config.external_data_bytes`` (2 GB by default,
    protobuf's limit) are saved to ``<graph>.data`` beside it; ``store_once`` then moves every weight to the
    export's shared ``weights.bin``."""
    import onnx
    import torch

    from mt5lite.exporters.onnx.node_names import name_nodes_by_parameter
    from mt5lite.staging import scratch_directory

    with scratch_directory(path, "trace") as scratch:
        traced = scratch / path.name  # torch scatters > 2 GB weights into one file per tensor beside it
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
            torch.onnx.export(
                module, sample_inputs(spec), str(traced), dynamo=False, opset_version=config.opset,
                input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
                dynamic_axes=_dynamic_axes(spec) or None, do_constant_folding=True,
            )
        model = onnx.load(str(traced), load_external_data=True)
    name_nodes_by_parameter(model.graph, fingerprints)
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    if sum(t.ByteSize() for t in model.graph.initializer) >= config.external_data_bytes:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def export_onnx(model_dir: str | os.PathLike, output_dir: str | os.PathLike, config: OnnxExportConfig | None = None,
                force: bool = False, allow_pickle: bool = False, progress: bool = False) -> ExportResult:
    """Export ``model_dir`` into ``output_dir`` (encoder.onnx, decoder.onnx, tokenizer, manifest.json).

    Raises ``InputError`` for bad options or an existing output without ``force``, ``CheckpointError`` for a bad
    checkpoint and ``ParityError`` when ONNX Runtime and PyTorch disagree beyond ``atol + rtol * max |reference|``.
    Returns the manifest together with the validation numbers.
    """
    from mt5lite.checkpoint import inspect_checkpoint, load_model
    from mt5lite.exporters.graphs import DecoderStepGraph, EncoderGraph
    from mt5lite.exporters.onnx.batched import write_batched_decoders
    from mt5lite.exporters.onnx.buckets import chosen_buckets, traced_constants, write_source_buckets
    from mt5lite.exporters.onnx.node_names import parameter_fingerprints
    from mt5lite.exporters.onnx.shared_weights import store_once
    from mt5lite.exporters.validation import validate_export
    from mt5lite.exporters.writer import ExportWriter

    config = config or OnnxExportConfig()
    writer = ExportWriter(output_dir, force, scratch=())
    files = inspect_checkpoint(model_dir, allow_pickle=allow_pickle)
    model = load_model(files.root, allow_pickle=allow_pickle)
    specs = graph_specs(model.config, config)
    export_id = uuid.uuid4().hex
    metadata = {
        "mt5lite.export_id": export_id, "mt5lite.version": __version__,
        "mt5lite.max_source_length": str(config.max_source_length),
        "mt5lite.max_target_length": str(config.max_target_length),
        "mt5lite.vocab_size": str(model.config.vocab_size), "mt5lite.precision": "fp32",
        "mt5lite.pad_id": "0", "mt5lite.eos_id": str(model.config.eos_token_id),
        "mt5lite.decoder_start_id": str(model.config.decoder_start_token_id),
    }

    with writer:
        staging = writer.staging
        steps = [("encoder", EncoderGraph(model).eval()),
                 ("decoder", DecoderStepGraph(model, config.max_target_length).eval())]
        fingerprints = parameter_fingerprints(model)
        for role, module in _progress(steps, progress, "exporting graphs"):
            path = staging / specs[role].file
            _export_graph(module, specs[role], path, config, {**metadata, "mt5lite.graph": role}, fingerprints)
        weights = store_once(staging, [ENCODER_FILE, DECODER_FILE])  # a weight both graphs use is stored once
        specs = {role: replace(spec, external_data=(weights["file"],)) for role, spec in specs.items()}
        if config.static_shapes:  # the decoder step at the further batch sizes, pointing into the same weights
            specs = write_batched_decoders(staging, specs, config.decoder_batches)
            # ... and every graph at the shorter source lengths (the decoder step's are its inputs' alone)
            buckets = chosen_buckets(config.source_buckets, config.max_source_length)
            constants = {bucket: {"encoder": traced_constants(dict(steps)["encoder"], specs["encoder"], bucket,
                                                              staging / ENCODER_FILE, config.opset), "decoder": {}}
                         for bucket in _progress(buckets, progress and bool(buckets), "source-length buckets")}
            specs = write_source_buckets(staging, specs, constants)
        copy_tokenizer(files.root, staging)
        manifest = checkpoint_manifest(files, model, "onnxruntime", export_id, config, staging, specs)
        writer.seal(replace(manifest, opset=config.opset, weights=weights))
        writer.validation = validate_export(model, staging, config, progress=progress)
    return writer.result()


def copy_tokenizer(checkpoint: Path, staging: Path) -> list[str]:
    """Copy the checkpoint's tokenizer files (those it has of ``TOKENIZER_FILES``) into ``staging``; their names."""
    copied = [name for name in TOKENIZER_FILES if (checkpoint / name).is_file()]
    for name in copied:
        shutil.copy2(checkpoint / name, staging / name)
    return copied


def checkpoint_manifest(files, model, engine: str, export_id: str, config, staging: Path,
                        graphs: dict[str, GraphSpec]) -> Manifest:
    """The manifest of an export of a checkpoint, whatever its engine: source, lengths, model shape, tokenizer (its
    piece count read from ``staging``), special ids, ``graphs`` and the export's ``config`` (a dataclass with
    ``max_source_length``, ``max_target_length`` and ``static_shapes``). The caller adds its weights; sealing adds
    the file hashes."""
    from mt5lite.runtimes.tokenizer import Tokenizer

    dims = ModelDims(**{name: getattr(model.config, name) for name in ModelDims.__dataclass_fields__})
    return Manifest(
        engine=engine, export_id=export_id, graphs=graphs, toolkit_version=__version__,
        source={"checkpoint": files.root.name, "model_type": model.config.model_type, "family": files.family,
                "config_sha256": sha256_file(files.root / "config.json")},
        static_shapes=config.static_shapes, max_source_length=config.max_source_length,
        max_target_length=config.max_target_length, vocab_size=model.config.vocab_size, model=dims,
        tokenizer=TokenizerFile("spiece.model", Tokenizer(staging / "spiece.model").piece_count),
        special_tokens=SpecialTokens(0, model.config.eos_token_id, model.config.decoder_start_token_id),
        export_config=asdict(config))


def _progress(items, enabled: bool, description: str):
    from tqdm import tqdm

    return tqdm(items, desc=description, disable=not enabled, unit="graph")
