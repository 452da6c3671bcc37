"""Child-process steps of the TFLite export, kept out of the caller's process on purpose.

TensorFlow and the LiteRT interpreter abort a process that imports both, and a broken .tflite can abort (SIGABRT)
whatever loads it, so each step runs alone; and TensorFlow's converter holds several copies of the model it works
on, so its full-int8 steps (convert, calibrate, quantize) each get a process of their own, and the memory of one is
returned before the next starts:

    python -m mt5lite.exporters.tflite.worker capture SPEC.json RESULT.json  # int8: feeds + masks (ONNX Runtime)
    python -m mt5lite.exporters.tflite.worker convert SPEC.json RESULT.json  # ONNX graphs -> .tflite (TensorFlow only)
    python -m mt5lite.exporters.tflite.worker calibrate SPEC.json RESULT.json  # int8: the float model's ranges
    python -m mt5lite.exporters.tflite.worker quantize SPEC.json RESULT.json   # int8: quantize, lm_head written in
    python -m mt5lite.exporters.tflite.worker check SPEC.json RESULT.json    # load, run each signature once (LiteRT)

SPEC.json is a ``WorkerSpec`` (``mt5lite.exporters.tflite.spec``): the output path, the precision and, per graph
(role), the ONNX file and its tensor specs from the manifest; the step writes what it found (ops, output shapes,
bytes) to RESULT.json, so nothing TensorFlow prints can be mistaken for it. A step that fails with one of the
toolkit's errors writes it there too (``{"error": {"type", "message"}}``, exit status 1), and the toolkit's warnings
it raised (``"warnings"``), for the caller to raise again.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mt5lite.contract import repeat_rows
from mt5lite.exporters.tflite.float_parts import FLOAT_PARTS
from mt5lite.exporters.tflite.spec import LmHeadStandIn, WorkerSpec


def _named_function(names: list[str], body):
    """A function with parameters named ``names`` (they become the TFLite signature's input names)."""
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise ValueError(f"tensor names {bad} are not valid parameter names")
    namespace: dict = {}
    params = ", ".join(names)
    exec(f"def graph({params}):\n    return body({params})\n", {"body": body}, namespace)  # noqa: S102
    return namespace["graph"]


def capture(spec: WorkerSpec) -> dict:
    """Capture the int8 calibration feeds of both graphs into ``spec.store`` (on disk, ``FeedStore``) while the
    fp32 ONNX export ``spec.source`` decodes the draw ``spec.draw`` (``CalibrationDraw``'s fields), then
    choose each graph's masking constant from them; also returns the logits' range over the kept decoder steps.
    ONNX Runtime only, in its own process: the fp32 sessions' memory is gone before TensorFlow converts."""
    from mt5lite.exporters.quantize.calibration import CalibrationDraw
    from mt5lite.exporters.tflite.masking import int8_mask_value

    draw = CalibrationDraw(**{**spec.draw, "file": Path(spec.draw["file"])})
    data = draw.capture(Path(spec.source), spec.progress, store=Path(spec.store))
    masks = {role: int8_mask_value(graph.onnx, getattr(data, role).feeds) for role, graph in spec.graphs.items()}
    return {"calibration": {**data.describe(draw.file, draw.seed), "masking_constants": masks},
            "stores": {role: str(getattr(data, role).feeds.directory) for role in spec.graphs},
            "logits_range": data.logits_range}


#: Feeds a further graph (a batched decoder step, a source-length bucket) is run on while calibrating: its ranges
#: are then replaced by its kind's (the encoder's or the decoder step's).
BATCHED_CALIBRATION_FEEDS = 2


def _representative_data(spec: WorkerSpec):
    """The calibration feeds of every graph, tagged with its signature key (the converter's multi-signature
    form). A further graph gets only the first few of its kind's feeds, each row repeated to its batch and cut to
    its source length: its ranges are its kind's, copied after calibration (``batched_ranges.share_ranges``)."""
    from mt5lite.contract import graph_feeds, to_source_length
    from mt5lite.exporters.quantize.calibration import FeedStore

    names = {role: [t.name for t in graph.inputs] for role, graph in spec.graphs.items()}
    for role, graph in spec.graphs.items():
        for index, feed in enumerate(FeedStore(graph.calibration)):
            if not graph.base and index >= BATCHED_CALIBRATION_FEEDS:
                break
            feed = {name: repeat_rows(value, name, graph.batch)
                    for name, value in graph_feeds(names[role], feed).items()}
            yield role, feed if graph.source is None else to_source_length(feed, graph.source)


def convert(spec: WorkerSpec) -> dict:
    """Translate every ONNX graph of the spec to TensorFlow and convert them together into one .tflite, one
    signature per graph (named by its role). A weight that several graphs read (identical dtype, shape and bytes)
    becomes one variable, so the converter writes it once and the signatures share its buffer. For ``int8``, each
    graph's ``calibration`` is a ``FeedStore`` directory (the representative dataset) and its ``mask_value`` the
    masking constant (``mt5lite.exporters.tflite.masking``); the converter then stops at the float model it would
    calibrate, written to ``spec.float_model`` with the lm_head as a stand-in (``mt5lite.exporters.tflite.splice``):
    ``calibrate`` and ``quantize`` go on from there, each in its own process (``spec.use_stand_in`` False keeps the
    real lm_head, for comparison). Other precisions are written to ``spec.output``."""
    import onnx
    import tensorflow as tf

    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS
    from mt5lite.exporters.tflite.masking import with_mask_value
    from mt5lite.exporters.tflite.onnx_to_tf import graph_function, weight_variables
    from mt5lite.exporters.tflite.splice import STAND_IN_VALUE, stand_in_lm_head, stand_in_rows

    calibrated = TFLITE_PRECISIONS[spec.quantize].calibrated  # lookup tables quantized on their own range
    module, pool = tf.Module(), {}
    functions, stand_ins = {}, {}
    for role, graph in spec.graphs.items():
        # The graph alone: its weights are read from their file straight into the variables.
        model, folder = onnx.load(graph.onnx, load_external_data=False), str(Path(graph.onnx).parent)
        if graph.mask_value is not None:
            with_mask_value(model, graph.mask_value, folder)
        names = [t.name for t in graph.inputs]
        signature = [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype), name=t.name) for t in graph.inputs]
        lm_head = stand_in_lm_head(model, folder) if calibrated and spec.use_stand_in else None
        skip = {}
        if lm_head is not None:
            factors = Path(spec.float_model).with_name(f"lm-head-factors-{role}.npy")
            np.save(factors, lm_head[1])
            taken = {int(d) for g in spec.graphs.values() for t in g.inputs + g.outputs for d in t.shape}
            taken |= {int(d) for t in model.graph.initializer for d in t.dims}
            rows = stand_in_rows(taken)
            stand_ins[role] = asdict(LmHeadStandIn(lm_head[0], str(factors), rows))
            skip = {lm_head[0]: ([len(lm_head[1]), rows], STAND_IN_VALUE)}
        variables = weight_variables(model, pool, base_dir=folder, skip=frozenset(skip))
        functions[role] = tf.function(_named_function(names, graph_function(model, names, variables, calibrated,
                                                                            folder, skip)),
                                      input_signature=signature)
        setattr(module, f"graph_{role}", functions[role])
        del model
    module.weights = list(pool.values())
    target = spec.float_model if calibrated else spec.output
    with tempfile.TemporaryDirectory(dir=Path(target).parent, prefix=".saved-model-") as saved:
        # Through a SavedModel with the weights as variables: the converter then reads each weight once.
        tf.saved_model.save(module, saved, signatures={role: f.get_concrete_function()
                                                       for role, f in functions.items()})
        del module, functions, pool
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(spec.graphs))
        if calibrated:
            # TensorFlow's int8 steps after this one (calibrate, quantize, deduplicate buffers) run as separate
            # steps below, so no process holds more than one model at a time.
            converter._optimize_tflite_model = lambda model, *args, **kwargs: model
        flatbuffer = _convert(converter, spec)
    with open(target, "wb") as handle:
        handle.write(flatbuffer)
    return {"bytes": len(flatbuffer), "stand_ins": stand_ins}


