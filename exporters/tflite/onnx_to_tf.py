"""Translate the contract's static-shape ONNX graphs into TensorFlow functions, op for op, with every layout kept.

Why not onnx2tf: it rewrites 4-D and 5-D tensors to channel-last layouts. On the decoder-step graph that breaks
conversion outright (onnx2tf 1.28 fails at the self-attention mask's ``Where``: the condition kept
``[1,1,1,T]`` while the bias became ``[1,T,1,H]``), and where conversion succeeds it permutes the 5-D cross K/V
outputs (DESIGN.md). The contract's graphs use a small, fixed set of ops, so a direct translation is short, keeps
every tensor's shape and name exactly, and leaves nothing for the host to undo.

Only ops the exporter emits are supported, each by one entry in ``OPS``; anything else raises ``ConversionError``
naming the op and node and listing the known ops.
Shapes must be static (export with ``--static-shapes``): ``Shape`` becomes a constant.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import numpy as np

from mt5lite.errors import Mt5LiteError

#: Initializers this large become ``tf.Variable``s, saved beside the graph instead of inlined in it: TensorFlow's
#: converter copies every inlined constant many times (mt5-small's encoder: over 17 GB; with variables: 6.5 GB).
VARIABLE_MIN_ELEMENTS = 1 << 16
#: ONNX TensorProto data types -> numpy.
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16,
               11: np.float64}
#: A translator: one ONNX node's inputs and attributes -> its outputs (TensorFlow tensors or numpy constants).
Translator = Callable[[list, dict], list]


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


def _axes(inputs: list, attrs: dict) -> list[int] | None:
    """The ``axes`` of Squeeze, Unsqueeze or ReduceMean: the second input (newer opsets), else the attribute;
    ``None`` when neither is given."""
    axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
    if axes is None:
        return None
    return [int(a) for a in _static(np.asarray(axes) if isinstance(axes, list) else axes).reshape(-1)]


def _tf_dtype(onnx_type: int):
    import tensorflow as tf

    return tf.as_dtype(ONNX_DTYPES[onnx_type])


def _is_integer(value) -> bool:
    dtype = value.dtype
    return np.issubdtype(np.dtype(getattr(dtype, "as_numpy_dtype", dtype)), np.integer)


def _unary(tf_name: str) -> Translator:
    """A translator applying ``tf.<tf_name>`` (a dotted path, e.g. ``"math.sqrt"``) to the one input."""
    getter = attrgetter(tf_name)

    def translate(inputs: list, attrs: dict) -> list:
        import tensorflow as tf

        return [getter(tf)(inputs[0])]

    return translate


def _binary(tf_name: str) -> Translator:
    """A translator applying ``tf.<tf_name>`` (a dotted path, e.g. ``"math.add"``) to the inputs, folded left to
    right: two inputs for most ops, any number for the variadic Max and Min."""
    getter = attrgetter(tf_name)

    def translate(inputs: list, attrs: dict) -> list:
        import tensorflow as tf

        return [functools.reduce(getter(tf), inputs)]

    return translate


def _div(inputs: list, attrs: dict) -> list:
    """ONNX Div: true division for floats; for integers it truncates toward zero where TensorFlow's floordiv
    rounds down, so it is built from |x| // |y| and the sign (TFLite builtins only)."""
    import tensorflow as tf

    x, y = inputs
    if not _is_integer(x):
        return [tf.math.divide(x, y)]
    quotient = tf.math.floordiv(tf.abs(x), tf.abs(y))
    return [tf.where(tf.not_equal(tf.less(x, 0), tf.less(y, 0)), -quotient, quotient)]


#: Constant's value attributes other than ``value`` (a tensor), and the numpy type each holds.
_CONSTANT_ATTRIBUTES = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                        "value_ints": np.int64}


def _constant(inputs: list, attrs: dict) -> list:
    from onnx import numpy_helper

    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    for name, dtype in _CONSTANT_ATTRIBUTES.items():
        if name in attrs:
            return [np.asarray(attrs[name], dtype=dtype)]
    raise ConversionError(f"Constant with attributes {sorted(attrs)} is not supported; known: value, "
                          f"{', '.join(_CONSTANT_ATTRIBUTES)}")


