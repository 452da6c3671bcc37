"""The attention of a TFLite model, found by structure, for a full-int8 conversion that keeps it float.

Full int8 runs every op on int8. For attention that means the products of two activations (``BATCH_MATMUL``: the
query by the keys, the probabilities by the values) and the softmax between them. XNNPACK has no kernel for an int8
``BATCH_MATMUL`` of two activations, so LiteRT runs its reference kernel, which also transposes the keys or values
at every call; and every step quantizes the float cross K/V and cache inputs to int8 first. On a batch-4 decoder step
of mt5-small's shape trimmed to 4,528 pieces, ``perf`` put 35% of the step there (the reference transpose 11%, the
reference product 10%, float-to-int8 conversion 12%). The ONNX static recipe keeps these products float for the same
reason: they hold no weights, so int8 saves no bytes there.

From every ``SOFTMAX``: back through the ``ADD`` of the position bias and mask and the ``CONCATENATION`` of scores
to the ``BATCH_MATMUL`` that made the scores (and the bias's own concatenation), and forward through the
``STRIDED_SLICE``, ``BATCH_MATMUL``, ``MUL`` and ``ADD`` that weigh the values, up to the ``RESHAPE`` before the
output projection. The projections themselves (``FULLY_CONNECTED``) stay int8. One product stays int8 all the
same: a decoder self-attention's probabilities times the cached values. Its probabilities are a ``STRIDED_SLICE`` of
the softmax, an op TensorFlow's quantizer gives its neighbours' quantization whatever the denylist says, and the
product and the weighted new value after it follow (denylisting the value's reshape too changed nothing).
"""

from __future__ import annotations

#: The op kinds between the scores' product and the softmax (back), and between the softmax and the output (forward).
BACK = {"ADD", "CONCATENATION", "BATCH_MATMUL"}
FORWARD = {"STRIDED_SLICE", "BATCH_MATMUL", "MUL", "ADD"}


def attention_nodes(model) -> list[str]:
    """The output tensor names (what TensorFlow's quantizer denylists by) of every attention's scores, softmax and
    weighted values in every subgraph of ``model`` (a ``ModelT``)."""
    from mt5lite.exporters.tflite.splice import op_names

    names = op_names(model)
    found = set()
    for graph in model.subgraphs:
        kinds = [names[op.opcodeIndex] for op in graph.operators]
        producers = {out: k for k, op in enumerate(graph.operators) for out in op.outputs}
        readers: dict[int, list[int]] = {}
        for k, op in enumerate(graph.operators):
            for index in op.inputs:
                readers.setdefault(index, []).append(k)
        chain: set[int] = set()
        for softmax in (k for k, kind in enumerate(kinds) if kind == "SOFTMAX"):
            todo = [producers[i] for i in graph.operators[softmax].inputs if i in producers]
            while todo:  # back toward the scores' product: a product ends the walk
                k = todo.pop()
                if kinds[k] in BACK and k not in chain:
                    chain.add(k)
                    if kinds[k] != "BATCH_MATMUL":
                        todo += [producers[i] for i in graph.operators[k].inputs if i in producers]
            todo = [softmax]
            while todo:  # forward toward the output projection
                k = todo.pop()
                chain.add(k)
                todo += [r for r in readers.get(graph.operators[k].outputs[0], [])
                         if kinds[r] in FORWARD and r not in chain]
        found.update(graph.tensors[graph.operators[k].outputs[0]].name.decode() for k in chain)
    return sorted(found)