def _convert(converter, spec: WorkerSpec) -> bytes:
    """Set ``converter`` up for the spec's precision and ops, and convert."""
    import tensorflow as tf

    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS

    precision = TFLITE_PRECISIONS[spec.quantize]
    # Calibrated int8 runs int8 builtins (the parts kept float aside); the contract's inputs and outputs stay float.
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision.calibrated else tf.lite.OpsSet.TFLITE_BUILTINS]
    if spec.allow_flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if precision.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision.supported_types:
        converter.target_spec.supported_types = [tf.as_dtype(t) for t in precision.supported_types]
    if precision.calibrated:
        converter.representative_dataset = lambda: _representative_data(spec)
    return converter.convert()


def _further_graphs(spec: WorkerSpec) -> dict[str, list[str]]:
    """The further graphs of ``spec`` (batched decoder steps, source-length buckets) by the kind they are of."""
    from mt5lite.contract import role_kind

    found: dict[str, list[str]] = {}
    for role, graph in spec.graphs.items():
        if not graph.base:
            found.setdefault(role_kind(role), []).append(role)
    return found


def calibrate_float(spec: WorkerSpec) -> dict:
    """The float model of ``convert`` (``spec.float_model``) with the range of every tensor recorded on the
    representative dataset, written to ``spec.calibrated_model``: what TensorFlow's converter does before it
    quantizes (``tf.lite.TFLiteConverter._quantize``: intermediate tensors added, then its calibrator)."""
    from tensorflow.lite.python.lite import RepresentativeDataset
    from tensorflow.lite.python.optimize import calibrator

    from mt5lite.exporters.tflite.batched_ranges import share_ranges

    model = calibrator.add_intermediate_tensors(Path(spec.float_model).read_bytes())
    calibrated = calibrator.Calibrator(model).calibrate(
        RepresentativeDataset(lambda: _representative_data(spec)).input_gen)
    del model
    for kind, further in _further_graphs(spec).items():  # quantized as their kind, row for row
        calibrated = share_ranges(calibrated, kind, further)
    Path(spec.calibrated_model).write_bytes(calibrated)
    return {"bytes": len(calibrated)}


