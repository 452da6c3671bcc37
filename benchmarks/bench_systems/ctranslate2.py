"""CTranslate2, converted from the same checkpoint: float32 and int8."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.bench_systems import MAX_NEW_TOKENS, SYSTEMS, System, Unavailable, built
from mt5lite.runtimes.tokenizer import Tokenizer


def _ctranslate2(quantization: str):
    def build(checkpoint: Path, work: Path) -> Path:
        def make(out: Path) -> None:
            try:
                from ctranslate2.converters import TransformersConverter
            except ImportError as exc:
                raise Unavailable(f"ctranslate2 is not installed ({exc})") from None
            TransformersConverter(str(checkpoint), copy_files=["spiece.model"]).convert(
                str(out), quantization=quantization, force=True)
        return built(work / f"ctranslate2-{quantization}", make, checkpoint)
    return build


class CTranslate2Runner:
    """CTranslate2's ``Translator`` on sentencepiece pieces (its own encoder-decoder kernels)."""

    def __init__(self, artifact: Path, threads: int):
        import ctranslate2
        import sentencepiece

        self.translator = ctranslate2.Translator(str(artifact), device="cpu", inter_threads=1, intra_threads=threads)
        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.pieces = sentencepiece.SentencePieceProcessor(model_file=str(artifact / "spiece.model"))

    def _tokens(self, ids: np.ndarray) -> list[list[str]]:
        return [[self.pieces.id_to_piece(int(i)) for i in row] for row in ids]

    def forced(self, ids: np.ndarray, new_tokens: int, beams: int = 1) -> float:
        """Seconds for ``translate_batch`` of exactly ``new_tokens`` tokens."""
        started = time.perf_counter()
        self.translator.translate_batch(self._tokens(ids), beam_size=beams, max_decoding_length=new_tokens,
                                        min_decoding_length=new_tokens)
        return time.perf_counter() - started

    def beams(self, ids: np.ndarray, new_tokens: int, beams: int) -> tuple[float, int]:
        """(seconds, steps) of ``translate_batch``'s beam search held to exactly ``new_tokens`` steps."""
        return self.forced(ids, new_tokens, beams), new_tokens

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        result = self.translator.translate_batch(self._tokens(np.asarray([self.tokenizer.encode(text)])), beam_size=1,
                                                 max_decoding_length=MAX_NEW_TOKENS)
        return self.tokenizer.decode([self.pieces.piece_to_id(piece) for piece in result[0].hypotheses[0]])


SYSTEMS.register("ctranslate2-float32", System("CTranslate2", 4, _ctranslate2("float32"), CTranslate2Runner))
SYSTEMS.register("ctranslate2-int8", System("CTranslate2", 1, _ctranslate2("int8"), CTranslate2Runner))
