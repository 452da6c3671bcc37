"""The natural corpus: a translation task in 64 languages and monolingual text, built offline from installed packages.

The translation pairs come from CLDR (the Unicode Common Locale Data Repository, which babel ships): the English
name of a territory, language, currency or script, and its name in the target language:

    ``translate ja: Germany`` -> ``ドイツ``
    ``translate ru: Euro``    -> ``евро``

Each language's pairs are split into train, dev and held-out sets by a hash of (language, kind, key), so no split
depends on the order in which babel lists its data. The monolingual text, for span-corruption pre-training, is each
locale's own CLDR names joined into lists with the locale's conjunction, dates written out in the locale's full
format, and, for 37 languages, prose from dataset-build. That prose is synthetic: an LLM (Gemini 2.5 Pro, says the
package's README) wrote it. No monolingual line contains a dev or held-out target of its language.

    python -m mt5lite.natural.corpus --output data/natural --force
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from mt5lite.data import Sentence, TaskPair
from mt5lite.errors import InputError
from mt5lite.paths import DATA_DIR
from mt5lite.staging import staged_directory

#: Where the corpus is bundled (``data/natural`` in the source tree).
NATURAL_DIR = DATA_DIR / "natural"
#: Target languages -> the script (ISO 15924) of their CLDR names. All are mT5 languages that CLDR names well (see
#: ``MIN_PAIRS_PER_LANGUAGE``), chosen to cover 25 scripts. The Latin-script ones are the 24 with prose in
#: dataset-build, plus Afrikaans, Azerbaijani, Catalan, Yoruba and Zulu for the families it leaves out.
LANGUAGES: dict[str, str] = {
    "af": "Latn", "az": "Latn", "ca": "Latn", "cs": "Latn", "da": "Latn", "de": "Latn", "es": "Latn", "et": "Latn",
    "fi": "Latn", "fr": "Latn", "hr": "Latn", "hu": "Latn", "id": "Latn", "it": "Latn", "lt": "Latn", "lv": "Latn",
    "nl": "Latn", "no": "Latn", "pl": "Latn", "pt": "Latn", "ro": "Latn", "sk": "Latn", "sl": "Latn", "sv": "Latn",
    "sw": "Latn", "tr": "Latn", "vi": "Latn", "yo": "Latn", "zu": "Latn",
    "be": "Cyrl", "bg": "Cyrl", "kk": "Cyrl", "mk": "Cyrl", "mn": "Cyrl", "ru": "Cyrl", "sr": "Cyrl", "uk": "Cyrl",
    "el": "Grek", "ar": "Arab", "fa": "Arab", "ur": "Arab", "he": "Hebr", "hi": "Deva", "mr": "Deva", "ne": "Deva",
    "bn": "Beng", "pa": "Guru", "gu": "Gujr", "or": "Orya", "ta": "Taml", "te": "Telu", "kn": "Knda", "ml": "Mlym",
    "si": "Sinh", "th": "Thai", "lo": "Laoo", "km": "Khmr", "my": "Mymr", "ka": "Geor", "hy": "Armn", "am": "Ethi",
    "ko": "Kore", "ja": "Jpan", "zh": "Hans",
}
#: Languages with monolingual text only: English is the source side of every pair.
MONOLINGUAL_ONLY: tuple[str, ...] = ("en",)
#: Unicode character-name prefixes of each script's letters and marks (Japanese: kana and kanji).
SCRIPT_LETTERS: dict[str, tuple[str, ...]] = {
    "Latn": ("LATIN",), "Cyrl": ("CYRILLIC",), "Grek": ("GREEK",), "Arab": ("ARABIC",), "Hebr": ("HEBREW",),
    "Deva": ("DEVANAGARI",), "Beng": ("BENGALI",), "Guru": ("GURMUKHI",), "Gujr": ("GUJARATI",),
    "Orya": ("ORIYA",), "Taml": ("TAMIL",), "Telu": ("TELUGU",), "Knda": ("KANNADA",), "Mlym": ("MALAYALAM",),
    "Sinh": ("SINHALA",), "Thai": ("THAI",), "Laoo": ("LAO",), "Khmr": ("KHMER",), "Mymr": ("MYANMAR",),
    "Geor": ("GEORGIAN",), "Armn": ("ARMENIAN",), "Ethi": ("ETHIOPIC",), "Kore": ("HANGUL",),
    "Jpan": ("HIRAGANA", "KATAKANA", "CJK"), "Hans": ("CJK",),
}
#: How a translation input is written: a task and target-language tag, then the text (as in ``mt5lite.demo.task``).
PROMPT = "translate {lang}: {text}"
#: The files' splits, in the order they are written.
SPLITS: tuple[str, ...] = ("train", "dev", "heldout")
#: Pairs held out for evaluation, and kept for tuning (dev), per language; every other pair is a training pair.
HELDOUT_PER_LANGUAGE = 40
DEV_PER_LANGUAGE = 20
#: A language needs this many translated names, all splits together, to be in the corpus.
MIN_PAIRS_PER_LANGUAGE = 300
#: The least share of a language's target letters that must be in its script (``LANGUAGES``).
MIN_SCRIPT_SHARE = 0.6
#: Currencies are those that are legal tender somewhere on this day (fixed, so the corpus does not change with time).
CURRENCY_DATE = date(2025, 1, 1)
#: The salt of the split hash and the seed of every random choice (which names form a list, which prose is kept).
SEED = "mt5lite-natural-1"
#: Monolingual text per language: lists of CLDR names (and names per list), and bytes of prose (UTF-8).
NAME_LISTS_PER_LANGUAGE = 150
NAMES_PER_LIST = 5
PROSE_BYTES_PER_LANGUAGE = 20_000
#: Prose lines: the shortest kept (shorter ones are headings), the longest (paragraphs are cut at sentence ends, then
#: at spaces), and the length from which a line need not end a sentence to count as prose (Thai has no full stop).
MIN_PROSE_CHARS = 40
MAX_LINE_CHARS = 300
UNPUNCTUATED_PROSE_CHARS = 120
#: dataset-build's folders (ISO 639-3) -> our tags. Left out: srp (written in Latin script, where CLDR's sr is
#: Cyrillic), test (a table of rare characters) and coding.
PROSE_FOLDERS: dict[str, str] = {
    "ara": "ar", "ben": "bn", "bul": "bg", "ces": "cs", "dan": "da", "deu": "de", "ell": "el", "eng": "en",
    "est": "et", "fin": "fi", "fra": "fr", "heb": "he", "hin": "hi", "hrv": "hr", "hun": "hu", "ind": "id",
    "ita": "it", "jpn": "ja", "kor": "ko", "lav": "lv", "lit": "lt", "nld": "nl", "nor": "no", "pol": "pl",
    "por": "pt", "ron": "ro", "rus": "ru", "slk": "sk", "slv": "sl", "spa": "es", "swa": "sw", "swe": "sv",
    "tha": "th", "tur": "tr", "ukr": "uk", "vie": "vi", "zho": "zh",
}
#: Scripts written without spaces between words: there a hidden string is looked for anywhere in a line.
UNSPACED_SCRIPTS = frozenset({"Jpan", "Hans", "Thai", "Laoo", "Khmr", "Mymr"})
#: In the other scripts, a hidden string shorter than this is looked for as a whole word only: "Man" (the Isle of
#: Man, in Norwegian) must not take every line with "mange" out of the Norwegian text.
MIN_SUBSTRING_CHARS = 4
#: Where a sentence ends: full stops followed by a space, and CJK full stops (no space follows them).
SENTENCE_END = re.compile(r"[.!?;।؟]+\s+|[。！？]+")
#: A prose line's ending that marks it as a sentence, not a heading.
PROSE_ENDINGS = ".!?;:।؟。！？\"”»)）"


@dataclass(frozen=True)
class Name:
    """One CLDR name a pair is made from: its kind (a ``babel.Locale`` mapping), its key and its English name."""

    kind: str
    key: str
    english: str


def _territory_keys() -> set[str]:
    """Two-letter territory codes: countries, areas and unions (not numeric regions such as 419, nor ZZ, unknown)."""
    from babel import Locale

    return {key for key in Locale("en").territories if re.fullmatch("[A-Z]{2}", key) and key != "ZZ"}


def _language_keys() -> set[str]:
    """ISO 639-1 languages (two letters, no regional variant): the 184 best known of CLDR's 668."""
    from babel import Locale

    return {key for key in Locale("en").languages if re.fullmatch("[a-z]{2}", key)}


