"""The natural model's fine-tuning pairs beyond the names task's own: the pairs that copy the English name seen
again, and spelling pairs.

In several languages of the task the name is the English one inside a longer word (zu ``Belgium`` ->
``i-Belgium``, ``Chamorro`` -> ``isi-Chamorro``). The source writes the name as one piece (``▁Belgium``), but glued
to a prefix the target spells it in other, shorter pieces (``▁i - B el gi um``). To copy a name it never saw in
that language, the model must know how each source piece is spelled, and the names task alone does not teach it:
zu stayed far below copying the English name (chrF 43 against 72, 2026-12-05).

A spelling pair asks for exactly that: ``spell: Belgium`` -> ``-Belgium``, the name as it is written after a
hyphen. They are made from the training pairs' sources only (the English names, which are inputs at test time
too), never from a target. Measured as 3,000 more fine-tuning steps from the first natural model, both kinds
seen 3 times: zu chrF 50.5 with the copy pairs alone, 74.4 with the spelling pairs too (copying: 71.7).

The corpus holds names out per language, so every held-out name is some other language's training source and has
its spelling pair: the held-out targets are never seen, but their names' spellings are. How spelling carries over
to a name without a spelling pair is not measured yet.
"""

from __future__ import annotations

from mt5lite.data import TaskPair
from mt5lite.natural.corpus import PROMPT

#: How a spelling pair asks, and how its target writes the name: after a hyphen, as a prefix would glue it.
SPELL_PROMPT = "spell: {text}"
SPELLING = "-{text}"


def english_name(pair: TaskPair) -> str:
    """The English name ``pair`` asks about: its source after the ``translate xx: `` prompt."""
    return pair.source.removeprefix(PROMPT.format(lang=pair.lang, text=""))


def copy_pairs(pairs: list[TaskPair]) -> list[TaskPair]:
    """The pairs whose target contains their English name unchanged (zu ``i-Belgium``, de ``Belgien`` not)."""
    return [pair for pair in pairs if english_name(pair) in pair.target]


def spelling_pairs(pairs: list[TaskPair]) -> list[TaskPair]:
    """One spelling pair (language ``en``) per distinct English name among ``pairs``' sources, in sorted order."""
    names = sorted({english_name(pair) for pair in pairs})
    return [TaskPair("en", SPELL_PROMPT.format(text=name), SPELLING.format(text=name)) for name in names]


def fine_tuning_pairs(pairs: list[TaskPair], copy_repeats: int, spelling_repeats: int) -> list[TaskPair]:
    """``pairs``, with their copy pairs ``copy_repeats`` times in all and their spelling pairs ``spelling_repeats``
    times (training shuffles them)."""
    return pairs + copy_pairs(pairs) * (copy_repeats - 1) + spelling_pairs(pairs) * spelling_repeats
