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
                    runners[role] = runner = interpreters[path].get_signature_runner(spec.signature)
                    details = {**runner.get_input_details(), **runner.get_output_details()}
                except (ValueError, RuntimeError) as exc:
                    raise ModelFileError(f"{path}: LiteRT cannot load its {spec.signature!r} signature "
                                         f"({first_line(exc)}){lfs_hint(path)}") from None
                found = {name: (np.dtype(d["dtype"]).name, [int(x) for x in d["shape_signature"]])
                         for name, d in details.items()}
                problems = engine_problems(spec, found)
                if problems:
                    raise ModelFileError(f"{path}: its {spec.signature!r} signature does not match "
                                         f"{self.root / MANIFEST_NAME}: " + "; ".join(problems))
            self._local.runners = runners
        return runners

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {t.name: np.asarray(feeds[t.name], dtype=t.dtype) for t in self.specs[role].inputs}
        try:
            return dict(self._runners()[role](**typed))
        except (ValueError, RuntimeError) as exc:  # feeds follow the verified manifest: a failure is the file's
            path = inside(self.root, self.specs[role].file)
            raise ModelFileError(f"{path}: LiteRT failed running its {self.specs[role].signature!r} signature "
                                 f"({first_line(exc)})") from None



class LiteRTGenerator(ExportGenerator):
    """Tokenize, decode (greedy or beam search) and detokenize with a TFLite export on LiteRT."""

    def _backend(self, manifest: Manifest, threads: int | None) -> LiteRTBackend:
        return LiteRTBackend(self.root, manifest, threads)
