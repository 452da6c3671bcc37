"""A batched decoder step quantized exactly as the batch-1 step: it gets the batch-1 step's calibrated ranges.

Full int8 calibrates on the float model, whose kernels at batch 4 sum in another order than at batch 1, so the
ranges recorded for the batched step differ in the last bit (a random model of mt5-small's shape: 265 of 570
scales one ulp apart), and int8 rounding then differs now and then: 4-beam ids differed from row-by-row decoding on
4 of 6 inputs. ``share_ranges`` copies the batch-1 step's recorded min/max into the batched step's tensors, op for
op, before quantization, so every scale, zero point and bias comes out identical and each row computes what the
batch-1 step computes. A source-length bucket (``encoder_s16``, ``decoder_s16``) gets its kind's ranges the same way,
so a short input padded to 16 computes what it computes padded to the export's full length.
"""

from __future__ import annotations

import difflib

from mt5lite.exporters.tflite.onnx_to_tf import ConversionError

#: Ops the batched step may have where the batch-1 step has none: the converter drops a reshape that is the identity
#: at batch 1. They pass their input's range on.
_SAME_RANGE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})


def _copy_range(source, target) -> None:
    """Give tensor ``target`` the recorded min/max of tensor ``source`` (both ``TensorT``)."""
    from ai_edge_litert import schema_py_generated as schema

    if source.quantization is None or source.quantization.min is None:
        return
    if target.quantization is None:
        target.quantization = schema.QuantizationParametersT()
    target.quantization.min = source.quantization.min
    target.quantization.max = source.quantization.max


def _pairs(model, source: str, target: str):
    """Each tensor of signature ``target`` with its counterpart in signature ``source`` (``ModelT``'s
    ``TensorT``s): inputs and outputs by name, every other tensor by the op that writes it, ops matched in order; a
    reshape only ``target`` has is paired with its own input. Raises ``ConversionError`` when the ops differ
    beyond such reshapes."""
    from mt5lite.exporters.tflite.splice import op_names

    names = op_names(model)
    signatures = {s.signatureKey.decode(): s for s in model.signatureDefs}
    reference = model.subgraphs[signatures[source].subgraphIndex]
    graph = model.subgraphs[signatures[target].subgraphIndex]
    for ends in ("inputs", "outputs"):
        by_name = {t.name.decode(): t.tensorIndex for t in getattr(signatures[source], ends)}
        for tensor in getattr(signatures[target], ends):
            yield reference.tensors[by_name[tensor.name.decode()]], graph.tensors[tensor.tensorIndex]
    ops = [[names[op.opcodeIndex] for op in g.operators] for g in (reference, graph)]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ops[0], b=ops[1], autojunk=False).get_opcodes():
        if tag == "equal":
            for left, right in zip(reference.operators[i1:i2], graph.operators[j1:j2], strict=True):
                for a, b in zip(left.outputs, right.outputs, strict=True):
                    yield reference.tensors[a], graph.tensors[b]
        elif tag == "insert" and set(ops[1][j1:j2]) <= _SAME_RANGE_OPS:
            for op in graph.operators[j1:j2]:
                yield graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        else:
            raise ConversionError(f"the {target} signature's ops differ from the {source} signature's beyond "
                                  f"reshapes ({ops[0][i1:i2]} against {ops[1][j1:j2]}); it cannot share its ranges")


def share_ranges(flatbuffer: bytes, source: str, targets: list[str]) -> bytes:
    """``flatbuffer`` (a calibrated float model) with the ranges of signature ``source``'s tensors copied into the
    matching tensors of each signature of ``targets`` (the same graph at another batch or source length;
    ``_pairs``)."""
    from ai_edge_litert import schema_py_generated as schema

    from mt5lite.exporters.tflite.flatbuffer import pack

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    for target in targets:
        for reference, tensor in _pairs(model, source, target):
            _copy_range(reference, tensor)
    return pack(model, len(flatbuffer))


def quantization_mismatches(flatbuffer: bytes, source: str, target: str) -> int:
    """How many tensors of signature ``target`` of a quantized model are quantized otherwise (scale or zero
    point) than their counterparts in signature ``source``: 0 when every row computes what ``source`` computes."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    def params(tensor):
        q = tensor.quantization
        return [None if q is None or values is None else np.asarray(values).tolist()
                for values in ((q.scale, q.zeroPoint) if q is not None else (None, None))]

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    return sum(params(a) != params(b) for a, b in _pairs(model, source, target))