def _currency_keys() -> set[str]:
    """Currencies that are legal tender in some territory on ``CURRENCY_DATE`` (not the historical ones)."""
    from babel.numbers import get_territory_currencies

    return {code for territory in sorted(_territory_keys())
            for code in get_territory_currencies(territory, CURRENCY_DATE, tender=True)}


def _script_keys() -> set[str]:
    """The scripts the ISO 639-1 languages are written in by default (CLDR's likely subtags), not historical ones."""
    from babel.core import get_global

    likely = get_global("likely_subtags")
    return {likely[lang].split("_")[1] for lang in _language_keys() if lang in likely}


#: The kinds of CLDR names the pairs use, in the order they are listed: a ``babel.Locale`` mapping (key -> name), and
#: the keys taken from it. An English name given to two kinds (Armenian: a language and a script) keeps the first.
KINDS: dict[str, Callable[[], set[str]]] = {
    "territories": _territory_keys,
    "languages": _language_keys,
    "currencies": _currency_keys,
    "scripts": _script_keys,
}


@lru_cache(maxsize=1)
def english_names() -> tuple[Name, ...]:
    """Every name the pairs are made from, in English, each English name once (kinds in order, keys sorted)."""
    from babel import Locale

    english = Locale("en")
    names, seen = [], set()
    for kind, keys in KINDS.items():
        for key in sorted(keys()):
            text = getattr(english, kind).get(key, "").strip()
            if text and text not in seen:
                seen.add(text)
                names.append(Name(kind, key, text))
    return tuple(names)


