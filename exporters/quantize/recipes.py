"""Quantize an fp32 mt5lite ONNX export into a new export under the same contract.

Recipes (``RECIPES``):

- ``static-int8``: int8 weights and uint8 activations whose ranges are calibrated on real multilingual inputs,
  the encoder on tokenized samples and the decoder-step graph on steps captured while the fp32 export decodes
  them. Which node groups are quantized comes from the sensitivity analysis (``exporters.quantize.sensitivity``).
- ``dynamic-int8``: int8 weights, activations quantized on the fly (their ranges are not calibrated).
- ``weight-int8``: the MatMuls' weights in int8 blocks of 128 input channels, each block with its own scale, run
  by ONNX Runtime's ``MatMulNBits``: kernels made for one-row products, the decoder step's case; the activations
  are quantized per block inside the kernel (accuracy level 4). Embedding lookups as in ``dynamic-int8``. On
  mt5-small's shape it decodes 1.4x faster than ``static-int8`` (README, "Quantization").
- ``fp16``: fp16 weights and compute, with the FFN output projections (``wo``) and the layer norms kept in fp32,
  where mT5's activations overflow fp16.

Every recipe has an outlier step (``QuantRecipe.outlier_step``), measured on the calibration draw: int8 recipes
smooth activation outliers into the weights and keep wide what int8 still cannot hold
(``mt5lite.exporters.quantize.outliers.step``), and give a lookup table with outlier columns a range per column
(``mt5lite.exporters.quantize.gather_rows.columns_where_better``); fp16 scales the residual stream into its range
(``mt5lite.exporters.quantize.outliers.residual_scale``). ``--no-smooth`` / ``--no-keep-wide`` turn them off.

Pipeline: check options -> read the fp32 export (hashes verified) -> capture calibration feeds -> the outlier step
(smoothed fp32 graphs in scratch, checked against the originals) -> quantize each graph -> copy the tokenizer ->
manifest naming the recipe and what the outlier step did -> rename into place. Nothing is written at the output
path unless every step passed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

from mt5lite.checked import Checked
from mt5lite.contract import ROLES
from mt5lite.errors import InputError
from mt5lite.exporters.onnx.batched import write_batched_decoders
from mt5lite.exporters.onnx.buckets import recorded_constants, write_source_buckets
from mt5lite.exporters.onnx.probe import load_with_weights
from mt5lite.exporters.onnx.shared_weights import store_once
from mt5lite.exporters.quantize.calibration import CalibrationDraw, FeedReader
from mt5lite.exporters.quantize.fuse_products import fuse_parallel_products
from mt5lite.exporters.quantize.gather_rows import columns_where_better, gather_then_dequantize
from mt5lite.exporters.quantize.outliers.residual_scale import scale_residual
from mt5lite.exporters.quantize.outliers.step import ErrorModel, smoothing
from mt5lite.exporters.result import ExportResult
from mt5lite.exporters.writer import ExportWriter
from mt5lite.manifest import Manifest, Quantization, inside, load_manifest
from mt5lite.registry import Registry
from mt5lite.staging import scratch_directory
from mt5lite.verification.comparison import Gate


class Method(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Format(str, Enum):
    QDQ = "qdq"
    QOPERATOR = "qoperator"


#: Every group that holds weights: what both int8 recipes quantize by default.
WEIGHT_GROUPS = ("embeddings", "lm_head", "attention_qkv", "attention_out", "ffn_in", "ffn_out")
#: The static recipe's groups, chosen from the sensitivity analysis on the demo model (README, "Quantization"):
#: each weight group alone keeps greedy agreement 1.000 (mean relative logit error 0.007-0.039) and together they
#: cut the size to 27%; quantizing the softmax breaks decoding (agreement 0.06: its input spans the -1e9 mask);
#: layer norms and activation x activation MatMuls are harmless but save no bytes, so they stay in float.
DEFAULT_STATIC_GROUPS = WEIGHT_GROUPS
#: Node-name patterns fp16 keeps in fp32: every FFN output projection and every layer-norm op.
FP16_KEEP_FP32 = ("*DenseReluDense.wo*", "*layer_norm*")


@dataclass(frozen=True)
class QuantizeConfig(Checked):
    """How to quantize an export."""

    recipe: str = "static-int8"  # a key of RECIPES
    method: Method = Method.MINMAX  # static: how activation ranges are calibrated
    per_channel: bool = True  # one weight scale per output channel instead of one per tensor
    format: Format = Format.QDQ  # QDQ: Q/DQ pairs around float ops (ORT fuses them); QOperator: QLinear* ops
    groups: tuple[str, ...] | None = None  # node groups to quantize (None: the recipe's default)
    exclude: tuple[str, ...] = ()  # glob patterns of node names left in float
    calibration: Path = field(default=CalibrationDraw.file)  # lang<TAB>text or task-pair TSV
    samples: int = CalibrationDraw.samples  # calibration samples, balanced across languages
    max_decoder_steps: int = CalibrationDraw.max_decoder_steps  # captured decoder-step feeds kept for calibration
    seed: int = CalibrationDraw.seed
    smooth: bool = True  # the outlier step: smoothing and per-column lookups (int8), residual scaling (fp16)
    keep_wide: bool = True  # int8: products int8 cannot hold (measured on the calibration draw) stay wide

    def problems(self) -> list[str]:
        """Every bad value (the calibration draw's included)."""
        from mt5lite.exporters.quantize.groups import group_problems

        problems = [] if self.recipe in RECIPES else [f"unknown recipe {self.recipe!r}; known: {', '.join(RECIPES)}"]
        for name, kind in (("method", Method), ("format", Format)):
            value = getattr(self, name)
            if value not in {k.value for k in kind}:
                problems.append(f"unknown {name} {value!r}; choose from {', '.join(k.value for k in kind)}")
        problems += CalibrationDraw.draw_problems(self.max_decoder_steps)
        return problems + (group_problems(self.groups) if self.groups is not None else [])

    @property
    def draw(self) -> CalibrationDraw:
        """The calibration data this config captures."""
        return CalibrationDraw(Path(self.calibration), self.samples, self.max_decoder_steps, self.seed)

    @property
    def chosen_groups(self) -> tuple[str, ...]:
        """The groups this config quantizes (empty for a recipe that does not work by groups)."""
        return tuple(self.groups) if self.groups is not None else RECIPES[self.recipe].default_groups


def quantize_export(export_dir: str | os.PathLike, output_dir: str | os.PathLike,
                    config: QuantizeConfig | None = None, force: bool = False, progress: bool = False,
                    calibration=None, gate: Gate | bool = True) -> ExportResult:
    """Quantize the fp32 export in ``export_dir`` into ``output_dir`` with ``config``'s recipe, then judge it
    against ``export_dir`` by ``gate`` (``resolve_gate``: ``True`` is the default gate, enforced, raising
    ``QualityGateError`` with the export kept for inspection; ``False`` skips it; the report is under ``"gate"``).
    ``calibration`` (``calibration_for``) reuses captured feeds, as the sensitivity analysis does; by default they
    are drawn and captured here. Raises ``InputError`` for bad options, too little calibration data or an existing
    output without ``force``, ``ModelFileError`` for a broken or non-fp32 export. Returns the new manifest and what
    was quantized."""
    config = config or QuantizeConfig()
    recipe = RECIPES[config.recipe]
    source = Path(export_dir)
    manifest = _fp32_source(source, Path(output_dir))
    writer = ExportWriter(output_dir, force, gate, scratch=("calibration", "smoothed"))
    writer.reference = source
    with writer:
        staging, feeds_dir, smoothed_dir = writer.staging, writer.scratch["calibration"], writer.scratch["smoothed"]
        if not (recipe.calibrated or recipe.outlier_step):
            calibration = None
        elif calibration is None:  # captured feeds on disk beside the output (mt5-small's decoder steps: 2.4 GB)
            calibration = calibration_for(source, config, progress, store=Path(feeds_dir))
        files = {role: inside(source, manifest.graphs[role].file) for role in ROLES}
        outliers = None
        if recipe.outlier_step:  # int8: smoothed into the weights, what int8 cannot hold kept wide; fp16: scaled
            outliers = recipe.outlier_step(files, {role: getattr(calibration, role).feeds for role in ROLES}, config,
                                           Path(smoothed_dir), manifest.model)
        export_id = uuid.uuid4().hex
        summary = {}
        for role in ROLES:
            feeds = None if calibration is None else getattr(calibration, role)
            if outliers is not None and feeds is not None and role == "decoder":
                feeds = FeedReader(outliers.decoder_feeds(feeds.feeds))
            wide = tuple(outliers.kept_wide[role]) if outliers is not None else ()
            summary[role] = _quantize_graph(outliers.files[role] if outliers else files[role],
                                            staging / files[role].name, config, feeds, wide,
                                            {"mt5lite.export_id": export_id, "mt5lite.precision": recipe.precision,
                                             "mt5lite.recipe": config.recipe})
        if not any(s["quantized_nodes"] for s in summary.values()):
            raise InputError(f"nothing to quantize: no node of groups {', '.join(config.chosen_groups)} is left "
                             f"after --exclude {' '.join(config.exclude) or '(none)'}")
        weights = store_once(staging, [files[role].name for role in ROLES])
        quantization = Quantization(
            config.recipe, manifest.export_id, {role: s["quantized_nodes"] for role, s in summary.items()},
            None if calibration is None else calibration.describe(config.calibration, config.seed),
            None if outliers is None else outliers.report(),
            {**dict.fromkeys(("method", "per_channel", "format", "groups", "kept_fp32")), **recipe.describe(config),
             "exclude": list(config.exclude),
             "lookups": {role: s["lookups"] for role, s in summary.items() if s["lookups"]}})
        graphs = {role: replace(graph, external_data=(weights["file"],)) for role, graph in manifest.graphs.items()}
        # The source's batched decoder steps and source-length buckets, again from the quantized graphs
        graphs = write_batched_decoders(staging, graphs, manifest.further_batches)
        graphs = write_source_buckets(staging, graphs, recorded_constants(source, manifest.graphs))
        writer.seal(replace(manifest, graphs=graphs, weights=weights, export_id=export_id,
                            precision=recipe.precision, quantization=quantization), companions_of=(source, manifest))
    return writer.result({"graphs": summary, "config": _config_dict(config)})


def _fp32_source(source: Path, output: Path) -> Manifest:
    """The manifest of the fp32 export ``source``, once it is checked and ``output`` is not it."""
    manifest = load_manifest(source)
    if manifest.precision != "fp32":
        raise InputError(f"{source} is already quantized (precision {manifest.precision}); quantize the fp32 "
                         "export instead")
    if output.resolve() == source.resolve():
        raise InputError(f"--output {output} is the source export; choose a new directory")
    return manifest


def calibration_for(export_dir: Path, config: QuantizeConfig, progress: bool = False, store: Path | None = None):
    """Draw ``config.samples`` balanced calibration samples from ``config.calibration`` and capture the feeds of
    both graphs of the fp32 export in ``export_dir``: in memory, or with ``store`` on disk there."""
    return config.draw.capture(Path(export_dir), progress, store=store)


def _config_dict(config: QuantizeConfig) -> dict:
    values = asdict(config)
    values["calibration"] = str(config.calibration)
    values["groups"] = list(config.chosen_groups)
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items()}


