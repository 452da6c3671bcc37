"""The model families the toolkit takes, one registered entry each: how a checkpoint's config is recognised, which
transformers class loads it, and what its graphs need to know.

- ``t5``: the original T5 (``t5-small``): ReLU feed-forward, ``lm_head`` tied to the embedding, output rescaled by
  ``d_model ** -0.5`` before it.
- ``t5-v1.1``: T5 v1.1 and Flan-T5 (``google/flan-t5-small``): ``model_type`` ``t5`` with a gated-GELU
  feed-forward and an untied ``lm_head``.
- ``mt5``: multilingual T5 (``google/mt5-small``): T5 v1.1's architecture with a 250k vocabulary.
- ``umt5``: UniMax mT5 (``google/umt5-small``): mT5's, with a 256k vocabulary and a relative-position bias in every
  self-attention layer, where the others have one per stack, in block 0.

Adding a family is one entry here plus its test fixture: its published config in ``tests.fixtures.REAL_CONFIGS``
and a row in ``tests/conftest.py``'s ``TINY_FAMILIES``, which the parity, quantization and TFLite tests run on
(``tests/test_families.py`` fails until it is there).
"""

from __future__ import annotations

from dataclasses import dataclass

from mt5lite.errors import CheckpointError
from mt5lite.registry import Registry


@dataclass(frozen=True)
class ModelFamily:
    """One family of T5-style encoder-decoders."""

    model_type: str  # config.json's model_type
    model_class: str  # the transformers class that loads it
    gated: bool | None = None  # the feed-forward is gated (GELU) or not (ReLU); None: the config says, either works
    per_layer_bias: bool = False  # every self-attention layer has its own relative-position bias table

    def matches(self, config: dict) -> bool:
        """Whether a checkpoint's ``config`` (config.json as a dict) belongs to this family."""
        if config.get("model_type") != self.model_type:
            return False
        return self.gated is None or is_gated(config) == self.gated

    def bias_attentions(self, stack) -> list:
        """The self-attention modules of a transformers T5 ``stack`` (encoder or decoder) whose relative-position
        bias each layer uses, one per block: block 0's for every layer, or each block's own (``per_layer_bias``)."""
        blocks = list(stack.block)
        return [block.layer[0].SelfAttention for block in (blocks if self.per_layer_bias else blocks[:1] * len(blocks))]


def is_gated(config: dict) -> bool:
    """Whether ``config``'s feed-forward is gated (``feed_forward_proj`` ``gated-gelu`` and the like)."""
    return str(config.get("feed_forward_proj", "relu")).startswith("gated")


FAMILIES: Registry[ModelFamily] = Registry("model family", {
    "t5": ModelFamily("t5", "T5ForConditionalGeneration", gated=False),
    "t5-v1.1": ModelFamily("t5", "T5ForConditionalGeneration", gated=True),
    "mt5": ModelFamily("mt5", "MT5ForConditionalGeneration"),
    "umt5": ModelFamily("umt5", "UMT5ForConditionalGeneration", per_layer_bias=True),
})


def family_of(config: dict) -> str:
    """The name of the registered family ``config`` (config.json as a dict) belongs to; ``CheckpointError`` listing
    the known families when none matches."""
    for name, family in FAMILIES.items():
        if family.matches(config):
            return name
    known = ", ".join(f"{name} (model_type {family.model_type})" for name, family in FAMILIES.items())
    raise CheckpointError(f"config.json model_type is {config.get('model_type')!r}; supported families: {known}")
