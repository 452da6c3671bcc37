"""Convert a static-shape fp32 ONNX export into a TFLite (LiteRT) export under the same contract.

Pipeline: check options -> read the ONNX export (hashes verified) -> in child processes: translate both graphs and
convert them together into one ``model.tflite`` with an ``encoder`` and a ``decoder`` signature (``mt5lite.exporters.
tflite_worker convert``; a weight both graphs read, the token embedding, becomes one buffer that both signatures
share), then load it and run each signature once (``check``), refusing Flex ops unless allowed and any output whose
shape differs from the contract -> tokenizer -> manifest -> validate against the ONNX export -> rename into
place.

Precisions: ``fp32``; ``fp16`` (fp16 weights); ``dynamic-int8`` (int8 weights, dynamic-range kernels); ``int8``
(full integer: int8 weights and activations, float inputs and outputs as the contract says; attention's products of
two activations and its softmax, and the residual stream's adds and RMS norms, stay float unless
``TfliteOptions.float_parts`` says otherwise: ``mt5lite.exporters.tflite.float_parts``). Full int8 is calibrated
like the ONNX static recipe, on real encoder inputs and the decoder-step inputs captured while the fp32 export
decodes multilingual samples, and its attention-mask constants are replaced by a finite value chosen from those
inputs (``mt5lite.exporters.tflite.masking``): -1e9 in an int8 tensor wipes out every score.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from mt5lite.contract import ROLES, GraphSpec, parse_role
from mt5lite.errors import InputError, ModelFileError
from mt5lite.exporters.quantize.calibration import CalibrationDraw, CalibrationWarning
from mt5lite.exporters.result import ExportResult, Validation
from mt5lite.exporters.tflite.float_parts import DEFAULT_FLOAT_PARTS, FLOAT_PARTS
from mt5lite.exporters.tflite.onnx_to_tf import ConversionError
from mt5lite.exporters.tflite.spec import GraphJob, LmHeadStandIn, WorkerSpec
from mt5lite.exporters.writer import ExportWriter
from mt5lite.manifest import Manifest, ModelDims, Quantization, inside, load_manifest
from mt5lite.registry import Registry
from mt5lite.verification.comparison import Gate

#: What an Android app must link to run a model with Flex (SELECT_TF) ops.
FLEX_ANDROID_LIBRARY = "org.tensorflow:tensorflow-lite-select-tf-ops"
#: A conversion or check that runs longer than this is stopped (the demo model's take seconds).
WORKER_TIMEOUT_S = 3600
#: The one file of a TFLite export: a signature per graph, named by its role, sharing the common weights.
TFLITE_FILE = "model.tflite"


@dataclass(frozen=True)
class TflitePrecision:
    """Everything about one TFLite precision: how TensorFlow's converter is set up, and how the result is judged."""

    description: str
    optimize: bool = False  # tf.lite.Optimize.DEFAULT: quantize what the other fields say
    supported_types: tuple[str, ...] = ()  # converter.target_spec.supported_types (fp16 weights: "float16")
    calibrated: bool = False  # int8 activations: a representative dataset captured from multilingual samples
    exact: bool = False  # held to the ONNX export's fp32 tolerance; otherwise compared and held to the quality gate


#: Every precision ``mt5lite export tflite --quantize`` knows.
TFLITE_PRECISIONS: Registry[TflitePrecision] = Registry("TFLite precision", {
    "fp32": TflitePrecision("float32 weights and compute", exact=True),
    "fp16": TflitePrecision("fp16 weights", optimize=True, supported_types=("float16",)),
    "dynamic-int8": TflitePrecision("int8 weights, dynamic-range kernels", optimize=True),
    "int8": TflitePrecision("int8 weights and activations (attention's arithmetic and the residual stream float)",
                            optimize=True, calibrated=True),
})