def _quantize_graph(source: Path, target: Path, config: QuantizeConfig, feeds, wide: tuple[str, ...],
                    metadata: dict[str, str]) -> dict:
    """Quantize one graph file into ``target``, the products ``wide`` kept wide, stamp ``metadata``, check it;
    returns its quantization summary."""
    import onnx

    model = load_with_weights(source)
    external = sum(t.ByteSize() for t in model.graph.initializer) >= 2**31
    quantized = RECIPES[config.recipe].convert(source, target, model, config, feeds, external, wide)
    gather_then_dequantize(quantized)  # one int8 row per lookup, not the whole table dequantized per run
    lookups = columns_where_better(quantized, model) if config.smooth else {}
    del quantized.metadata_props[:]
    for prop in model.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=metadata.get(prop.key, prop.value))
    for key, value in metadata.items():
        if key not in {p.key for p in model.metadata_props}:
            quantized.metadata_props.add(key=key, value=value)
    if external:
        onnx.save_model(quantized, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=target.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(quantized, str(target))
    onnx.checker.check_model(str(target), full_check=True)
    return {**quantization_summary(quantized), "lookups": lookups}


def _to_int8(source: Path, target: Path, model, config: QuantizeConfig, run) -> object:
    """Run one of ONNX Runtime's quantizers, ``run(nodes, op_types, out_path)``, on the nodes of the config's
    groups, in a scratch directory beside ``target``; returns the quantized model (``model`` itself when the
    graph has no such node: the encoder has no lm_head)."""
    import onnx

    from mt5lite.exporters.quantize.groups import op_types, select_nodes

    nodes = select_nodes(model, config.chosen_groups, config.exclude)
    if not nodes:
        return model
    with scratch_directory(target, "quantize") as scratch:
        out = scratch / target.name
        run(nodes, op_types(config.chosen_groups), out)
        return onnx.load(str(out), load_external_data=True)


def _static_int8(source: Path, target: Path, model, config: QuantizeConfig, feeds, external: bool,
                 wide: tuple[str, ...] = ()):
    """int8 weights, uint8 activations whose ranges come from the calibration ``feeds``; ``wide`` stays float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {Method.MINMAX: CalibrationMethod.MinMax, Method.ENTROPY: CalibrationMethod.Entropy,
              Method.PERCENTILE: CalibrationMethod.Percentile}[Method(config.method)]

    weights = {t.name for t in model.graph.initializer}
    reader = feeds.for_graph(i.name for i in model.graph.input if i.name not in weights)

    def run(nodes: list[str], ops: list[str], out: Path) -> None:
        reader.rewind()
        quantize_static(
            str(source), str(out), reader,
            quant_format=QuantFormat.QDQ if Format(config.format) is Format.QDQ else QuantFormat.QOperator,
            op_types_to_quantize=ops, per_channel=config.per_channel, reduce_range=False,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
            calibrate_method=method, use_external_data_format=external,
            # MatMul outputs stay float (the logits above all); not CalibMaxIntermediateOutputs: ORT 1.31 drops
            # every full batch of collected outputs without computing its ranges (calibrate.py collect_data).
            extra_options={"CalibPercentile": 99.999, "OpTypesToExcludeOutputQuantization": ["MatMul"]},
        )

    return _to_int8(source, target, model, _excluding(config, wide), run)


def _excluding(config: QuantizeConfig, wide: tuple[str, ...]) -> QuantizeConfig:
    """``config`` with the products ``wide`` left in float too."""
    return replace(config, exclude=tuple(config.exclude) + tuple(wide))


def _dynamic_int8(source: Path, target: Path, model, config: QuantizeConfig, feeds, external: bool,
                  wide: tuple[str, ...] = ()):
    """int8 weights; activations quantized on the fly (no calibration); ``wide`` stays float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(nodes: list[str], ops: list[str], out: Path) -> None:
        quantize_dynamic(str(source), str(out), op_types_to_quantize=ops, per_channel=config.per_channel,
                         weight_type=QuantType.QInt8, nodes_to_quantize=nodes, use_external_data_format=external,
                         extra_options={"MatMulConstBOnly": True})

    return _to_int8(source, target, model, _excluding(config, wide), run)


#: MatMulNBits' block: 128 input channels per scale (32 and 64 were slower on mt5-small's shape: 9.4 and 7.9 against
#: 7.4 ms/token; the scales' bytes shrink as the block grows).
WEIGHT_BLOCK = 128
#: What ``MatMulNBits``' 8-bit kernels need on arm64 (ONNX Runtime's MLAS sets them up only with the dot-product
#: instructions; without them, a Cortex-A72 or A53, it dequantizes the whole weight at every call: at accuracy level 4
#: as at level 1). Recorded in the manifest; the ONNX Runtime backend warns on a CPU without it.
WEIGHT_INT8_ARM64_NEEDS = ("asimddp",)


def _weight_int8(source: Path, target: Path, model, config: QuantizeConfig, feeds, external: bool,
                 wide: tuple[str, ...] = ()):
    """Block-wise int8 weights for the MatMuls (``MatMulNBits``; activations stay float between ops); embedding
    lookups as in ``dynamic-int8`` (ONNX Runtime's block-wise Gather takes 4 bits only, and asks for opset 21). The
    products ``wide`` stay float32 ``MatMul``s. (``MatMulNBits`` at accuracy level 1, int8 weights on float
    activations, has no kernel for 8 bits in ONNX Runtime 1.31: it dequantizes the whole weight at every call. A
    1024 x 512 product took 0.77 ms there, 0.035 ms as a float32 ``MatMul`` and 0.015 ms at level 4.)"""
    import logging

    level = logging.getLogger().level
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger().setLevel(level)  # the module sets the root logger to INFO when imported
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    from mt5lite.exporters.quantize.groups import GROUPS, select_nodes

    lookups = tuple(g for g in config.chosen_groups if GROUPS[g].op_type == "Gather")
    if lookups:
        model = _dynamic_int8(source, target, model, replace(config, groups=lookups), feeds, external)  # no wide lookup
    products = tuple(g for g in config.chosen_groups if GROUPS[g].op_type == "MatMul")
    chosen = set(select_nodes(model, products, config.exclude)) if products else set()
    if not chosen:
        return model
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and (n.name not in chosen or n.name in wide)]
    algorithm = DefaultWeightOnlyQuantConfig(block_size=WEIGHT_BLOCK, is_symmetric=True, accuracy_level=4, bits=8,
                                             op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=WEIGHT_BLOCK, is_symmetric=True, accuracy_level=4,
                                     nodes_to_exclude=others, op_types_to_quantize=("MatMul",),
                                     algo_config=algorithm)
    quantizer.process()
    fuse_parallel_products(quantizer.model.model)  # q/k/v, wi_0/wi_1, cross K/V: one product each
    return quantizer.model.model


