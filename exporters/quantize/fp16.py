"""Convert a graph to fp16 compute with chosen nodes kept in fp32, and fp32 inputs and outputs.

ONNX Runtime's ``float16.convert_float_to_float16`` emits one cast name twice when a tensor feeds two blocked nodes
(every T5 layer norm does) and leaves the graph unsorted, so this is a small converter of our own: every float
tensor gets a precision from the node that produces it, and a Cast is inserted wherever a node reads a tensor of
the other precision. Constants beyond fp16's range (the attention mask's -1e9) are clipped to +-65504.
"""

from __future__ import annotations

import fnmatch

import numpy as np

FLOAT, FLOAT16 = 1, 10
FP16_MAX = 65504.0


def _ancestors(graph, tensor: str) -> set[str]:
    """Names of the nodes ``tensor`` is computed from."""
    producers = {out: node for node in graph.node for out in node.output}
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def kept_nodes(model, patterns: tuple[str, ...]) -> set[str]:
    """Nodes that stay in fp32: those matching ``patterns``, and the arithmetic that computes T5's relative
    position buckets (a Log whose rounding in fp16 would move bucket boundaries)."""
    graph = model.graph
    kept = {n.name for n in graph.node if any(fnmatch.fnmatchcase(n.name, p) for p in patterns)}
    for node in graph.node:
        if node.op_type == "Gather" and "relative_attention_bias" in node.name:
            kept |= _ancestors(graph, node.input[1])
    return kept


def _to_fp16_array(array: np.ndarray) -> np.ndarray:
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)


def convert_to_fp16(model, keep_fp32: tuple[str, ...]):
    """A copy of ``model`` (an ``onnx.ModelProto``) computing in fp16 except the ``kept_nodes``; its inputs and
    outputs keep their fp32 types."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    float_tensors = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.input)
                     + list(inferred.graph.output) if v.type.tensor_type.elem_type == FLOAT}
    float_tensors |= {t.name for t in model.graph.initializer if t.data_type == FLOAT}
    kept = kept_nodes(model, keep_fp32)
    precision = {i.name: FLOAT for i in model.graph.input if i.name in float_tensors}
    initializers = _fp16_initializers(model.graph, kept, precision)
    nodes = _fp16_nodes(model.graph, kept, precision, float_tensors)
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    del converted.graph.node[:]
    converted.graph.node.extend(nodes)
    del converted.graph.initializer[:]
    converted.graph.initializer.extend(initializers)
    del converted.graph.value_info[:]
    return converted


def _fp16_initializers(graph, kept: set[str], precision: dict) -> list:
    """``graph``'s initializers, fp16 where no reader is ``kept``; records each float one's type in ``precision``."""
    from onnx import numpy_helper

    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = []
    for init in graph.initializer:
        readers = consumers.get(init.name, [])
        if init.data_type == FLOAT and readers and all(r.name not in kept for r in readers):
            initializers.append(numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(init)), init.name))
            precision[init.name] = FLOAT16
        else:
            initializers.append(init)
            if init.data_type == FLOAT:
                precision[init.name] = FLOAT
    return initializers


def _fp16_nodes(graph, kept: set[str], precision: dict, float_tensors: set[str]) -> list:
    """``graph``'s nodes computing in fp16 (fp32 where ``kept``), with a Cast wherever a tensor's type and its
    reader's differ; graph outputs computed in fp16 are cast back to fp32 under their own name."""
    import onnx
    from onnx import helper

    outputs = {o.name for o in graph.output}
    renamed = {}
    nodes, casts = [], {}
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        mode = FLOAT if node.name in kept else FLOAT16
        for index, name in enumerate(node.input):
            name = renamed.get(name, name)
            if node.op_type != "Cast" and name in precision and precision[name] != mode:
                key = (name, mode)
                if key not in casts:
                    casts[key] = f"{name}_as_{'fp32' if mode == FLOAT else 'fp16'}"
                    nodes.append(helper.make_node("Cast", [name], [casts[key]], to=mode, name=casts[key]))
                name = casts[key]
            node.input[index] = name
        if mode == FLOAT16:
            _retype_attributes(node)
        for index, name in enumerate(node.output):
            if name in float_tensors or (node.op_type == "Cast" and _cast_target(node) in (FLOAT, FLOAT16)):
                if mode == FLOAT16 and name in outputs:
                    renamed[name] = name + "_fp16"
                    node.output[index] = renamed[name]
                    precision[renamed[name]] = FLOAT16
                else:
                    precision[name] = mode if node.op_type != "Cast" else _cast_target(node)
        nodes.append(node)
    for name, internal in renamed.items():
        nodes.append(helper.make_node("Cast", [internal], [name], to=FLOAT, name=f"{name}_to_fp32"))
    return nodes


def _cast_target(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _retype_attributes(node) -> None:
    """Make an fp16 node produce fp16: Cast to float becomes Cast to fp16; float constants become fp16."""
    from onnx import numpy_helper

    for attribute in node.attribute:
        if node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT:
            attribute.i = FLOAT16
        elif attribute.name == "value" and attribute.t.data_type == FLOAT:
            attribute.t.CopyFrom(numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(attribute.t)),
                                                         attribute.t.name))