#: Errors a worker step may stop with, raised again here by name (anything else: ``ConversionError``).
_WORKER_ERRORS = {cls.__name__: cls for cls in (InputError, ModelFileError, ConversionError)}


def _dies_with(parent: int):
    """A ``preexec_fn`` for a worker child: Linux kills the child when ``parent`` dies (``PR_SET_PDEATHSIG``), so a
    killed export leaves no converter running on, writing into the directories the next run sweeps."""
    def arm() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)
    return arm


def _worker(command: str, spec: WorkerSpec, scratch: Path, show_progress: bool = False) -> dict:
    """Run one ``mt5lite.exporters.tflite.worker`` step in a child process. Its toolkit error and warnings are
    raised again here; its crash (even SIGABRT) becomes a ``ConversionError``. ``show_progress`` lets the step's
    stderr (a progress bar) through; otherwise it is kept for the error message."""
    name = Path(spec.output).name
    spec_path = scratch / f"{command}.json"
    result_path = spec_path.with_suffix(".result.json")
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    try:
        done = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-m",
                               "mt5lite.exporters.tflite.worker", command, str(spec_path), str(result_path)],
                              stdout=subprocess.PIPE, stderr=None if show_progress else subprocess.PIPE, text=True,
                              env=env, timeout=WORKER_TIMEOUT_S, preexec_fn=_dies_with(os.getpid()))
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{name}: TFLite {command} did not finish in {WORKER_TIMEOUT_S} s; it was "
                              "stopped") from None
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else {}
    for warning in result.pop("warnings", []):
        category = CalibrationWarning if warning["category"] == CalibrationWarning.__name__ else UserWarning
        warnings.warn(category(warning["message"]), stacklevel=2)
    if "error" in result:
        raise _WORKER_ERRORS.get(result["error"]["type"], ConversionError)(result["error"]["message"])
    if done.returncode != 0:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        if done.returncode == -9:
            why = "killed by signal 9, most likely out of memory"
        elif done.returncode < 0:
            why = f"crashed with signal {-done.returncode}"
        else:
            why = lines[-1] if lines else "no message"
        raise ConversionError(f"{name}: TFLite {command} failed ({why})")
    return result


def _graph_job(manifest: Manifest, role: str, onnx_dir: Path) -> GraphJob:
    """What the worker needs of one ONNX graph: its file and its tensor specs."""
    graph = manifest.graphs[role]
    return GraphJob(str(inside(onnx_dir, graph.file)), list(graph.inputs), list(graph.outputs))


@dataclass(frozen=True)
class TfliteOptions:
    """How a TFLite export is checked: Flex ops allowed (the app must then link TensorFlow's), and the held-out
    samples it is validated against the ONNX export on."""

    allow_flex: bool = False
    validate_samples: int = 16
    #: int8: the parts that stay float (``float_parts.FLOAT_PARTS``; empty: every op int8, as an accelerator that runs
    #: nothing else needs; the residual stream stays float anyway where the outlier step rotated it)
    float_parts: tuple[str, ...] = DEFAULT_FLOAT_PARTS