def _float_nodes(flatbuffer: bytes, parts: list[str]) -> list[str]:
    """The output names of the ops of ``parts`` (``FLOAT_PARTS``) in the model ``flatbuffer``, read once for all."""
    if not parts:
        return []
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    return sorted({node for part in parts for node in FLOAT_PARTS[part].nodes(model)})


def quantize(spec: WorkerSpec) -> dict:
    """The calibrated model (``spec.calibrated_model``) quantized to full int8 with float inputs and outputs, its
    identical read-only buffers stored once (both as TensorFlow's converter does, for a model under 2 GB), and
    the real lm_head written over its stand-in (``spec.lm_head_stand_ins``: role -> the ONNX initializer and the
    factors folded into it; the logits' calibrated range in ``spec.logits_range``); with
    the parts ``spec.float_parts`` names stay float (``FLOAT_PARTS``). Writes ``spec.output``; returns its size and
    the float ops."""
    import onnx
    import tensorflow as tf
    from tensorflow.lite.python import convert as tf_convert

    from mt5lite.exporters.tflite.batched_ranges import quantization_mismatches
    from mt5lite.exporters.tflite.onnx_to_tf import ConversionError, initializer_array
    from mt5lite.exporters.tflite.splice import splice_lm_head

    calibrated = Path(spec.calibrated_model).read_bytes()
    float_nodes = _float_nodes(calibrated, spec.float_parts)
    model = tf_convert.mlir_quantize(calibrated, input_data_type=tf.float32, output_data_type=tf.float32,
                                     denylisted_nodes=float_nodes or None)
    del calibrated
    model = tf_convert.deduplicate_readonly_buffers(model)
    spliced = set()
    for role, stand_in in spec.lm_head_stand_ins.items():
        if (stand_in.weight, stand_in.rows) in spliced:  # a batched decoder step's: the same buffer, done
            continue
        spliced.add((stand_in.weight, stand_in.rows))
        graph = spec.graphs[role]
        onnx_model = onnx.load(graph.onnx, load_external_data=False)
        tensor = next(t for t in onnx_model.graph.initializer if t.name == stand_in.weight)
        weight = initializer_array(tensor, Path(graph.onnx).parent) * np.load(stand_in.factors)[:, None]
        # MatMul's [in, out] is TFLite's [out, in]
        model = splice_lm_head(model, weight.T, tuple(spec.logits_range), stand_in.rows)
    for kind, further in _further_graphs(spec).items():
        for role in further:
            if mismatched := quantization_mismatches(model, kind, role):
                raise ConversionError(f"the {role} signature has {mismatched} tensors quantized otherwise than the "
                                      f"{kind} signature's; it would not compute what the {kind} computes")
    Path(spec.output).write_bytes(model)
    return {"bytes": len(model), "float_nodes": len(float_nodes)}


