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
from runtimes.export_generator import ExportGenerator
from runtimes.manifest import inside


class OnnxBackend:
    """The two graphs of an export as ONNX Runtime sessions (the ``StepBackend`` of ``runtimes.decoding``)."""

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
        self.specs = manifest["graphs"]
        self.max_target_length = int(manifest["max_target_length"])
        self.vocab_size = int(manifest["vocab_size"])
        self._float = np.float32

    def _names(self, role: str, kind: str) -> list[str]:
        return [t["name"] for t in self.specs[role][kind]]

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the encoder; returns the cross-attention K/V ``[L,B,H,S,d_kv]``."""
        ids_name, mask_name = self._names("encoder", "inputs")
        outputs = dict(zip(self._names("encoder", "outputs"),
                           self.sessions["encoder"].run(None, {ids_name: input_ids.astype(np.int64),
                                                               mask_name: attention_mask.astype(np.int64)}),
                           strict=True))
        return outputs["cross_k"], outputs["cross_v"]

    def encoder_outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Every encoder output by name (for parity checks)."""
        feeds = dict(zip(self._names("encoder", "inputs"), (input_ids.astype(np.int64),
                                                            attention_mask.astype(np.int64)), strict=True))
        return dict(zip(self._names("encoder", "outputs"), self.sessions["encoder"].run(None, feeds), strict=True))

    def step(self, tokens, position, attention_mask, cross_k, cross_v, self_k, self_v):
        """Run one decoder step; returns ``(logits [B,V], new_self_k, new_self_v)``."""
        values = (tokens.astype(np.int64), np.array([position], dtype=np.int64), attention_mask.astype(np.int64),
                  cross_k, cross_v, self_k, self_v)
        feeds = dict(zip(self._names("decoder", "inputs"), values, strict=True))
        outputs = dict(zip(self._names("decoder", "outputs"), self.sessions["decoder"].run(None, feeds), strict=True))
        return outputs["logits"], outputs["new_self_k"], outputs["new_self_v"]


class OnnxGenerator(ExportGenerator):
    """Tokenize, decode (greedy or beam search) and detokenize with an ONNX export on ONNX Runtime."""

    def _backend(self, manifest: dict, threads: int | None) -> OnnxBackend:
        return OnnxBackend(self.root, manifest, threads)
