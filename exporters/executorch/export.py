"""Export a checkpoint as one ExecuTorch program (``model.pte``) under the deployment contract.

Pipeline: load -> the contract's two graphs (``mt5lite.exporters.graphs``) -> ``torch.export`` of each with static
shapes (batch 1, ``S``, ``T_max``) -> for int8: the fp32 program is written and validated beside the output, the
same multilingual draw as ONNX and TFLite int8 is decoded with it to capture each graph's calibration feeds
(``exporters.quantize.calibration``), and each graph is quantized with PT2E and the XNNPACK quantizer, calibrated on
them -> both graphs lowered together through ExecuTorch's edge dialect to the XNNPACK delegate, as the ``encoder``
and ``decoder`` methods of one program (a weight both read, the token embedding, is stored once) -> tokenizer ->
manifest -> fp32: validated against PyTorch at the ONNX export's tolerance; int8: compared with the fp32 program
on held-out pairs and held to the quality gate -> rename into place.

Precisions: ``fp32``; ``int8`` (static: int8 weights, one scale per output channel, and int8 activations at every
linear layer; the token embedding as 8-bit rows (uint8, a float scale and zero point each), looked up by ExecuTorch's
``embedding_byte``; attention products, softmax, layer norms and the bias tables stay in float, where the masks'
-1e9 does no harm).
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from mt5lite.checked import Checked
from mt5lite.contract import ROLES
from mt5lite.exporters.onnx.export import OnnxExportConfig, graph_specs, length_problems, sample_inputs
from mt5lite.exporters.quantize.calibration import CalibrationDraw
from mt5lite.exporters.result import ExportResult
from mt5lite.manifest import Manifest, Quantization, seal_export
from mt5lite.registry import Registry
from mt5lite.verification.comparison import Gate

#: The one file of an ExecuTorch export: a method per graph, named by its role, sharing the common weights.
PTE_FILE = "model.pte"
#: Lookup tables this small are relative-position biases (32 buckets), left in float by int8.
MAX_BIAS_ROWS = 256


@dataclass(frozen=True)
class PtePrecision:
    """One precision of ``mt5lite export executorch``."""

    description: str
    calibrated: bool = False  # static int8: PT2E observers calibrated on captured multilingual feeds
    exact: bool = False  # held to the fp32 tolerance against PyTorch; otherwise compared and gated


#: Every precision ``mt5lite export executorch --quantize`` knows.
PTE_PRECISIONS: Registry[PtePrecision] = Registry("ExecuTorch precision", {
    "fp32": PtePrecision("float32 weights and compute, XNNPACK delegate", exact=True),
    "int8": PtePrecision("static int8 at every linear layer (per-channel weights, calibrated activations), PT2E "
                         "with the XNNPACK quantizer; 8-bit token embedding rows", calibrated=True),
})


@dataclass(frozen=True)
class ExecutorchExportConfig(Checked):
    """What to export and how to check it (the lengths and tolerances mean what they mean for ONNX)."""

    max_source_length: int = 128
    max_target_length: int = 64
    quantize: str = "fp32"  # a key of PTE_PRECISIONS
    validate_samples: int = 16
    atol: float = OnnxExportConfig.atol
    rtol: float = OnnxExportConfig.rtol
    static_shapes: bool = field(default=True, init=False)  # batch 1 and S fixed, as XNNPACK's planned memory wants

    def problems(self) -> list[str]:
        """Every bad value."""
        problems = [] if self.quantize in PTE_PRECISIONS else [
            f"unknown ExecuTorch precision {self.quantize!r}; known: {', '.join(PTE_PRECISIONS)}"]
        return problems + length_problems(self.max_source_length, self.max_target_length, self.validate_samples)


def export_programs(model, specs: dict, max_target_length: int, cross_scale=None, output_rotation=None) -> dict:
    """Each contract graph of ``model`` as a ``torch.export`` program with the static shapes of ``specs``
    (``cross_scale``: what the encoder's output is multiplied by for the cross K/V, after smoothing;
    ``output_rotation``: what turns a rotated encoder output back, ``EncoderGraph``)."""
    import torch

    from mt5lite.exporters.graphs import DecoderStepGraph, EncoderGraph

    modules = {"encoder": EncoderGraph(model, cross_scale, output_rotation).eval(),
               "decoder": DecoderStepGraph(model, max_target_length).eval()}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {role: torch.export.export(module, sample_inputs(specs[role]), strict=False)
                for role, module in modules.items()}


def _linear_quantizer(dynamic: tuple[str, ...] = ()):
    """The XNNPACK quantizer, static int8 at linear layers only: per-channel symmetric weights, and activation ranges
    from min/max observers, as ONNX Runtime's static recipe calibrates them (XNNPACK's default histogram observer
    clipped the demo model's outlier activations: German lost 3.3 points of exact match). The linears of the module
    paths ``dynamic`` get dynamic int8 activations instead (``mixed``). Its scalar-to-tensor rewrite is skipped: it
    only serves annotated adds and muls, and it turns the encoder's integer relative-position arithmetic into
    float."""
    import dataclasses

    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver

    class LinearQuantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            return model

    config = get_symmetric_quantization_config(is_per_channel=True)
    activations = dataclasses.replace(config.input_activation,
                                      observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    config = dataclasses.replace(config, input_activation=activations, output_activation=activations)
    quantizer = LinearQuantizer().set_operator_type(torch.ops.aten.linear.default, config)
    for path in dynamic:
        quantizer.set_module_name(path, get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    return quantizer


def _token_embedding_quantizer():
    """torchao's embedding quantizer (uint8 rows, a float scale and zero point per row), restricted to the token
    embedding: the relative-position bias tables (32 rows) stay in float."""
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    class TokenEmbeddingQuantizer(EmbeddingQuantizer):
        def annotate(self, model):
            super().annotate(model)
            for node in model.graph.nodes:
                if "quantization_annotation" in node.meta and node.args[0].meta["val"].shape[0] <= MAX_BIAS_ROWS:
                    del node.meta["quantization_annotation"]
            return model

    return TokenEmbeddingQuantizer()


def _converted(program, feeds, dynamic: tuple[str, ...] = ()):
    """``program`` quantized with PT2E: observers inserted by the XNNPACK quantizer (``dynamic``: module paths
    given dynamic activations), run on ``feeds``, converted."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer

    quantizer = ComposableQuantizer([_token_embedding_quantizer(), _linear_quantizer(dynamic)])
    prepared = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for args in feeds:
            prepared(*args)
    return convert_pt2e(prepared)


