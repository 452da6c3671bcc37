"""mT5's pre-training objective, span corruption (Raffel et al. 2020), on sentencepiece ids.

About 15% of a sequence's pieces, in spans of 3 on average, are hidden; each hidden span becomes one sentinel in the
input, and the target lists the spans, each after its sentinel, then a final sentinel:

    pieces   Thank you for inviting me to your party last week .
    input    Thank you <extra_id_0> me to your party <extra_id_1> week .
    target   <extra_id_0> for inviting <extra_id_1> last <extra_id_2>

The mask is T5's ``random_spans_noise_mask`` (fixed noise share and span count per length, spans placed at random)
drawn with a seeded numpy ``Generator``, so the same seed gives the same examples. As in T5, a language's lines are
packed into sequences of up to ``MAX_PIECES`` pieces. Two departures: a span may start a sequence and need not end
it (``random_spans_noise_mask``), and a character that byte fallback spells as several byte pieces counts as one
unit, so no span or cut splits a character. That keeps the examples exact as text: ``compression.training.train``
takes text pairs and tokenizes them itself, and the sentinels, user-defined pieces, come back as the same single
pieces (``mt5lite.natural.tokenizer``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mt5lite.data import Sentence, TaskPair
from mt5lite.spiece import SPACE  # a piece that starts with it starts a word

#: mT5's span corruption: the share of units hidden and the mean length of a hidden span.
NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
#: The longest piece sequence corrupted at once, so an input with its eos stays within the 128 ids that
#: ``compression.training.PairDataset`` keeps. A language's text is cut into such windows at a word start in the
#: window's second half, or else at a character start.
MAX_PIECES = 120
#: A sequence needs this many units for a span to be hidden with text left around it.
MIN_UNITS = 2


def _random_segmentation(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """The lengths of a random partition of ``items`` into ``segments`` non-empty segments."""
    first_in_segment = np.arange(items - 1) < segments - 1
    rng.shuffle(first_in_segment)
    segment_id = np.cumsum(np.concatenate([[False], first_in_segment]))
    return np.bincount(segment_id, minlength=segments)


def random_spans_noise_mask(length: int, rng: np.random.Generator, noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> np.ndarray:
    """T5's noise mask, a bool array of ``length``: ``round(length * noise_density)`` hidden positions (at least 1,
    at most ``length - 1``) in ``round(hidden / mean_noise_span_length)`` spans (at least 1) of random non-zero
    lengths, with random non-zero gaps between them. Unlike T5's, the kept text before the first span and after the
    last may be empty: T5's always starts with kept text and ends with a hidden span, harmless in its 568-piece
    segments, but in short sequences (one to three spans) most of what is hidden would end the sequence."""
    padded = max(length, 2)
    noise = min(max(round(padded * noise_density), 1), padded - 1)
    spans = max(round(noise / mean_noise_span_length), 1)
    gaps = _random_segmentation(padded - noise + 2, spans + 1, rng)
    gaps[[0, -1]] -= 1  # the first and the last gap drew one piece more, so they may be empty
    lengths = np.stack([gaps[:-1], _random_segmentation(noise, spans, rng)], axis=1).reshape(-1)
    hidden = np.repeat(np.tile([False, True], spans), lengths)
    return np.concatenate([hidden, np.zeros(gaps[-1], dtype=bool)])[:length]


def corrupt(ids: Sequence[int], sentinels: Sequence[int], rng: np.random.Generator,
            continuations: frozenset[int] = frozenset()) -> tuple[list[int], list[int]]:
    """Span-corrupt ``ids``: ``(input, target)``, the input with each hidden span replaced by the next sentinel,
    the target each sentinel followed by its span, then one more sentinel. Pieces in ``continuations`` (byte pieces
    that continue a character) stay in the unit of the piece before them. ValueError when ``sentinels`` are too
    few."""
    ids = np.asarray(ids)
    starts_unit = ~np.isin(ids, list(continuations))
    starts_unit[0] = True
    units = np.cumsum(starts_unit) - 1
    hidden = random_spans_noise_mask(int(units[-1]) + 1, rng)[units]
    starts_span = hidden & ~np.concatenate([[False], hidden[:-1]])
    spans = int(starts_span.sum())
    if spans + 1 > len(sentinels):
        raise ValueError(f"{spans} hidden spans need {spans + 1} sentinels, the tokenizer has {len(sentinels)}")
    marks = np.asarray(sentinels)[: spans + 1]
    inputs = np.where(starts_span, marks[np.maximum(np.cumsum(starts_span) - 1, 0)], ids)[~hidden | starts_span]
    targets = np.insert(ids[hidden], np.flatnonzero(starts_span[hidden]), marks[:-1])
    return inputs.tolist(), [*targets.tolist(), int(marks[-1])]


def uncorrupt(inputs: Sequence[int], targets: Sequence[int], sentinels: Sequence[int]) -> list[int]:
    """The ids ``corrupt`` started from: each sentinel of ``inputs`` replaced by the span that follows it in
    ``targets``."""
    index = {token: k for k, token in enumerate(sentinels)}
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets:
        if token in index:
            current = spans.setdefault(index[token], [])
        elif current is not None:
            current.append(token)
    return [piece for token in inputs for piece in (spans.get(index[token], []) if token in index else [token])]


@dataclass(frozen=True)
class PieceKinds:
    """Per piece id of a tokenizer: whether it continues a character (a byte piece 0x80-0xBF) and whether it
    starts a word (it begins with "▁")."""

    continues_character: np.ndarray
    starts_word: np.ndarray

    @classmethod
    def of(cls, processor) -> PieceKinds:
        """The kinds of every piece of ``processor`` (a ``SentencePieceProcessor``)."""
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        continuation = {f"<0x{byte:02X}>" for byte in range(0x80, 0xC0)}
        return cls(np.array([processor.is_byte(i) and piece in continuation for i, piece in enumerate(pieces)]),
                   np.array([piece.startswith(SPACE) for piece in pieces]))

    @property
    def continuations(self) -> frozenset[int]:
        """The ids of the pieces that continue a character."""
        return frozenset(np.flatnonzero(self.continues_character).tolist())


def windows(ids: Sequence[int], kinds: PieceKinds) -> Iterator[list[int]]:
    """``ids`` cut into windows of at most ``MAX_PIECES`` pieces: at the last word start in a window's second half,
    or else at its last character start, never inside a character."""
    ids = np.asarray(ids, dtype=np.int64)
    cuts = (kinds.starts_word[ids], ~kinds.continues_character[ids])
    at = 0
    while at < len(ids):
        end = min(at + MAX_PIECES, len(ids))
        if end < len(ids):
            half = at + MAX_PIECES // 2
            for allowed in cuts:
                candidates = np.flatnonzero(allowed[half : end + 1])
                if candidates.size:
                    end = half + int(candidates[-1])
                    break
        yield ids[at:end].tolist()
        at = end


def _corrupted_pass(lines: dict[str, list[list[int]]], processor, kinds: PieceKinds, sentinels: Sequence[int],
                    rng: np.random.Generator) -> list[TaskPair]:
    """One pass over the encoded ``lines`` of each language: shuffled, joined (each line starts with "▁", so they
    read as lines separated by spaces), cut into ``windows`` and corrupted."""
    pairs, continuations = [], kinds.continuations
    for lang, encoded in lines.items():
        stream = [token for line in rng.permutation(len(encoded)) for token in encoded[line]]
        for window in windows(stream, kinds):
            if np.count_nonzero(~kinds.continues_character[window]) >= MIN_UNITS:
                inputs, targets = corrupt(window, sentinels, rng, continuations)
                pairs.append(TaskPair(lang, processor.decode(inputs), processor.decode(targets)))
    return pairs


def pretraining_pairs(sentences: Sequence[Sentence], processor, sentinels: Sequence[int], rng: np.random.Generator,
                      examples: int) -> list[TaskPair]:
    """At least ``examples`` span-corruption examples of ``sentences`` as the text pairs ``compression.training.train``
    takes (ids decoded with ``processor``, a ``SentencePieceProcessor``): passes over the text, each packing every
    language's lines in a fresh order into windows and hiding fresh spans, until there are enough."""
    kinds = PieceKinds.of(processor)
    lines: dict[str, list[list[int]]] = defaultdict(list)
    for sentence in sentences:
        lines[sentence.lang].append(processor.encode(sentence.text))
    pairs: list[TaskPair] = []
    while len(pairs) < examples:
        more = _corrupted_pass(lines, processor, kinds, sentinels, rng)
        if not more:
            raise ValueError("no monolingual text long enough to corrupt")
        pairs += more
    return pairs
