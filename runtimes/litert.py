"""Generate with an mt5lite TFLite export on the LiteRT interpreter. Imports only numpy, ai_edge_litert and
sentencepiece.

    generator = LiteRTGenerator("build/tflite", threads=2)
    generator.generate(["words fr: 1234"])  # ['mille deux cent trente-quatre']

The graphs are the same contract as the ONNX export (static shapes, batch 1): the manifest names each graph's file
and signature (one ``model.tflite`` holds both, sharing the embedding), and every tensor is addressed by name through
its signature. A LiteRT interpreter is not thread-safe, so each thread gets its own.
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


class _Signature:
    """One signature of a LiteRT interpreter, called by tensor name with its inputs kept in place.

    ``SignatureRunner.__call__`` resizes every input, allocates and copies every input in, each call. An export's
    shapes are static, so this allocates once; and an input given as the same read-only array as in the call before
    is not copied again, nor a view of the same memory (the decoding loop hands its encoder outputs and mask
    read-only, the same arrays every step: at 4 beams over 128 source positions of mt5-small, 6.3 MB a step). It
    reads ai-edge-litert's ``SignatureRunner`` internals (``_interpreter_wrapper``, ``_inputs``, ``_outputs``,
    ``_subgraph_index``; the version is pinned)."""

    def __init__(self, runner):
        self._wrapper, self._subgraph = runner._interpreter_wrapper, runner._subgraph_index
        self._inputs, self._outputs = dict(runner._inputs), list(runner._outputs)
        self._wrapper.AllocateTensors(self._subgraph)
        self._held: dict[str, np.ndarray] = {}  # input name -> the read-only array its tensor holds

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name after running on ``feeds`` (every input by name, in the signature's shapes)."""
        for name, value in feeds.items():
            if not _same_array(value, self._held.get(name)):
                self._wrapper.SetTensor(self._inputs[name], value, self._subgraph)
                if value.flags.writeable:
                    self._held.pop(name, None)
                else:
                    self._held[name] = value
        self._wrapper.Invoke(self._subgraph)
        return {name: self._wrapper.GetTensor(index, self._subgraph) for name, index in self._outputs}


class LiteRTBackend(GraphBackend):
    """The graphs of a TFLite export as LiteRT signature runners (the ``StepBackend`` of
    ``mt5lite.runtimes.decoding``), one interpreter per file per thread."""

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
            from ai_edge_litert.interpreter import Interpreter

            runners, interpreters = {}, {}
            for role, spec in self.specs.items():  # encoder, decoder, and the batched decoder steps
                path = inside(self.root, spec.file)
                if not spec.signature:
                    raise ModelFileError(f"{self.root}: the manifest names no signature for the {role} graph; "
                                         "re-export the model")
                try:
                    if path not in interpreters:
                        interpreters[path] = Interpreter(model_path=str(path), num_threads=self.threads)
                    runner = interpreters[path].get_signature_runner(spec.signature)
                    details = {**runner.get_input_details(), **runner.get_output_details()}
                    signature = _Signature(runner)  # allocates: XNNPACK refuses a bad tensor only here
                except (ValueError, RuntimeError) as exc:
                    raise ModelFileError(f"{path}: LiteRT cannot load its {spec.signature!r} signature "
                                         f"({first_line(exc)}){lfs_hint(path)}") from None
                found = {name: (np.dtype(d["dtype"]).name, [int(x) for x in d["shape_signature"]])
                         for name, d in details.items()}
                problems = engine_problems(spec, found)
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