def translations(lang: str) -> list[tuple[Name, str]]:
    """Each name with its translation into ``lang``, leaving out those CLDR leaves untranslated (or writes as in
    English)."""
    from babel import Locale

    locale = Locale.parse(lang)
    pairs = []
    for name in english_names():
        target = " ".join(getattr(locale, name.kind).get(name.key, "").split())
        if target and target != name.english:
            pairs.append((name, target))
    return pairs


def split_rank(lang: str, name: Name) -> str:
    """A stable pseudo-random rank of a name within a language: the SHA-256 of (seed, language, kind, key)."""
    return hashlib.sha256(f"{SEED}\t{lang}\t{name.kind}\t{name.key}".encode()).hexdigest()


def split_pairs(lang: str, translated: list[tuple[Name, str]]) -> dict[str, list[TaskPair]]:
    """Split ``lang``'s translations by rank: ``HELDOUT_PER_LANGUAGE`` held out, ``DEV_PER_LANGUAGE`` for dev, the
    rest for training; each split lists its pairs by kind, then key. A target that CLDR gives two names (Indonesian
    ``Prancis``: France and French) is always trained on, so no dev or held-out target is a training target."""
    ranked = sorted(translated, key=lambda item: split_rank(lang, item[0]))
    shared = Counter(target.casefold() for _, target in ranked)
    unique = [item for item in ranked if shared[item[1].casefold()] == 1]
    cut = HELDOUT_PER_LANGUAGE + DEV_PER_LANGUAGE
    held_out, dev = unique[:HELDOUT_PER_LANGUAGE], unique[HELDOUT_PER_LANGUAGE:cut]
    parts = {"train": [item for item in ranked if item not in held_out + dev], "dev": dev, "heldout": held_out}
    order = {kind: i for i, kind in enumerate(KINDS)}
    return {split: [TaskPair(lang, PROMPT.format(lang=lang, text=name.english), target)
                    for name, target in sorted(items, key=lambda item: (order[item[0].kind], item[0].key))]
            for split, items in parts.items()}


def hidden_pattern(hidden: Iterable[str], script: str) -> re.Pattern[str] | None:
    """A pattern that finds any of the ``hidden`` strings in a case-folded line: anywhere, or as a whole word for a
    string shorter than ``MIN_SUBSTRING_CHARS`` in a script that spaces its words; None when nothing is hidden."""
    parts = []
    for text in sorted({h.casefold() for h in hidden}):
        word = len(text) < MIN_SUBSTRING_CHARS and script not in UNSPACED_SCRIPTS
        parts.append(rf"(?<!\w){re.escape(text)}(?!\w)" if word else re.escape(text))
    return re.compile("|".join(parts)) if parts else None


def leaks(text: str, hidden: re.Pattern[str] | None) -> bool:
    """Whether ``text`` contains a hidden string (``hidden_pattern``)."""
    return hidden is not None and hidden.search(text.casefold()) is not None


def script_share(texts: Iterable[str], script: str) -> float:
    """The share of the letters and marks in ``texts`` that belong to ``script`` (by their Unicode names)."""
    letters = [c for text in texts for c in text if unicodedata.category(c)[0] in "LM"]
    ours = sum(unicodedata.name(c, "").startswith(SCRIPT_LETTERS[script]) for c in letters)
    return ours / len(letters) if letters else 0.0