def export_tflite(onnx_dir: str | os.PathLike, output_dir: str | os.PathLike, quantize: str = "fp32",
                  force: bool = False, calibration: CalibrationDraw | None = None, gate: Gate | bool = True,
                  progress: bool = False, options: TfliteOptions | None = None) -> ExportResult:
    """Convert the static-shape fp32 ONNX export in ``onnx_dir`` to ``output_dir``: ``model.tflite`` holding the
    encoder and the decoder step as two signatures that share their common weights, the tokenizer, and
    manifest.json (which names each graph's file and signature). ``calibration`` sets the representative data of
    ``int8``. Every precision but fp32 (held to fp32's tolerance here) is compared with the ONNX export and judged
    by ``gate`` (``resolve_gate``: ``True`` is the default gate, enforced; ``False`` skips it). Returns the
    manifest, the validation numbers and the gate's report."""
    options = options or TfliteOptions()
    allow_flex = options.allow_flex
    precision = TFLITE_PRECISIONS[quantize]
    source, output = Path(onnx_dir), Path(output_dir)
    manifest = load_manifest(source)
    if not manifest.static_shapes:
        raise InputError(f"{source} has dynamic shapes; TFLite needs a static export: mt5lite export onnx "
                         "--static-shapes")
    if manifest.precision != "fp32":
        raise InputError(f"{source} is a {manifest.precision} export; convert the fp32 ONNX export")
    calibration = calibration or CalibrationDraw()
    writer = ExportWriter(output, force, None if precision.exact else gate)
    writer.reference = source
    with writer:
        staging, scratch = writer.staging, writer.scratch["scratch"]
        spec = conversion_spec(source, manifest, staging / TFLITE_FILE, quantize, scratch, allow_flex)
        prepared = _prepare_int8(source, spec, calibration, scratch, progress, manifest.model,
                                 options.float_parts) if precision.calibrated else {}
        _add_further_graphs(spec, manifest, source)
        converted = convert_steps(spec, scratch)
        if precision.calibrated:
            prepared["float_ops"] = converted["float_nodes"]
        checked = _worker("check", spec, scratch)
        for role, graph in spec.graphs.items():
            _check_outputs(role, graph, checked["signatures"][role], allow_flex)
        ops = {role: checked["signatures"][role]["ops"] for role in spec.graphs}
        graphs = {role: replace(graph, file=TFLITE_FILE, signature=role, external_data=())  # the .tflite holds them
                  for role, graph in manifest.graphs.items()}
        flex = sorted({op for role_ops in ops.values() for op in role_ops if _is_flex(op)})
        quantization = Quantization(f"tflite-{quantize}", manifest.export_id, {},
                                    prepared.pop("calibration", None), prepared.pop("outliers", None), prepared)
        writer.seal(replace(
            manifest, export_id=uuid.uuid4().hex, engine="litert", precision=quantize, graphs=graphs,
            weights={"file": TFLITE_FILE, **checked["weights"]}, quantization=quantization,
            engine_info={"converter": "mt5lite onnx_to_tf + TFLiteConverter", "ops": ops, "flex_ops": flex,
                         "android_library": FLEX_ANDROID_LIBRARY if flex else None}), companions_of=(source, manifest))
        writer.validation = validate_tflite(source, staging, precision, manifest, options.validate_samples)
    return writer.result()


def conversion_spec(source: Path, manifest: Manifest, output: Path, quantize: str, scratch: Path,
                    allow_flex: bool = False) -> WorkerSpec:
    """What the worker steps need: the output, the precision, the scratch files and each graph's ONNX file and
    tensor specs."""
    return WorkerSpec(output=str(output), quantize=quantize, allow_flex=allow_flex,
                      float_model=str(scratch / "float.tflite"), calibrated_model=str(scratch / "calibrated.tflite"),
                      graphs={role: _graph_job(manifest, role, source) for role in ROLES})


def _add_further_graphs(spec: WorkerSpec, manifest: Manifest, source: Path) -> None:
    """Give ``spec`` a job for each further graph of the ONNX export (batched decoder steps ``decoder_b4``,
    source-length buckets ``encoder_s16``: each a signature of its own in the one ``.tflite``, sharing every
    weight): the source's graph, or where the jobs were smoothed for int8, the smoothed graphs' own, written and
    checked beside them. int8 calibrates each on its kind's feeds, rows repeated to its batch and cut to its
    source length, and then gives it its kind's ranges (``batched_ranges.share_ranges``)."""
    from mt5lite.exporters.onnx.batched import write_batched_decoders
    from mt5lite.exporters.onnx.buckets import recorded_constants, write_source_buckets

    further = [role for role in manifest.graphs if role not in ROLES]
    folder = Path(spec.graphs["decoder"].onnx).parent
    if folder == source.resolve() or not further:
        files = {role: str(inside(source, manifest.graphs[role].file)) for role in further}
    else:  # the smoothed graphs (int8): at those batches and lengths, written and checked beside them
        smoothed = {role: GraphSpec(Path(job.onnx).name, tuple(job.inputs), tuple(job.outputs))
                    for role, job in spec.graphs.items()}
        written = write_batched_decoders(folder, smoothed, manifest.further_batches)
        written = write_source_buckets(folder, written, recorded_constants(source, manifest.graphs))
        files = {role: str(folder / written[role].file) for role in further}
    for role in further:
        parsed, graph = parse_role(role), manifest.graphs[role]
        kind = spec.graphs[parsed.kind]
        spec.graphs[role] = GraphJob(files[role], list(graph.inputs), list(graph.outputs), kind.mask_value,
                                     kind.calibration, parsed.batch, parsed.source)