def _constant_of_shape(inputs: list, attrs: dict) -> list:
    from onnx import numpy_helper

    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    return [np.full([int(d) for d in _static(inputs[0])], value.reshape(-1)[0], dtype=value.dtype)]


def _shape(inputs: list, attrs: dict) -> list:
    """ONNX Shape as a constant (static shapes only), sliced by the optional ``start``/``end`` (opset 15)."""
    shape = np.asarray(list(inputs[0].shape), dtype=np.int64)
    return [shape[attrs.get("start", 0):attrs.get("end", len(shape))]]


def _cast(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    return [tf.cast(inputs[0], _tf_dtype(attrs["to"]))]


def _matmul(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    a, b = inputs
    if len(b.shape) == 2 and len(a.shape) > 2:  # x @ W: one 2-D product (FULLY_CONNECTED in TFLite)
        flat = tf.reshape(a, [-1, a.shape[-1]])
        return [tf.reshape(tf.matmul(flat, b), list(a.shape[:-1]) + [b.shape[-1]])]
    return [tf.matmul(a, b)]


def _reshape(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    x, shape = inputs
    target = [int(d) for d in _static(shape)]
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]  # ONNX: 0 copies the input dimension
    return [tf.reshape(x, target)]


def _unsqueeze(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    x = inputs[0]
    shape = list(x.shape)
    axes = _axes(inputs, attrs)
    rank = len(shape) + len(axes)
    for axis in sorted(a % rank for a in axes):  # axes index the output, so insert in increasing order
        shape.insert(axis, 1)
    return [tf.reshape(x, shape)]


def _squeeze(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    return [tf.squeeze(inputs[0], axis=_axes(inputs, attrs))]


def _transpose(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    return [tf.transpose(inputs[0], perm=attrs.get("perm"))]


def _concat(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    return [tf.concat([tf.convert_to_tensor(t) for t in inputs], axis=attrs["axis"])]


def _gather(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    data, indices = inputs
    axis = attrs.get("axis", 0)
    if isinstance(indices, np.ndarray):  # constant indices: make negative ones positive (TF has no negative)
        indices = np.where(indices < 0, indices + data.shape[axis], indices)
    return [tf.gather(data, indices, axis=axis)]


def _slice_bounds(start: int, end: int, step: int, size: int) -> slice:
    """ONNX Slice bounds on one axis of ``size`` as a Python slice: out-of-range bounds (INT64_MAX for "to the end",
    INT64_MIN for "back to the start") are clamped, and a reverse slice down to index 0 gets ``stop=None``
    (``slice.indices`` says -1 there, which a subscript would read as "the last element")."""
    picked = range(*slice(start, end, step).indices(size))
    if not picked:
        return slice(0, 0)
    stop = picked[-1] + (1 if step > 0 else -1)
    return slice(picked[0], None if stop < 0 else stop, step)


def _slice(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    x, starts, ends, *rest = inputs + [None] * (5 - len(inputs))
    axes, steps = rest
    starts, ends = _static(starts).reshape(-1), _static(ends).reshape(-1)
    axes = range(len(starts)) if axes is None else _static(axes).reshape(-1)
    steps = np.ones(len(starts), np.int64) if steps is None else _static(steps).reshape(-1)
    index = [slice(None)] * len(x.shape)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[int(axis)] = _slice_bounds(int(start), int(end), int(step), x.shape[int(axis)])
    return [x[tuple(index)] if isinstance(x, np.ndarray) else tf.convert_to_tensor(x)[tuple(index)]]


def _range(inputs: list, attrs: dict) -> list:
    start, limit, delta = (_static(t).reshape(()) for t in inputs)
    return [np.arange(start, limit, delta, dtype=np.asarray(start).dtype)]


def _reduce_mean(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    axes = _axes(inputs, attrs)
    if not axes and attrs.get("noop_with_empty_axes", 0):
        return [inputs[0]]
    # ONNX: no (or empty) axes reduce over every axis
    return [tf.reduce_mean(inputs[0], axis=axes or None, keepdims=bool(attrs.get("keepdims", 1)))]


def _softmax(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    return [tf.nn.softmax(inputs[0], axis=attrs.get("axis", -1))]


def _where(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    return [tf.where(*inputs)]


def _clip(inputs: list, attrs: dict) -> list:
    """ONNX Clip: bounds from the optional inputs (opset 11+), else the ``min``/``max`` attributes (opset 6)."""
    import tensorflow as tf

    x, low, high = inputs + [None] * (3 - len(inputs))
    low = attrs.get("min", -np.inf) if low is None else low
    high = attrs.get("max", np.inf) if high is None else high
    return [tf.clip_by_value(x, low, high)]


def _expand(inputs: list, attrs: dict) -> list:
    import tensorflow as tf

    x, shape = inputs
    target = [max(int(d), 1) for d in _static(shape)]
    return [tf.broadcast_to(x, np.broadcast_shapes(tuple(x.shape), tuple(target)))]


#: ONNX op type -> its translator ``(inputs, attrs) -> outputs``. Inputs are TensorFlow tensors or, where
#: computed only from constants, numpy arrays (an omitted optional input is ``None``); outputs likewise.
OPS: dict[str, Translator] = {
    # elementwise, binary (Max and Min take any number of inputs)
    "Add": _binary("math.add"),
    "Sub": _binary("math.subtract"),
    "Mul": _binary("math.multiply"),
    "Div": _div,
    "Pow": _binary("math.pow"),
    "Equal": _binary("math.equal"),
    "Less": _binary("math.less"),
    "LessOrEqual": _binary("math.less_equal"),
    "Greater": _binary("math.greater"),
    "Max": _binary("math.maximum"),
    "Min": _binary("math.minimum"),
    "And": _binary("math.logical_and"),
    "Or": _binary("math.logical_or"),
    # elementwise, unary
    "Sqrt": _unary("math.sqrt"),
    "Tanh": _unary("math.tanh"),
    "Log": _unary("math.log"),
    "Abs": _unary("math.abs"),
    "Neg": _unary("math.negative"),
    "Relu": _unary("nn.relu"),
    "Erf": _unary("math.erf"),
    "Not": _unary("math.logical_not"),
    "Identity": _unary("identity"),
    # constants and shapes (static: they become numpy values)
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Shape": _shape,
    "Range": _range,
    # the rest
    "Cast": _cast,
    "MatMul": _matmul,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Transpose": _transpose,
    "Concat": _concat,
    "Gather": _gather,
    "Slice": _slice,
    "ReduceMean": _reduce_mean,
    "Softmax": _softmax,
    "Where": _where,
    "Clip": _clip,
    "Expand": _expand,
}


def _op(node, inputs: list, attrs: dict) -> list:
    """One ONNX node as TensorFlow ops; returns its outputs."""
    translate = OPS.get(node.op_type)
    if translate is None:
        raise ConversionError(f"node {node.name!r}: ONNX op {node.op_type} has no TensorFlow translation here; "
                              f"known ops: {', '.join(sorted(OPS))}")
    return translate(inputs, attrs)


def _fold(node, inputs: list, attrs: dict) -> list:
    """Run ``node``; when every input is a numpy constant, compute it eagerly, so shapes, axes and indices
    derived from constants stay static numpy values."""
    import tensorflow as tf

    if inputs and all(isinstance(i, np.ndarray) or i is None for i in inputs):
        with tf.init_scope():  # leave the traced graph and evaluate on the constants now
            return [np.asarray(o) for o in _op(node, inputs, attrs)]
    return _op(node, inputs, attrs)


def initializer_array(tensor, base_dir: str | Path = "") -> np.ndarray:
    """An initializer's value. One stored as external data is read straight from its file in ``base_dir`` (the
    model was loaded without it), never into the protobuf: the weights are then held in memory once. A location
    that leaves ``base_dir`` is refused (``ModelFileError``)."""
    from onnx import numpy_helper
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    from mt5lite.manifest import inside

    if not uses_external_data(tensor):
        return numpy_helper.to_array(tensor)
    info = ExternalDataInfo(tensor)
    dtype = np.dtype(ONNX_DTYPES[tensor.data_type]).newbyteorder("<")  # ONNX stores little-endian
    count = int(np.prod(tensor.dims))
    array = np.fromfile(inside(Path(base_dir), info.location), dtype=dtype, count=count, offset=info.offset or 0)
    if array.size != count:
        raise ConversionError(f"initializer {tensor.name}: {info.location} holds {array.size} of its {count} values")
    return array.reshape(tuple(tensor.dims))


def variable_name(name: str) -> str:
    """``name`` (an ONNX initializer's) as a valid TensorFlow variable name: a root scope name starts with a letter,
    a digit or a dot (an ONNX node path such as ``/encoder/final_layer_norm.rotation_back`` does not)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    return cleaned if re.match(r"[A-Za-z0-9.]", cleaned) else f"w{cleaned}"


def weight_variables(model, pool: dict | None = None, min_elements: int = VARIABLE_MIN_ELEMENTS,
                     base_dir: str | Path = "", skip: frozenset[str] = frozenset()) -> dict:
    """Every initializer of ``model`` with at least ``min_elements`` elements as a ``tf.Variable``, by name. Their
    data is cleared from ``model`` (it now lives in the variables); a model loaded without its external data
    (``base_dir``: where it is) has them read straight into the variables, so a large graph is held in memory
    once. ``pool`` (kept across calls) maps a weight's dtype, shape and bytes to its variable: graphs converted
    together that read the same weight get the same variable, which the converter stores once. Initializers named
    in ``skip`` are left alone."""
    import tensorflow as tf

    pool = {} if pool is None else pool
    variables = {}
    for tensor in model.graph.initializer:
        if int(np.prod(tensor.dims)) >= min_elements and tensor.name not in skip:
            array = initializer_array(tensor, base_dir)
            key = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).hexdigest())
            if key not in pool:
                pool[key] = tf.Variable(array, trainable=False, name=variable_name(tensor.name))
            variables[tensor.name] = pool[key]
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
            del array
    return variables


def _on_own_range(table, rows, ranges: dict):
    """``rows`` gathered from the weight ``table``, marked for int8 with the range of the whole table (a FakeQuant
    node the converter takes as the tensor's range). Without it, full int8 quantizes a lookup table on the range of
    the rows that calibration happened to look up: rows never looked up are clipped, and two graphs reading one
    table get two differently quantized copies of it instead of sharing one."""
    import tensorflow as tf

    if id(table) not in ranges:  # once per table, not at every lookup of every trace
        with tf.init_scope():
            ranges[id(table)] = (min(float(tf.reduce_min(table)), 0.0), max(float(tf.reduce_max(table)), 0.0))
    low, high = ranges[id(table)]
    return tf.quantization.fake_quant_with_min_max_args(rows, min=low, max=high, num_bits=8)


def graph_function(model, input_names: list[str], variables: dict | None = None, table_ranges: bool = False,
                   base_dir: str | Path = "", stand_ins: dict[str, tuple[list[int], float]] | None = None):
    """A Python function ``f(*tensors) -> {output name: tensor}`` computing ``model`` with TensorFlow ops, inputs
    in the order of ``input_names``. Initializers named in ``variables`` (from ``weight_variables``) are read from
    those variables; those named in ``stand_ins`` (name -> shape, value) become a constant of that shape filled
    with that value (never read); the others are constants (external data read from ``base_dir``).
    ``table_ranges`` (for full int8): rows gathered from a weight variable carry the whole table's range
    (``_on_own_range``)."""
    import tensorflow as tf

    graph = model.graph
    variables = variables or {}
    stand_ins = stand_ins or {}
    constants = {t.name: initializer_array(t, base_dir) for t in graph.initializer
                 if t.name not in variables and t.name not in stand_ins}
    output_names = [o.name for o in graph.output]
    ranges: dict = {}

    def run(*tensors):
        values: dict = dict(constants)
        values.update(variables)
        values.update({name: tf.fill(shape, np.float32(value)) for name, (shape, value) in stand_ins.items()})
        values.update(zip(input_names, tensors, strict=True))
        for node in graph.node:
            inputs = [values[name] if name else None for name in node.input]
            outputs = _fold(node, inputs, _attrs(node))
            if table_ranges and node.op_type == "Gather" and isinstance(inputs[0], tf.Variable):
                outputs = [_on_own_range(inputs[0], outputs[0], ranges)]
            for name, value in zip(node.output, outputs, strict=False):
                values[name] = value
        return {name: tf.identity(tf.convert_to_tensor(values[name]), name=name) for name in output_names}

    return run
