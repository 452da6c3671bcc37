"""The natural model's training: span corruption (mT5's noise share and spans, exact inverse, seeded), corrupted
examples that survive the trip through text, one tiny end-to-end run of ``train_natural``, and the committed
natural model against its own report."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import sentencepiece as spm
import torch

from mt5lite.data import read_sentences, read_task_pairs
from mt5lite.natural.augment import fine_tuning_pairs
from mt5lite.natural.config import NaturalConfig, Stage
from mt5lite.natural.corpus import LANGUAGES, NATURAL_DIR
from mt5lite.natural.span_corruption import (
    MAX_PIECES,
    NOISE_DENSITY,
    PieceKinds,
    corrupt,
    pretraining_pairs,
    random_spans_noise_mask,
    uncorrupt,
    windows,
)
from mt5lite.natural.tokenizer import sentinel_ids, train_tokenizer

#: Stand-in ids for the sequences the properties are checked on, and their sentinels.
SENTINELS = list(range(1000, 1050))
PIECE_IDS = (10, 1000)
#: The tiny model of the end-to-end run, derived from the real config: its shape and training cut to seconds.
TINY = replace(NaturalConfig(), vocab_pieces=1500, character_coverage=0.98, tokenizer_texts=5000, d_model=32, d_kv=8,
               d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, pretrain=Stage(5, 8, 1e-3),
               finetune=Stage(6, 8, 1e-3), save_steps=3, eval_per_language=1)


def _sequences(count: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(*PIECE_IDS, size=rng.integers(2, MAX_PIECES + 1)).tolist() for _ in range(count)]


def _sentinels_in(ids: list[int], sentinels=SENTINELS) -> list[int]:
    return [token for token in ids if token in sentinels]


def test_the_mask_hides_mt5s_share_in_spans_of_three():
    rng = np.random.default_rng(0)
    hidden = total = spans = 0
    for length in range(20, MAX_PIECES + 1):
        for _ in range(20):
            mask = random_spans_noise_mask(length, rng)
            assert mask.shape == (length,) and mask.sum() == round(length * NOISE_DENSITY)
            hidden, total = hidden + mask.sum(), total + length
            spans += np.sum(mask[1:] & ~mask[:-1]) + mask[0]
    assert abs(hidden / total - NOISE_DENSITY) < 0.005
    assert 2.5 < hidden / spans < 3.5


def test_spans_may_start_or_end_a_sequence_but_mostly_do_neither():
    rng = np.random.default_rng(1)
    masks = [random_spans_noise_mask(30, rng) for _ in range(2000)]
    starts, ends = np.mean([m[0] for m in masks]), np.mean([m[-1] for m in masks])
    assert 0 < starts < 0.2 and 0 < ends < 0.2  # T5's mask: never starts with a span, always ends with one


def test_the_noise_share_over_many_sequences_is_near_fifteen_percent():
    rng = np.random.default_rng(2)
    hidden = total = 0
    for ids in _sequences(2000):
        inputs, targets = corrupt(ids, SENTINELS, rng)
        hidden += len(targets) - len(_sentinels_in(targets))
        total += len(ids)
    assert abs(hidden / total - NOISE_DENSITY) < 0.01


def test_spans_and_sentinels_alternate_and_input_with_target_give_back_the_ids():
    rng = np.random.default_rng(3)
    for ids in _sequences(500):
        inputs, targets = corrupt(ids, SENTINELS, rng)
        marks = _sentinels_in(inputs)
        assert marks == SENTINELS[: len(marks)] and len(marks) >= 1
        assert _sentinels_in(targets) == SENTINELS[: len(marks) + 1] and targets[-1] == SENTINELS[len(marks)]
        assert all(not (a in SENTINELS and b in SENTINELS) for a, b in zip(inputs, inputs[1:], strict=False))
        assert all(b not in SENTINELS for a, b in zip(targets[:-1], targets[1:], strict=False) if a in SENTINELS)
        assert uncorrupt(inputs, targets, SENTINELS) == ids


def test_corruption_is_deterministic_per_seed():
    def run(seed: int) -> list:
        rng = np.random.default_rng(seed)
        return [corrupt(ids, SENTINELS, rng) for ids in _sequences(50)]

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_no_span_splits_a_character_spelled_in_byte_pieces():
    continuations = frozenset(range(2000, 2064))  # stand-ins for the byte pieces 0x80-0xBF
    rng = np.random.default_rng(6)
    for ids in _sequences(300):
        ids = [piece for i, token in enumerate(ids) for piece in ([token, 2000 + i % 64] if i % 3 else [token])]
        inputs, targets = corrupt(ids, SENTINELS, rng, continuations)
        for sequence in (inputs, targets):  # no span, and no kept text after a span, starts inside a character
            assert all(b not in continuations for a, b in zip(sequence, sequence[1:], strict=False)
                       if a in SENTINELS)
        assert uncorrupt(inputs, targets, SENTINELS) == ids


@pytest.fixture(scope="module")
def processor() -> spm.SentencePieceProcessor:
    """A small tokenizer with sentinels, trained on a sample of the natural corpus (about a second)."""
    texts = [s.text for s in read_sentences(NATURAL_DIR / "monolingual.tsv")]
    texts += [p.target for p in read_task_pairs(NATURAL_DIR / "train.tsv")]
    random.Random(0).shuffle(texts)
    return spm.SentencePieceProcessor(model_proto=train_tokenizer(texts[:5000], 1500, 50, 0.98))


def test_corrupted_text_tokenizes_back_to_the_same_sentinels_and_text(processor):
    """The examples travel as text (``train`` tokenizes them again): every sentinel comes back as the same single
    piece and the text reconstructs exactly; the ids themselves differ, almost always only by the "▁" that
    sentencepiece's dummy prefix puts before a leading sentinel (every target starts with one)."""
    sentinels = sentinel_ids(processor, 50)
    space = processor.piece_to_id("\u2581")
    kinds = PieceKinds.of(processor)
    rng = np.random.default_rng(7)
    same_ids = count = 0
    for sentence in read_sentences(NATURAL_DIR / "monolingual.tsv")[::10]:
        for window in windows(processor.encode(sentence.text), kinds):
            inputs, targets = corrupt(window, sentinels, rng, kinds.continuations)
            again = [processor.encode(processor.decode(ids)) for ids in (inputs, targets)]
            assert [_sentinels_in(ids, sentinels) for ids in again] == [_sentinels_in(inputs, sentinels),
                                                                         _sentinels_in(targets, sentinels)]
            assert processor.decode(uncorrupt(*again, sentinels)) == processor.decode(window)
            unprefixed = [ids[1:] if ids[:1] == [space] and ids[1] in sentinels else ids for ids in again]
            same_ids += unprefixed == [inputs, targets]
            count += 1
    assert same_ids / count > 0.9


