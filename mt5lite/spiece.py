"""The one reader of sentencepiece model files (``spiece.model``): parsed with the schema sentencepiece ships and
checked to load, so every caller refuses a bad file with the same one-line error."""

from __future__ import annotations

import os
from pathlib import Path

from mt5lite.errors import InputError

#: sentencepiece's escaped space, the word-boundary mark in a piece's text ("▁").
SPACE = "\u2581"
#: sentencepiece ``ModelProto.SentencePiece.Type`` values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_sentencepiece(path: str | os.PathLike, error: type[Exception] = InputError):
    """``path`` parsed as a sentencepiece ``ModelProto``; ``error`` (``InputError`` by default) when it is not a
    readable sentencepiece model or has no pieces."""
    import sentencepiece as spm
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
        spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    except (DecodeError, RuntimeError, OSError) as exc:
        raise error(f"{path}: not a readable sentencepiece model "
                    f"({str(exc).splitlines()[0] if str(exc) else 'empty'}); mt5lite reads T5/mT5 checkpoints with "
                    "a sentencepiece spiece.model") from None
    if not proto.pieces:
        raise error(f"{path}: a sentencepiece model with no pieces; give the checkpoint's spiece.model")
    return proto


def pieces(directory: str | os.PathLike) -> list[str]:
    """The pieces of ``directory``'s ``spiece.model``, in id order."""
    return [piece.piece for piece in read_sentencepiece(Path(directory) / "spiece.model").pieces]
