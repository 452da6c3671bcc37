"""Pick the generator for a model directory: an mt5lite export runs on the engine its manifest names (a registry
of engines), a Hugging Face checkpoint on the PyTorch reference."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from mt5lite.errors import ModelFileError
from mt5lite.manifest import MANIFEST_NAME, Manifest, load_manifest
from mt5lite.registry import Registry


@dataclass(frozen=True)
class Engine:
    """One runtime engine: where its generator lives and which install brings the engine."""

    module: str  # the module holding the generator class
    generator: str  # the ``ExportGenerator`` subclass
    install: str  # what to pip install for it
    label: str  # its name in messages
    # "module:function", called with the thread count by a process that runs nothing but exports, before it opens
    # one (``claim_process``): ONNX Runtime's global thread pools
    process_setup: str | None = None


#: Every engine a manifest may name (``Manifest.engine``).
ENGINES: Registry[Engine] = Registry("engine", {
    "onnxruntime": Engine("mt5lite.runtimes.onnx_runtime", "OnnxGenerator", "mt5lite", "ONNX Runtime",
                          "mt5lite.runtimes.ort_threads:share_global_pools"),
    "litert": Engine("mt5lite.runtimes.litert", "LiteRTGenerator", "mt5lite[litert]", "LiteRT"),
    "executorch": Engine("mt5lite.runtimes.executorch_runtime", "ExecutorchGenerator", "mt5lite[executorch]",
                         "ExecuTorch"),
})


def engine_for(manifest: Manifest, where: str | os.PathLike = "") -> Engine:
    """The registered engine a manifest names; ``ModelFileError`` listing the known ones otherwise."""
    name = manifest.engine
    if name not in ENGINES:
        raise ModelFileError(f"{where}: manifest engine {name!r} is unknown; known engines: {', '.join(ENGINES)}")
    return ENGINES[name]


def open_export(export_dir: str | os.PathLike, threads: int | None = None, row_by_row: bool = False,
                full_length: bool = False):
    """The generator of an mt5lite export, on the engine its manifest names (hashes verified before loading);
    ``row_by_row`` runs a static export's steps at batch 1 only, ``full_length`` pads its inputs to
    ``max_source_length`` (no source-length bucket) (``ExportGenerator``)."""
    engine = engine_for(load_manifest(export_dir, verify_hashes=False), export_dir)
    generator = getattr(importlib.import_module(engine.module), engine.generator)
    return generator(export_dir, threads=threads, row_by_row=row_by_row, full_length=full_length)


def claim_process(model_dir: str | os.PathLike, threads: int | None = None) -> None:
    """Set this process up for running the export in ``model_dir`` with ``threads`` threads, as its engine wants a
    process that runs nothing but exports (``Engine.process_setup``: ONNX Runtime's global thread pools, so its
    sessions stop waking their workers from sleep at every node); nothing for a checkpoint. Call it before opening
    the export, and only in such a process."""
    if not (Path(model_dir) / MANIFEST_NAME).is_file():
        return
    setup = engine_for(load_manifest(model_dir, verify_hashes=False), model_dir).process_setup
    if setup:
        module, function = setup.split(":")
        getattr(importlib.import_module(module), function)(threads)


def open_generator(model_dir: str | os.PathLike, allow_pickle: bool = False, threads: int | None = None,
                   max_source_length: int | None = 512):
    """An object with ``generate(texts, options, overflow)``: the export's generator when ``model_dir`` has a
    ``manifest.json`` (its source length is fixed by the export), else the PyTorch ``TorchReference``."""
    if (Path(model_dir) / MANIFEST_NAME).is_file():
        return open_export(model_dir, threads)
    from mt5lite.runtimes.torch_reference import TorchReference

    return TorchReference(model_dir, allow_pickle=allow_pickle, threads=threads, max_source_length=max_source_length)
