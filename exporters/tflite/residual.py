"""The residual stream of a TFLite model, found by structure, for a full-int8 conversion that must keep it float.

Full int8 quantizes the residual stream itself, one range per tensor. Where training put outlier channels into
the stream (measured by the outlier step: its rotation, ``outliers.rotation``, was needed), rotating it
is not enough on its own: the stream's adds and the RMS norms' arithmetic stay float (TensorFlow's quantizer
leaves denylisted ops float, with QUANTIZE/DEQUANTIZE around them), every product stays int8.

Every RMS norm is ``x * rsqrt(mean(x * x) + eps)``: a ``MEAN`` whose input is a ``MUL`` of one tensor by itself.
From each such ``MEAN``: that ``MUL``, the ``MEAN``, the ``ADD`` of epsilon, the ``RSQRT``, the ``MUL`` of ``x`` by
it, and the ``ADD`` that produced ``x`` (the residual add; the first ``x`` of a stack is the embedding lookup, which
stays an int8 table).
"""

from __future__ import annotations


def residual_nodes(model) -> list[str]:
    """The output tensor names (what TensorFlow's quantizer denylists by) of the residual adds and the RMS norms'
    arithmetic of every subgraph of ``model`` (a ``ModelT``)."""
    from mt5lite.exporters.tflite.splice import op_names

    names = op_names(model)
    found = set()
    for graph in model.subgraphs:
        producers = {out: op for op in graph.operators for out in op.outputs}
        readers: dict[int, list] = {}
        for op in graph.operators:
            for index in op.inputs:
                readers.setdefault(index, []).append(op)

        def kind(op) -> str:
            return names[op.opcodeIndex]

        for mean in (op for op in graph.operators if kind(op) == "MEAN"):
            square = producers.get(mean.inputs[0])
            if square is None or kind(square) != "MUL" or square.inputs[0] != square.inputs[1]:
                continue
            x = square.inputs[0]
            chain = [square, mean]
            eps = [op for op in readers.get(mean.outputs[0], []) if kind(op) == "ADD"]
            chain += eps
            rsqrt = [op for add in eps for op in readers.get(add.outputs[0], []) if kind(op) == "RSQRT"]
            chain += rsqrt
            chain += [op for r in rsqrt for op in readers.get(r.outputs[0], [])
                      if kind(op) == "MUL" and x in op.inputs]
            residual = producers.get(x)
            if residual is not None and kind(residual) == "ADD":
                chain.append(residual)
            found.update(graph.tensors[op.outputs[0]].name.decode() for op in chain)
    return sorted(found)