def test_pretraining_pairs_pack_each_language_seeded(processor):
    sentences = read_sentences(NATURAL_DIR / "monolingual.tsv")[::20]
    sentinels = sentinel_ids(processor, 50)
    pairs = pretraining_pairs(sentences, processor, sentinels, np.random.default_rng(8), examples=1000)
    assert len(pairs) >= 1000
    assert pairs == pretraining_pairs(sentences, processor, sentinels, np.random.default_rng(8), examples=1000)
    assert {p.lang for p in pairs} == {s.lang for s in sentences}
    lengths = []
    for pair in pairs:
        assert pair.source.count("<extra_id_") + 1 == pair.target.count("<extra_id_")
        source, target = processor.encode(pair.source), processor.encode(pair.target)
        assert len(source) < 128 and len(target) < 128  # with eos, within what PairDataset keeps
        lengths.append(len(source) + len(target))
    assert np.mean(lengths) > 0.8 * MAX_PIECES  # packed: most windows are nearly full


@pytest.mark.needs("train")
def test_a_tiny_run_writes_a_loadable_checkpoint_and_a_report_of_every_language(tmp_path):
    from mt5lite.checkpoint import load_model
    from mt5lite.natural.train import REPORT_NAME, train_natural

    output = tmp_path / "natural"
    report = train_natural(TINY, output)
    model = load_model(output)
    assert model.config.d_model == TINY.d_model and not model.config.tie_word_embeddings
    assert _stored_dtypes(output) == {"F16"} and next(model.parameters()).dtype == torch.float32
    assert json.loads((output / REPORT_NAME).read_text(encoding="utf-8")) == report
    assert set(report["heldout"]["per_language"]) == set(LANGUAGES)
    for row in report["heldout"]["per_language"].values():
        assert row["n"] == TINY.eval_per_language
        assert {"chrf", "exact_match"} <= set(row["model"]) and {"chrf", "exact_match"} <= set(row["baseline"])
    finetune = report["training"]["finetune"]
    assert report["training"]["pretrain"]["steps"] == 5 and finetune["steps"] == 6
    losses = {row["step"]: row["loss"] for row in finetune["eval_losses"]}  # dev.tsv's, at each checkpoint
    assert sorted(losses) == [3, 6] and finetune["kept_step"] == min(losses, key=losses.get)
    train = read_task_pairs(NATURAL_DIR / "train.tsv")  # fine-tuned on its pairs, copy and spelling pairs added
    assert finetune["examples"] == len(fine_tuning_pairs(train, TINY.copy_repeats, TINY.spelling_repeats)) > len(train)
    assert "| ja |" in (output / "README.md").read_text(encoding="utf-8")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["natural"]  # no staging or training left


