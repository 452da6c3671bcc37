"""How much each head, feed-forward neuron and block matters, measured on labelled multilingual data.

Method: first-order Taylor (gradient x weight; Molchanov et al. 2019, as in Michel et al.'s head importance). For a
structure ``S`` the loss change from removing it is about ``|sum over w in S of g * w|``; that sum is taken per
batch of held-aside labelled pairs and its absolute value summed over batches. Why this one: it needs one backward
pass per batch and no retraining, it scores every kind of structure the same way (so heads, neurons and whole
blocks compare), and it measures the loss on the user's languages and task, not weight magnitudes that the training
recipe may have left arbitrary. ``random`` scores (seeded) are the baseline it has to beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mt5lite.compression.structure import attentions, feed_forwards
from mt5lite.errors import InputError

METHODS = ("taylor", "random")


@dataclass
class Importance:
    """Scores by structure: per attention prefix ``[heads]``, per feed-forward prefix ``[d_ff]``, per block
    ``(stack, index)``."""

    heads: dict = field(default_factory=dict)
    neurons: dict = field(default_factory=dict)
    blocks: dict = field(default_factory=dict)
    batches: int = 0


def _batches(pairs, tokenizer, batch_size: int, max_length: int = 128):
    import torch

    from mt5lite.runtimes.tokenizer import Overflow

    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        ids, mask = tokenizer.encode_batch([p.source for p in chunk], max_length, Overflow.TRUNCATE)
        labels, _ = tokenizer.encode_batch([p.target for p in chunk], max_length, Overflow.TRUNCATE)
        labels[labels == tokenizer.pad_id] = -100
        yield torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)


def measure_importance(model, pairs, tokenizer, method: str = "taylor", batch_size: int = 16,
                       seed: int = 0) -> Importance:
    """Score every head, neuron and block of ``model`` on ``pairs`` (task pairs, tokenized with ``tokenizer``, a
    ``mt5lite.runtimes.tokenizer.Tokenizer``) by ``method``."""
    import torch

    if method not in METHODS:
        raise InputError(f"unknown importance method {method!r}; known: {', '.join(METHODS)}")
    found = Importance()
    attention, ffn = attentions(model), feed_forwards(model)
    modules = dict(model.named_modules())
    heads, d_kv = model.config.num_heads, model.config.d_kv
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        found.heads = {a.prefix: torch.rand(heads, generator=generator) for a in attention}
        found.neurons = {f.prefix: torch.rand(model.config.d_ff, generator=generator) for f in ffn}
        found.blocks = {(s, i): float(torch.rand(1, generator=generator)) for s in ("encoder", "decoder")
                        for i in range(len(getattr(model, s).block))}
        return found
    if not pairs:
        raise InputError("importance needs labelled pairs; give a task-pair TSV")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    for ids, mask, labels in _batches(pairs, tokenizer, batch_size):
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        with torch.no_grad():
            for a in attention:
                module = modules[a.prefix]
                per_head = sum((getattr(module, n).weight.grad * getattr(module, n).weight).view(heads, d_kv, -1)
                               .sum(dim=(1, 2)) for n in ("q", "k", "v"))
                per_head = per_head + (module.o.weight.grad * module.o.weight).view(-1, heads, d_kv).sum(dim=(0, 2))
                found.heads[a.prefix] = found.heads.get(a.prefix, 0) + per_head.abs()
            for f in ffn:
                module = modules[f.prefix]
                per_neuron = sum((getattr(module, n).weight.grad * getattr(module, n).weight).sum(dim=1)
                                 for n in f.inputs)
                per_neuron = per_neuron + (module.wo.weight.grad * module.wo.weight).sum(dim=0)
                found.neurons[f.prefix] = found.neurons.get(f.prefix, 0) + per_neuron.abs()
            for stack in ("encoder", "decoder"):
                for index, block in enumerate(getattr(model, stack).block):
                    total = sum(float((p.grad * p).sum()) for p in block.parameters() if p.grad is not None)
                    found.blocks[(stack, index)] = found.blocks.get((stack, index), 0.0) + abs(total)
        found.batches += 1
    model.zero_grad(set_to_none=True)
    return found
