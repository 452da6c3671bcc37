"""Attention-mask constants for full-integer int8 graphs, chosen from calibration data.

The contract's graphs mask attention by adding a huge negative constant to the scores of masked keys: -1e9 in the
decoder step (``mt5lite.exporters.graphs.MASK_VALUE``), float32's lowest in the Hugging Face encoder. In float that
is exact. In int8 it is fatal: a tensor's 256 levels then span about 1e9, so one step swallows every real score
(measured on the demo model: greedy agreement 0.065). For full-integer conversion the constants are replaced by a
finite value, chosen as the largest one that still keeps every masked key's share of the softmax under
``LEAK_TOLERANCE`` on every row of the calibration data:

    leak(row) = sum_masked exp(s + X) / (sum_real exp(s) + sum_masked exp(s + X)) <= tolerance
    <=>  X <= logsumexp(real scores) - logsumexp(masked keys' own scores) + log(tolerance / (1 - tolerance))

The scores come from two runs of the fp32 ONNX graph on the calibration feeds (ONNX Runtime): one as exported, to
see which keys are masked (their scores sit at the constant), one with the constants set to 0, to see every key's
own score. The value is a model property, recorded in the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mt5lite.contract import graph_feeds
from mt5lite.exporters.tflite.onnx_to_tf import ConversionError

#: Float constants at or below this are attention masks (the graphs use -1e9 and float32's lowest).
MASK_CONSTANT_THRESHOLD = -1e8
#: The most a masked key may take of a softmax row on the calibration data (int8 softmax resolves 1/256).
LEAK_TOLERANCE = 1e-4
#: Extra distance below the bound, for inputs the calibration data did not show.
SAFETY_MARGIN = 2.0


def is_mask_constant(array: np.ndarray) -> bool:
    """Whether ``array`` is a masking constant: floating point, non-empty, every value <= the threshold."""
    return array.dtype.kind == "f" and array.size > 0 and bool((array <= MASK_CONSTANT_THRESHOLD).all())


def _mask_tensors(model, base_dir: str = ""):
    """Every masking constant of ``model`` (``Constant`` node values and initializers) as its TensorProto. An
    initializer stored as external data is read from ``base_dir``."""
    from onnx import numpy_helper

    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and is_mask_constant(numpy_helper.to_array(attribute.t)):
                    yield attribute.t
    for tensor in model.graph.initializer:
        small = int(np.prod(tensor.dims)) < 1 << 20  # masks are small: weights are skipped without being read
        if small and tensor.data_type in (1, 10, 11) and is_mask_constant(numpy_helper.to_array(tensor, base_dir)):
            yield tensor


def with_mask_value(model, value: float, base_dir: str = "") -> int:
    """Set every masking constant of ``model`` (an ``onnx.ModelProto``, changed in place) to ``value``; returns
    how many constants were replaced. A model loaded without its external data reads them from ``base_dir``
    (a replaced constant is then stored in the graph)."""
    from onnx import numpy_helper

    tensors = list(_mask_tensors(model, base_dir))
    for tensor in tensors:
        array = numpy_helper.to_array(tensor, base_dir)
        tensor.CopyFrom(numpy_helper.from_array(np.full_like(array, value), tensor.name))
    return len(tensors)


def _softmax_inputs(model, weights_dir: Path) -> tuple[object, list[str]]:
    """An ONNX Runtime session of ``model`` with every Softmax input added as an output (``probe_session``);
    returns it and those names."""
    from mt5lite.exporters.onnx.probe import probe_session

    names = [node.input[0] for node in model.graph.node if node.op_type == "Softmax"]
    return probe_session(model, weights_dir, names), names


def _logsumexp(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis of the entries selected by ``where`` (-inf for a row with none)."""
    masked = np.where(where, values.astype(np.float64), -np.inf)
    peak = masked.max(axis=-1, keepdims=True)
    safe_peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.exp(masked - safe_peak).sum(axis=-1, keepdims=True)) + safe_peak)[..., 0]


def int8_mask_value(onnx_path: str | Path, feeds, tolerance: float = LEAK_TOLERANCE) -> dict:
    """The masking constant for a full-integer int8 conversion of the graph at ``onnx_path``, from its
    calibration ``feeds`` (a sequence of feed dicts, e.g. a ``FeedStore``): ``{"value", "bound", "softmax_rows",
    "masked_rows", "tolerance"}``. ``value`` is ``bound - SAFETY_MARGIN`` rounded down to an integer; ``bound`` is
    the largest value meeting ``tolerance`` on every row; a graph without masking constants gets ``None``. The
    graph runs twice over the feeds, one session at a time (as exported: which keys are masked, kept as bits;
    constants at 0: every key's own score). Raises ``ConversionError`` when no calibration input masks any key."""
    import onnx

    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    if not any(True for _ in _mask_tensors(model, str(onnx_path.parent))):
        return {"value": None, "bound": None, "softmax_rows": 0, "masked_rows": 0, "tolerance": tolerance}
    exported, names = _softmax_inputs(model, onnx_path.parent)
    inputs = [i.name for i in exported.get_inputs()]
    masks = [[np.packbits(scores <= MASK_CONSTANT_THRESHOLD / 2, axis=-1)
              for scores in exported.run(names, graph_feeds(inputs, feed))]
             for feed in feeds]  # the keys the constants mask
    del exported
    with_mask_value(model, 0.0, str(onnx_path.parent))
    zeroed, _ = _softmax_inputs(model, onnx_path.parent)
    bound, rows, masked_rows = np.inf, 0, 0
    log_ratio = np.log(tolerance / (1.0 - tolerance))
    for index, feed in enumerate(feeds):
        for packed, own in zip(masks[index], zeroed.run(names, graph_feeds(inputs, feed)), strict=True):
            masked = np.unpackbits(packed, axis=-1, count=own.shape[-1]).astype(bool)
            counted = masked.any(axis=-1) & (~masked).any(axis=-1)
            rows += int(counted.size)
            masked_rows += int(counted.sum())
            if counted.any():
                limits = _logsumexp(own, ~masked) - _logsumexp(own, masked) + log_ratio
                bound = min(bound, float(limits[counted].min()))
    if not masked_rows:
        raise ConversionError(f"{onnx_path.name}: no calibration input masks a key, so the int8 masking "
                              "constant cannot be chosen; calibrate on inputs shorter than the export's length")
    return {"value": float(np.floor(bound - SAFETY_MARGIN)), "bound": bound, "softmax_rows": rows,
            "masked_rows": masked_rows, "tolerance": tolerance}
