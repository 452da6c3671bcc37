"""A lean T5 tokenizer over sentencepiece: the one every runtime shares (no torch, no transformers).

T5 conventions: ``pad`` = 0 is also the decoder start id, ``eos`` = 1 ends every encoded input, and the model may
have more embedding rows than the tokenizer has pieces (mT5: 250112 rows, 250100 pieces); ids past the last piece
cannot be decoded and are never emitted by the runtimes.
"""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path

import numpy as np
import sentencepiece as spm

from mt5lite.contract import bucket_length
from mt5lite.errors import InputError


class Overflow(str, Enum):
    """What to do with an input longer than the model accepts."""

    ERROR = "error"
    TRUNCATE = "truncate"


def validate_text(text: object, index: int | None = None) -> str:
    """Return ``text`` if it is non-empty, well-formed Unicode; raise a clear ``InputError`` otherwise.

    Invalid UTF-8 on the command line reaches Python as lone surrogates (``surrogateescape``), so one check covers
    both. ``bytes`` are decoded strictly as UTF-8.
    """
    where = "" if index is None else f" (input {index})"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"invalid UTF-8 at byte {exc.start}{where}; give text encoded as UTF-8") from None
    if not isinstance(text, str):
        raise InputError(f"expected text, got {type(text).__name__}{where}")
    if not text.strip():
        raise InputError(f"empty or whitespace-only input{where}; give some text to process")
    for position, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise InputError(
                f"invalid UTF-8 or lone surrogate U+{ord(char):04X} at character {position}{where}; "
                "give text encoded as UTF-8"
            )
    return text


class Tokenizer:
    """Encode and decode T5/mT5 text with a ``spiece.model`` file."""

    pad_id = 0
    eos_id = 1

    def __init__(self, spiece_path: str | Path):
        path = Path(spiece_path)
        if not path.is_file():
            raise InputError(f"{path}: tokenizer file not found (expected a sentencepiece spiece.model)")
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.load(str(path))
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{path}: not a valid sentencepiece model ({exc})") from None
        self.path = path

    @classmethod
    def from_bytes(cls, data: bytes) -> Tokenizer:
        """A tokenizer over a serialized sentencepiece model held in memory (e.g. between compression passes)."""
        tokenizer = cls.__new__(cls)
        tokenizer._sp = spm.SentencePieceProcessor(model_proto=data)
        tokenizer.path = None
        return tokenizer

    @property
    def piece_count(self) -> int:
        """The number of pieces; ids at or past it cannot be decoded."""
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        """The id of the unknown piece."""
        return self._sp.unk_id()

    def encode(self, text: str, max_length: int | None = None, overflow: Overflow = Overflow.ERROR) -> list[int]:
        """Token ids of ``text`` followed by ``eos``; longer than ``max_length`` raises or truncates (keeping eos)."""
        ids = self._sp.encode(validate_text(text)) + [self.eos_id]
        if max_length is not None and len(ids) > max_length:
            message = f"input is {len(ids)} tokens long, more than the maximum of {max_length}"
            if Overflow(overflow) is Overflow.ERROR:
                raise InputError(f"{message}; shorten it or allow truncation")
            warnings.warn(f"{message}; truncated to {max_length} tokens", stacklevel=2)
            ids = ids[: max_length - 1] + [self.eos_id]
        return ids

    def encode_batch(self, texts: list[str], max_length: int | None = None, overflow: Overflow = Overflow.ERROR,
                     pad_to: int | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode and right-pad a batch: ``(input_ids, attention_mask)``, int64 ``[B, width]``; the width is the
        longest input, or ``pad_to`` (static-shape graphs: a length, or several, of which the shortest that holds
        the longest input). Errors name the input they concern."""
        if not texts:
            raise InputError("no inputs given")
        rows = []
        for index, text in enumerate(texts):
            try:
                rows.append(self.encode(text, max_length, overflow))
            except InputError as exc:
                if len(texts) == 1:
                    raise
                raise InputError(f"input {index}: {exc}") from None
        width = longest = max(len(r) for r in rows)
        if pad_to:
            width = bucket_length(longest, [pad_to] if isinstance(pad_to, int) else pad_to)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask

    def uncovered(self, texts: list[str]) -> tuple[int, int]:
        """``(characters no piece covers, characters)`` over ``texts``, whitespace not counted: characters spelled
        in byte-fallback pieces, or ``<unk>`` for a tokenizer without byte fallback (google/mt5-*), as in text of a
        language the vocabulary was trimmed away from. Texts that are not valid input count for nothing."""
        missing = characters = 0
        for text in texts:
            try:
                text = validate_text(text)
            except InputError:
                continue  # bad input is refused where it is encoded, with the input it concerns named
            characters += sum(not char.isspace() for char in text)
            for piece in self._sp.encode(text, out_type="immutable_proto").pieces:
                if self._sp.is_byte(piece.id) or self._sp.is_unknown(piece.id):
                    missing += len(piece.surface)  # a byte-spelled character is on its last byte piece
        return missing, characters

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, stopping at the first ``eos`` and skipping pad and undecodable ids."""
        kept = []
        for token in ids:
            token = int(token)
            if token == self.eos_id:
                break
            if token != self.pad_id and 0 <= token < self.piece_count:
                kept.append(token)
        return self._sp.decode(kept)
