"""Every ONNX -> TensorFlow translation in ``mt5lite.exporters.tflite.onnx_to_tf.OPS`` against ONNX Runtime, on one- or
few-node graphs with seeded random inputs.

TensorFlow never loads in the pytest process (TensorFlow and LiteRT in one process can abort it, and other test
modules load LiteRT). One child process per session, ``python -m tests.test_onnx_to_tf_ops CASES RESULTS``, traces
every case's graph with ``graph_function`` under ``tf.function`` (as the TFLite export does), runs it, and writes
the outputs to ``RESULTS.npz`` and any error to ``RESULTS.json``; the tests compare those with ONNX Runtime here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from mt5lite.exporters.tflite.onnx_to_tf import OPS

REPO_ROOT = Path(__file__).resolve().parent.parent
INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
FLOAT_TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}  # TF vs ORT float32: same math, summation order may differ
CHILD_TIMEOUT_S = 300

_rng = np.random.default_rng(20240611)  # the table below draws from it in order, so every run sees the same inputs


def f32(*shape, low=-3.0, high=3.0) -> np.ndarray:
    """Random float32 in [low, high)."""
    return _rng.uniform(low, high, shape).astype(np.float32)


def pos(*shape) -> np.ndarray:
    """Random positive float32 (for Sqrt, Log, the base of Pow)."""
    return f32(*shape, low=0.1, high=3.0)


def i64(*shape, low=-9, high=10) -> np.ndarray:
    """Random int64 in [low, high)."""
    return _rng.integers(low, high, shape, dtype=np.int64)


def nonzero(*shape) -> np.ndarray:
    """Random non-zero int64 of both signs (divisors)."""
    return np.where(_rng.random(shape) < 0.5, -1, 1) * _rng.integers(1, 5, shape, dtype=np.int64)


def flags(*shape) -> np.ndarray:
    """Random bool."""
    return _rng.random(shape) < 0.5


def ints(*values) -> np.ndarray:
    """An int64 constant."""
    return np.array(values, dtype=np.int64)


def scalar(value, dtype=np.float32) -> np.ndarray:
    """A 0-d constant."""
    return np.array(value, dtype=dtype)


@dataclass(frozen=True)
class Node:
    """One ONNX node: ``signature`` is ``"in1, in2 -> out"`` (an empty name is an omitted optional input)."""

    op: str
    signature: str
    attrs: dict = field(default_factory=dict)

    def proto(self, index: int) -> onnx.NodeProto:
        inputs, outputs = ([n.strip() for n in part.split(",")] if part.strip() else []
                           for part in self.signature.split("->"))
        return helper.make_node(self.op, inputs, outputs, name=f"/{self.op}_{index}", **self.attrs)


@dataclass(frozen=True)
class Case:
    """A graph reading ``feeds`` (graph inputs, random data) and ``consts`` (initializers); the last node's outputs
    are the graph's outputs."""

    name: str
    nodes: tuple[Node, ...]
    feeds: dict = field(default_factory=dict)
    consts: dict = field(default_factory=dict)
    opset: int = 17


def case(name: str, op: str, signature: str, feeds: dict | None = None, consts: dict | None = None,
         opset: int = 17, **attrs) -> Case:
    """A one-node case."""
    return Case(name, (Node(op, signature, attrs),), feeds or {}, consts or {}, opset)


