"""The lm_head of a full-int8 TFLite conversion, quantized here instead of by TensorFlow's converter.

TensorFlow's converter holds several copies of every float weight it is given: converting mt5-small's graphs
(a 1.2 GB checkpoint) to a float flatbuffer peaked at 6.9 GB, calibrating it at 5.5 GB and quantizing it at 6.1
GB, each in a process of its own. The float ``lm_head`` is the largest weight it sees (``d_model x vocabulary``:
43% of mt5-small's weights; the embedding reaches it already int8 through its FakeQuant), so the int8 conversion
gets a stand-in for it instead: a constant of a few rows holding one value (``stand_in_rows``; same input size, so
the same ops). Nothing calibration measures changes, except the lm_head's own output, the logits. The constant Muls
right before the lm_head (the final layer norm's weight, T5's rescaling), which the converter would fold into the
weight, are folded out of the graph first (``stand_in_lm_head``) and into the real weight later.

After TensorFlow has quantized the graphs, ``splice_lm_head`` puts the real weights in the stand-in's place and
gives the logits their size back: int8 per output channel, symmetric, narrow range, rounded half away from zero
(what the converter's quantizer does with a fully-connected weight), and the logits get the range the fp32 ONNX
export produced on the same calibration feeds, quantized as the converter quantizes an activation. A test holds
the result to what TensorFlow makes of the real weights: every weight byte and every other scale identical.
"""

from __future__ import annotations

import numpy as np

from mt5lite.exporters.tflite.onnx_to_tf import ConversionError

#: The stand-in's one value (any value does; zero would give the calibrated logits an empty range).
STAND_IN_VALUE = 0.01
#: Candidates for the stand-in's output size: small primes, the first one no dimension of the graphs takes is used,
#: so that every tensor of the logits can be told apart by it and given the vocabulary's size back.
STAND_IN_ROWS = (61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113)
#: The ops that pass an int8 tensor on with its quantization unchanged, between the lm_head and the output.
_SAME_SCALE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "GATHER", "SLICE", "STRIDED_SLICE"})


def _constant(model, name: str, base_dir: str) -> np.ndarray | None:
    """The value of ``name`` if an initializer or a Constant node holds it, else None."""
    from onnx import numpy_helper

    from mt5lite.exporters.tflite.onnx_to_tf import initializer_array

    for tensor in model.graph.initializer:
        if tensor.name == name:
            return initializer_array(tensor, base_dir)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def stand_in_lm_head(model, base_dir: str) -> tuple[str, np.ndarray] | None:
    """Prepare ``model`` (an ONNX decoder graph, changed in place) for a stand-in lm_head: find the one initializer
    only the lm_head MatMul reads (``[in, out]``) and fold the constant Muls right before it (the final layer
    norm's weight; T5's output rescaling) out of the graph, as the converter would fold them into the weight.
    Returns the weight's name and the per-input-row factors to multiply it by (float32), or None when the graph
    has no such lm_head (then nothing changes)."""
    from mt5lite.exporters.quantize.groups import node_groups

    lm_head = node_groups(model)["lm_head"]
    initializers = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    matmuls = [n for n in model.graph.node if n.name in lm_head]
    if len(matmuls) != 1 or matmuls[0].input[1] not in initializers or len(consumers[matmuls[0].input[1]]) != 1:
        return None
    matmul, weight = matmuls[0], matmuls[0].input[1]
    rows = int(initializers[weight].dims[0])
    factors = np.ones(rows, np.float32)
    producers = {out: node for node in model.graph.node for out in node.output}
    outputs = {o.name for o in model.graph.output}
    while True:
        node = producers.get(matmul.input[0])
        if node is None or node.op_type != "Mul" or len(consumers[node.output[0]]) != 1 or node.output[0] in outputs:
            break
        values = [_constant(model, name, base_dir) for name in node.input]
        picked = [i for i, v in enumerate(values)
                  if v is not None and (v.size == 1 or (v.ndim >= 1 and v.shape[-1] == rows and v.size == rows))]
        if len(picked) != 1:
            break
        factors = factors * np.broadcast_to(values[picked[0]].reshape(-1).astype(np.float32), (rows,))
        matmul.input[0] = node.input[1 - picked[0]]
        model.graph.node.remove(node)
    return weight, factors


def stand_in_rows(taken: set[int]) -> int:
    """The stand-in's output size: the first of ``STAND_IN_ROWS`` not in ``taken`` (every dimension the graphs
    have)."""
    free = [rows for rows in STAND_IN_ROWS if rows not in taken]
    if not free:
        raise ConversionError(f"every stand-in size {STAND_IN_ROWS} is a dimension of the graphs")
    return free[0]


