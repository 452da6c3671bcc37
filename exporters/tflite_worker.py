"""Child-process steps of the TFLite export, kept out of the caller's process on purpose.

TensorFlow and the LiteRT interpreter abort a process that imports both, and a broken .tflite can abort (SIGABRT)
whatever loads it, so each step runs alone:

    python -m mt5lite.exporters.tflite_worker convert SPEC.json RESULT.json  # ONNX graphs -> .tflite (TensorFlow only)
    python -m mt5lite.exporters.tflite_worker check SPEC.json RESULT.json    # load, run each signature once (LiteRT)

SPEC.json holds the output path, the precision and, per graph (role), the ONNX file and its tensor specs from the
manifest; the step writes what it found (ops, output shapes, bytes) to RESULT.json, so nothing TensorFlow prints
can be mistaken for it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np


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
    """Translate every ONNX graph of the spec to TensorFlow and convert them together into one .tflite, one
    signature per graph (named by its role). A weight that several graphs read (identical dtype, shape and bytes)
    becomes one variable, so the converter writes it once and the signatures share its buffer. For ``int8``, each
    graph's ``calibration`` is a ``save_feeds`` directory (the representative dataset) and its ``mask_value`` the
    masking constant (``mt5lite.exporters.int8_masking``)."""
    import onnx
    import tensorflow as tf

    from mt5lite.exporters.int8_masking import with_mask_value
    from mt5lite.exporters.onnx_to_tf import graph_function, weight_variables
    from mt5lite.exporters.tflite_export import TFLITE_PRECISIONS

    table_ranges = TFLITE_PRECISIONS[spec["quantize"]].calibrated  # lookup tables quantized on their own range
    module, pool = tf.Module(), {}
    functions = {}
    for role, graph in spec["graphs"].items():
        model = onnx.load(graph["onnx"], load_external_data=True)
        if graph.get("mask_value") is not None:
            with_mask_value(model, graph["mask_value"])
        names = [t["name"] for t in graph["inputs"]]
        signature = [tf.TensorSpec(t["shape"], tf.as_dtype(t["dtype"]), name=t["name"]) for t in graph["inputs"]]
        variables = weight_variables(model, pool)
        functions[role] = tf.function(_named_function(names, graph_function(model, names, variables, table_ranges)),
                                      input_signature=signature)
        setattr(module, f"graph_{role}", functions[role])
        del model
    module.weights = list(pool.values())
    with tempfile.TemporaryDirectory(dir=Path(spec["output"]).parent, prefix=".saved-model-") as saved:
        # Through a SavedModel with the weights as variables: the converter then reads each weight once.
        tf.saved_model.save(module, saved, signatures={role: f.get_concrete_function()
                                                       for role, f in functions.items()})
        del module, functions, pool
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(spec["graphs"]))
        flatbuffer = _convert(converter, spec)
    with open(spec["output"], "wb") as handle:
        handle.write(flatbuffer)
    return {"bytes": len(flatbuffer)}


def _representative_data(spec: dict):
    """The calibration feeds of every graph, tagged with its signature key (the converter's multi-signature
    form)."""
    from mt5lite.exporters.calibration import load_feeds

    for role, graph in spec["graphs"].items():
        for feed in load_feeds(graph["calibration"], [t["name"] for t in graph["inputs"]]):
            yield role, feed


def _convert(converter, spec: dict) -> bytes:
    """Set ``converter`` up for the spec's precision and ops, and convert."""
    import tensorflow as tf

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
        converter.representative_dataset = lambda: _representative_data(spec)
    return converter.convert()


def check(spec: dict) -> dict:
    """Load the .tflite with LiteRT, run each graph's signature once on neutral inputs; report each signature's
    ops and output shapes, and the weight buffers the signatures share."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from mt5lite.exporters.tflite_inspect import read_signatures, shared_buffers

    # Without the default XNNPACK delegate: the model's own kernels run.
    interpreter = Interpreter(model_path=spec["output"],
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    signatures, sizes = read_signatures(spec["output"])
    found = {}
    for role, graph in spec["graphs"].items():
        feeds = {}
        for t in graph["inputs"]:
            value = np.ones if t["name"].endswith("attention_mask") else np.zeros
            feeds[t["name"]] = value(t["shape"], dtype=t["dtype"])
        outputs = interpreter.get_signature_runner(role)(**feeds)
        found[role] = {"ops": sorted({op.name for op in signatures[role].ops}),
                       "outputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype),
                                          "finite": bool(np.isfinite(v).all())} for name, v in outputs.items()}}
    return {"signatures": found, "weights": shared_buffers(signatures, sizes)}


def main(argv: list[str]) -> int:
    """Run one step and write its result as JSON."""
    command, spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = {"convert": convert, "check": check}[command](spec)
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
