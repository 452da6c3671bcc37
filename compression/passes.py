"""The pass framework: what a pass is, what it reports, and the registry of passes.

A pass is a function ``(model, tokenizer, config) -> (model, tokenizer, report)``: ``model`` a Hugging Face
T5/mT5 model (fp32, eval mode), ``tokenizer`` the sentencepiece ``ModelProto`` of its ``spiece.model`` (parsed with
the schema sentencepiece itself ships), ``config`` a frozen dataclass validated when it is built. The report says
what changed: parameters, bytes and vocabulary before and after, plus the pass's own details.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from mt5lite.registry import Registry


@dataclass(frozen=True)
class PassReport:
    """What one pass changed."""

    name: str  # the registered pass
    summary: str  # one line: what changed
    parameters: tuple[int, int]  # (before, after)
    non_embedding_parameters: tuple[int, int]  # outside the token embedding and lm_head (before, after)
    bytes: tuple[int, int]  # fp32 bytes of the parameters (before, after)
    vocabulary: tuple[int, int]  # tokenizer pieces (before, after)
    embedding_rows: tuple[int, int]  # the model's vocab_size (before, after)
    details: dict = field(default_factory=dict)  # the pass's own numbers

    def to_dict(self) -> dict:
        """The report as JSON-ready data (pairs as ``[before, after]`` lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class CompressionPass:
    """One registered pass: its function, its config class and a one-line description."""

    run: Callable  # (model, tokenizer, config) -> (model, tokenizer, PassReport)
    config: type  # a frozen dataclass; config() gives the defaults
    description: str


#: Every pass ``mt5lite compress --passes`` knows (filled in by the modules that define them).
PASSES: Registry[CompressionPass] = Registry("compression pass")


def parameter_count(model) -> int:
    """Distinct parameters of ``model`` (a tied weight counts once)."""
    return sum(p.numel() for p in model.parameters())


def measure(model, tokenizer) -> dict:
    """Parameters (all, and outside the embedding and lm_head), fp32 bytes, tokenizer pieces and embedding rows:
    what a report compares."""
    from mt5lite.compression.structure import non_embedding_parameters

    parameters = parameter_count(model)
    return {"parameters": parameters, "non_embedding_parameters": non_embedding_parameters(model),
            "bytes": 4 * parameters, "vocabulary": len(tokenizer.pieces),
            "embedding_rows": int(model.config.vocab_size)}


def make_report(name: str, summary: str, before: dict, after: dict, details: dict | None = None) -> PassReport:
    """A ``PassReport`` from two ``measure`` results."""
    return PassReport(name, summary, **{key: (before[key], after[key]) for key in before}, details=details or {})


@dataclass(frozen=True)
class Recipe:
    """A named chain of passes (``mt5lite compress --recipe NAME``)."""

    passes: tuple[str, ...]
    description: str


#: Every recipe ``mt5lite compress --recipe`` knows.
RECIPES: Registry[Recipe] = Registry("compression recipe", {
    "lite": Recipe(("trim-vocab", "drop-layers", "prune-ffn", "distill", "finetune"),
                   "trim the vocabulary, drop layers and feed-forward neurons, distil from the original, fine-tune"),
})
