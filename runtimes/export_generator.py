"""The generator over an export: tokenizer + the one decoding loop + an engine backend (ONNX Runtime, LiteRT).

Imports only numpy and sentencepiece; the engine is imported by the subclass that uses it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mt5lite.contract import GraphSpec, batch_rows, bucket_length, concat_rows, graph_feeds, to_source_length
from mt5lite.manifest import Manifest, inside, load_manifest
from mt5lite.runtimes.decoding import Decoder, StepHook
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.tokenizer import Overflow, Tokenizer


class GraphBackend(ABC):
    """An engine's ``StepBackend`` (``mt5lite.runtimes.decoding``): ``encode`` and ``step`` run the export's encoder
    and decoder graph through the engine's ``_run``, on the feeds each graph names (``specs``: the manifest's graphs
    by role)."""

    specs: dict[str, GraphSpec]

    @abstractmethod
    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run graph ``role`` (``encoder`` or ``decoder``) on ``feeds``, one per input of the graph by its name;
        every output by name."""

    def encode(self, feeds: dict[str, np.ndarray], role: str = "encoder") -> dict[str, np.ndarray]:
        """Run the encoder (graph ``role``: a static export's source-length buckets are ``encoder_sN``); returns
        every output by name (hidden states, cross K/V ``[L,B,H,S,d_kv]``)."""
        return self._run(role, graph_feeds(self.specs[role].input_names, feeds))

    def step(self, feeds: dict[str, np.ndarray], role: str = "decoder") -> dict[str, np.ndarray]:
        """Run one decoder step (graph ``role``: a static export's batched steps are ``decoder_bN``) on the
        contract's feeds (the cross K/V and cache stacked; the graph gets each layer's view); returns
        ``logits [B,V]``, ``new_self_k`` and ``new_self_v`` by name."""
        return self._run(role, graph_feeds(self.specs[role].input_names, feeds))


class StaticBatches:
    """The step backend of a static-shape export, whose graphs take fixed shapes: the encoder batch 1, the decoder
    step batch 1 and the batched steps the export has (``decoder_b4``: batch 4), each over ``max_source_length``
    positions or a shorter source-length bucket (``encoder_s16``, ``decoder_b4_s16``). Each call runs the graphs
    of its feeds' source length; a larger batch, such as the beams of beam search or several inputs decoded
    together, runs in as few step calls as the export's batch sizes allow: the largest that fits first, then
    smaller ones. With only batch 1 that is row by row."""

    def __init__(self, backend: GraphBackend, roles: dict[tuple[str, int, int], str]):
        self.backend = backend
        self.roles = roles  # (kind, batch, source length) -> the graph's role
        self.lengths = sorted({length for _, _, length in roles})
        self.max_target_length = backend.max_target_length
        self.vocab_size = backend.vocab_size

    def _length(self, width: int) -> int:
        """The shortest source length the graphs take that holds ``width`` positions."""
        return bucket_length(width, self.lengths)

    def encode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every encoder output, one input row at a time, over as many source positions as ``feeds`` have (feeds
        padded for another export, as a parity check has them, are padded here to a length the graphs take and the
        outputs cut back)."""
        width = feeds["input_ids"].shape[1]
        length = self._length(width)
        feeds = to_source_length(feeds, length)
        rows, role = len(feeds["input_ids"]), self.roles["encoder", 1, length]
        outputs = concat_rows([self.backend.encode(batch_rows(feeds, slice(row, row + 1)), role)
                               for row in range(rows)])
        return to_source_length(outputs, width)

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One decoder step of every row, in chunks of the batch sizes the export serves."""
        source = self._length(feeds["encoder_attention_mask"].shape[1])
        feeds = to_source_length(feeds, source)
        batches = {batch: role for (kind, batch, length), role in self.roles.items()
                   if kind == "decoder" and length == source}
        rows, start, parts = len(feeds["decoder_input_ids"]), 0, []
        while start < rows:
            size = max(batch for batch in batches if batch <= rows - start)
            chunk = feeds if size == rows else batch_rows(feeds, slice(start, start + size))
            parts.append(self.backend.step(chunk, batches[size]))
            start += size
        return parts[0] if len(parts) == 1 else concat_rows(parts)