#: The table: at least one case per op in OPS (test_every_op_has_a_case), more where attributes or optional inputs
#: change the translation.
CASES = [
    # elementwise, binary
    case("Add-broadcast", "Add", "a, b -> y", {"a": f32(2, 3, 4), "b": f32(3, 1)}),
    case("Sub", "Sub", "a, b -> y", {"a": f32(2, 3), "b": f32(2, 3)}),
    case("Sub-int", "Sub", "a, b -> y", {"a": i64(4, 5), "b": i64(5)}),
    case("Mul-const-scalar", "Mul", "a, b -> y", {"a": f32(2, 3, 4)}, {"b": scalar(2.5)}),
    case("Div-float", "Div", "a, b -> y", {"a": f32(3, 4), "b": pos(3, 4)}),
    case("Div-int-truncates", "Div", "a, b -> y", {"a": i64(4, 6, low=-20, high=21), "b": nonzero(4, 6)}),
    case("Div-int-folded", "Div", "a, b -> y", {}, {"a": i64(3, 5, low=-20, high=21), "b": nonzero(3, 5)}),
    case("Pow", "Pow", "a, b -> y", {"a": pos(3, 4), "b": f32(3, 4)}),
    case("Pow-square", "Pow", "a, b -> y", {"a": f32(2, 5)}, {"b": scalar(2.0)}),
    case("Equal-int", "Equal", "a, b -> y", {"a": i64(4, 5, low=0, high=3), "b": i64(4, 5, low=0, high=3)}),
    case("Less", "Less", "a, b -> y", {"a": f32(3, 4), "b": f32(3, 4)}),
    case("LessOrEqual-int", "LessOrEqual", "a, b -> y", {"a": i64(4, 5, low=0, high=3), "b": i64(1, 5, low=0, high=3)}),
    case("Greater", "Greater", "a, b -> y", {"a": f32(3, 4), "b": f32(4)}),
    case("Max", "Max", "a, b -> y", {"a": f32(3, 4), "b": f32(3, 4)}),
    case("Max-three-inputs", "Max", "a, b, c -> y", {"a": f32(3, 4), "b": f32(3, 4), "c": f32(4)}),
    case("Min-int-const", "Min", "a, b -> y", {"a": i64(2, 6, low=0, high=40)}, {"b": scalar(15, np.int64)}),
    case("And", "And", "a, b -> y", {"a": flags(3, 4), "b": flags(3, 4)}),
    case("Or", "Or", "a, b -> y", {"a": flags(3, 4), "b": flags(1, 4)}),
    # elementwise, unary
    case("Sqrt", "Sqrt", "x -> y", {"x": pos(3, 4)}),
    case("Tanh", "Tanh", "x -> y", {"x": f32(3, 4)}),
    case("Log", "Log", "x -> y", {"x": pos(3, 4)}),
    case("Abs", "Abs", "x -> y", {"x": f32(3, 4)}),
    case("Abs-int", "Abs", "x -> y", {"x": i64(3, 4)}),
    case("Neg", "Neg", "x -> y", {"x": f32(3, 4)}),
    case("Relu", "Relu", "x -> y", {"x": f32(3, 4)}),
    case("Erf", "Erf", "x -> y", {"x": f32(3, 4)}),
    case("Not", "Not", "x -> y", {"x": flags(3, 4)}),
    case("Identity", "Identity", "x -> y", {"x": f32(3, 4)}),
    # constants and shapes
    Case("Constant", (Node("Constant", " -> c", {"value": numpy_helper.from_array(f32(3, 4), "c")}),
                      Node("Add", "x, c -> y")), {"x": f32(2, 3, 4)}),
    Case("Constant-value_floats", (Node("Constant", " -> c", {"value_floats": [0.5, -1.0, 2.0, 4.0]}),
                                   Node("Mul", "x, c -> y")), {"x": f32(3, 4)}),
    Case("Constant-value_int", (Node("Constant", " -> c", {"value_int": 3}), Node("Add", "x, c -> y")),
         {"x": i64(2, 5)}),
    case("ConstantOfShape-value", "ConstantOfShape", "shape -> y", {}, {"shape": ints(2, 3)},
         value=numpy_helper.from_array(ints(7), "value")),
    Case("ConstantOfShape-default-of-Shape", (Node("Shape", "x -> s"), Node("ConstantOfShape", "s -> y")),
         {"x": f32(2, 1, 3)}),
    case("Shape", "Shape", "x -> y", {"x": f32(2, 3, 4)}),
    case("Shape-start-end", "Shape", "x -> y", {"x": f32(2, 3, 4, 5)}, start=1, end=-1),
    case("Range-int", "Range", "start, limit, delta -> y", {},
         {"start": scalar(2, np.int64), "limit": scalar(11, np.int64), "delta": scalar(3, np.int64)}),
    case("Range-int-negative-delta", "Range", "start, limit, delta -> y", {},
         {"start": scalar(5, np.int64), "limit": scalar(-4, np.int64), "delta": scalar(-2, np.int64)}),
    case("Range-float", "Range", "start, limit, delta -> y", {},
         {"start": scalar(0.5), "limit": scalar(3.0), "delta": scalar(0.25)}),
    Case("Range-then-Add", (Node("Range", "start, limit, delta -> r"), Node("Add", "x, r -> y")),
         {"x": i64(2, 5)}, {"start": scalar(0, np.int64), "limit": scalar(5, np.int64), "delta": scalar(1, np.int64)}),
    # casts and layout
    case("Cast-float-to-int32", "Cast", "x -> y", {"x": f32(3, 4, low=-9, high=9)}, to=onnx.TensorProto.INT32),
    case("Cast-int-to-float", "Cast", "x -> y", {"x": i64(3, 4)}, to=onnx.TensorProto.FLOAT),
    case("Cast-float-to-bool", "Cast", "x -> y", {"x": np.array([[0.0, 1.5], [-2.0, 0.0]], np.float32)},
         to=onnx.TensorProto.BOOL),
    case("MatMul-3d-2d", "MatMul", "a, w -> y", {"a": f32(2, 3, 4)}, {"w": f32(4, 5)}),
    case("MatMul-4d-4d", "MatMul", "a, b -> y", {"a": f32(1, 2, 3, 4), "b": f32(1, 2, 4, 5)}),
    case("MatMul-2d", "MatMul", "a, b -> y", {"a": f32(3, 4), "b": f32(4, 2)}),
    case("Reshape-zero-and-minus-one", "Reshape", "x, shape -> y", {"x": f32(2, 3, 4)}, {"shape": ints(0, -1)}),
    case("Reshape-split-last", "Reshape", "x, shape -> y", {"x": f32(2, 3, 4)}, {"shape": ints(0, 0, 2, 2)}),
    case("Unsqueeze-axes-input", "Unsqueeze", "x, axes -> y", {"x": f32(3, 4)}, {"axes": ints(0, -1)}),
    case("Unsqueeze-axes-attribute", "Unsqueeze", "x -> y", {"x": f32(3, 4)}, opset=11, axes=[1, 3]),
    case("Squeeze-axes-input", "Squeeze", "x, axes -> y", {"x": f32(3, 1, 4, 1)}, {"axes": ints(1)}),
    case("Squeeze-no-axes", "Squeeze", "x -> y", {"x": f32(1, 3, 1, 4)}),
    case("Squeeze-axes-attribute", "Squeeze", "x -> y", {"x": f32(3, 1, 4, 1)}, opset=11, axes=[-1]),
    case("Transpose-perm", "Transpose", "x -> y", {"x": f32(1, 2, 3, 4)}, perm=[0, 2, 1, 3]),
    case("Transpose-default", "Transpose", "x -> y", {"x": f32(2, 3, 4)}),
    case("Concat-last-axis", "Concat", "a, b, c -> y", {"a": f32(2, 3, 1), "b": f32(2, 3, 2), "c": f32(2, 3, 4)},
         axis=-1),
    case("Concat-with-const", "Concat", "a, b -> y", {"a": i64(2)}, {"b": ints(5, 6)}, axis=0),
    # indexing
    case("Gather-negative-const-indices", "Gather", "x, i -> y", {"x": f32(5, 4)}, {"i": ints(-1, 0, -5, 2)}),
    case("Gather-axis-1-input-indices", "Gather", "x, i -> y", {"x": f32(2, 5, 3), "i": i64(2, 4, low=0, high=5)},
         axis=1),
    case("Gather-scalar-index", "Gather", "x, i -> y", {"x": f32(3, 4)}, {"i": scalar(-2, np.int64)}, axis=1),
    case("Slice-to-int64-max", "Slice", "x, starts, ends, axes -> y", {"x": f32(3, 6)},
         {"starts": ints(1), "ends": ints(INT64_MAX), "axes": ints(-1)}),
    case("Slice-negative-starts-steps-2", "Slice", "x, starts, ends, axes, steps -> y", {"x": f32(4, 9)},
         {"starts": ints(-8, 1), "ends": ints(INT64_MAX, -1), "axes": ints(1, 0), "steps": ints(2, 1)}),
    case("Slice-reverse-to-start", "Slice", "x, starts, ends, axes, steps -> y", {"x": f32(3, 5)},
         {"starts": ints(-1), "ends": ints(INT64_MIN), "axes": ints(1), "steps": ints(-1)}),
    case("Slice-reverse-step-2", "Slice", "x, starts, ends, axes, steps -> y", {"x": f32(3, 6)},
         {"starts": ints(INT64_MAX), "ends": ints(-INT64_MAX), "axes": ints(1), "steps": ints(-2)}),
    case("Slice-reverse-stops-before-0", "Slice", "x, starts, ends, axes, steps -> y", {"x": f32(5, 2)},
         {"starts": ints(3), "ends": ints(0), "axes": ints(0), "steps": ints(-1)}),
    case("Slice-empty", "Slice", "x, starts, ends -> y", {"x": f32(4, 3)}, {"starts": ints(3, 0), "ends": ints(1, 2)}),
    case("Slice-folded", "Slice", "x, starts, ends, axes, steps -> y", {},
         {"x": i64(4, 6), "starts": ints(-1, 0), "ends": ints(INT64_MIN, 5), "axes": ints(0, 1), "steps": ints(-2, 2)}),
    # reductions, activations, selection
    case("ReduceMean-last-axis", "ReduceMean", "x -> y", {"x": f32(2, 3, 8)}, axes=[-1], keepdims=1),
    case("ReduceMean-two-axes-drop", "ReduceMean", "x -> y", {"x": f32(2, 3, 4)}, axes=[0, 2], keepdims=0),
    case("ReduceMean-all-axes", "ReduceMean", "x -> y", {"x": f32(2, 3, 4)}),
    case("ReduceMean-axes-input", "ReduceMean", "x, axes -> y", {"x": f32(2, 3, 4)}, {"axes": ints(1)}, opset=18,
         keepdims=0),
    case("ReduceMean-empty-axes-input", "ReduceMean", "x, axes -> y", {"x": f32(2, 3, 4)}, {"axes": ints()}, opset=18),
    case("Softmax-last-axis", "Softmax", "x -> y", {"x": f32(2, 3, 5)}),
    case("Softmax-axis-1", "Softmax", "x -> y", {"x": f32(2, 3, 5)}, axis=1),
    case("Where-broadcast", "Where", "c, a, b -> y", {"c": flags(1, 1, 4), "a": f32(2, 3, 4)},
         {"b": scalar(-1e9)}),
    case("Clip-min-max-inputs", "Clip", "x, lo, hi -> y", {"x": f32(3, 4)}, {"lo": scalar(-1.0), "hi": scalar(0.5)}),
    case("Clip-max-only", "Clip", "x, , hi -> y", {"x": f32(3, 4)}, {"hi": scalar(0.0)}),
    case("Clip-attributes", "Clip", "x -> y", {"x": f32(3, 4)}, opset=6, min=-0.5, max=2.0),
    case("Expand", "Expand", "x, shape -> y", {"x": f32(3, 1)}, {"shape": ints(2, 1, 4)}),
    case("Expand-lower-rank-shape", "Expand", "x, shape -> y", {"x": f32(2, 3)}, {"shape": ints(3)}),
]
#: A node no translator knows: its conversion must fail and list the known ops.
UNKNOWN_OP = case("unknown-op", "Celu", "x -> y", {"x": f32(2, 3)})


