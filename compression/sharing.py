"""Parameter sharing: ``share-layers`` (ALBERT-style cross-layer sharing) and ``tie-embeddings``.

- ``share-layers``: consecutive blocks of each stack form groups of ``share_group``; every block of a group uses its
  first block's weights (the very same parameters, so training updates them once). Block 0's relative-position
  bias is not shared (no other block has one). Run ``finetune`` (or ``distill``) after it in the same ``compress``
  command, so that training sees the shared parameters. The checkpoint holds each block's (identical) copy, as a
  Hugging Face checkpoint must; the exports store every copy once (ONNX: one offset in ``weights.bin``; TFLite: one
  buffer), so the files shrink by the shared bytes.
- ``tie-embeddings``: the ``lm_head`` becomes the input embedding (``tie_word_embeddings``), so the export holds the
  vocabulary matrix once. T5 then rescales the decoder output by ``d_model ** -0.5`` before the tied head, as the
  original T5 does (transformers applies it whenever the config says tied). Fine-tune after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mt5lite.checked import Checked
from mt5lite.compression.passes import PASSES, CompressionPass, make_report, measure
from mt5lite.compression.structure import STACKS
from mt5lite.errors import InputError


@dataclass(frozen=True)
class ShareLayersConfig(Checked):
    """How many consecutive blocks share one set of weights."""

    share_group: int = field(default=2, metadata={"help": "consecutive blocks per group sharing one set of weights"})

    def problems(self) -> list[str]:
        """Groups of fewer than two blocks share nothing."""
        return [] if self.share_group >= 2 else [
            f"share_group must be at least 2 (blocks per shared group), got {self.share_group}"]


def _tie(block, leader, prefix: str, tied: list[str]) -> int:
    """Make every parameter of ``block`` that ``leader`` also has the leader's (adding the block's names, under
    ``prefix``, to ``tied``); returns the elements shared."""
    owners = dict(leader.named_modules())
    shared = 0
    for name, module in block.named_modules():
        source = owners.get(name)
        for attribute, parameter in list(module.named_parameters(recurse=False)):
            if source is not None and hasattr(source, attribute):
                target = getattr(source, attribute)
                if target.shape == parameter.shape and target is not parameter:
                    setattr(module, attribute, target)
                    shared += parameter.numel()
                    tied.append(".".join(part for part in (prefix, name, attribute) if part))
    return shared


def share_layers(model, tokenizer, config: ShareLayersConfig):
    """The ``share-layers`` pass: groups of ``share_group`` consecutive blocks share their first block's weights."""
    before = measure(model, tokenizer)
    groups, shared, tied = {}, 0, []
    for stack in STACKS:
        blocks = getattr(model, stack).block
        groups[stack] = [list(range(start, min(start + config.share_group, len(blocks))))
                         for start in range(0, len(blocks), config.share_group)]
        for group in groups[stack]:
            for index in group[1:]:
                shared += _tie(blocks[index], blocks[group[0]], f"{stack}.block.{index}", tied)
    # Tell transformers these ties are meant, so the Trainer's checkpoints can be written while training.
    model._dynamic_tied_weights_keys = [*(getattr(model, "_dynamic_tied_weights_keys", None) or ()), *tied]
    after = measure(model, tokenizer)
    summary = f"blocks share weights in groups {groups['encoder']} (encoder), {groups['decoder']} (decoder)"
    return model, tokenizer, make_report("share-layers", summary, before, after,
                                         {"groups": groups, "shared_elements": shared,
                                          "shared_bytes_fp32": 4 * shared})


@dataclass(frozen=True)
class TieEmbeddingsConfig:
    """Tie the output layer to the input embedding (no options)."""


def tie_embeddings(model, tokenizer, config: TieEmbeddingsConfig):
    """The ``tie-embeddings`` pass: the ``lm_head`` becomes the input embedding, with T5's output rescaling."""
    if model.config.tie_word_embeddings:
        raise InputError("the model's lm_head is already tied to its embedding; leave tie-embeddings out")
    before = measure(model, tokenizer)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.get_input_embeddings().weight
    after = measure(model, tokenizer)
    removed = before["parameters"] - after["parameters"]
    return model, tokenizer, make_report("tie-embeddings", f"lm_head tied to the embedding ({removed:,} parameters "
                                         "fewer); the decoder output is rescaled by d_model ** -0.5", before, after,
                                         {"removed_parameters": removed})


PASSES.register("share-layers", CompressionPass(share_layers, ShareLayersConfig,
                                                "groups of consecutive blocks share one set of weights (ALBERT)"))
PASSES.register("tie-embeddings", CompressionPass(tie_embeddings, TieEmbeddingsConfig,
                                                  "the lm_head becomes the input embedding"))