def name_lists(lang: str, rng: random.Random) -> list[str]:
    """All of the locale's CLDR names of each kind (not only the pairs'), shuffled and joined ``NAMES_PER_LIST`` at a
    time with the locale's own conjunction (``Deutschland, Frankreich, Japan, Kenia und Peru``)."""
    from babel import Locale
    from babel.lists import format_list

    locale = Locale.parse(lang)
    lines = []
    for kind in KINDS:
        names = sorted({" ".join(n.split()) for n in getattr(locale, kind).values()} - {""})
        rng.shuffle(names)
        lines += [format_list(names[i:i + NAMES_PER_LIST], locale=locale)
                  for i in range(0, len(names), NAMES_PER_LIST)]
    return lines


def date_lines(lang: str) -> list[str]:
    """Twelve dates, one in each month, written out in the locale's full format (weekday, day, month, year)."""
    from babel.dates import format_date

    return [format_date(date(2024, month, 2 * month + 3), format="full", locale=lang) for month in range(1, 13)]


def prose_directory() -> Path:
    """dataset-build's data folder (found without importing the package, which imports transformers)."""
    spec = importlib.util.find_spec("dataset_build")
    if spec is None or spec.origin is None:
        raise InputError("the natural corpus needs dataset-build (the train extra): pip install -e '.[train]'")
    return Path(spec.origin).parent / "data"