def covered_ops() -> set[str]:
    """Every op type some case's graph runs (and so checks against ONNX Runtime)."""
    return {node.op for c in CASES for node in c.nodes}


def build_model(c: Case) -> onnx.ModelProto:
    """``c`` as a checked ONNX model (opset ``c.opset``, IR version 8), output types from shape inference."""
    nodes = [node.proto(i) for i, node in enumerate(c.nodes)]
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for name, v in c.feeds.items()]
    outputs = [helper.make_empty_tensor_value_info(name) for name in nodes[-1].output]
    initializers = [numpy_helper.from_array(v, name) for name, v in c.consts.items()]
    graph = helper.make_graph(nodes, c.name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", c.opset)], ir_version=8)
    if c is not UNKNOWN_OP:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    return model


def run_cases(cases_dir: Path, results: Path) -> None:
    """The child's work: every ``CASE.onnx`` in ``cases_dir`` through ``graph_function`` under ``tf.function``, fed
    from ``CASE.npz``; outputs to ``results.npz`` (``CASE/OUTPUT``), errors to ``results.json`` (``CASE: message``)."""
    import tensorflow as tf

    from mt5lite.exporters.tflite.onnx_to_tf import graph_function

    outputs, errors = {}, {}
    for path in sorted(cases_dir.glob("*.onnx")):
        name = path.stem
        model = onnx.load(str(path))
        feeds = dict(np.load(cases_dir / f"{name}.npz"))
        names = [i.name for i in model.graph.input]
        signature = [tf.TensorSpec(feeds[n].shape, tf.as_dtype(feeds[n].dtype), name=n) for n in names]
        try:
            function = tf.function(graph_function(model, names), input_signature=signature)
            for output, value in function(*(feeds[n] for n in names)).items():
                outputs[f"{name}/{output}"] = value.numpy()
        except Exception as error:  # recorded for the parent's test of this case, which fails with it
            errors[name] = f"{type(error).__name__}: {error}"
    np.savez(results.with_suffix(".npz"), **outputs)
    results.with_suffix(".json").write_text(json.dumps(errors), encoding="utf-8")


@pytest.fixture(scope="session")
def tf_results(tmp_path_factory) -> tuple[dict, dict]:
    """Every case (and UNKNOWN_OP) run by TensorFlow in one child process: (outputs by ``CASE/OUTPUT``, errors by
    case)."""
    root = tmp_path_factory.mktemp("onnx_to_tf_ops")
    cases_dir = root / "cases"
    cases_dir.mkdir()
    for c in [*CASES, UNKNOWN_OP]:
        onnx.save(build_model(c), str(cases_dir / f"{c.name}.onnx"))
        np.savez(cases_dir / f"{c.name}.npz", **c.feeds)
    results = root / "results"
    env = dict(os.environ, USE_TF="0", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "tests.test_onnx_to_tf_ops", str(cases_dir), str(results)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, f"TensorFlow child failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    with np.load(results.with_suffix(".npz")) as archive:
        outputs = dict(archive)
    return outputs, json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))


