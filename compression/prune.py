"""Structured pruning: ``prune-ffn``, ``prune-heads`` and ``drop-layers``, by importance on multilingual data.

What is pruned is removed: the model is rebuilt with a smaller ``d_ff``, fewer heads or fewer layers
(``mt5lite.compression.structure.rebuild``), so the matrices, the ONNX graphs and the TFLite model shrink and get
faster, not just sparser. The config stays uniform (one ``d_ff`` and one head count for every layer), because the
export contract's cache and cross K/V tensors are ``[L,B,H,T,d_kv]`` for every layer:

- ``prune-ffn`` keeps the same number of neurons in every feed-forward layer, each layer its own best ones;
- ``prune-heads`` keeps the same number of heads everywhere; a stack's self-attention keeps the same head indices in
  every layer, because T5 computes the relative-position bias once per stack (block 0) and every layer adds it by
  head index; cross-attention heads are chosen per layer;
- ``drop-layers`` keeps block 0 of each stack (it holds the relative-position bias) and the most important others.

A target is a fraction (0 < x <= 1) or a count (a whole number above 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mt5lite.checked import Checked
from mt5lite.compression.importance import METHODS, measure_importance
from mt5lite.compression.passes import PASSES, CompressionPass, make_report, measure
from mt5lite.compression.structure import attentions, feed_forwards, head_rows, rebuild
from mt5lite.data import DEV_TASK
from mt5lite.errors import InputError


def _target_problems(*targets: tuple[str, float]) -> list[str]:
    """What is wrong with each ``(name, value)`` target: a fraction in (0, 1] or a whole count above 1."""
    problems = []
    for name, value in targets:
        if value <= 0:
            problems.append(f"{name} must be a fraction in (0, 1] or a count above 1, got {value}")
        elif value > 1 and value != int(value):
            problems.append(f"{name} is {value}: a count must be a whole number (a fraction must be at most 1)")
    return problems


def resolve(value: float, total: int, name: str, what: str) -> int:
    """How many of ``total`` to keep: ``value`` as a fraction (at least one kept) or as a count."""
    count = max(1, round(value * total)) if value <= 1 else int(value)
    if count > total:
        raise InputError(f"{name} keeps {count} {what}, but the model has {total}")
    return count


@dataclass(frozen=True)
class ImportanceOptions(Checked):
    """How structures are scored (shared by every pruning pass)."""

    importance: str = field(default="measured", metadata={
        "help": f"how structures are scored: {', '.join(METHODS)} (random: the baseline)"})
    importance_data: Path = field(default=DEV_TASK, metadata={
        "help": "labelled multilingual pairs the importance is measured on (lang<TAB>source<TAB>target)"})
    importance_pairs: int = field(default=200, metadata={"help": "pairs used, spread over the file"})
    seed: int = field(default=0, metadata={"help": "seed of random importance"})

    def problems(self) -> list[str]:
        """What is wrong with the importance options."""
        problems = []
        if self.importance not in METHODS:
            problems.append(f"unknown importance {self.importance!r}; known: {', '.join(METHODS)}")
        if self.importance == "measured" and not Path(self.importance_data).is_file():
            problems.append(f"{self.importance_data}: no such importance data file")
        if self.importance_pairs < 1:
            problems.append(f"importance_pairs must be at least 1, got {self.importance_pairs}")
        return problems

    def scores(self, model, tokenizer, kind: str):
        """The importance of ``model``'s structures of ``kind`` (heads, neurons or blocks; ``tokenizer``: its
        sentencepiece ``ModelProto``)."""
        from mt5lite.data import read_task_pairs
        from mt5lite.runtimes.tokenizer import Tokenizer

        pairs = []
        if self.importance == "measured":
            every = read_task_pairs(self.importance_data)
            pairs = every[:: max(1, len(every) // self.importance_pairs)][: self.importance_pairs]
        return measure_importance(model, pairs, Tokenizer.from_bytes(tokenizer.SerializeToString()),
                                  self.importance, seed=self.seed, kinds=(kind,))


def _top(scores, count: int) -> list[int]:
    """Indices of the ``count`` highest scores, in ascending index order."""
    import torch

    return sorted(torch.topk(torch.as_tensor(scores, dtype=torch.float64), count).indices.tolist())


@dataclass(frozen=True)
class PruneFfnConfig(ImportanceOptions):
    """How many feed-forward neurons each layer keeps."""

    ffn_keep: float = field(default=0.5, metadata={"help": "neurons kept per feed-forward layer: fraction or count"})

    def problems(self) -> list[str]:
        """The importance options' problems and the target's."""
        return super().problems() + _target_problems(("ffn_keep", self.ffn_keep))


def prune_ffn(model, tokenizer, config: PruneFfnConfig):
    """The ``prune-ffn`` pass: every feed-forward layer keeps its most important ``ffn_keep`` neurons."""
    before = measure(model, tokenizer)
    total = int(model.config.d_ff)
    count = resolve(config.ffn_keep, total, "ffn_keep", "feed-forward neurons per layer")
    scores = config.scores(model, tokenizer, "neurons")
    state = model.state_dict()
    kept = {}
    for ffn in feed_forwards(model):
        keep = _top(scores.neurons[ffn.prefix], count)
        kept[ffn.prefix] = keep
        for name in ffn.inputs:
            state[f"{ffn.prefix}.{name}.weight"] = state[f"{ffn.prefix}.{name}.weight"][keep]
        state[f"{ffn.prefix}.wo.weight"] = state[f"{ffn.prefix}.wo.weight"][:, keep]
    model = rebuild(model, {"d_ff": count}, state)
    after = measure(model, tokenizer)
    summary = f"d_ff {total} -> {count} in {len(kept)} feed-forward layers ({config.importance} importance)"
    return model, tokenizer, make_report("prune-ffn", summary, before, after,
                                         {"importance": config.importance, "batches": scores.batches,
                                          "d_ff": [total, count], "kept": kept})


@dataclass(frozen=True)
class PruneHeadsConfig(ImportanceOptions):
    """How many attention heads every attention layer keeps."""

    heads_keep: float = field(default=0.5, metadata={"help": "heads kept per attention layer: fraction or count"})

    def problems(self) -> list[str]:
        """The importance options' problems and the target's."""
        return super().problems() + _target_problems(("heads_keep", self.heads_keep))


def prune_heads(model, tokenizer, config: PruneHeadsConfig):
    """The ``prune-heads`` pass: every attention layer keeps ``heads_keep`` heads; a stack's self-attention keeps
    the same heads in every layer (the relative-position bias is shared by head index)."""
    before = measure(model, tokenizer)
    total, d_kv = int(model.config.num_heads), int(model.config.d_kv)
    count = resolve(config.heads_keep, total, "heads_keep", "heads per attention layer")
    scores = config.scores(model, tokenizer, "heads")
    modules = attentions(model)
    kept = {}
    for stack in ("encoder", "decoder"):
        own = [a for a in modules if a.stack == stack and a.kind == "self"]
        shared = _top(sum(scores.heads[a.prefix] for a in own), count)
        kept.update({a.prefix: shared for a in own})
    kept.update({a.prefix: _top(scores.heads[a.prefix], count) for a in modules if a.kind == "cross"})
    state = model.state_dict()
    for prefix, heads in kept.items():
        rows = head_rows(heads, d_kv)
        for name in ("q", "k", "v"):
            state[f"{prefix}.{name}.weight"] = state[f"{prefix}.{name}.weight"][rows]
        state[f"{prefix}.o.weight"] = state[f"{prefix}.o.weight"][:, rows]
        bias = f"{prefix}.relative_attention_bias.weight"
        if bias in state:
            state[bias] = state[bias][:, heads]
    model = rebuild(model, {"num_heads": count}, state)
    after = measure(model, tokenizer)
    summary = f"heads {total} -> {count} in {len(kept)} attention layers ({config.importance} importance)"
    return model, tokenizer, make_report("prune-heads", summary, before, after,
                                         {"importance": config.importance, "batches": scores.batches,
                                          "heads": [total, count], "kept": kept})


@dataclass(frozen=True)
class DropLayersConfig(ImportanceOptions):
    """How many blocks each stack keeps."""

    encoder_layers_keep: float = field(default=0.5, metadata={"help": "encoder blocks kept: fraction or count"})
    decoder_layers_keep: float = field(default=0.5, metadata={"help": "decoder blocks kept: fraction or count"})

    def problems(self) -> list[str]:
        """The importance options' problems and the targets'."""
        return super().problems() + _target_problems(("encoder_layers_keep", self.encoder_layers_keep),
                                                     ("decoder_layers_keep", self.decoder_layers_keep))


def drop_layers(model, tokenizer, config: DropLayersConfig):
    """The ``drop-layers`` pass: each stack keeps block 0 (it holds the relative-position bias) and its most
    important other blocks, renumbered in order."""
    before = measure(model, tokenizer)
    scores = config.scores(model, tokenizer, "blocks")
    state = model.state_dict()
    kept, changes = {}, {}
    for stack, target, key in (("encoder", config.encoder_layers_keep, "num_layers"),
                               ("decoder", config.decoder_layers_keep, "num_decoder_layers")):
        total = len(getattr(model, stack).block)
        count = resolve(target, total, f"{stack}_layers_keep", f"{stack} blocks")
        others = _top([scores.blocks[(stack, i)] for i in range(1, total)], count - 1) if count > 1 else []
        kept[stack] = [0] + [i + 1 for i in others]
        changes[key] = count
        renamed = {}
        for name, value in state.items():
            prefix = f"{stack}.block."
            if name.startswith(prefix):
                index, rest = name[len(prefix):].split(".", 1)
                if int(index) in kept[stack]:
                    renamed[f"{prefix}{kept[stack].index(int(index))}.{rest}"] = value
            else:
                renamed[name] = value
        state = renamed
    model = rebuild(model, changes, state)
    after = measure(model, tokenizer)
    summary = (f"encoder blocks {kept['encoder']}, decoder blocks {kept['decoder']} kept "
               f"({config.importance} importance)")
    return model, tokenizer, make_report("drop-layers", summary, before, after,
                                         {"importance": config.importance, "batches": scores.batches, "kept": kept})


PASSES.register("prune-ffn", CompressionPass(prune_ffn, PruneFfnConfig,
                                             "remove the least important feed-forward neurons of every layer"))
PASSES.register("prune-heads", CompressionPass(prune_heads, PruneHeadsConfig,
                                               "remove the least important attention heads of every layer"))
PASSES.register("drop-layers", CompressionPass(drop_layers, DropLayersConfig,
                                               "remove the least important blocks (block 0 stays)"))