def convert_steps(spec: WorkerSpec, scratch: Path) -> dict:
    """Write ``spec.output``: ``convert``, then for int8 (``spec`` prepared by ``_prepare_int8``) TensorFlow's
    int8 steps after it, ``calibrate`` and ``quantize``, each in a process of its own, so that no process holds
    more than one model at a time. Returns what ``convert`` reported (int8: and how many ops ``quantize`` left
    float)."""
    converted = _worker("convert", spec, scratch)
    if TFLITE_PRECISIONS[spec.quantize].calibrated:
        spec.lm_head_stand_ins = {role: LmHeadStandIn(**found) for role, found in converted["stand_ins"].items()}
        _worker("calibrate", spec, scratch)
        converted["float_nodes"] = _worker("quantize", spec, scratch)["float_nodes"]
    return converted


def _prepare_int8(source: Path, spec: WorkerSpec, calibration: CalibrationDraw, scratch: Path, progress: bool,
                  dims: ModelDims, float_parts: tuple[str, ...] = ()) -> dict:
    """Capture the representative data and choose each graph's masking constant, in a child process that writes
    the feeds beside the output (``calibrate``); smooth the activation outliers into the weights
    (``outliers.step``, as full int8 quantizes: one range per tensor, weights per channel; the residual
    stream rotated where it carries outliers, and then kept float); point the graphs' worker specs at the smoothed
    graphs and their feeds. Returns what the manifest records."""
    draw = {"file": str(calibration.file), "samples": calibration.samples,
            "max_decoder_steps": calibration.max_decoder_steps, "seed": calibration.seed}
    capture = replace(spec, source=str(source), draw=draw, store=str(scratch / "calibration"), progress=progress)
    found = _worker("capture", capture, scratch, show_progress=progress)
    masks = found["calibration"]["masking_constants"]
    spec.logits_range = found["logits_range"]
    for role, graph in spec.graphs.items():
        graph.mask_value = masks[role]["value"]
        graph.calibration = found["stores"][role]
    outliers = _smooth(spec, scratch, dims)
    # Outliers in the residual stream itself (its rotation was needed): the stream stays float whatever was asked
    rotated = (outliers.get("rotation") or {}).get("seed") is not None
    wanted = set(float_parts) | ({"residual"} if rotated else set())
    spec.float_parts = [part for part in FLOAT_PARTS if part in wanted]
    activations = "; ".join(["int8", *(f"float: {FLOAT_PARTS[part].description}" for part in spec.float_parts)])
    return {"weights": "int8", "activations": activations, "inputs_outputs": "float32", "outliers": outliers,
            "calibration": found["calibration"]}


