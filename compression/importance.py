"""How much each head, feed-forward neuron and block matters, measured on labelled multilingual data.

Methods, all measuring the loss on labelled pairs in the user's languages and task (not weight magnitudes, which
the training recipe may have left arbitrary), in one pass over the data and without retraining:

- heads: first-order Taylor on the weights (Molchanov et al. 2019; Michel et al.'s head importance): removing a head
  changes the loss by about ``|sum of g * w|`` over its ``q``/``k``/``v`` rows and ``o`` columns, per batch, summed;
- feed-forward neurons: first-order Taylor on the activation (Molchanov et al. 2017): ``|sum over tokens of h * dL/dh|``
  for the neuron's output ``h`` (the input of ``wo``), per batch, summed. (On the weights it did worse than random
  here; see the README);
- blocks: measured, not estimated: the loss increase when the block's output projections are zeroed, which is
  exactly the block dropped (T5 blocks are residual).

``random`` scores (seeded) are the baseline they have to beat.
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


KINDS = ("heads", "neurons", "blocks")


def measure_importance(model, pairs, tokenizer, method: str = "taylor", batch_size: int = 16,
                       seed: int = 0, kinds: tuple[str, ...] = KINDS) -> Importance:
    """Score the heads, neurons and/or blocks (``kinds``) of ``model`` on ``pairs`` (task pairs, tokenized with
    ``tokenizer``, a ``mt5lite.runtimes.tokenizer.Tokenizer``) by ``method``; only the kinds asked for are
    computed (the gradient passes for heads and neurons, the ablation passes for blocks)."""
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
    batches = list(_batches(pairs, tokenizer, batch_size))
    if "blocks" in kinds:
        found.blocks = _block_ablation(model, batches)
    if not {"heads", "neurons"} & set(kinds):
        return found
    trainable = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    activations: dict = {}

    def keep_activation(prefix):
        def hook(_module, inputs):
            inputs[0].retain_grad()
            activations[prefix] = inputs[0]
        return hook

    hooks = [modules[f.prefix].wo.register_forward_pre_hook(keep_activation(f.prefix)) for f in ffn]
    try:
        for ids, mask, labels in batches:
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            with torch.no_grad():
                for a in attention:
                    module = modules[a.prefix]
                    per_head = sum((getattr(module, n).weight.grad * getattr(module, n).weight)
                                   .view(heads, d_kv, -1).sum(dim=(1, 2)) for n in ("q", "k", "v"))
                    per_head = per_head + (module.o.weight.grad * module.o.weight).view(-1, heads, d_kv).sum(dim=(0, 2))
                    found.heads[a.prefix] = found.heads.get(a.prefix, 0) + per_head.abs()
                for f in ffn:
                    value = activations[f.prefix]
                    per_neuron = (value * value.grad).sum(dim=(0, 1)).abs()
                    found.neurons[f.prefix] = found.neurons.get(f.prefix, 0) + per_neuron
            found.batches += 1
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(trainable[id(p)])
    return found


def _loss(model, batches) -> float:
    import torch

    with torch.no_grad():
        return sum(float(model(input_ids=i, attention_mask=m, labels=labels).loss) for i, m, labels in batches)


def _block_ablation(model, batches) -> dict:
    """The loss increase when each block's output projections (attention ``o``, feed-forward ``wo``) are zeroed:
    exactly the block dropped, since T5 blocks are residual and block 0 hands its position bias on regardless."""
    import torch

    baseline = _loss(model, batches)
    scores = {}
    for stack in ("encoder", "decoder"):
        for index, block in enumerate(getattr(model, stack).block):
            outputs = [m.weight for name, m in block.named_modules() if name.endswith((".o", ".wo"))]
            saved = [w.detach().clone() for w in outputs]
            with torch.no_grad():
                for weight in outputs:
                    weight.zero_()
                scores[(stack, index)] = _loss(model, batches) - baseline
                for weight, value in zip(outputs, saved, strict=True):
                    weight.copy_(value)
    return scores
