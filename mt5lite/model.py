"""``mt5lite.load``: the front door of the runtimes. One object over any export (ONNX Runtime, LiteRT,
ExecuTorch: the engine its manifest names) or a Hugging Face checkpoint (the PyTorch reference).

Imports only the lean runtimes: on a device, ``import mt5lite; mt5lite.load(path)`` needs numpy, sentencepiece and
the export's engine, never torch (a checkpoint needs the ``export`` extra, as ``mt5lite generate`` does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mt5lite.manifest import Manifest
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.tokenizer import Overflow

#: The engine a checkpoint runs on (exports name theirs in the manifest).
CHECKPOINT_ENGINE = "pytorch"


class Model:
    """A model ready to generate, with the facts of its manifest (an export) or of its config (a checkpoint)."""

    def __init__(self, path: str | os.PathLike, generator, manifest: Manifest | None):
        self.path = Path(path)
        self._generator = generator
        #: The export's manifest (None for a checkpoint).
        self.manifest = manifest

    @property
    def engine(self) -> str:
        """What runs it: ``onnxruntime``, ``litert``, ``executorch``, or ``pytorch`` for a checkpoint."""
        return self.manifest.engine if self.manifest else CHECKPOINT_ENGINE

    @property
    def precision(self) -> str:
        """The export's precision (``fp32``, ``int8``, ``fp16``, ...); a checkpoint runs in fp32."""
        return self.manifest.precision if self.manifest else "fp32"

    @property
    def languages(self) -> list[str]:
        """The languages a quantized export was calibrated on (empty when it was not calibrated)."""
        quantization = self.manifest.quantization if self.manifest else None
        return quantization.calibration_languages if quantization else []

    @property
    def max_source_length(self) -> int | None:
        """The longest input in tokens (eos included)."""
        return self._generator.max_source_length

    @property
    def max_target_length(self) -> int | None:
        """The most tokens the export's cache holds (None for a checkpoint: no fixed cache)."""
        return self.manifest.max_target_length if self.manifest else None

    def generate(self, texts: str | Sequence[str], num_beams: int = 1, max_new_tokens: int = 32,
                 length_penalty: float = 1.0, early_stopping: bool = False, truncate: bool = False
                 ) -> str | list[str]:
        """The generated text of each input (one string for one string): greedy, or beam search with
        ``num_beams``. An over-long input raises ``InputError`` unless ``truncate``."""
        options = DecodingOptions(max_new_tokens=max_new_tokens, num_beams=num_beams, length_penalty=length_penalty,
                                  early_stopping=early_stopping)
        single = isinstance(texts, str)
        outputs = self._generator.generate([texts] if single else list(texts), options, _overflow(truncate))
        return outputs[0] if single else outputs

    def stream(self, text: str, max_new_tokens: int = 32, truncate: bool = False) -> Iterator[str]:
        """Greedy generation of ``text``, yielded as text arrives, piece by piece: the pieces join to exactly what
        ``generate(text)`` returns (for a checkpoint: unless its ``generation_config`` adds rules of its own, such
        as ``no_repeat_ngram_size``, which transformers' ``generate`` applies and the one decoding loop does not).
        A piece that would end inside a character is held until it completes."""
        tokenizer = self._generator.tokenizer
        options = DecodingOptions(max_new_tokens=max_new_tokens)
        ids: list[int] = []
        shown = ""
        for token in self._generator.stream_ids(text, options, _overflow(truncate)):
            ids.append(token)
            decoded = tokenizer.decode(ids)
            if decoded.startswith(shown) and not decoded.endswith("\ufffd") and len(decoded) > len(shown):
                yield decoded[len(shown):]
                shown = decoded
        final = tokenizer.decode(ids)
        if final != shown and final.startswith(shown):
            yield final[len(shown):]

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, engine={self.engine!r}, precision={self.precision!r})"


def _overflow(truncate: bool) -> Overflow:
    return Overflow.TRUNCATE if truncate else Overflow.ERROR


def load(path: str | os.PathLike, threads: int | None = None, allow_pickle: bool = False,
         max_source_length: int | None = 512) -> Model:
    """Open ``path``: an mt5lite export (its manifest names the engine; every file's hash is verified first) or a
    Hugging Face T5/mT5 checkpoint folder (``allow_pickle`` for ``pytorch_model.bin``; ``max_source_length`` caps
    its inputs, an export's is fixed). ``threads``: CPU threads (None: the engine decides)."""
    from mt5lite.runtimes.generators import open_generator

    generator = open_generator(path, allow_pickle=allow_pickle, threads=threads, max_source_length=max_source_length)
    return Model(path, generator, getattr(generator, "manifest", None))  # a checkpoint's reference has none