def _fp16(source: Path, target: Path, model, config: QuantizeConfig, feeds, external: bool,
          wide: tuple[str, ...] = ()):
    """fp16 weights and compute, ``FP16_KEEP_FP32`` kept in fp32."""
    from mt5lite.exporters.quantize.fp16 import convert_to_fp16

    return convert_to_fp16(model, FP16_KEEP_FP32)


@dataclass(frozen=True)
class QuantRecipe:
    """Everything about one quantization recipe."""

    description: str
    precision: str  # what the manifest records
    calibrated: bool  # activation ranges come from captured calibration feeds
    default_groups: tuple[str, ...]  # node groups quantized unless --groups says otherwise (empty: not by groups)
    convert: Callable  # (source, target, model, config, feeds, external, wide) -> the quantized onnx.ModelProto
    describe: Callable[[QuantizeConfig], dict]  # the recipe's own fields of the manifest's quantization block
    #: (files, feeds, config, scratch, model dims) -> SmoothedGraphs: what the recipe does about activation outliers
    #: before it quantizes (outliers.step.smoothing, outliers.residual_scale)
    outlier_step: Callable | None = None


#: Every recipe ``mt5lite quantize --recipe`` knows.
RECIPES: Registry[QuantRecipe] = Registry("quantization recipe", {
    "static-int8": QuantRecipe(
        "int8 weights, uint8 activations calibrated on multilingual inputs", "int8", True, DEFAULT_STATIC_GROUPS,
        _static_int8, lambda c: {"method": Method(c.method).value, "per_channel": c.per_channel,
                                 "format": Format(c.format).value, "groups": list(c.chosen_groups)},
        smoothing(ErrorModel("static", "per-channel", rotate=True))),
    "dynamic-int8": QuantRecipe(
        "int8 weights, activations quantized on the fly", "int8", False, WEIGHT_GROUPS, _dynamic_int8,
        lambda c: {"per_channel": c.per_channel, "format": Format(c.format).value, "groups": list(c.chosen_groups)},
        smoothing(ErrorModel("dynamic", "per-channel"))),
    "weight-int8": QuantRecipe(
        "int8 weights in blocks of 128 (MatMulNBits), float activations; fastest on ONNX Runtime where the CPU has "
        "int8 dot products (x86-64, arm64 from ARMv8.2: not a Raspberry Pi 4)", "int8", False,
        WEIGHT_GROUPS, _weight_int8, lambda c: {"block_size": WEIGHT_BLOCK, "groups": list(c.chosen_groups),
                                                "arm64_needs": list(WEIGHT_INT8_ARM64_NEEDS)},
        smoothing(ErrorModel("blockwise", "blockwise"))),
    "fp16": QuantRecipe(
        "fp16 weights and compute; FFN output projections and layer norms kept in fp32, the residual stream scaled "
        "into fp16's range", "fp16", False, (), _fp16, lambda c: {"kept_fp32": list(FP16_KEEP_FP32)},
        scale_residual),
})


