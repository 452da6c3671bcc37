"""Child-process steps of the TFLite export, kept out of the caller's process on purpose.

TensorFlow and the LiteRT interpreter abort a process that imports both, and a broken .tflite can abort (SIGABRT)
whatever loads it, so each step runs alone:

    python -m mt5lite.exporters.tflite_worker convert SPEC.json RESULT.json  # ONNX graph -> .tflite (TensorFlow only)
    python -m mt5lite.exporters.tflite_worker check SPEC.json RESULT.json    # load, allocate, run once (LiteRT only)

SPEC.json holds the paths and the graph's tensor specs from the manifest; the step writes what it found (ops,
output shapes, bytes) to RESULT.json, so nothing TensorFlow prints can be mistaken for it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

SIGNATURE_KEY = "serving_default"


def _named_function(names: list[str], body):
    """A function with parameters named ``names`` (they become the TFLite signature's input names)."""
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise ValueError(f"tensor names {bad} are not valid parameter names")
    namespace: dict = {}
    params = ", ".join(names)
    exec(f"def graph({params}):\n    return body({params})\n", {"body": body}, namespace)  # noqa: S102
    return namespace["graph"]


def convert(spec: dict) -> dict:
    """Translate the ONNX graph to TensorFlow and convert it with the requested precision. For ``int8``,
    ``spec["calibration"]`` is a ``save_feeds`` directory (the representative dataset) and ``spec["mask_value"]``
    the masking constant (``mt5lite.exporters.int8_masking``)."""
    import onnx
    import tensorflow as tf

    from mt5lite.exporters.int8_masking import with_mask_value
    from mt5lite.exporters.onnx_to_tf import graph_function, weight_variables

    model = onnx.load(spec["onnx"], load_external_data=True)
    if spec.get("mask_value") is not None:
        with_mask_value(model, spec["mask_value"])
    inputs = spec["inputs"]
    names = [t["name"] for t in inputs]
    signature = [tf.TensorSpec(t["shape"], tf.as_dtype(t["dtype"]), name=t["name"]) for t in inputs]
    module = tf.Module()
    module.weights_by_name = weight_variables(model)
    function = _named_function(names, graph_function(model, names, module.weights_by_name))
    module.graph = tf.function(function, input_signature=signature)
    with tempfile.TemporaryDirectory(dir=Path(spec["output"]).parent, prefix=".saved-model-") as saved:
        # Through a SavedModel with the weights as variables: the converter then reads each weight once.
        tf.saved_model.save(module, saved, signatures={SIGNATURE_KEY: module.graph.get_concrete_function()})
        del module, model
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE_KEY])
        flatbuffer = _convert(converter, spec, names)
    with open(spec["output"], "wb") as handle:
        handle.write(flatbuffer)
    return {"bytes": len(flatbuffer)}


def _convert(converter, spec: dict, names: list[str]) -> bytes:
    """Set ``converter`` up for the spec's precision and ops, and convert."""
    import tensorflow as tf

    from mt5lite.exporters.calibration import load_feeds
    from mt5lite.exporters.tflite_export import TFLITE_PRECISIONS

    precision = TFLITE_PRECISIONS[spec["quantize"]]
    # Calibrated int8 runs int8 builtins only; the contract's float inputs and outputs stay float.
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision.calibrated else tf.lite.OpsSet.TFLITE_BUILTINS]
    if spec.get("allow_flex"):
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if precision.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision.supported_types:
        converter.target_spec.supported_types = [tf.as_dtype(t) for t in precision.supported_types]
    if precision.calibrated:
        converter.representative_dataset = lambda: load_feeds(spec["calibration"], names)
    return converter.convert()


def check(spec: dict) -> dict:
    """Load the .tflite with LiteRT, run its signature once on neutral inputs, report ops and output shapes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate, so the op list is the model's own, not "DELEGATE".
    interpreter = Interpreter(model_path=spec["output"],
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    feeds = {}
    for t in spec["inputs"]:
        value = np.ones if t["name"].endswith("attention_mask") else np.zeros
        feeds[t["name"]] = value(t["shape"], dtype=t["dtype"])
    outputs = runner(**feeds)
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    return {"ops": ops, "outputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype),
                                           "finite": bool(np.isfinite(v).all())} for name, v in outputs.items()}}


def main(argv: list[str]) -> int:
    """Run one step and write its result as JSON."""
    command, spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = {"convert": convert, "check": check}[command](spec)
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
