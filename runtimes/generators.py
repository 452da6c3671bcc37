"""Pick the generator for a model directory: ONNX Runtime or LiteRT for an mt5lite export (by its manifest's
engine), PyTorch for a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from runtimes.manifest import MANIFEST_NAME, load_manifest


def open_export(export_dir: str | os.PathLike, threads: int | None = None):
    """The generator for an mt5lite export: ``LiteRTGenerator`` when its manifest's engine is ``litert``,
    else ``OnnxGenerator``."""
    if load_manifest(export_dir, verify_hashes=False).get("engine") == "litert":
        from runtimes.litert import LiteRTGenerator

        return LiteRTGenerator(export_dir, threads=threads)
    from runtimes.onnx_runtime import OnnxGenerator

    return OnnxGenerator(export_dir, threads=threads)


def open_generator(model_dir: str | os.PathLike, allow_pickle: bool = False, threads: int | None = None,
                   max_source_length: int | None = 512):
    """An object with ``generate(texts, options, overflow)``: the export's generator when ``model_dir`` has a
    ``manifest.json`` (its source length is fixed by the export), else the PyTorch ``TorchReference``."""
    if (Path(model_dir) / MANIFEST_NAME).is_file():
        return open_export(model_dir, threads)
    from runtimes.torch_reference import TorchReference

    return TorchReference(model_dir, allow_pickle=allow_pickle, threads=threads, max_source_length=max_source_length)