def _onnxruntime(c: Case) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(build_model(c).SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, c.feeds), strict=True))


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_translation_matches_onnxruntime(tf_results, c):
    outputs, errors = tf_results
    if c.name in errors:
        pytest.fail(f"translation failed: {errors[c.name]}")
    for name, expected in _onnxruntime(c).items():
        actual = outputs[f"{c.name}/{name}"]
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), name
        if np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_allclose(actual, expected, **FLOAT_TOLERANCE, err_msg=name)
        else:  # integers and bools: exact
            np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_every_op_has_a_case():
    missing = set(OPS) - covered_ops()
    assert not missing, f"add a case to CASES for {sorted(missing)}"


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_an_unknown_op_lists_the_known_ones(tf_results):
    _, errors = tf_results
    message = errors[UNKNOWN_OP.name]
    assert message.startswith("ConversionError: ")  # tf.function adds its "in user code" trace before ours
    assert "node '/Celu_0': ONNX op Celu has no TensorFlow translation here" in message
    assert message.rstrip().endswith(f"known ops: {', '.join(sorted(OPS))}")


if __name__ == "__main__":
    run_cases(Path(sys.argv[1]), Path(sys.argv[2]))


def test_weights_become_valid_tensorflow_variable_names():
    """An initializer named by its ONNX node path (the rotation's turn-back, ``/encoder/...``) would start a
    TensorFlow root scope with ``_``, which TensorFlow refuses; names the converter saw before stay as they were."""
    from mt5lite.exporters.tflite.onnx_to_tf import variable_name

    assert variable_name("/encoder/final_layer_norm.rotation_back") == "w_encoder_final_layer_norm.rotation_back"
    assert variable_name("encoder.block.0.layer.0.SelfAttention.q.weight") == (
        "encoder.block.0.layer.0.SelfAttention.q.weight")
    assert variable_name("onnx::MatMul_123:0") == "onnx__MatMul_123_0"