class ExportGenerator(ABC):
    """Tokenize, decode (greedy or beam search) and detokenize with an export; subclasses bring the engine."""

    def __init__(self, export_dir: str | os.PathLike, threads: int | None = None, row_by_row: bool = False,
                 full_length: bool = False):
        self.root = Path(export_dir)
        self.manifest = load_manifest(self.root)  # verifies every file's sha256 before any session exists
        self.tokenizer = Tokenizer(inside(self.root, self.manifest.tokenizer.file))
        self.backend = self._backend(self.manifest, threads)
        special = self.manifest.special_tokens
        self.max_source_length = self.manifest.max_source_length
        self.static_shapes = self.manifest.static_shapes
        #: The batch sizes the static export's decoder steps serve (``row_by_row``: 1 only); empty when dynamic.
        self.decoder_batches = {1: "decoder"} if row_by_row else self.manifest.decoder_batches
        #: The source lengths a static export's inputs are padded to, the shortest that holds them
        #: (``full_length``: ``max_source_length`` only); empty when dynamic.
        self.source_lengths = [self.max_source_length] if full_length else self.manifest.source_lengths
        #: What the decoding loop runs: the engine's backend, or for static graphs that backend in their shapes.
        self.stepper = self.backend
        if self.static_shapes:
            roles = {(kind, batch, source): self.manifest.role_at(kind, batch, source)
                     for source in self.source_lengths for kind, batches in (("encoder", [1]),
                                                                             ("decoder", self.decoder_batches))
                     for batch in batches}
            self.stepper = StaticBatches(self.backend, roles)
        self.decoder = Decoder(self.stepper, eos_id=special.eos, decoder_start_id=special.decoder_start,
                               suppressed_ids=list(range(self.tokenizer.piece_count, self.manifest.vocab_size)))

    def add_step_hook(self, hook: StepHook) -> None:
        """Call ``hook(feeds, outputs)`` after every decoder step the decoding loop runs."""
        self.decoder.add_step_hook(hook)

    @abstractmethod
    def _backend(self, manifest: Manifest, threads: int | None):
        """The engine's step backend for this export (``mt5lite.runtimes.decoding.StepBackend``)."""

    def encode_batch(self, texts: list[str], overflow: Overflow = Overflow.ERROR) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and mask, right-padded (for a static-shape export, to the shortest of its source lengths that
        holds the longest input)."""
        return self.tokenizer.encode_batch(texts, self.max_source_length, overflow, self.source_lengths or None)

    def generate_ids(self, texts: list[str], options: DecodingOptions | None = None,
                     overflow: Overflow = Overflow.ERROR) -> list[list[int]]:
        """Generated ids per input, up to and including eos."""
        options = options or DecodingOptions()
        ids, mask = self.encode_batch(texts, overflow)
        if not self.static_shapes:
            return self.decoder.generate(ids, mask, options)
        # Fixed batch sizes: as many inputs together as the largest batched step holds with their beams
        group = max(1, max(self.decoder_batches) // options.num_beams)
        return [row for start in range(0, len(texts), group)
                for row in self.decoder.generate(ids[start : start + group], mask[start : start + group], options)]

    def generate(self, texts: list[str], options: DecodingOptions | None = None,
                 overflow: Overflow = Overflow.ERROR) -> list[str]:
        """Generated text per input."""
        return [self.tokenizer.decode(ids) for ids in self.generate_ids(texts, options, overflow)]

    def stream_ids(self, text: str, options: DecodingOptions | None = None,
                   overflow: Overflow = Overflow.ERROR) -> Iterator[int]:
        """Greedy decoding of ``text``, each id yielded as soon as its step has run (eos last)."""
        ids, mask = self.encode_batch([text], overflow)
        yield from self.decoder.stream(ids, mask, options or DecodingOptions())
