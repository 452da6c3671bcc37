"""The full-int8 masking constant: which constants are masks, and the value chosen from calibration scores."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mt5lite.exporters.tflite.masking import (
    LEAK_TOLERANCE,
    SAFETY_MARGIN,
    int8_mask_value,
    is_mask_constant,
    with_mask_value,
)
from mt5lite.exporters.tflite.onnx_to_tf import ConversionError


def _masked_softmax_graph(path, mask_constant: float = -1e9):
    """y = Softmax(x + Where(visible, 0, mask_constant)), the shape of the contract's attention masking."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    visible = helper.make_tensor_value_info("visible", TensorProto.BOOL, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Constant", [], ["mask"], value=numpy_helper.from_array(
            np.full((1, 4), mask_constant, np.float32), "mask_value")),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.zeros((1, 4), np.float32), "z")),
        helper.make_node("Where", ["visible", "zero", "mask"], ["bias"]),
        helper.make_node("Add", ["x", "bias"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["y"], axis=-1),
    ]
    model = helper.make_model(helper.make_graph(nodes, "masked", [x, visible], [y]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _feed(scores, visible):
    return {"x": np.array([scores], np.float32), "visible": np.array([visible], bool)}


def test_mask_constants_are_recognised_and_replaced(tmp_path):
    assert is_mask_constant(np.full(3, -1e9, np.float32))
    assert is_mask_constant(np.array(np.finfo(np.float32).min))
    assert not is_mask_constant(np.array([-1e9, 0.0], np.float32))  # a mask constant is masks only
    assert not is_mask_constant(np.array([-1e9]).astype(np.int64))
    model = onnx.load(str(_masked_softmax_graph(tmp_path / "g.onnx")))
    assert with_mask_value(model, -20.0) == 1
    values = [numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"]
    assert (values[0] == -20.0).all() and (values[1] == 0.0).all()


def test_mask_value_keeps_masked_keys_under_the_tolerance(tmp_path):
    path = _masked_softmax_graph(tmp_path / "g.onnx")
    feeds = [_feed([0.0, 1.0, 2.0, 3.0], [True, True, False, False]),  # masked keys score higher: the binding row
             _feed([5.0, 0.0, 0.0, 0.0], [True, False, False, False])]
    chosen = int8_mask_value(path, feeds)
    real, masked = np.log(np.exp(0.0) + np.exp(1.0)), np.log(np.exp(2.0) + np.exp(3.0))
    expected = real - masked + np.log(LEAK_TOLERANCE / (1 - LEAK_TOLERANCE))
    assert chosen["bound"] == pytest.approx(expected, abs=1e-5)
    assert chosen["value"] == np.floor(expected - SAFETY_MARGIN)
    assert chosen["masked_rows"] == 2
    for feed in feeds:  # at the chosen value, masked keys' softmax share is under the tolerance
        scores = feed["x"][0] + np.where(feed["visible"][0], 0.0, chosen["value"])
        weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        assert weights[~feed["visible"][0]].sum() <= LEAK_TOLERANCE


def test_mask_value_needs_a_masked_key(tmp_path):
    path = _masked_softmax_graph(tmp_path / "g.onnx")
    with pytest.raises(ConversionError, match="no calibration input masks a key"):
        int8_mask_value(path, [_feed([0.0, 1.0, 2.0, 3.0], [True] * 4)])


def test_mask_value_reads_a_graph_whose_constants_are_external_data(tmp_path):
    """The graph is read without its external data (the weights stay on disk, read by ONNX Runtime from the
    graph's folder): a mask stored there is still found, and the value is the one the inline graph gets."""
    inline = _masked_softmax_graph(tmp_path / "inline.onnx")
    model = onnx.load(str(inline))
    for node in list(model.graph.node):  # the constants become initializers, then external data
        if node.op_type == "Constant":
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t),
                                                                   node.output[0]))
            model.graph.node.remove(node)
    folder = tmp_path / "external"
    folder.mkdir()
    onnx.save(model, str(folder / "g.onnx"), save_as_external_data=True, location="g.data", size_threshold=0)
    feeds = [_feed([0.0, 1.0, 2.0, 3.0], [True, True, False, False])]
    assert int8_mask_value(folder / "g.onnx", feeds) == int8_mask_value(inline, feeds)
    assert int8_mask_value(folder / "g.onnx", feeds)["masked_rows"] == 1
