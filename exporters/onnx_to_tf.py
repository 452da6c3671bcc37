"""Translate the contract's static-shape ONNX graphs into TensorFlow functions, op for op, with every layout kept.

Why not onnx2tf: it rewrites 4-D and 5-D tensors to channel-last layouts. On the decoder-step graph that breaks
conversion outright (onnx2tf 1.28 fails at the self-attention mask's ``Where``: the condition kept
``[1,1,1,T]`` while the bias became ``[1,T,1,H]``), and where conversion succeeds it permutes the 5-D cross K/V
outputs (DESIGN.md). The contract's graphs use a small, fixed set of ops, so a direct translation is short, keeps
every tensor's shape and name exactly, and leaves nothing for the host to undo.

Only ops the exporter emits are supported; anything else raises ``ConversionError`` naming the op and node.
Shapes must be static (export with ``--static-shapes``): ``Shape`` becomes a constant.
"""

from __future__ import annotations

import numpy as np

from mt5lite.errors import Mt5LiteError

#: Initializers this large become ``tf.Variable``s, saved beside the graph instead of inlined in it: TensorFlow's
#: converter copies every inlined constant many times (mt5-small's encoder: over 17 GB; with variables: 6.5 GB).
VARIABLE_MIN_ELEMENTS = 1 << 16
#: ONNX TensorProto data types -> numpy.
ONNX_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64}


class ConversionError(Mt5LiteError):
    """An ONNX graph this translator cannot convert (an op it does not know, a dynamic shape)."""


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static(value) -> np.ndarray:
    """The numpy value of a constant input (initializer, Constant, or computed only from those)."""
    import tensorflow as tf

    if isinstance(value, np.ndarray):
        return value
    folded = tf.get_static_value(value)
    if folded is None:
        raise ConversionError("a shape, axis or index input is not constant; export with --static-shapes")
    return np.asarray(folded)


def _tf_dtype(onnx_type: int):
    import tensorflow as tf

    return tf.as_dtype(ONNX_DTYPES[onnx_type])


def _is_integer(value) -> bool:
    dtype = value.dtype
    return np.issubdtype(np.dtype(getattr(dtype, "as_numpy_dtype", dtype)), np.integer)


def _matmul(a, b):
    import tensorflow as tf

    b_rank = len(b.shape)
    if b_rank == 2 and len(a.shape) > 2:  # x @ W: one 2-D product (FULLY_CONNECTED in TFLite)
        flat = tf.reshape(a, [-1, a.shape[-1]])
        return tf.reshape(tf.matmul(flat, b), list(a.shape[:-1]) + [b.shape[-1]])
    return tf.matmul(a, b)


def _reshape(x, shape):
    import tensorflow as tf

    target = [int(d) for d in _static(shape)]
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]  # ONNX: 0 copies the input dimension
    return tf.reshape(x, target)


def _unsqueeze(x, axes):
    import tensorflow as tf

    shape = list(x.shape)
    rank = len(shape) + len(_static(axes).reshape(-1))
    for axis in sorted(int(a) % rank for a in _static(axes).reshape(-1)):
        shape.insert(axis, 1)
    return tf.reshape(x, shape)


def _slice(x, starts, ends, axes=None, steps=None):
    import tensorflow as tf

    starts, ends = _static(starts).reshape(-1), _static(ends).reshape(-1)
    axes = range(len(starts)) if axes is None else _static(axes).reshape(-1)
    steps = np.ones(len(starts), np.int64) if steps is None else _static(steps).reshape(-1)
    index = [slice(None)] * len(x.shape)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        # slice.indices clamps ONNX's out-of-range bounds (INT64_MAX for "to the end") to the dimension
        index[int(axis)] = slice(*slice(int(start), int(end), int(step)).indices(x.shape[int(axis)]))
    return x[tuple(index)] if isinstance(x, np.ndarray) else tf.convert_to_tensor(x)[tuple(index)]


def _gather(data, indices, axis):
    import tensorflow as tf

    if isinstance(indices, np.ndarray):  # constant indices: make negative ones positive (TF has no negative)
        indices = np.where(indices < 0, indices + data.shape[axis], indices)
    return tf.gather(data, indices, axis=axis)