def quantize_programs(programs: dict, specs: dict, data) -> tuple[dict, dict]:
    """Each program quantized with PT2E and calibrated on the captured feeds of its graph (``data``:
    ``CalibrationData``); every linear's error is measured in the quantized program, and those that dynamic
    activations hold better get them (``mixed``). Returns the programs, exported again, and the mixed-precision
    report."""
    import numpy as np
    import torch

    from mt5lite.contract import graph_feeds
    from mt5lite.exporters.executorch.mixed import MEASURE_RUNS, MixedPrecision, linear_weights, measure_linears
    from mt5lite.exporters.quantize.outliers.step import sampled_runs

    quantized, mixed = {}, MixedPrecision()
    for role, program in programs.items():
        names = [t.name for t in specs[role].inputs]
        feeds = getattr(data, role).feeds

        def arguments(indices, feeds=feeds, names=names):  # one feed at a time: a store on disk stays there
            return (tuple(torch.from_numpy(np.ascontiguousarray(value))
                          for value in graph_feeds(names, feeds[i]).values()) for i in indices)

        measured = list(arguments(sampled_runs(feeds, MEASURE_RUNS)))
        weights = linear_weights(program.module())
        mixed.linears[role] = {name: (path, sole) for name, (_, _, path, sole) in weights.items()}
        converted = _converted(program, arguments(range(len(feeds))))
        mixed.static[role] = measure_linears(converted, weights, measured)
        if dynamic := mixed.dynamic(role):
            converted = _converted(program, arguments(range(len(feeds))),
                                   tuple(sorted(mixed.linears[role][name][0] for name in dynamic)))
            errors = measure_linears(converted, weights, measured)
            mixed.mixed[role] = {name: errors[name][0] for name in dynamic}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized[role] = torch.export.export(converted, sample_inputs(specs[role]), strict=False)
    return quantized, mixed.report()


def _smoothed_programs(model, specs: dict, data, max_target_length: int) -> tuple[dict, dict]:
    """The int8 outlier step (``outliers.torch_smoothing``): ``model`` smoothed in place from the captured
    feeds, its programs exported again, and ``data``'s decoder feeds rescaled as the smoothed decoder reads them.
    Returns the programs and the outlier report."""
    from mt5lite.exporters.quantize.calibration import FeedReader
    from mt5lite.exporters.quantize.outliers.step import rescaled_feeds
    from mt5lite.exporters.quantize.outliers.torch_smoothing import smooth_model

    smoothing = smooth_model(model, {"encoder": data.encoder.feeds, "decoder": data.decoder.feeds},
                             max_target_length)
    data.decoder = FeedReader(rescaled_feeds(data.decoder.feeds, smoothing.scales))
    return (export_programs(model, specs, max_target_length, smoothing.cross_scale, smoothing.output_rotation),
            smoothing.report())