def test_fine_tuning_adds_copy_pairs_and_spelling_pairs_made_from_sources_only():
    from mt5lite.data import TaskPair
    from mt5lite.natural.augment import copy_pairs, fine_tuning_pairs, spelling_pairs

    pairs = [TaskPair("zu", "translate zu: Belgium", "i-Belgium"), TaskPair("de", "translate de: Belgium", "Belgien"),
             TaskPair("zu", "translate zu: Croatian", "isi-Croatian"), TaskPair("ja", "translate ja: Chile", "チリ")]
    assert copy_pairs(pairs) == [pairs[0], pairs[2]]
    assert spelling_pairs(pairs) == [TaskPair("en", f"spell: {name}", f"-{name}")
                                     for name in ("Belgium", "Chile", "Croatian")]  # one per name, no target read
    augmented = fine_tuning_pairs(pairs, copy_repeats=3, spelling_repeats=2)
    assert augmented[: len(pairs)] == pairs and len(augmented) == 4 + 2 * 2 + 2 * 3
    assert fine_tuning_pairs(pairs, 1, 0) == pairs


def test_a_spelling_target_spells_the_name_in_the_pieces_a_prefix_glues_it_into():
    """The reason for the spelling pairs, on a small tokenizer learned from the natural corpus: the source writes the
    name as it follows a space (one piece), the zu target and the spelling target as it follows a hyphen (the same,
    shorter pieces)."""
    from mt5lite.natural.augment import SPELLING

    texts = [s.text for s in read_sentences(NATURAL_DIR / "monolingual.tsv")][:4000]
    texts += [p.source for p in read_task_pairs(NATURAL_DIR / "train.tsv")][:4000]
    processor = spm.SentencePieceProcessor(model_proto=train_tokenizer(texts, 2000, 4, 0.999, 1))

    def after_hyphen(text):
        pieces = processor.encode(text, out_type=str)
        return pieces[pieces.index("-") + 1:]

    spelled = after_hyphen(SPELLING.format(text="Belgium"))
    assert spelled == after_hyphen("i-Belgium") == after_hyphen("isi-Belgium")
    assert len(spelled) > len(processor.encode("Belgium", out_type=str))  # after a space: fewer, longer pieces


def _stored_dtypes(model_dir) -> set[str]:
    """The dtypes of the tensors in a checkpoint's safetensors file, as stored."""
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", framework="numpy") as weights:
        return {weights.get_slice(name).get_dtype() for name in weights.keys()}


def test_the_card_names_every_language_where_the_model_does_not_beat_the_baseline():
    """The card's verdict on the copy baseline counts the languages and names each one the model does not beat,
    a tie included."""
    from mt5lite.natural.model_card import baseline_verdict

    def report(rows: dict) -> dict:
        return {"heldout": {"per_language": {lang: {"n": 40, "model": {"chrf": ours}, "baseline": {"chrf": copy}}
                                             for lang, (ours, copy) in rows.items()}}}

    assert baseline_verdict(report({"de": (55.0, 40.0), "yo": (18.6, 26.6), "zu": (71.7, 71.7)})) == (
        "It beats the baseline's chrF in 1 of 3 languages; not in yo (18.6 against 26.6), zu (71.7 against 71.7).")
    assert baseline_verdict(report({"de": (55.0, 40.0)})) == "It beats the baseline's chrF in 1 of 1 languages."


@pytest.mark.needs("train")
def test_the_committed_natural_model_is_the_one_its_card_describes():
    """``models/natural`` (stored in float16, committed): its first two evaluation batches decode again to the
    per-language held-out figures of its report, i.e. the report was measured on these weights."""
    from mt5lite.natural.train import REPORT_NAME, heldout_pairs
    from mt5lite.paths import NATURAL_MODEL
    from mt5lite.verification.evaluation import evaluate_model

    report = json.loads((NATURAL_MODEL / REPORT_NAME).read_text(encoding="utf-8"))
    assert _stored_dtypes(NATURAL_MODEL) == {"F16"} and report["training"]["storage_dtype"] == "float16"
    pairs = heldout_pairs(report["training"]["eval_per_language"])[:128]  # the evaluation's first two batches of 64
    complete = [lang for lang in dict.fromkeys(p.lang for p in pairs)
                if sum(p.lang == lang for p in pairs) == report["heldout"]["per_language"][lang]["n"]]
    again = evaluate_model(NATURAL_MODEL, pairs, threads=report["training"]["threads"])
    assert len(complete) >= 3
    for lang in complete:
        recorded, found = report["heldout"]["per_language"][lang]["model"], again["per_language"][lang]
        assert abs(found["chrf"] - recorded["chrf"]) < 0.5
        assert abs(found["exact_match"] - recorded["exact_match"]) <= 0.03
        assert recorded["chrf"] > report["heldout"]["per_language"][lang]["baseline"]["chrf"]
