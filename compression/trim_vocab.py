"""``trim-vocab``: keep only the pieces a corpus in the user's languages uses, in the tokenizer and in the model.

mt5-small spends 256M of its 300M parameters on one embedding row and one ``lm_head`` row per piece (250,112); an
application in a few languages uses a few percent of them. The pass tokenizes the corpus with the original
tokenizer and keeps every piece it uses, every special and byte-fallback piece, and optionally the ``keep_top``
best-scored pieces, or every piece spelled only with characters the used pieces contain (``keep_spelled``: a name
the corpus never saw, written in its languages' letters, may need pieces the corpus never used; measured on the
natural model in ``docs/results/natural-demo.md``). The tokenizer is rewritten through sentencepiece's own protobuf
schema with the kept pieces in their original order and scores, so pad, eos and unk keep their ids and text the
corpus covers tokenizes to the same pieces (the unigram lattice only loses paths that used dropped pieces; the best
path used none). The model keeps the same rows of the embedding and of the ``lm_head`` (a tied head stays tied).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mt5lite.checked import Checked
from mt5lite.compression.passes import PASSES, CompressionPass, make_report, measure
from mt5lite.errors import InputError
from mt5lite.spiece import BYTE, CONTROL, NORMAL, SPACE, UNKNOWN, USER_DEFINED

#: Pieces that are not learned text and are always kept.
ALWAYS_KEPT = (UNKNOWN, CONTROL, USER_DEFINED, BYTE)


def default_corpus() -> tuple[Path, ...]:
    """The project's multilingual sentences and the demo task's data."""
    from mt5lite.data import CALIBRATION_SENTENCES, DEV_TASK, HELDOUT_SENTENCES, HELDOUT_TASK

    return (CALIBRATION_SENTENCES, HELDOUT_SENTENCES, DEV_TASK, HELDOUT_TASK)


@dataclass(frozen=True)
class TrimVocabConfig(Checked):
    """Which pieces to keep."""

    corpus: tuple[Path, ...] = field(default_factory=default_corpus, metadata={
        "help": "texts in the languages to keep: the project's TSV formats (every field but the language tag) or "
                "plain text, one text per line (default: the project's multilingual data and task data)"})
    keep_top: int = field(default=0, metadata={"help": "also keep the K best-scored pieces"})
    keep_spelled: bool = field(default=False, metadata={
        "help": "also keep every piece spelled only with characters the corpus's pieces contain (more pieces; text "
                "in the corpus's languages that the corpus never used, such as unseen names, keeps its pieces)"})
    max_pieces: int = field(default=0, metadata={
        "help": "at most this many pieces (0: no limit); special and byte pieces always stay, then the corpus's "
                "most used pieces"})

    def problems(self) -> list[str]:
        """Every bad value, missing corpus files included."""
        problems = []
        if self.keep_top < 0:
            problems.append(f"keep_top must be at least 0, got {self.keep_top}")
        if self.max_pieces < 0:
            problems.append(f"max_pieces must be at least 0, got {self.max_pieces}")
        if not self.corpus:
            problems.append("give at least one corpus file")
        return problems + [f"{path}: no such corpus file" for path in self.corpus if not Path(path).is_file()]


def read_corpus(paths: tuple[Path, ...]) -> list[str]:
    """Every text of the corpus files: in a ``.tsv`` file every field but the first (the language tag), elsewhere
    every non-empty line."""
    texts = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the corpus ({exc}); give UTF-8 text") from None
        for line in lines:
            if not line.strip() or (Path(path).suffix == ".tsv" and line.startswith("#")):
                continue
            fields = line.split("\t")
            texts += fields[1:] if Path(path).suffix == ".tsv" and len(fields) > 1 else [line]
    return texts


def spelled_ids(tokenizer, used: set[int]) -> list[int]:
    """The ids of the learned pieces spelled only with characters that the pieces ``used`` contain (sentencepiece's
    word-boundary mark counts as one of them), in id order."""
    characters = {SPACE} | {c for i in used for c in tokenizer.pieces[i].piece}
    return [i for i, p in enumerate(tokenizer.pieces) if p.type == NORMAL and set(p.piece) <= characters]


def kept_ids(tokenizer, texts: list[str], config: TrimVocabConfig) -> tuple[list[int], dict]:
    """The ids of the pieces to keep, in their original order, and the numbers behind the choice."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=tokenizer.SerializeToString())
    counts: dict[int, int] = {}
    for ids in processor.encode(texts):
        for piece in ids:
            counts[piece] = counts.get(piece, 0) + 1
    always = {i for i, piece in enumerate(tokenizer.pieces) if piece.type in ALWAYS_KEPT}
    used = {i for i in counts if tokenizer.pieces[i].type == NORMAL}
    if not used:
        raise InputError(f"the corpus ({len(texts)} texts) uses no learned piece of this tokenizer; give text in "
                         "the languages the model should keep")
    if config.max_pieces and config.max_pieces < len(always):
        raise InputError(f"max_pieces {config.max_pieces} is smaller than the {len(always)} special and byte pieces "
                         "that every tokenizer keeps; raise it")
    ranked = sorted(used, key=lambda i: (-counts[i], i))
    by_score = sorted((i for i, p in enumerate(tokenizer.pieces) if p.type == NORMAL),
                      key=lambda i: (-tokenizer.pieces[i].score, i))[: config.keep_top]
    spelled = spelled_ids(tokenizer, used) if config.keep_spelled else []
    chosen = list(always) + ranked + [i for i in by_score + spelled if i not in used]
    if config.max_pieces:
        chosen = chosen[: config.max_pieces]
    dropped_used = len(used - set(chosen))
    return sorted(set(chosen)), {"corpus_texts": len(texts), "corpus_pieces_used": len(used),
                                 "special_and_byte_pieces": len(always), "kept_by_score": len(set(by_score) - used),
                                 "kept_by_spelling": len(set(spelled) - used - set(by_score)),
                                 "used_pieces_dropped_by_max_pieces": dropped_used}