def check(spec: WorkerSpec) -> dict:
    """Load the .tflite with LiteRT, run each graph's signature once on neutral inputs; report each signature's
    ops and output shapes, and the weight buffers the signatures share."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from mt5lite.exporters.tflite.inspection import read_signatures, shared_buffers

    # Without the default XNNPACK delegate: the model's own kernels run.
    interpreter = Interpreter(model_path=spec.output,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    signatures, sizes = read_signatures(spec.output)
    found = {}
    for role, graph in spec.graphs.items():
        feeds = {}
        for t in graph.inputs:
            value = np.ones if t.name.endswith("attention_mask") else np.zeros
            feeds[t.name] = value(t.shape, dtype=t.dtype)
        outputs = interpreter.get_signature_runner(role)(**feeds)
        found[role] = {"ops": sorted({op.name for op in signatures[role].ops}),
                       "outputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype),
                                          "finite": bool(np.isfinite(v).all())} for name, v in outputs.items()}}
    return {"signatures": found, "weights": shared_buffers(signatures, sizes)}


#: The steps, by command, in the order an export runs them (``capture``, ``calibrate`` and ``quantize``: int8).
STEPS = {"capture": capture, "convert": convert, "calibrate": calibrate_float, "quantize": quantize, "check": check}


def main(argv: list[str]) -> int:
    """Run one step and write its result as JSON: what it found, or the toolkit error it stopped with."""
    from mt5lite.errors import Mt5LiteError

    command, spec_path, result_path = argv
    spec = WorkerSpec.from_json(Path(spec_path).read_text(encoding="utf-8"))
    status = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            result = STEPS[command](spec)
        except Mt5LiteError as exc:
            result, status = {"error": {"type": type(exc).__name__, "message": str(exc)}}, 1
        except Exception as exc:  # noqa: BLE001 - reported by the caller in one line, not as a traceback
            last_line = (str(exc).strip().splitlines() or [""])[-1]
            message = f"{Path(spec.output).name}: TFLite {command} failed ({type(exc).__name__}: {last_line})"
            result, status = {"error": {"type": "ConversionError", "message": message}}, 1
    result["warnings"] = [{"category": w.category.__name__, "message": str(w.message)} for w in caught
                          if w.category.__module__.startswith("mt5lite")]
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
