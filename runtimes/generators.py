"""Pick the generator for a model directory: ONNX Runtime for an mt5lite export, PyTorch for a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from runtimes.manifest import MANIFEST_NAME


def open_generator(model_dir: str | os.PathLike, allow_pickle: bool = False, threads: int | None = None,
                   max_source_length: int | None = 512):
    """An object with ``generate(texts, options, overflow)``: ``OnnxGenerator`` when ``model_dir`` has a
    ``manifest.json`` (its source length is fixed by the export), else the PyTorch ``TorchReference``."""
    if (Path(model_dir) / MANIFEST_NAME).is_file():
        from runtimes.onnx_runtime import OnnxGenerator

        return OnnxGenerator(model_dir, threads=threads)
    from runtimes.torch_reference import TorchReference

    return TorchReference(model_dir, allow_pickle=allow_pickle, threads=threads, max_source_length=max_source_length)
