"""The quantizable node groups of an exported T5/mT5 graph, found by the names ``mt5lite.exporters.node_names`` gives.

A group is one kind of computation across every layer (all FFN output projections, all attention Q/K/V
projections, ...). Recipes and the sensitivity analysis quantize or keep whole groups; ``--exclude`` patterns then
remove single nodes.
"""

from __future__ import annotations

import fnmatch
import re

from mt5lite.errors import InputError

#: group -> what it holds. Order: from the bulk of the weights to the small, numerically delicate parts.
GROUPS: dict[str, str] = {
    "embeddings": "token embedding lookups (Gather on the shared embedding)",
    "lm_head": "the output projection to the vocabulary",
    "attention_qkv": "attention query/key/value projections (self and cross)",
    "attention_out": "attention output projections",
    "ffn_in": "gated-GELU FFN input projections (wi_0, wi_1)",
    "ffn_out": "FFN output projections (wo), whose outputs grow large in mT5",
    "attention_matmul": "activation x activation MatMuls: query x key scores and probabilities x values",
    "softmax": "attention softmax",
    "layer_norm": "the scale Mul of every RMS layer norm",
}

#: ONNX op types each group's nodes have (what the quantizer is told to consider).
GROUP_OP_TYPES: dict[str, str] = {
    "embeddings": "Gather", "lm_head": "MatMul", "attention_qkv": "MatMul", "attention_out": "MatMul",
    "ffn_in": "MatMul", "ffn_out": "MatMul", "attention_matmul": "MatMul", "softmax": "Softmax",
    "layer_norm": "Mul",
}

_WEIGHT_PATTERNS = (
    ("ffn_out", re.compile(r"DenseReluDense\.wo(_\d+)?/MatMul")),
    ("ffn_in", re.compile(r"DenseReluDense\.wi(_0|_1)?/MatMul")),
    ("attention_qkv", re.compile(r"Attention\.[qkv]/MatMul")),
    ("attention_out", re.compile(r"Attention\.o/MatMul")),
    ("lm_head", re.compile(r"^(lm_head|shared)/MatMul")),
    ("embeddings", re.compile(r"^(shared|(encoder|decoder)\.embed_tokens)/Gather")),
    ("layer_norm", re.compile(r"layer_norm/Mul")),
)


def node_groups(model) -> dict[str, list[str]]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) in each group of ``GROUPS``."""
    initializers = {init.name for init in model.graph.initializer}
    found: dict[str, list[str]] = {group: [] for group in GROUPS}
    for node in model.graph.node:
        if node.op_type == "Softmax":
            found["softmax"].append(node.name)
            continue
        reads_weight = any(name in initializers for name in node.input)
        if node.op_type == "MatMul" and not reads_weight:
            found["attention_matmul"].append(node.name)
            continue
        if not reads_weight:
            continue
        for group, pattern in _WEIGHT_PATTERNS:
            if GROUP_OP_TYPES[group] == node.op_type and pattern.search(node.name):
                found[group].append(node.name)
                break
    return found


def check_groups(groups: tuple[str, ...]) -> tuple[str, ...]:
    """``groups``, or ``InputError`` naming the unknown ones and listing the known."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InputError(f"unknown quantization group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    return groups


def select_nodes(model, groups: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    """Nodes of ``groups`` whose name matches none of the ``exclude`` glob patterns (``*wo*``, ``lm_head/*``)."""
    found = node_groups(model)
    return [name for group in check_groups(groups) for name in found[group]
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)]


def op_types(groups: tuple[str, ...]) -> list[str]:
    """The op types the quantizer must consider for ``groups``."""
    return sorted({GROUP_OP_TYPES[g] for g in groups})