def per_channel_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` (``[out, in]``) as TFLite's quantizer stores a fully-connected weight: int8 per output channel,
    symmetric (zero point 0), narrow range [-127, 127], rounded half away from zero. Returns (values, scales)."""
    weight = weight.astype(np.float32)
    bound = np.maximum(np.abs(weight.min(axis=1)), np.abs(weight.max(axis=1))).astype(np.float64)
    scales = np.where(bound > 0, bound / 127.0, 1.0)
    scaled = weight / scales[:, None].astype(np.float32)
    values = np.clip(np.trunc(scaled + np.copysign(np.float32(0.5), scaled)), -127, 127).astype(np.int8)
    return values, scales.astype(np.float32)


def activation_params(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point of an int8 activation calibrated to [low, high], as the converter computes them: the
    range widened to hold 0, 256 levels, the zero point taken from the nearer end's estimate and rounded half away
    from zero."""
    qmin, qmax = -128, 127
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high == low:
        return 1.0, 0
    scale = (high - low) / (qmax - qmin)
    from_min, from_max = qmin - low / scale, qmax - high / scale
    error_min, error_max = abs(qmin) + abs(low / scale), abs(qmax) + abs(high / scale)
    zero = from_min if error_min < error_max else from_max
    return float(np.float32(scale)), int(np.clip(np.trunc(zero + np.copysign(0.5, zero)), qmin, qmax))


def op_names(model) -> list[str]:
    """The builtin name of each operator code of ``model`` (a ``ModelT``)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return [names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM") for code in model.operatorCodes]


def _resized(shape, rows: int, vocabulary: int):
    return None if shape is None else np.array([vocabulary if d == rows else d for d in shape], np.int32)


def splice_lm_head(flatbuffer: bytes, weight: np.ndarray, logits_range: tuple[float, float], rows: int) -> bytes:
    """``flatbuffer`` (a quantized model whose lm_head is a ``[rows, in]`` stand-in) with the real lm_head
    ``weight`` (``[out, in]``, float, folded factors applied) in its place: the FULLY_CONNECTED ops whose int8
    weight has the stand-in's shape (one per decoder-step signature: batch 1 and the batched steps, all reading one
    buffer) get the real weight quantized per output channel, every tensor of their subgraphs with a
    ``rows``-sized dimension gets ``out`` instead (the logits), and their outputs, and what passes them on
    unchanged, the scale and zero point of ``logits_range``. Raises ``ConversionError`` when no such op is found,
    or when their weight buffer is not theirs alone."""
    from ai_edge_litert import schema_py_generated as schema

    from mt5lite.exporters.tflite.flatbuffer import pack

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = op_names(model)
    found = [(graph, op) for graph in model.subgraphs for op in graph.operators
             if names[op.opcodeIndex] == "FULLY_CONNECTED"
             and tuple(graph.tensors[op.inputs[1]].shape) == (rows, weight.shape[1])
             and graph.tensors[op.inputs[1]].type == schema.TensorType.INT8]
    buffers = {graph.tensors[op.inputs[1]].buffer for graph, op in found}
    if len(buffers) != 1:
        raise ConversionError(f"the int8 model has {len(found)} fully-connected ops with the lm_head stand-in's "
                              f"shape {[rows, weight.shape[1]]} reading {len(buffers)} buffers, not one; the lm_head "
                              "cannot be written in")
    buffer = buffers.pop()
    if sum(t.buffer == buffer for g in model.subgraphs for t in g.tensors) != len(found):
        raise ConversionError("the lm_head's stand-in shares its buffer with another tensor")
    values, scales = per_channel_int8(weight)
    model.buffers[buffer].data = values.reshape(-1).view(np.uint8)
    for graph, op in found:
        _splice_op(model, graph, op, scales, rows, activation_params(*logits_range), names)
    return pack(model, len(flatbuffer) + weight.size)


def _splice_op(model, graph, op, scales: np.ndarray, rows: int, logits_params: tuple, names: list[str]) -> None:
    """One lm_head op of ``splice_lm_head``: its weight's per-channel ``scales``, its zero bias, and the logits'
    sizes and quantization (``logits_params``: scale, zero point) along the ops that pass them on (``names``: each
    operator code's name)."""
    from ai_edge_litert import schema_py_generated as schema

    vocabulary = len(scales)
    tensor = graph.tensors[op.inputs[1]]
    tensor.quantization.scale, tensor.quantization.zeroPoint = scales, np.zeros(vocabulary, np.int64)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:  # a bias: int32 at input scale x weight scale, all zero
        bias = graph.tensors[op.inputs[2]]
        if np.any(model.buffers[bias.buffer].data):
            raise ConversionError("the lm_head's stand-in has a non-zero bias")
        model.buffers[bias.buffer].data = np.zeros(vocabulary, np.int32).view(np.uint8)
        input_scale = graph.tensors[op.inputs[0]].quantization.scale[0]
        bias.quantization.scale = (input_scale * scales).astype(np.float32)
        bias.quantization.zeroPoint = np.zeros(vocabulary, np.int64)
    chain, current = [op.outputs[0]], op.outputs[0]
    while current is not None:  # the logits: the lm_head's output and the ops that pass it on
        current = next((o.outputs[0] for o in graph.operators if len(o.inputs) and o.inputs[0] == current
                        and names[o.opcodeIndex] in _SAME_SCALE_OPS | {"DEQUANTIZE"}), None)
        chain += [current] if current is not None else []
    resized = {i for i, t in enumerate(graph.tensors) if t.shape is not None and rows in t.shape}
    if not resized <= set(chain) | set(op.inputs[1:]):
        raise ConversionError(f"tensors other than the logits have the lm_head stand-in's size {rows}; the lm_head "
                              "cannot be written in")
    for index in resized:
        graph.tensors[index].shape = _resized(graph.tensors[index].shape, rows, vocabulary)
        graph.tensors[index].shapeSignature = _resized(graph.tensors[index].shapeSignature, rows, vocabulary)
    scale, zero = logits_params
    for index in chain:
        quantization = graph.tensors[index].quantization
        if graph.tensors[index].type == schema.TensorType.INT8:
            quantization.scale = np.array([scale], np.float32)
            quantization.zeroPoint = np.array([zero], np.int64)

