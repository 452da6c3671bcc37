"""The demo task: numbers <-> words in ten languages, generated offline with num2words.

Each input carries a task and target-language tag, as T5 does:

    ``words fr: 1234``                        -> ``mille deux cent trente-quatre``
    ``number fr: mille deux cent trente-quatre`` -> ``1234``
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from mt5lite.data import TaskPair

#: Languages of the demo task, covering Latin, Cyrillic, Arabic, Hebrew, Japanese, Hangul and Thai scripts.
TASK_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "ru", "ar", "he", "ja", "ko", "th")
#: The two directions of the task, by their input tag.
DIRECTIONS: tuple[str, ...] = ("words", "number")
#: Numbers are drawn from ``0 .. MAX_NUMBER``.
MAX_NUMBER = 9999
#: How a demo-task input is written (``words fr: 1234``), and the pattern that reads it back.
PROMPT = "{task} {lang}: {text}"
PROMPT_PATTERN = re.compile(r"^(\w+) (\w+): (.+)$", re.DOTALL)


def number_words(n: int, lang: str) -> str:
    """Spell ``n`` out in ``lang`` with num2words (the ``train`` extra)."""
    from num2words import num2words

    return num2words(n, lang=lang)


def make_pair(n: int, lang: str, direction: str) -> TaskPair:
    """Build the tagged example for number ``n`` in ``lang``, in the given direction."""
    words = number_words(n, lang)
    if direction == "words":
        return TaskPair(lang, PROMPT.format(task=direction, lang=lang, text=n), words)
    if direction == "number":
        return TaskPair(lang, PROMPT.format(task=direction, lang=lang, text=words), str(n))
    raise ValueError(f"unknown direction {direction!r}; known: {', '.join(DIRECTIONS)}")


def sample_number(rng: random.Random) -> int:
    """Draw a number with a uniformly chosen count of digits (1 to 4), so short numbers are not drowned out."""
    digits = rng.randint(1, len(str(MAX_NUMBER)))
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, min(10**digits - 1, MAX_NUMBER))


def heldout_numbers(seed: int = 20261123, per_language: int = 30) -> dict[str, list[int]]:
    """The numbers held out for evaluation, per language (never used in training, in either direction)."""
    rng = random.Random(seed)
    chosen: dict[str, list[int]] = {}
    for lang in TASK_LANGUAGES:
        picked: set[int] = set()
        while len(picked) < per_language:
            picked.add(rng.randint(10, MAX_NUMBER))
        chosen[lang] = sorted(picked)
    return chosen


def heldout_pairs(seed: int = 20261123, per_language: int = 30) -> list[TaskPair]:
    """The held-out evaluation set: each held-out number in both directions."""
    numbers = heldout_numbers(seed, per_language)
    return [make_pair(n, lang, d) for lang in TASK_LANGUAGES for n in numbers[lang] for d in DIRECTIONS]


def dev_pairs(seed: int = 7, per_language: int = 20) -> list[TaskPair]:
    """A development set for tuning (quantization sensitivity, calibration): numbers outside the held-out set,
    each in both directions, so choices made on it never see the held-out evaluation."""
    rng = random.Random(seed)
    held = {lang: set(numbers) for lang, numbers in heldout_numbers().items()}
    pairs = []
    for lang in TASK_LANGUAGES:
        picked: set[int] = set()
        while len(picked) < per_language:
            n = sample_number(rng)
            if n not in held[lang]:
                picked.add(n)
        pairs += [make_pair(n, lang, d) for n in sorted(picked) for d in DIRECTIONS]
    return pairs


def training_pairs(excluded: dict[str, list[int]]) -> Iterator[TaskPair]:
    """Every (number, language, direction) example that is not held out."""
    for lang in TASK_LANGUAGES:
        skip = set(excluded.get(lang, ()))
        for n in range(MAX_NUMBER + 1):
            if n not in skip:
                for d in DIRECTIONS:
                    yield make_pair(n, lang, d)
