"""The parts of a model that a full-int8 TFLite conversion can keep float (``FLOAT_PARTS``), each found by structure
in the calibrated model: TensorFlow's quantizer leaves their ops float, with QUANTIZE and DEQUANTIZE around them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mt5lite.exporters.tflite.attention import attention_nodes
from mt5lite.exporters.tflite.residual import residual_nodes
from mt5lite.registry import Registry


@dataclass(frozen=True)
class FloatPart:
    """A part of a model that a full-int8 conversion can keep float."""

    description: str  # what the manifest's "activations" names
    nodes: Callable[[object], list[str]]  # the calibrated model (a ``ModelT``) -> the output names of its ops


#: Every part full int8 can keep float, by the name ``WorkerSpec.float_parts`` gives it.
FLOAT_PARTS: Registry[FloatPart] = Registry("float part", {
    "attention": FloatPart("attention's scores, softmax and weighted values", attention_nodes),
    "residual": FloatPart("the residual stream and RMS norms", residual_nodes),
})
#: What full int8 keeps float unless told otherwise: both (README, "TFLite"; docs/tflite.md has the measurements).
DEFAULT_FLOAT_PARTS = ("attention", "residual")