def _smooth(spec: WorkerSpec, scratch: Path, dims: ModelDims) -> dict:
    """Smooth both graphs of ``spec`` for full int8 from their captured feeds; the spec then points at the smoothed
    graphs and at decoder feeds holding the V states as those graphs do. Returns the outlier report."""
    from mt5lite.exporters.quantize.calibration import FeedStore
    from mt5lite.exporters.quantize.outliers.step import ErrorModel, smooth_graphs

    graphs = spec.graphs
    stores = {role: FeedStore(graph.calibration) for role, graph in graphs.items()}
    full_int8 = ErrorModel("static", "per-channel", rotate=True)  # the residual stream is quantized too
    smoothed = smooth_graphs({role: Path(graph.onnx) for role, graph in graphs.items()}, stores, full_int8,
                             scratch / "smoothed", dims.num_heads, dims.d_kv,
                             keep_wide=False)  # full int8 has no float products to keep
    if smoothed.scales:
        rescaled = FeedStore(scratch / "calibration-smoothed" / "decoder")
        decoder = smoothed.decoder_feeds(stores["decoder"])
        for index in range(len(decoder)):
            rescaled.put(index, decoder[index])
        graphs["decoder"].calibration = str(rescaled.directory)
    for role, graph in graphs.items():
        graph.onnx = str(smoothed.files[role])
    return smoothed.report()


def _is_flex(op: str) -> bool:
    return op.startswith("Flex") or op == "CUSTOM"


def _check_outputs(role: str, graph: GraphJob, checked: dict, allow_flex: bool) -> None:
    """Refuse Flex ops (unless allowed) and any output whose shape is not the contract's."""
    flex = [op for op in checked["ops"] if _is_flex(op)]
    if flex and not allow_flex:
        raise ConversionError(f"the {role} graph needs Flex ops {', '.join(flex)}; pass --allow-flex (the Android "
                              f"app then needs {FLEX_ANDROID_LIBRARY})")
    problems = []
    for tensor in graph.outputs:
        got = checked["outputs"].get(tensor.name)
        if got is None:
            problems.append(f"{tensor.name}: missing")
        elif tuple(got["shape"]) != tensor.shape:
            problems.append(f"{tensor.name}: shape {got['shape']}, contract {list(tensor.shape)}")
    if problems:
        raise ConversionError(f"the {role} graph of {TFLITE_FILE} does not keep the contract: " + "; ".join(problems))


def validate_tflite(onnx_dir: Path, tflite_dir: Path, precision: TflitePrecision, manifest: Manifest,
                    samples: int = 16) -> Validation:
    """Encoder outputs and teacher-forced logits of the TFLite export against the ONNX export on held-out
    multilingual sentences, one sentence at a time (batch-1 graphs). fp32 must stay within the export's tolerance
    (``ParityError`` otherwise); other precisions report their numbers."""
    from mt5lite.exporters.validation import heldout_sample
    from mt5lite.runtimes.litert import LiteRTGenerator
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.runtimes.tokenizer import Overflow
    from mt5lite.verification.teacher_forced import Differences, check_diffs, diff_rows, teacher_forced

    reference, candidate = OnnxGenerator(onnx_dir), LiteRTGenerator(tflite_dir)
    texts = [s.text for s in heldout_sample(samples)]
    options = DecodingOptions(max_new_tokens=min(16, reference.backend.max_target_length))
    found = Differences()
    for text in texts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids, mask = reference.encode_batch([text], Overflow.TRUNCATE)
        target = reference.decoder.generate(ids, mask, options)
        found.merge(teacher_forced(reference.stepper, candidate.stepper, ids, mask, target,
                                   reference.decoder.decoder_start_id))
    atol, rtol = manifest.tolerance
    atol, rtol = atol if atol is not None else 1e-4, rtol if rtol is not None else 4e-6
    shapes = {name: list(shape) for name, shape in manifest.output_shapes.items()}
    if precision.exact:
        rows = check_diffs("TFLite fp32 validation", found, atol, rtol, shapes, "the ONNX export")
    else:  # reduced precision: the numbers are reported, the quality gate judges the export
        rows = diff_rows(found, atol, rtol, shapes)
    return Validation(len(texts), tuple(rows), checked_against_tolerance=precision.exact)
