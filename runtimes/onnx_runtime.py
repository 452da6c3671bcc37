"""Generate with an mt5lite ONNX export on ONNX Runtime. Imports only numpy, onnxruntime and sentencepiece.

    generator = OnnxGenerator("build/onnx", threads=2)
    generator.generate(["words fr: 1234"])  # ['mille deux cent trente-quatre']

Every name, shape, length and special id comes from ``manifest.json``; file hashes are verified before any
session is created.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mt5lite.errors import ModelFileError
from mt5lite.manifest import inside
from mt5lite.runtimes.export_generator import ExportGenerator


class OnnxBackend:
    """The two graphs of an export as ONNX Runtime sessions (the ``StepBackend`` of ``mt5lite.runtimes.decoding``)."""

    def __init__(self, export_dir: str | os.PathLike, manifest: dict, threads: int | None = None):
        import onnxruntime as ort

        root = Path(export_dir)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.sessions = {}
        for role in ("encoder", "decoder"):
            path = inside(root, manifest["graphs"][role]["file"])
            try:
                self.sessions[role] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own untyped errors; name the file and stop
                raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
        self.outputs = {role: [t["name"] for t in manifest["graphs"][role]["outputs"]] for role in self.sessions}
        self.max_target_length = int(manifest["max_target_length"])
        self.vocab_size = int(manifest["vocab_size"])

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.outputs[role]
        return dict(zip(names, self.sessions[role].run(names, feeds), strict=True))

    def encode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the encoder; returns every output by name (hidden states, cross K/V ``[L,B,H,S,d_kv]``)."""
        return self._run("encoder", feeds)

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one decoder step; returns ``logits [B,V]``, ``new_self_k`` and ``new_self_v`` by name."""
        return self._run("decoder", feeds)


class OnnxGenerator(ExportGenerator):
    """Tokenize, decode (greedy or beam search) and detokenize with an ONNX export on ONNX Runtime."""

    def _backend(self, manifest: dict, threads: int | None) -> OnnxBackend:
        return OnnxBackend(self.root, manifest, threads)
