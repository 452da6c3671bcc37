"""What an int8 recipe does to one product, simulated in numpy: the error model smoothing and mixed precision are
chosen from.

A product ``Y = X W`` is quantized the way a recipe's kernels quantize it: the activation by one of
``ACTIVATION_SCHEMES`` and the weight by one of ``WEIGHT_SCHEMES``. ``relative_error`` measures
``||Q(X) Q(W) - X W|| / ||X W||`` on sampled calibration rows; smoothing divides the activation's channels by ``m``
and multiplies the weight's rows by ``m`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mt5lite.registry import Registry

#: Output columns of a wide weight (the lm_head) the error is measured on.
MAX_COLUMNS = 2048


def uniform(x: np.ndarray, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """``x`` quantized to 256 levels over ``[low, high]`` (widened to hold 0, as ONNX Runtime and TFLite do), per
    row when ``low``/``high`` are columns."""
    low, high = np.minimum(low, 0.0), np.maximum(high, 0.0)
    scale = np.maximum((high - low) / 255.0, 1e-30)
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def symmetric(x: np.ndarray, axis: int, block: int | None = None) -> np.ndarray:
    """``x`` quantized to int8 symmetric levels, one scale per slice along ``axis`` (per block of ``block``
    entries of that axis when given)."""
    if block is not None and x.shape[axis] % block == 0 and x.shape[axis] > block:
        moved = np.moveaxis(x, axis, -1)
        shape = moved.shape
        blocks = moved.reshape(*shape[:-1], shape[-1] // block, block)
        return np.moveaxis(symmetric(blocks, -1).reshape(shape), -1, axis)
    scale = np.maximum(np.abs(x).max(axis=axis, keepdims=True) / 127.0, 1e-30)
    return np.clip(np.round(x / scale), -127, 127) * scale


@dataclass(frozen=True)
class Scheme:
    """How one side of a product is quantized."""

    description: str
    apply: Callable  # activation: (rows, stats, m) -> rows; weight: (weight [K, N]) -> weight


def _static(rows, stats, m):
    """One range for the tensor, calibrated over every run (ONNX Runtime's static QDQ, TFLite's full int8)."""
    return uniform(rows, float((stats.low / m).min()), float((stats.high / m).max()))


def _dynamic(rows, stats, m):
    """One range per run, computed on the fly (``DynamicQuantizeLinear``)."""
    low = (stats.run_low / m).min(axis=1)[stats.row_run][:, None]
    high = (stats.run_high / m).max(axis=1)[stats.row_run][:, None]
    return uniform(rows, low, high)


def _blockwise(rows, stats, m, block: int = 128):
    """Symmetric int8 per row and block of input channels (``MatMulNBits`` at accuracy level 4)."""
    return symmetric(rows, axis=1, block=block)


#: How the recipes quantize activations.
ACTIVATION_SCHEMES: Registry[Scheme] = Registry("activation scheme", {
    "static": Scheme("uint8, one calibrated range per tensor", _static),
    "dynamic": Scheme("uint8, one range per run", _dynamic),
    "blockwise": Scheme("int8 per row and block of 128 channels", _blockwise),
    "float": Scheme("kept in float", lambda rows, stats, m: rows),
})
#: How the recipes quantize weights.
WEIGHT_SCHEMES: Registry[Scheme] = Registry("weight scheme", {
    "per-channel": Scheme("int8, one scale per output channel", lambda w: symmetric(w, axis=0)),
    "blockwise": Scheme("int8, one scale per output channel and block of 128 inputs",
                        lambda w: symmetric(w, axis=0, block=128)),
})


def column_sample(width: int, seed: int = 0) -> np.ndarray | None:
    """The output columns a weight's error is measured on (None: all of them)."""
    if width <= MAX_COLUMNS:
        return None
    return np.sort(np.random.default_rng(seed).choice(width, MAX_COLUMNS, replace=False))


def relative_error(stats, weight: np.ndarray, m: np.ndarray, activation: str, weight_scheme: str) -> float:
    """``||Q(X / m) Q(W m) - X W|| / ||X W||`` on ``stats``' sampled rows, ``W`` the ``[K, N]`` weight."""
    columns = column_sample(weight.shape[1])
    if columns is not None:
        weight = weight[:, columns]
    rows = stats.rows.astype(np.float64)
    exact = rows @ weight
    got = ACTIVATION_SCHEMES[activation].apply(rows / m, stats, m) @ WEIGHT_SCHEMES[weight_scheme].apply(
        weight * m[:, None])
    return float(np.linalg.norm(got - exact) / max(np.linalg.norm(exact), 1e-30))
