"""The bundled models' tokenizer: sentencepiece unigram with T5's special ids, byte fallback and mT5's sentinels.

Pad 0, eos 1, unk 2, no bos, byte fallback (any text round-trips), split digits and identity normalisation
(``decode(encode(text)) == text``). The demo model's has no sentinels (``mt5lite.demo.train``; the same bytes as
before this module); the natural model's holds the sentinel pieces ``<extra_id_0>`` .. ``<extra_id_{N-1}>`` that
span corruption puts in place of the hidden spans. They are user-defined pieces: sentencepiece always reads their
text as that one piece, so a corrupted example can travel as text and be tokenized again
(``mt5lite.natural.span_corruption``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable

#: How the k-th sentinel is written (mT5's and transformers' spelling).
SENTINEL = "<extra_id_{}>"


def sentinel_pieces(count: int) -> list[str]:
    """The first ``count`` sentinel pieces, ``<extra_id_0>`` first."""
    return [SENTINEL.format(k) for k in range(count)]


def train_tokenizer(texts: Iterable[str], pieces: int, sentinels: int, character_coverage: float = 0.9995,
                    threads: int = 2) -> bytes:
    """A unigram sentencepiece model of ``pieces`` pieces (special, byte and sentinel pieces included) trained on
    ``texts``, serialized: pad 0, eos 1, unk 2, then the ``sentinels`` sentinel pieces (ids 3 onward)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="unigram",
        vocab_size=pieces,
        character_coverage=character_coverage,
        byte_fallback=True,  # any text round-trips, even characters the pieces do not cover
        split_digits=True,  # without it the demo model did not learn digits -> words
        normalization_rule_name="identity",  # decode(encode(text)) == text
        user_defined_symbols=sentinel_pieces(sentinels),
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=threads,
        minloglevel=2,
    )
    return model.getvalue()


def sentinel_ids(processor, count: int) -> list[int]:
    """The ids of the first ``count`` sentinel pieces in ``processor`` (a ``SentencePieceProcessor``); ValueError
    when one is missing or is not a single user-defined piece."""
    ids = [processor.piece_to_id(piece) for piece in sentinel_pieces(count)]
    missing = [piece for piece, i in zip(sentinel_pieces(count), ids, strict=True)
               if i == processor.unk_id() or processor.id_to_piece(i) != piece]
    if missing:
        raise ValueError(f"the tokenizer has no sentinel piece {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}; train it with sentinels")
    return ids