def trim_tokenizer(tokenizer, keep: list[int]):
    """A copy of ``tokenizer`` (a sentencepiece ``ModelProto``) holding only the pieces ``keep``, in order."""
    from sentencepiece import sentencepiece_model_pb2

    trimmed = sentencepiece_model_pb2.ModelProto()
    trimmed.CopyFrom(tokenizer)
    del trimmed.pieces[:]
    trimmed.pieces.extend(tokenizer.pieces[i] for i in keep)
    trimmed.trainer_spec.vocab_size = len(keep)
    return trimmed


def trim_model(model, keep: list[int]):
    """``model`` with only the embedding and ``lm_head`` rows ``keep`` (a tied head stays tied), in place."""
    import torch
    from torch import nn

    index = torch.tensor(keep, dtype=torch.long)
    with torch.no_grad():
        shared = nn.Embedding(len(keep), model.config.d_model)
        shared.weight.copy_(model.get_input_embeddings().weight[index])
        model.set_input_embeddings(shared)
        if model.config.tie_word_embeddings:
            model.lm_head = nn.Linear(model.config.d_model, len(keep), bias=False)
            model.lm_head.weight = shared.weight
        else:
            head = nn.Linear(model.config.d_model, len(keep), bias=False)
            head.weight.copy_(model.get_output_embeddings().weight[index])
            model.set_output_embeddings(head)
    model.config.vocab_size = len(keep)
    return model


def trim_vocab(model, tokenizer, config: TrimVocabConfig):
    """The ``trim-vocab`` pass: ``(model, tokenizer, config) -> (model, tokenizer, report)``."""
    if model.config.vocab_size < len(tokenizer.pieces):
        raise InputError(f"the model has {model.config.vocab_size} embedding rows but its tokenizer "
                         f"{len(tokenizer.pieces)} pieces; they do not belong together")
    before = measure(model, tokenizer)
    keep, details = kept_ids(tokenizer, read_corpus(config.corpus), config)
    moved = [special for special in range(3) if special < len(keep) and keep[special] != special]
    if moved:
        raise InputError(f"ids {moved} (pad, eos, unk in T5) would move; this tokenizer does not start with T5's "
                         "special pieces")
    tokenizer, model = trim_tokenizer(tokenizer, keep), trim_model(model, keep)
    after = measure(model, tokenizer)
    details["id_map"] = keep  # new id -> original id
    summary = (f"kept {len(keep)} of {before['vocabulary']} pieces ({details['corpus_pieces_used']} used by the "
               f"corpus); embedding rows {before['embedding_rows']} -> {after['embedding_rows']}")
    return model, tokenizer, make_report("trim-vocab", summary, before, after, details)


PASSES.register("trim-vocab", CompressionPass(trim_vocab, TrimVocabConfig,
                                              "keep only the pieces a corpus in your languages uses"))