def _op(node, inputs: list, attrs: dict):
    """One ONNX node as TensorFlow ops; returns its outputs."""
    import tensorflow as tf
    from onnx import numpy_helper

    op = node.op_type
    x = inputs[0] if inputs else None
    simple = {"Add": tf.add, "Sub": tf.subtract, "Mul": tf.multiply, "Div": tf.divide, "Pow": tf.pow,
              "Equal": tf.equal, "Less": tf.less, "LessOrEqual": tf.less_equal, "Greater": tf.greater,
              "Max": tf.maximum, "Min": tf.minimum, "And": tf.logical_and, "Or": tf.logical_or}
    unary = {"Sqrt": tf.sqrt, "Tanh": tf.tanh, "Log": tf.math.log, "Abs": tf.abs, "Neg": tf.negative,
             "Relu": tf.nn.relu, "Erf": tf.math.erf, "Not": tf.logical_not, "Identity": tf.identity}
    if op in simple:
        if op == "Div" and _is_integer(x):
            return [tf.math.floordiv(x, inputs[1])]  # ONNX integer Div truncates; operands here are non-negative
        return [simple[op](x, inputs[1])]
    if op in unary:
        return [unary[op](x)]
    if op == "Constant":
        return [numpy_helper.to_array(attrs["value"])]
    if op == "ConstantOfShape":
        value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
        return [np.full([int(d) for d in _static(x)], value.reshape(-1)[0], dtype=value.dtype)]
    if op == "Shape":
        return [np.asarray(list(x.shape), dtype=np.int64)]
    if op == "Cast":
        return [tf.cast(x, _tf_dtype(attrs["to"]))]
    if op == "MatMul":
        return [_matmul(x, inputs[1])]
    if op == "Reshape":
        return [_reshape(x, inputs[1])]
    if op == "Unsqueeze":
        return [_unsqueeze(x, inputs[1] if len(inputs) > 1 else np.asarray(attrs["axes"]))]
    if op == "Squeeze":
        axes = inputs[1] if len(inputs) > 1 else attrs.get("axes")
        return [tf.squeeze(x, axis=None if axes is None else [int(a) for a in _static(np.asarray(axes)).reshape(-1)])]
    if op == "Transpose":
        return [tf.transpose(x, perm=attrs.get("perm"))]
    if op == "Concat":
        return [tf.concat([tf.convert_to_tensor(t) for t in inputs], axis=attrs["axis"])]
    if op == "Gather":
        return [_gather(x, inputs[1], attrs.get("axis", 0))]
    if op == "Slice":
        return [_slice(*inputs)]
    if op == "Range":
        start, limit, delta = (_static(t).reshape(()) for t in inputs)
        return [np.arange(start, limit, delta, dtype=np.asarray(start).dtype)]
    if op == "ReduceMean":
        axes = attrs.get("axes", _static(inputs[1]).tolist() if len(inputs) > 1 else None)
        return [tf.reduce_mean(x, axis=axes, keepdims=bool(attrs.get("keepdims", 1)))]
    if op == "Softmax":
        return [tf.nn.softmax(x, axis=attrs.get("axis", -1))]
    if op == "Where":
        return [tf.where(x, inputs[1], inputs[2])]
    if op == "Clip":
        low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min", -np.inf)
        high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max", np.inf)
        return [tf.clip_by_value(x, low, high)]
    if op == "Expand":
        target = [max(int(d), 1) for d in _static(inputs[1])]
        return [tf.broadcast_to(x, np.broadcast_shapes(tuple(x.shape), tuple(target)))]
    raise ConversionError(f"node {node.name!r}: ONNX op {op} has no TensorFlow translation here")


def _fold(node, inputs: list, attrs: dict) -> list:
    """Run ``node``; when every input is a numpy constant, compute it eagerly, so shapes, axes and indices
    derived from constants stay static numpy values."""
    import tensorflow as tf

    if inputs and all(isinstance(i, np.ndarray) or i is None for i in inputs):
        with tf.init_scope():  # leave the traced graph and evaluate on the constants now
            return [np.asarray(o) for o in _op(node, inputs, attrs)]
    return _op(node, inputs, attrs)


def weight_variables(model, min_elements: int = VARIABLE_MIN_ELEMENTS) -> dict:
    """Every initializer of ``model`` with at least ``min_elements`` elements as a ``tf.Variable``, by name. Their
    data is cleared from ``model`` (it now lives in the variables), so a large graph is held in memory once."""
    import tensorflow as tf
    from onnx import numpy_helper

    variables = {}
    for tensor in model.graph.initializer:
        if int(np.prod(tensor.dims)) >= min_elements:
            variables[tensor.name] = tf.Variable(numpy_helper.to_array(tensor), trainable=False,
                                                 name=tensor.name.replace("/", "_").replace(":", "_"))
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
    return variables


def graph_function(model, input_names: list[str], variables: dict | None = None):
    """A Python function ``f(*tensors) -> {output name: tensor}`` computing ``model`` with TensorFlow ops, inputs
    in the order of ``input_names``. Initializers named in ``variables`` (from ``weight_variables``) are read from
    those variables; the others are constants."""
    from onnx import numpy_helper

    graph = model.graph
    variables = variables or {}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name not in variables}
    output_names = [o.name for o in graph.output]

    def run(*tensors):
        import tensorflow as tf

        values: dict = dict(constants)
        values.update(variables)
        values.update(zip(input_names, tensors, strict=True))
        for node in graph.node:
            inputs = [values[name] if name else None for name in node.input]
            for name, value in zip(node.output, _fold(node, inputs, _attrs(node)), strict=False):
                values[name] = value
        return {name: tf.identity(tf.convert_to_tensor(values[name]), name=name) for name in output_names}

    return run
