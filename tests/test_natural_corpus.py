"""The natural corpus (data/natural): 50+ languages with held-out pairs, nothing of the dev or held-out sets in the
training pairs or the monolingual text, every script present, and the committed files exactly what
mt5lite.natural.corpus builds now."""

from __future__ import annotations

import importlib.util
import re
from collections import defaultdict

import pytest

from mt5lite.data import read_sentences, read_task_pairs
from mt5lite.natural.corpus import (
    DEV_PER_LANGUAGE,
    HELDOUT_PER_LANGUAGE,
    LANGUAGES,
    MIN_SUBSTRING_CHARS,
    NATURAL_DIR,
    SPLITS,
    UNSPACED_SCRIPTS,
    build,
    hidden_pattern,
    leaks,
    script_share,
)

#: Scripts the corpus must cover (issue 29): ISO 15924 codes.
REQUIRED_SCRIPTS = {"Latn", "Cyrl", "Grek", "Arab", "Hebr", "Deva", "Beng", "Taml", "Thai", "Geor", "Armn", "Ethi",
                    "Kore", "Jpan", "Hans", "Khmr", "Sinh"}
#: The build reads babel's CLDR data and dataset-build's prose (both in the train extra).
BUILD_MODULES_MISSING = [m for m in ("babel", "dataset_build") if importlib.util.find_spec(m) is None]


def _pairs(split: str) -> dict[str, list]:
    grouped = defaultdict(list)
    for pair in read_task_pairs(NATURAL_DIR / f"{split}.tsv"):
        grouped[pair.lang].append(pair)
    return grouped


def test_at_least_50_languages_each_with_heldout_and_dev_pairs():
    heldout, dev = _pairs("heldout"), _pairs("dev")
    assert len(heldout) >= 50
    assert set(heldout) == set(dev) == set(LANGUAGES)
    assert {len(pairs) for pairs in heldout.values()} == {HELDOUT_PER_LANGUAGE}
    assert {len(pairs) for pairs in dev.values()} == {DEV_PER_LANGUAGE}


def test_no_dev_or_heldout_source_is_a_training_source():
    train = {(p.lang, p.source) for pairs in _pairs("train").values() for p in pairs}
    dev = {(p.lang, p.source) for pairs in _pairs("dev").values() for p in pairs}
    heldout = {(p.lang, p.source) for pairs in _pairs("heldout").values() for p in pairs}
    assert not heldout & train
    assert not dev & train
    assert not heldout & dev


def test_no_dev_or_heldout_target_is_a_training_target():
    train = {(p.lang, p.target.casefold()) for pairs in _pairs("train").values() for p in pairs}
    for split in ("dev", "heldout"):
        assert [p for pairs in _pairs(split).values() for p in pairs if (p.lang, p.target.casefold()) in train] == []


def test_no_dev_or_heldout_target_is_in_its_languages_monolingual_text():
    hidden = defaultdict(set)
    for split in ("dev", "heldout"):
        for lang, pairs in _pairs(split).items():
            hidden[lang] |= {p.target.casefold() for p in pairs}
    found = []
    for sentence in read_sentences(NATURAL_DIR / "monolingual.tsv"):
        line = sentence.text.casefold()
        spaced = LANGUAGES.get(sentence.lang) not in UNSPACED_SCRIPTS
        for target in hidden[sentence.lang]:
            if len(target) < MIN_SUBSTRING_CHARS and spaced:  # short words: as whole words ("man" is in "mange")
                hit = re.search(rf"(?<!\w){re.escape(target)}(?!\w)", line)
            else:
                hit = target in line
            if hit:
                found.append(f"{sentence.lang}: {target!r} in {sentence.text[:80]!r}")
    assert not found, "\n".join(found[:20])


def test_every_language_has_monolingual_text():
    counts = defaultdict(int)
    for sentence in read_sentences(NATURAL_DIR / "monolingual.tsv"):
        counts[sentence.lang] += 1
    assert set(LANGUAGES) <= set(counts)
    assert min(counts[lang] for lang in LANGUAGES) >= 100


def test_every_script_is_represented_by_targets_written_in_it():
    assert REQUIRED_SCRIPTS <= set(LANGUAGES.values())
    targets = defaultdict(list)
    for split in SPLITS:
        for lang, pairs in _pairs(split).items():
            targets[LANGUAGES[lang]] += [p.target for p in pairs]
    shares = {script: script_share(targets[script], script) for script in set(LANGUAGES.values())}
    assert {script: share for script, share in shares.items() if share < 0.9} == {}


def test_the_languages_table_counts_the_files():
    rows = [line.split("\t") for line in (NATURAL_DIR / "languages.tsv").read_text(encoding="utf-8").splitlines()
            if not line.startswith("#")]
    counted = {row[0]: [int(n) for n in row[3:6]] for row in rows}
    pairs = [_pairs(split) for split in SPLITS]
    assert {lang: [len(p[lang]) for p in pairs] for lang in LANGUAGES} == {lang: counted[lang] for lang in LANGUAGES}


def test_hidden_strings_are_found_inside_words_except_short_ones_in_spaced_scripts():
    norwegian = hidden_pattern(["Man", "Tyskland"], "Latn")
    assert leaks("Øya Man ligger i Irskesjøen.", norwegian)
    assert not leaks("Det er mange øyer.", norwegian)
    assert leaks("Tysklands hovedstad er Berlin.", norwegian)
    assert leaks("ドイツ語を話す。", hidden_pattern(["ドイツ"], "Jpan"))
    assert not leaks("anything", hidden_pattern([], "Latn"))


@pytest.mark.needs("train")
@pytest.mark.skipif(bool(BUILD_MODULES_MISSING), reason=f"needs {BUILD_MODULES_MISSING} (the train extra)")
def test_the_committed_files_are_what_the_build_makes_now(tmp_path):
    build(tmp_path / "natural")
    built = {path.name: path.read_bytes() for path in sorted((tmp_path / "natural").iterdir())}
    committed = {path.name: path.read_bytes() for path in sorted(NATURAL_DIR.iterdir())}
    assert sorted(built) == sorted(committed)
    assert [name for name in built if built[name] != committed[name]] == []
