"""How much each head, feed-forward neuron and block matters, measured on labelled multilingual data.

Methods, all measured on pairs in the user's languages and task (not weight magnitudes alone, which the training
recipe may have left arbitrary), in one pass over the data and without retraining:

- heads: first-order Taylor on the weights (Molchanov et al. 2019; Michel et al.'s head importance): removing a head
  changes the loss by about ``|sum of g * w|`` over its ``q``/``k``/``v`` rows and ``o`` columns, per batch, summed;
- feed-forward neurons: output energy, ``sum over real tokens of h**2 * |wo[:, i]|**2``: how much the neuron adds to
  the block's output, which is exactly what removing it takes away (the reconstruction error, correlations aside;
  the principle of Wanda's ``|W| * |X|``). Gradient scores fail here: on the pairs a model was trained on, its loss
  is near its minimum, so ``h * dL/dh`` is small and noisy, and first-order Taylor, Fisher and per-token Fisher all
  did worse than random on the demo model (see the README);
- blocks: measured, not estimated: the loss increase when the block's output projections are zeroed, which is
  exactly the block dropped (T5 blocks are residual).

``random`` scores (seeded) are the baseline they have to beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mt5lite.compression.structure import attentions, feed_forwards
from mt5lite.errors import InputError

METHODS = ("measured", "random")


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


def measure_importance(model, pairs, tokenizer, method: str = "measured", batch_size: int = 16,
                       seed: int = 0, kinds: tuple[str, ...] = KINDS) -> Importance:
    """Score the heads, neurons and/or blocks (``kinds``) of ``model`` on ``pairs`` (task pairs, tokenized with
    ``tokenizer``, a ``mt5lite.runtimes.tokenizer.Tokenizer``) by ``method``; only the kinds asked for are
    computed (gradient passes for heads, forward passes for neurons, ablation passes for blocks)."""
    import torch

    if method not in METHODS:
        raise InputError(f"unknown importance method {method!r}; known: {', '.join(METHODS)}")
    found = Importance()
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        found.heads = {a.prefix: torch.rand(model.config.num_heads, generator=generator) for a in attentions(model)}
        found.neurons = {f.prefix: torch.rand(model.config.d_ff, generator=generator) for f in feed_forwards(model)}
        found.blocks = {(s, i): float(torch.rand(1, generator=generator)) for s in ("encoder", "decoder")
                        for i in range(len(getattr(model, s).block))}
        return found
    if not pairs:
        raise InputError("importance needs labelled pairs; give a task-pair TSV")
    model.eval()
    batches = list(_batches(pairs, tokenizer, batch_size))
    if "blocks" in kinds:
        found.blocks = _block_ablation(model, batches)
    if "neurons" in kinds:
        found.neurons = _neuron_energy(model, batches)
    if "heads" in kinds:
        found.heads = _head_taylor(model, batches)
    found.batches = len(batches)
    return found


def _head_taylor(model, batches) -> dict:
    """Per attention prefix, ``|sum of g * w|`` over each head's ``q``/``k``/``v`` rows and ``o`` columns, per
    batch, summed over batches."""
    import torch

    modules = dict(model.named_modules())
    heads, d_kv = model.config.num_heads, model.config.d_kv
    scores: dict = {}
    trainable = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        for ids, mask, labels in batches:
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            with torch.no_grad():
                for a in attentions(model):
                    module = modules[a.prefix]
                    per_head = sum((getattr(module, n).weight.grad * getattr(module, n).weight)
                                   .view(heads, d_kv, -1).sum(dim=(1, 2)) for n in ("q", "k", "v"))
                    per_head = per_head + (module.o.weight.grad * module.o.weight).view(-1, heads, d_kv).sum(dim=(0, 2))
                    scores[a.prefix] = scores.get(a.prefix, 0) + per_head.abs()
    finally:
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(trainable[id(p)])
    return scores


def _neuron_energy(model, batches) -> dict:
    """Per feed-forward prefix, each neuron's output energy ``sum of h**2 * |wo[:, i]|**2`` over the real tokens
    (encoder tokens under the attention mask, decoder tokens with a label)."""
    import torch

    modules = dict(model.named_modules())
    inputs: dict = {}

    def keep(prefix):
        def hook(_module, args):
            inputs[prefix] = args[0]
        return hook

    layers = feed_forwards(model)
    hooks = [modules[f.prefix].wo.register_forward_pre_hook(keep(f.prefix)) for f in layers]
    scores: dict = {}
    try:
        with torch.no_grad():
            for ids, mask, labels in batches:
                model(input_ids=ids, attention_mask=mask, labels=labels)
                real = {"encoder": mask.bool(), "decoder": labels != -100}
                for f in layers:
                    value = inputs[f.prefix][real[f.prefix.split(".", 1)[0]]]
                    column = modules[f.prefix].wo.weight.float().pow(2).sum(dim=0)
                    scores[f.prefix] = scores.get(f.prefix, 0) + value.float().pow(2).sum(dim=0) * column
    finally:
        for hook in hooks:
            hook.remove()
    return scores


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
