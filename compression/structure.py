"""Where the prunable structures of a Hugging Face T5/mT5 model live, and how a smaller model is built from kept ones.

Structures, by state-dict name (the same in T5 v1.0, T5 v1.1 and mT5):

- attention ``{stack}.block.{i}.layer.{j}.{SelfAttention|EncDecAttention}``: heads are ``d_kv``-row slices of
  ``q``/``k``/``v`` and ``d_kv``-column slices of ``o``; block 0's self-attention holds the stack's
  relative-position bias ``[buckets, heads]``, which every layer of the stack adds by head index;
- feed-forward ``{stack}.block.{i}.layer.{-1}.DenseReluDense``: neurons are rows of ``wi`` (``wi_0`` and ``wi_1``
  when gated) and columns of ``wo``;
- blocks ``{stack}.block.{i}``.

A pruned model is rebuilt, not patched: a new config (fewer heads, a smaller ``d_ff``, fewer layers), a fresh model
from it, and the kept slices of the old state dict loaded strictly. The result is an ordinary checkpoint whose
matrices are really smaller, which every exporter takes as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STACKS = ("encoder", "decoder")
ATTENTION = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(SelfAttention|EncDecAttention)$")
FFN = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.DenseReluDense$")


@dataclass(frozen=True)
class Attention:
    """One attention module: its state-dict prefix, stack, block and kind (``self`` or ``cross``)."""

    prefix: str
    stack: str
    block: int
    kind: str


@dataclass(frozen=True)
class FeedForward:
    """One feed-forward module: its state-dict prefix, stack and block, and its input projections."""

    prefix: str
    stack: str
    block: int
    inputs: tuple[str, ...]  # ("wi_0", "wi_1") when gated, ("wi",) otherwise


def attentions(model) -> list[Attention]:
    """Every attention module of ``model``, in state-dict order."""
    found = []
    for name, _ in model.named_modules():
        match = ATTENTION.match(name)
        if match:
            stack, block, _, kind = match.groups()
            found.append(Attention(name, stack, int(block), "self" if kind == "SelfAttention" else "cross"))
    return found


def feed_forwards(model) -> list[FeedForward]:
    """Every feed-forward module of ``model``, in state-dict order."""
    found = []
    for name, module in model.named_modules():
        match = FFN.match(name)
        if match:
            inputs = ("wi_0", "wi_1") if hasattr(module, "wi_0") else ("wi",)
            found.append(FeedForward(name, match.group(1), int(match.group(2)), inputs))
    return found


def head_rows(heads, d_kv: int):
    """The ``q``/``k``/``v`` rows (``o`` columns) of ``heads``, in order, as an index tensor."""
    import torch

    return torch.cat([torch.arange(h * d_kv, (h + 1) * d_kv) for h in heads])


def rebuild(model, config_changes: dict, state: dict):
    """A fresh model of ``model``'s class with its config changed by ``config_changes``, loaded strictly with
    ``state`` (every key, every shape), in eval mode."""
    config = model.config.__class__.from_dict({**model.config.to_dict(), **config_changes})
    smaller = model.__class__(config)
    smaller.load_state_dict(state, strict=True)
    smaller.eval()
    return smaller


def non_embedding_parameters(model) -> int:
    """Parameters outside the token embedding and the ``lm_head`` (what pruning and sharing act on)."""
    embedding = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    seen, total = set(), 0
    for parameter in model.parameters():
        if id(parameter) not in seen and id(parameter) not in embedding:
            total += parameter.numel()
        seen.add(id(parameter))
    return total


def untie_for_saving(model) -> int:
    """Give every module its own copy of a parameter it shares with another (``share-layers``), except the ties
    transformers itself declares (the embedding and a tied ``lm_head``), so that safetensors can save the model;
    the copies are identical and the exports store them once. Returns the parameters copied."""
    from torch import nn

    declared = set(getattr(type(model), "_tied_weights_keys", None) or ())
    if "_dynamic_tied_weights_keys" in vars(model):  # share-layers' ties: saved as copies from here on
        del model._dynamic_tied_weights_keys
    owners: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(parameter), []).append(name)
    modules = dict(model.named_modules())
    copied = 0
    for names in owners.values():
        for name in [n for n in names[1:] if n not in declared]:
            module_name, attribute = name.rsplit(".", 1)
            module = modules[module_name]
            setattr(module, attribute, nn.Parameter(getattr(module, attribute).detach().clone()))
            copied += 1
    return copied