def lower_programs(programs: dict, path: Path) -> dict:
    """Lower the programs to the XNNPACK delegate as the methods of one ExecuTorch program written to ``path``;
    returns, per method, how many delegated subgraphs it has and the ops left to ExecuTorch's portable kernels (as
    the edge dialect names them, before an int8 lookup's dequantize + embedding is fused into ``embedding_byte``)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.quant_fusion_pass import QuantFusionPass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
        methods = {}
        for role in programs:
            calls = [node for node in edge.exported_program(role).graph.nodes if node.op == "call_function"]
            delegated = [node for node in calls if "executorch_call_delegate" in str(node.target)]
            portable = sorted({getattr(node.target, "__name__", str(node.target)) for node in calls
                               if node not in delegated and "getitem" not in str(node.target)})
            methods[role] = {"delegated_subgraphs": len(delegated), "portable_ops": portable}
        # Quantized lookups left to portable kernels (dequantize -> embedding) become ExecuTorch's embedding_byte.
        program = edge.to_executorch(ExecutorchBackendConfig(passes=[QuantFusionPass()]))
    with open(path, "wb") as handle:
        program.write_to_file(handle)
    return methods


def _write_export(model, files, programs: dict, staging: Path, config: ExecutorchExportConfig, specs: dict,
                  quantization: Quantization | None) -> Manifest:
    """Lower ``programs`` into ``staging/model.pte`` beside the tokenizer; returns the manifest, to be sealed."""
    import executorch.version

    from mt5lite.exporters.onnx.export import checkpoint_manifest, copy_tokenizer

    methods = lower_programs(programs, staging / PTE_FILE)
    copy_tokenizer(files.root, staging)
    graphs = {role: replace(specs[role], method=role) for role in ROLES}
    manifest = checkpoint_manifest(files, model, "executorch", uuid.uuid4().hex, config, staging, graphs)
    return replace(
        manifest, precision=config.quantize, quantization=quantization,
        weights={"file": PTE_FILE, "bytes": (staging / PTE_FILE).stat().st_size},
        engine_info={"version": executorch.version.__version__, "backend": "XnnpackBackend", "methods": methods})


def export_executorch(model_dir: str | os.PathLike, output_dir: str | os.PathLike,
                      config: ExecutorchExportConfig | None = None, force: bool = False, allow_pickle: bool = False,
                      calibration: CalibrationDraw | None = None, gate: Gate | bool = True,
                      progress: bool = False) -> ExportResult:
    """Export ``model_dir`` into ``output_dir`` (model.pte with an ``encoder`` and a ``decoder`` method, the
    tokenizer, manifest.json). fp32 is validated against PyTorch (``ParityError`` beyond the tolerance); int8 is
    calibrated with ``calibration``, compared with the fp32 program and judged by ``gate`` (``resolve_gate``:
    ``True`` is the default gate, enforced; ``False`` skips it). Returns the manifest, the validation numbers and
    the gate's report (None without a gate)."""
    from mt5lite.checkpoint import inspect_checkpoint, load_model
    from mt5lite.exporters.validation import validate_export
    from mt5lite.exporters.writer import ExportWriter
    from mt5lite.quiet import quiet_third_party_logs

    config = config or ExecutorchExportConfig()
    precision = PTE_PRECISIONS[config.quantize]
    calibration = calibration or CalibrationDraw()
    writer = ExportWriter(output_dir, force, None if precision.exact else gate)
    files = inspect_checkpoint(model_dir, allow_pickle=allow_pickle)
    quiet_third_party_logs()
    import executorch.exir  # noqa: F401  (before the model loads: a missing mt5lite[executorch] is named first)

    model = load_model(files.root, allow_pickle=allow_pickle)
    specs = graph_specs(model.config, config, files={role: PTE_FILE for role in ROLES})
    programs = export_programs(model, specs, config.max_target_length)
    with writer:
        fp32 = writer.reference = writer.scratch["scratch"] / "fp32"  # the int8 program is judged against it
        quantization = None
        if precision.calibrated:
            fp32.mkdir()
            seal_export(fp32, _write_export(model, files, programs, fp32, replace(config, quantize="fp32"), specs,
                                            None))
            validate_export(model, fp32, config, progress=progress)
            data = calibration.capture(fp32, progress=progress, store=writer.scratch["scratch"] / "calibration")
            programs, outliers = _smoothed_programs(model, specs, data, config.max_target_length)
            programs, mixed = quantize_programs(programs, specs, data)
            quantization = Quantization(
                "executorch-int8", calibration=data.describe(calibration.file, calibration.seed),
                outliers={**outliers, "mixed_precision": mixed},
                details={"weights": "int8 (per output channel)", "activations": "int8 at linear layers, static "
                         "(calibrated) except where dynamic (mixed_precision)"})
        writer.seal(_write_export(model, files, programs, writer.staging, config, specs, quantization))
        if precision.exact:
            writer.validation = validate_export(model, writer.staging, config, progress=progress)
    return writer.result()
