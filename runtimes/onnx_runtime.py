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
from runtimes.decoding import Decoder
from runtimes.manifest import inside, load_manifest
from runtimes.options import DecodingOptions
from runtimes.tokenizer import Overflow, Tokenizer


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


class OnnxGenerator:
    """Tokenize, decode (greedy or beam search) and detokenize with an ONNX export."""

    def __init__(self, export_dir: str | os.PathLike, threads: int | None = None):
        self.root = Path(export_dir)
        self.manifest = load_manifest(self.root)  # verifies every file's sha256 before any session exists
        self.tokenizer = Tokenizer(inside(self.root, self.manifest["tokenizer"]["file"]))
        self.backend = OnnxBackend(self.root, self.manifest, threads)
        special = self.manifest["special_tokens"]
        vocab = int(self.manifest["vocab_size"])
        self.decoder = Decoder(self.backend, eos_id=int(special["eos"]), decoder_start_id=int(special["decoder_start"]),
                               suppressed_ids=list(range(self.tokenizer.piece_count, vocab)))
        self.max_source_length = int(self.manifest["max_source_length"])
        self.static_shapes = bool(self.manifest.get("static_shapes"))

    def encode_batch(self, texts: list[str], overflow: Overflow = Overflow.ERROR) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and mask, right-padded (to ``max_source_length`` for a static-shape export)."""
        pad_to = self.max_source_length if self.static_shapes else None
        return self.tokenizer.encode_batch(texts, self.max_source_length, overflow, pad_to)

    def generate_ids(self, texts: list[str], options: DecodingOptions | None = None,
                     overflow: Overflow = Overflow.ERROR) -> list[list[int]]:
        """Generated ids per input, up to and including eos."""
        options = (options or DecodingOptions()).validate()
        ids, mask = self.encode_batch(texts, overflow)
        if self.static_shapes:  # the graphs take batch 1
            return [self.decoder.generate(ids[i : i + 1], mask[i : i + 1], options)[0] for i in range(len(texts))]
        return self.decoder.generate(ids, mask, options)

    def generate(self, texts: list[str], options: DecodingOptions | None = None,
                 overflow: Overflow = Overflow.ERROR) -> list[str]:
        """Generated text per input."""
        return [self.tokenizer.decode(ids) for ids in self.generate_ids(texts, options, overflow)]
