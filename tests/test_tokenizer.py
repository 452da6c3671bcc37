"""The lean sentencepiece tokenizer: round trips in every data language, eos, overflow, undecodable ids."""

from __future__ import annotations

import pytest

from mt5lite.data import CALIBRATION_SENTENCES, HELDOUT_SENTENCES, read_sentences
from mt5lite.errors import InputError
from mt5lite.runtimes.tokenizer import Overflow, Tokenizer, validate_text

SENTENCES = read_sentences(CALIBRATION_SENTENCES) + read_sentences(HELDOUT_SENTENCES)
LANGUAGES = sorted({s.lang for s in SENTENCES})


@pytest.fixture(scope="module")
def tokenizer(demo_model):
    return Tokenizer(demo_model / "spiece.model")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_round_trip_in_every_data_language(tokenizer, lang):
    for sentence in (s for s in SENTENCES if s.lang == lang):
        ids = tokenizer.encode(sentence.text)
        assert ids[-1] == tokenizer.eos_id
        assert tokenizer.decode(ids) == sentence.text


def test_uncovered_counts_the_characters_no_piece_covers(tokenizer):
    """Georgian is in none of the demo's languages: each of its letters is spelled in three byte pieces and counts
    once; the digits and Latin letters are pieces; whitespace is not counted."""
    assert tokenizer.uncovered(["words ka: 21"]) == (0, 10)
    assert tokenizer.uncovered(["", "\udcff", "words ka: 21"]) == (0, 10)  # bad input is refused where it is encoded
    assert tokenizer.uncovered(["words ka: საქართველო", "  7 "]) == (10, 19)
    georgian = tokenizer._sp.encode("ს")
    assert sum(tokenizer._sp.is_byte(i) for i in georgian) == 3


def test_uncovered_counts_unknown_characters_without_byte_fallback(tmp_path):
    """A tokenizer without byte fallback (google/mt5-*) maps what it does not cover to ``<unk>``: counted too."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(["words and numbers, seven and twenty one"] * 50),
                                   model_prefix=str(tmp_path / "plain"), vocab_size=20, model_type="unigram",
                                   byte_fallback=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    plain = Tokenizer(tmp_path / "plain.model")
    assert plain.uncovered(["seven and ドイツ"]) == (3, 11)


def test_task_inputs_split_digits(tokenizer):
    ids = tokenizer.encode("words fr: 1234")
    pieces = [tokenizer._sp.id_to_piece(i) for i in ids[:-1]]
    assert [p.strip("▁") for p in pieces[-4:]] == ["1", "2", "3", "4"]


def test_decode_stops_at_eos_and_skips_pad_and_undecodable_ids(tokenizer):
    ids = tokenizer.encode("hello")
    padded = [tokenizer.pad_id] + ids[:-1] + [tokenizer.piece_count + 5, tokenizer.eos_id, 42]
    assert tokenizer.decode(padded) == "hello"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(text):
    with pytest.raises(InputError, match="empty or whitespace-only"):
        validate_text(text)


def test_lone_surrogate_is_refused():
    with pytest.raises(InputError, match="lone surrogate U\\+DCFF"):
        validate_text("abc\udcff")


def test_invalid_utf8_bytes_are_refused():
    with pytest.raises(InputError, match="invalid UTF-8 at byte 1"):
        validate_text(b"a\xffb")


def test_overflow_errors_by_default_and_truncates_on_request(tokenizer):
    text = "words en: " + "1" * 50
    with pytest.raises(InputError, match="more than the maximum of 10"):
        tokenizer.encode(text, max_length=10)
    with pytest.warns(UserWarning, match="truncated to 10 tokens"):
        ids = tokenizer.encode(text, max_length=10, overflow=Overflow.TRUNCATE)
    assert len(ids) == 10 and ids[-1] == tokenizer.eos_id


def test_missing_or_corrupt_tokenizer_file_is_named(tmp_path):
    with pytest.raises(InputError, match="tokenizer file not found"):
        Tokenizer(tmp_path / "spiece.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(InputError, match="not a valid sentencepiece model"):
        Tokenizer(bad)
