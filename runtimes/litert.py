"""Generate with an mt5lite TFLite export on LiteRT (its ``CompiledModel``, on the CPU with XNNPACK). Imports only
numpy, ai_edge_litert and sentencepiece.

    generator = LiteRTGenerator("build/tflite", threads=2)
    generator.generate(["words fr: 1234"])  # ['mille deux cent trente-quatre']

The graphs are the same contract as the ONNX export (static shapes, batch 1): the manifest names each graph's file
and signature (one ``model.tflite`` holds both, sharing the embedding), and every tensor is addressed by name through
its signature. A compiled model is not shared between threads: each thread gets its own.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from mt5lite.contract import engine_problems
from mt5lite.errors import ModelFileError, first_line
from mt5lite.manifest import MANIFEST_NAME, Manifest, inside, lfs_hint
from mt5lite.runtimes.export_generator import ExportGenerator, GraphBackend


def _same_array(value: np.ndarray, held: np.ndarray | None) -> bool:
    """Whether ``value`` is the read-only array ``held``, or a view of the same memory as it (one layer of the
    same stacked array: ``mt5lite.contract.graph_feeds`` makes a new view of it at every call)."""
    if held is None or value is held:
        return value is held
    return (value.base is not None and value.base is held.base and value.shape == held.shape
            and value.strides == held.strides and value.ctypes.data == held.ctypes.data)


#: XNNPACK's weight cache kept in memory (an anonymous file): each weight is packed once for every signature of a
#: file. Without it XNNPACK packs a signature's weights for that signature alone, and a static export's nine
#: signatures (batch 1 and 4, source-length buckets) held mt5-small's int8 weights up to six times: 1,184 MB resident
#: after compiling its 304 MB file, 207 MB with the cache (``docs/tflite.md``).
IN_MEMORY_WEIGHT_CACHE = ":memory:"


def _compile(path: Path, threads: int | None):
    """``path`` compiled for the CPU (XNNPACK, ``threads`` threads; None: LiteRT's default) with the weight cache in
    memory. The file is first read by LiteRT's ``Interpreter``, which verifies the flatbuffer (``ValueError`` when it
    is not one) and allocates nothing until asked: ``CompiledModel`` does not verify it, and a truncated file crashed
    the process (8 of the fault matrix's 200 TFLite cases)."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import CpuOptions, Options

    Interpreter(model_path=str(path))
    cpu = CpuOptions(num_threads=threads or 0, xnnpack_weight_cache_path=IN_MEMORY_WEIGHT_CACHE)
    return CompiledModel.from_file(str(path), options=Options(cpu_options=cpu))


class _Signature:
    """One signature of a compiled LiteRT model, called by tensor name with its buffers made once and its inputs
    kept in place: an input given as the same read-only array as in the call before is not written again, nor a view
    of the same memory (the decoding loop hands its encoder outputs and mask read-only, the same arrays every step:
    at 4 beams over 128 source positions of mt5-small, 6.3 MB a step). Int64 inputs are written as their int32 view
    (the Python ``TensorBuffer`` takes no int64 arrays; the bytes are the same)."""

    def __init__(self, model, signature: str):
        self._model, self._signature = model, signature
        inputs, outputs = model.get_input_tensor_details(signature), model.get_output_tensor_details(signature)
        #: name -> (dtype name, shape) of every input and output, as LiteRT reports them
        self.details = {name: (np.dtype(d["dtype"]).name, [int(x) for x in d["shape"]])
                        for name, d in {**inputs, **outputs}.items()}
        self._inputs = {name: model.create_input_buffer_by_name(signature, name) for name in inputs}
        self._outputs = {name: model.create_output_buffer_by_name(signature, name) for name in outputs}
        #: name -> (dtype, shape, element count) of every output, read back after each run
        self._shapes = {name: (np.dtype(dtype), tuple(shape), int(np.prod(shape)))
                        for name, (dtype, shape) in self.details.items() if name in outputs}
        self._held: dict[str, np.ndarray] = {}  # input name -> the read-only array its buffer holds
        self._input_shapes = {name: tuple(self.details[name][1]) for name in inputs}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name after running on ``feeds`` (every input by name, in the signature's shapes)."""
        for name, value in feeds.items():
            if value.shape != self._input_shapes[name]:  # LiteRT would write fewer elements without a word
                raise ValueError(f"input {name!r} has shape {list(value.shape)}; the signature takes "
                                 f"{list(self._input_shapes[name])}")
            if not _same_array(value, self._held.get(name)):
                data = np.ascontiguousarray(value)
                self._inputs[name].write(data.view(np.int32) if data.dtype == np.int64 else data)
                if value.flags.writeable:
                    self._held.pop(name, None)
                else:
                    self._held[name] = value
        self._model.run_by_name(self._signature, self._inputs, self._outputs)
        return {name: self._outputs[name].read(size, dtype).reshape(shape)
                for name, (dtype, shape, size) in self._shapes.items()}


class LiteRTBackend(GraphBackend):
    """The graphs of a TFLite export as signatures of LiteRT compiled models (the ``StepBackend`` of
    ``mt5lite.runtimes.decoding``), one compiled model per file per thread."""

    def __init__(self, export_dir: str | os.PathLike, manifest: Manifest, threads: int | None = None):
        self.root = Path(export_dir)
        self.specs = manifest.graphs
        self.threads = threads
        self.max_target_length = manifest.max_target_length
        self.vocab_size = manifest.vocab_size
        self._local = threading.local()
        self._runners()  # load once now, so a bad file fails here, not at the first step

    def _runners(self) -> dict:
        runners = getattr(self._local, "runners", None)
        if runners is None:
            runners, models = {}, {}
            for role, spec in self.specs.items():  # encoder, decoder, and the batched decoder steps
                path = inside(self.root, spec.file)
                if not spec.signature:
                    raise ModelFileError(f"{self.root}: the manifest names no signature for the {role} graph; "
                                         "re-export the model")
                try:
                    if path not in models:
                        models[path] = _compile(path, self.threads)
                    signature = _Signature(models[path], spec.signature)
                except (ValueError, RuntimeError, KeyError) as exc:
                    raise ModelFileError(f"{path}: LiteRT cannot load its {spec.signature!r} signature "
                                         f"({first_line(exc)}){lfs_hint(path)}") from None
                problems = engine_problems(spec, signature.details)
                if problems:
                    raise ModelFileError(f"{path}: its {spec.signature!r} signature does not match "
                                         f"{self.root / MANIFEST_NAME}: " + "; ".join(problems))
                runners[role] = signature
            self._local.runners = runners
        return runners

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {t.name: np.asarray(feeds[t.name], dtype=t.dtype) for t in self.specs[role].inputs}
        try:
            return self._runners()[role](typed)
        except (ValueError, RuntimeError) as exc:  # feeds follow the verified manifest: a failure is the file's
            path = inside(self.root, self.specs[role].file)
            raise ModelFileError(f"{path}: LiteRT failed running its {self.specs[role].signature!r} signature "
                                 f"({first_line(exc)})") from None


class LiteRTGenerator(ExportGenerator):
    """Tokenize, decode (greedy or beam search) and detokenize with a TFLite export on LiteRT."""

    def _backend(self, manifest: Manifest, threads: int | None) -> LiteRTBackend:
        return LiteRTBackend(self.root, manifest, threads)
