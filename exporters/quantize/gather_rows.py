"""Look up int8 rows, then dequantize them: the embedding lookup of a quantized export.

ONNX Runtime's quantizers write a quantized embedding as ``DequantizeLinear(int8 table) -> Gather``. ONNX Runtime
keeps that order at run time (it does not fold a DequantizeLinear), so every decoder step dequantized the whole
vocabulary table to look up one row: on mt5-small's shape ``shared/Gather`` took 2.0 to 2.5 ms of each step (ONNX
Runtime's profiler), a fifth of the step. ``Gather(int8 table) -> DequantizeLinear(rows)`` computes the same values
(a per-tensor scale and zero point commute with picking rows) and reads one row.
"""

from __future__ import annotations

import numpy as np


def gather_then_dequantize(model) -> int:
    """Rewrite every ``DequantizeLinear(initializer) -> Gather`` with a per-tensor scale into ``Gather ->
    DequantizeLinear`` in ``model`` (an ``onnx.ModelProto``, changed in place); returns how many were rewritten.
    The table's DequantizeLinear stays only if something else still reads it."""
    from onnx import helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    rewritten = 0
    for node in list(graph.node):
        dequantize = producers.get(node.input[0]) if node.op_type == "Gather" else None
        if (dequantize is None or dequantize.op_type != "DequantizeLinear" or dequantize.input[0] not in initializers
                or list(initializers[dequantize.input[1]].dims)):  # per-axis scales: left as they are
            continue
        rows = f"{node.output[0]}_quantized_rows"
        gather = helper.make_node("Gather", [dequantize.input[0], node.input[1]], [rows], name=node.name,
                                  **{a.name: helper.get_attribute_value(a) for a in node.attribute})
        after = helper.make_node("DequantizeLinear", [rows, *dequantize.input[1:]], list(node.output),
                                 name=f"{node.name}_DequantizeLinear")
        position = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(position, after)
        graph.node.insert(position, gather)
        if not any(dequantize.output[0] in n.input for n in graph.node):
            graph.node.remove(dequantize)
        rewritten += 1
    return rewritten


def lookup_error(table: np.ndarray, low, high) -> float:
    """The mean over the table's columns of each column's relative error once quantized to 256 levels over
    ``[low, high]`` (scalars: one range for the table; ``[D]`` arrays: one per column). Column by column, so a few
    outlier columns cannot hide what one range does to all the others."""
    from mt5lite.exporters.quantize.error_model import uniform

    table = table.astype(np.float64)
    error = np.linalg.norm(uniform(table, low, high) - table, axis=0)
    return float(np.mean(error / np.maximum(np.linalg.norm(table, axis=0), 1e-30)))


def columns_where_better(model, source) -> dict[str, dict]:
    """Give every int8 lookup of ``model`` (a quantized ``onnx.ModelProto`` after ``gather_then_dequantize``, changed
    in place) one scale and zero point per column of its table, where that lowers ``lookup_error`` against the one
    range ONNX Runtime's quantizers give a table (``source``: the float model, for the table's values). Activation
    outliers that enter the residual stream at the embedding (a few columns tens of times the others) leave the
    other columns a handful of levels under one range. Returns, per lookup, both errors and the choice."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    floats = {t.name: t for t in source.graph.initializer}
    readers = {name: node for node in graph.node for name in node.input}
    found = {}
    for node in list(graph.node):  # _drop_requantization removes nodes
        table_name = node.input[0] if node.op_type == "Gather" else None
        after = readers.get(node.output[0]) if table_name in initializers else None
        original = table_name[: -len("_quantized")] if table_name and table_name.endswith("_quantized") else None
        if after is None or after.op_type != "DequantizeLinear" or original not in floats:
            continue
        table = numpy_helper.to_array(floats[original]).astype(np.float32)
        quantized = numpy_helper.to_array(initializers[table_name])
        low, high = float(table.min()), float(table.max())
        per_tensor = lookup_error(table, low, high)
        per_column = lookup_error(table, table.min(axis=0), table.max(axis=0))
        found[node.name] = {"per_tensor_error": per_tensor, "per_column_error": per_column,
                            "per_column": per_column < per_tensor}
        if per_column >= per_tensor:
            continue
        qmin, qmax = (0, 255) if quantized.dtype == np.uint8 else (-128, 127)
        lows, highs = np.minimum(table.min(axis=0), 0.0), np.maximum(table.max(axis=0), 0.0)
        scale = np.maximum((highs - lows) / (qmax - qmin), 1e-30).astype(np.float32)
        zero = np.clip(np.round(qmin - lows / scale), qmin, qmax).astype(quantized.dtype)
        values = np.clip(np.round(table / scale) + zero, qmin, qmax).astype(quantized.dtype)
        initializers[table_name].CopyFrom(numpy_helper.from_array(values, table_name))
        names = [f"{table_name}_column_scale", f"{table_name}_column_zero_point"]
        graph.initializer.extend([numpy_helper.from_array(scale, names[0]), numpy_helper.from_array(zero, names[1])])
        old_scale = after.input[1]
        replacement = helper.make_node("DequantizeLinear", [after.input[0], *names], list(after.output),
                                       name=after.name, axis=-1)
        after.CopyFrom(replacement)
        _drop_requantization(graph, after.output[0], old_scale)
    return found


def _drop_requantization(graph, tensor: str, scale: str) -> None:
    """Remove the ``QuantizeLinear -> DequantizeLinear`` pair that static QDQ puts on a lookup's output with the
    table's one range (``scale``): it would undo the columns' own ranges. Its readers read ``tensor`` instead."""
    quantize = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor
                     and n.input[1] == scale), None)
    if quantize is None:
        return
    pairs = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == quantize.output[0]]
    for dequantize in pairs:
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == dequantize.output[0]:
                    node.input[index] = tensor
        graph.node.remove(dequantize)
    graph.node.remove(quantize)
