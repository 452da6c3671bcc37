"""The multilingual data shipped in data/: format, coverage, and the calibration / held-out split."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest

from mt5lite.data import (
    CALIBRATION_SENTENCES,
    HELDOUT_SENTENCES,
    HELDOUT_TASK,
    read_sentences,
    read_task_pairs,
)
from mt5lite.demo.task import TASK_LANGUAGES, heldout_numbers, heldout_pairs, make_pair
from mt5lite.errors import InputError

SCRIPTS = {
    "Latin": "LATIN",
    "Cyrillic": "CYRILLIC",
    "Greek": "GREEK",
    "Arabic": "ARABIC",
    "Hebrew": "HEBREW",
    "Devanagari": "DEVANAGARI",
    "Thai": "THAI",
    "Chinese": "CJK UNIFIED",
    "Japanese kana": "HIRAGANA",
    "Korean": "HANGUL",
}


def all_sentences():
    return read_sentences(CALIBRATION_SENTENCES) + read_sentences(HELDOUT_SENTENCES)


def test_at_least_20_languages_with_30_sentences_each():
    counts = Counter(s.lang for s in all_sentences() if s.lang != "mul")
    assert len(counts) >= 20, counts
    assert min(counts.values()) >= 30, counts


def test_every_language_is_in_both_splits():
    calibration = {s.lang for s in read_sentences(CALIBRATION_SENTENCES)}
    heldout = {s.lang for s in read_sentences(HELDOUT_SENTENCES)}
    assert calibration == heldout


def test_calibration_and_heldout_never_overlap():
    calibration = {s.text for s in read_sentences(CALIBRATION_SENTENCES)}
    heldout = {s.text for s in read_sentences(HELDOUT_SENTENCES)}
    assert not calibration & heldout


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_covered(script):
    marker = SCRIPTS[script]
    assert any(marker in unicodedata.name(c, "") for s in all_sentences() for c in s.text), script


def test_emoji_combining_marks_and_mixed_scripts_are_present():
    texts = [s.text for s in all_sentences()]
    assert any(any(0x1F300 <= ord(c) <= 0x1FAFF for c in t) for t in texts), "no emoji"
    assert any(any(unicodedata.category(c) == "Mn" and ord(c) < 0x370 for c in t) for t in texts), \
        "no combining diacritic on Latin text"
    mixed = [t for t in texts if any("LATIN" in unicodedata.name(c, "") for c in t)
             and any(n in unicodedata.name(c, "") for c in t for n in ("CYRILLIC", "CJK", "HANGUL", "ARABIC"))]
    assert len(mixed) >= 3


@pytest.mark.needs("train")
def test_task_heldout_file_is_the_generated_set():
    assert read_task_pairs(HELDOUT_TASK) == heldout_pairs()


def test_task_heldout_covers_every_language_and_both_directions():
    pairs = read_task_pairs(HELDOUT_TASK)
    assert {p.lang for p in pairs} == set(TASK_LANGUAGES)
    assert {p.source.split(" ", 1)[0] for p in pairs} == {"words", "number"}


@pytest.mark.needs("train")
def test_heldout_numbers_are_never_training_examples():
    from mt5lite.demo.task import training_pairs

    held = heldout_numbers()
    training = {(p.lang, p.source) for p in training_pairs(held) if p.lang in ("en", "ja")}
    for lang in ("en", "ja"):
        for n in held[lang]:
            assert (lang, make_pair(n, lang, "words").source) not in training


def test_malformed_data_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("en\tfine\nno tab here\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.tsv:2: expected 2"):
        read_sentences(bad)


def test_invalid_utf8_data_file_is_refused(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"en\tok\nfr\t\xff\xfe\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: invalid UTF-8"):
        read_sentences(bad)
