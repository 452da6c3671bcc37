"""mT5 Lite: make multilingual T5 models small and fast, and prove each stage still computes the same.

The front door::

    import mt5lite

    model = mt5lite.load("build/tflite")            # any export (ONNX Runtime, LiteRT, ExecuTorch) or checkpoint
    model.generate(["words fr: 1234"])               # -> ['mille deux cent trente-quatre']
    for piece in model.stream("words fr: 1234"):     # text as it arrives
        print(piece, end="")

    mt5lite.pipeline(model="my-mt5", output="out")   # compress -> ONNX -> int8 -> TFLite -> report, gated

Names are imported on first use, so ``import mt5lite`` stays light: on a device, ``mt5lite.load`` needs numpy,
sentencepiece and the export's engine, never torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first use).
_EXPORTS = {
    "load": "mt5lite.model",
    "Model": "mt5lite.model",
    "pipeline": "mt5lite.workflow",
    "PipelineConfig": "mt5lite.workflow",
    "PipelineResult": "mt5lite.workflow",
    "load_config": "mt5lite.workflow",
    "compress": "mt5lite.compression.compress",
    "export_onnx": "mt5lite.exporters.onnx.export",
    "OnnxExportConfig": "mt5lite.exporters.onnx.export",
    "quantize_export": "mt5lite.exporters.quantize.recipes",
    "QuantizeConfig": "mt5lite.exporters.quantize.recipes",
    "export_tflite": "mt5lite.exporters.tflite.export",
    "TfliteOptions": "mt5lite.exporters.tflite.export",
    "export_executorch": "mt5lite.exporters.executorch.export",
    "ExecutorchExportConfig": "mt5lite.exporters.executorch.export",
    "CalibrationDraw": "mt5lite.exporters.quantize.calibration",
    "Gate": "mt5lite.verification.comparison",
    "DecodingOptions": "mt5lite.runtimes.options",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """The public names, imported from their modules on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mt5lite' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