QUANTIZED_OPS = {"QLinearMatMul", "MatMulInteger", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSoftmax",
                 "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulNBits", "GatherBlockQuantized"}
QUANTIZABLE_OPS = {"MatMul", "Gather", "Softmax", "Mul", "Add"}  # float ops that run quantized in QDQ form
INT8_TYPES = {2, 3}  # onnx.TensorProto.UINT8, INT8


def quantization_summary(model) -> dict:
    """What a graph holds after quantization: quantized nodes (QLinear*/MatMulInteger ops, float ops whose data
    inputs are all dequantized, or for fp16 the nodes computing in fp16), Q/DQ node counts, int8 and fp16
    weights."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    int8_tables = {t.name for t in model.graph.initializer if t.data_type in INT8_TYPES}
    quantized = 0
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0, "DynamicQuantizeLinear": 0, "Cast": 0}
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
            continue
        # A float op runs quantized in QDQ form when all its data inputs come from DequantizeLinear (for Gather:
        # the table, not the indices); a node merely reading a dequantized activation is not counted.
        data_inputs = node.input[:1] if node.op_type == "Gather" else [i for i in node.input if i]
        fed_by_dq = (node.op_type in QUANTIZABLE_OPS and bool(data_inputs)
                     and all(producers.get(i) == "DequantizeLinear" for i in data_inputs))
        int8_lookup = node.op_type == "Gather" and node.input[0] in int8_tables  # rows dequantized after the lookup
        if node.op_type in QUANTIZED_OPS or fed_by_dq or int8_lookup:
            quantized += 1
    inits = model.graph.initializer
    fp16_nodes = _fp16_compute_nodes(model)
    return {
        "quantized_nodes": quantized if fp16_nodes == 0 else fp16_nodes,
        "qdq_nodes": counts["QuantizeLinear"] + counts["DequantizeLinear"],
        "dynamic_quantize_nodes": counts["DynamicQuantizeLinear"],
        "int8_weights": sum(1 for t in inits if t.data_type in INT8_TYPES and len(t.dims) >= 2),
        "int8_weight_elements": sum(_elements(t) for t in inits if t.data_type in INT8_TYPES and len(t.dims) >= 2),
        "fp16_weights": sum(1 for t in inits if t.data_type == 10),
        "float_weights": sum(1 for t in inits if t.data_type == 1 and len(t.dims) >= 2),
        "nodes": len(model.graph.node),
    }


def _elements(tensor) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def _fp16_compute_nodes(model) -> int:
    """Nodes (other than Cast) that read an fp16 weight or the output of a Cast to fp16."""
    fp16 = {t.name for t in model.graph.initializer if t.data_type == 10}
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == 10 for a in node.attribute):
            fp16.update(node.output)
    count = 0
    for node in model.graph.node:
        if node.op_type != "Cast" and any(i in fp16 for i in node.input):
            count += 1
            fp16.update(node.output)
    return count