def _cut(text: str) -> Iterator[str]:
    """``text`` in pieces of at most ``MAX_LINE_CHARS``, cut at the last space before the limit where there is one."""
    while len(text) > MAX_LINE_CHARS:
        at = text.rfind(" ", MAX_LINE_CHARS // 2, MAX_LINE_CHARS)
        at = at if at > 0 else MAX_LINE_CHARS
        yield text[:at]
        text = text[at:].lstrip()
    yield text


def paragraph_lines(paragraph: str) -> list[str]:
    """A paragraph as lines of whole sentences, each at most ``MAX_LINE_CHARS`` long."""
    ends = [m.end() for m in SENTENCE_END.finditer(paragraph)]
    bounds = zip([0, *ends], [*ends, len(paragraph)], strict=True)
    sentences = [paragraph[a:b] for a, b in bounds if paragraph[a:b].strip()]
    lines, current = [], ""
    for sentence in sentences:
        if current and len(current) + len(sentence.rstrip()) > MAX_LINE_CHARS:
            lines.append(current.strip())
            current = ""
        current += sentence
    lines.append(current.strip())
    return [piece for line in lines for piece in _cut(line) if piece]


def clean_prose(line: str) -> str | None:
    """A line of dataset-build's Markdown as plain text, or None for a heading, rule, table row or other non-prose."""
    line = unicodedata.normalize("NFC", line).strip()
    if line.startswith(("#", "|", "---", "```")):
        return None
    line = re.sub(r"^(?:[-*•>]|\d+[.)])\s+", "", line)
    line = " ".join(line.replace("**", "").replace("*", "").replace("`", "").split())
    sentence = line.endswith(tuple(PROSE_ENDINGS)) or len(line) >= UNPUNCTUATED_PROSE_CHARS
    return line if sentence and len(line) >= MIN_PROSE_CHARS else None


def prose_lines(folder: Path) -> list[str]:
    """The prose of one dataset-build language folder (its ``.txt`` files in name order), as lines."""
    lines = []
    for path in sorted(folder.glob("*.txt")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            paragraph = clean_prose(raw)
            if paragraph:
                lines += paragraph_lines(paragraph)
    return lines


def capped(lines: list[str], limit: int, rng: random.Random, size: Callable[[str], int] = lambda _: 1) -> list[str]:
    """A random choice of ``lines`` whose sizes add up to at most ``limit``, in their original order."""
    chosen, total = [], 0
    for index in rng.sample(range(len(lines)), len(lines)):
        if total + size(lines[index]) <= limit:
            chosen.append(index)
            total += size(lines[index])
    return [lines[i] for i in sorted(chosen)]


def monolingual(lang: str, hidden: re.Pattern[str] | None, prose: Path) -> list[Sentence]:
    """``lang``'s monolingual text: lists of CLDR names, dates and (where dataset-build has the language) prose,
    with every line in which ``hidden`` finds a dev or held-out target left out."""
    rng = random.Random(f"{SEED}\t{lang}")
    lists = capped([line for line in name_lists(lang, rng) if not leaks(line, hidden)], NAME_LISTS_PER_LANGUAGE, rng)
    texts = lists + [line for line in date_lines(lang) if not leaks(line, hidden)]
    folders = [folder for folder, tag in PROSE_FOLDERS.items() if tag == lang]
    for folder in folders:
        kept = [line for line in prose_lines(prose / folder) if not leaks(line, hidden)]
        texts += capped(kept, PROSE_BYTES_PER_LANGUAGE, rng, size=lambda line: len(line.encode()) + len(lang) + 2)
    return [Sentence(lang, text) for text in texts]


@dataclass(frozen=True)
class Corpus:
    """The natural corpus: pairs per split, monolingual text, and one summary row per language."""

    pairs: dict[str, list[TaskPair]]
    monolingual: list[Sentence]
    languages: list[dict[str, object]]
    sources: str


def make_corpus() -> Corpus:
    """Build the corpus in memory; ``InputError`` listing every language that falls short (too few translated
    names, or names not in the language's script) and every missing prose folder, all at once."""
    import babel
    from babel import Locale
    from babel.core import get_cldr_version

    prose = prose_directory()
    english = Locale("en")
    pairs: dict[str, list[TaskPair]] = {split: [] for split in SPLITS}
    texts: list[Sentence] = []
    rows: list[dict[str, object]] = []
    problems = [f"dataset-build has no folder {folder!r}" for folder in PROSE_FOLDERS if not (prose / folder).is_dir()]
    for lang, script in {**LANGUAGES, **dict.fromkeys(MONOLINGUAL_ONLY, "Latn")}.items():
        translated = translations(lang) if lang in LANGUAGES else []
        split = split_pairs(lang, translated)
        if lang in LANGUAGES and len(translated) < MIN_PAIRS_PER_LANGUAGE:
            problems.append(f"{lang}: {len(translated)} translated names, fewer than {MIN_PAIRS_PER_LANGUAGE}")
        share = script_share([target for _, target in translated] or [english.languages[lang]], script)
        if share < MIN_SCRIPT_SHARE:
            problems.append(f"{lang}: {share:.0%} of its names' letters are in {script}, "
                            f"expected {MIN_SCRIPT_SHARE:.0%} or more")
        hidden = hidden_pattern([pair.target for pair in split["dev"] + split["heldout"]], script)
        lines = monolingual(lang, hidden, prose)
        for name in SPLITS:
            pairs[name] += split[name]
        texts += lines
        rows.append({"lang": lang, "name": english.languages[lang], "script": script,
                     **{name: len(split[name]) for name in SPLITS}, "monolingual": len(lines)})
    if problems:
        raise InputError("the natural corpus cannot be built:\n" + "\n".join(problems))
    sources = (f"CLDR {get_cldr_version()} via babel {babel.__version__}, "
               f"prose from dataset-build {version('dataset-build')}")
    return Corpus(pairs, texts, rows, sources)


def corpus_files(corpus: Corpus) -> dict[str, str]:
    """The corpus as the text of each file, by file name; each starts with a ``#`` line naming its columns."""
    origin = f"generated by mt5lite.natural.corpus from {corpus.sources}"
    files = {}
    for split in SPLITS:
        lines = [f"# lang\tsource\ttarget (the natural corpus's {split} pairs; {origin})"]
        files[f"{split}.tsv"] = lines + [f"{p.lang}\t{p.source}\t{p.target}" for p in corpus.pairs[split]]
    files["monolingual.tsv"] = [f"# lang\ttext (monolingual text for span-corruption pre-training; {origin}; the "
                                "prose is LLM-written)"] + [f"{s.lang}\t{s.text}" for s in corpus.monolingual]
    columns = list(corpus.languages[0])
    header = "\t".join(columns)
    files["languages.tsv"] = [f"# {header} (the natural corpus's languages; {origin})"] + [
        "\t".join(str(row[c]) for c in columns) for row in corpus.languages]
    return {name: "\n".join(lines) + "\n" for name, lines in files.items()}


def build(output: Path = NATURAL_DIR, force: bool = False) -> Corpus:
    """Build the corpus and write it to ``output`` (``train``, ``dev``, ``heldout``, ``monolingual`` and
    ``languages.tsv``): staged beside it and renamed into place once complete; ``InputError`` if it exists without
    ``force``. The same packages give the same bytes."""
    corpus = make_corpus()
    with staged_directory(output, force) as staging:
        for name, text in corpus_files(corpus).items():
            (staging / name).write_bytes(text.encode("utf-8"))
    return corpus


def main(argv: list[str] | None = None) -> int:
    """Build the natural corpus into ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m mt5lite.natural.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=NATURAL_DIR, help=f"output directory (default: {NATURAL_DIR})")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    try:
        corpus = build(args.output, args.force)
    except InputError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    counts = ", ".join(f"{len(corpus.pairs[split])} {split}" for split in SPLITS)
    print(f"{args.output}: {len(LANGUAGES)} languages, pairs: {counts}; {len(corpus.monolingual)} monolingual lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
