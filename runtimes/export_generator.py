"""The generator over an export: tokenizer + the one decoding loop + an engine backend (ONNX Runtime, LiteRT).

Imports only numpy and sentencepiece; the engine is imported by the subclass that uses it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from runtimes.decoding import Decoder
from runtimes.manifest import inside, load_manifest
from runtimes.options import DecodingOptions
from runtimes.tokenizer import Overflow, Tokenizer


class RowByRow:
    """A step backend for batch-1 graphs (static-shape exports) that runs a larger batch, such as the beams of
    beam search, one row at a time."""

    def __init__(self, backend):
        self.backend = backend
        self.max_target_length = backend.max_target_length
        self.vocab_size = backend.vocab_size

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.backend.encode(input_ids[r : r + 1], attention_mask[r : r + 1]) for r in range(len(input_ids))]
        return np.concatenate([k for k, _ in rows], axis=1), np.concatenate([v for _, v in rows], axis=1)

    def step(self, tokens, position, attention_mask, cross_k, cross_v, self_k, self_v):
        rows = [self.backend.step(tokens[r : r + 1], position, attention_mask[r : r + 1], cross_k[:, r : r + 1],
                                  cross_v[:, r : r + 1], self_k[:, r : r + 1], self_v[:, r : r + 1])
                for r in range(len(tokens))]
        return (np.concatenate([row[0] for row in rows], axis=0), np.concatenate([row[1] for row in rows], axis=1),
                np.concatenate([row[2] for row in rows], axis=1))


class ExportGenerator(ABC):
    """Tokenize, decode (greedy or beam search) and detokenize with an export; subclasses bring the engine."""

    def __init__(self, export_dir: str | os.PathLike, threads: int | None = None):
        self.root = Path(export_dir)
        self.manifest = load_manifest(self.root)  # verifies every file's sha256 before any session exists
        self.tokenizer = Tokenizer(inside(self.root, self.manifest["tokenizer"]["file"]))
        self.backend = self._backend(self.manifest, threads)
        special = self.manifest["special_tokens"]
        vocab = int(self.manifest["vocab_size"])
        self.max_source_length = int(self.manifest["max_source_length"])
        self.static_shapes = bool(self.manifest.get("static_shapes"))
        stepper = RowByRow(self.backend) if self.static_shapes else self.backend  # batch-1 graphs: beams row by row
        self.decoder = Decoder(stepper, eos_id=int(special["eos"]), decoder_start_id=int(special["decoder_start"]),
                               suppressed_ids=list(range(self.tokenizer.piece_count, vocab)))

    @abstractmethod
    def _backend(self, manifest: dict, threads: int | None):
        """The engine's step backend for this export (``runtimes.decoding.StepBackend``)."""

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
