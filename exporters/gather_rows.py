"""Look up int8 rows, then dequantize them: the embedding lookup of a quantized export.

ONNX Runtime's quantizers write a quantized embedding as ``DequantizeLinear(int8 table) -> Gather``. ONNX Runtime
keeps that order at run time (it does not fold a DequantizeLinear), so every decoder step dequantized the whole
vocabulary table to look up one row: on mt5-small's shape ``shared/Gather`` took 2.0 to 2.5 ms of each step (ONNX
Runtime's profiler), a fifth of the step. ``Gather(int8 table) -> DequantizeLinear(rows)`` computes the same values
(a per-tensor scale and zero point commute with picking rows) and reads one row.
"""

from __future__ import annotations


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
