"""The quantizable node groups of an exported T5/mT5 graph, found by the names ``mt5lite.exporters.onnx.node_names``
gives.

A group is one kind of computation across every layer (all FFN output projections, all attention Q/K/V
projections, ...). Recipes and the sensitivity analysis quantize or keep whole groups; ``--exclude`` patterns then
remove single nodes. Everything about a group is one entry of ``GROUPS``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from mt5lite.errors import UnknownNameError
from mt5lite.registry import Registry


@dataclass(frozen=True)
class NodeGroup:
    """One group: what it holds, the op type of its nodes, and which nodes of that type belong to it."""

    description: str
    op_type: str  # what the quantizer is told to consider for this group
    weights: bool  # True: nodes that read a weight (initializer); False: nodes that read none
    name_pattern: str | None = None  # weight nodes: a regex their names must contain (None: every node of op_type)

    def matches(self, node, reads_weight: bool) -> bool:
        """Whether ``node`` (an ``onnx.NodeProto``) belongs to this group."""
        return (node.op_type == self.op_type and reads_weight == self.weights
                and (self.name_pattern is None or re.search(self.name_pattern, node.name) is not None))


#: group -> everything about it. Order: from the bulk of the weights to the small, numerically delicate parts.
GROUPS: Registry[NodeGroup] = Registry("quantization group", {
    "embeddings": NodeGroup("token embedding lookups (Gather on the shared embedding)", "Gather", True,
                            r"^(shared|(encoder|decoder)\.embed_tokens)/Gather"),
    "lm_head": NodeGroup("the output projection to the vocabulary", "MatMul", True, r"^(lm_head|shared)/MatMul"),
    "attention_qkv": NodeGroup("attention query/key/value projections (self and cross)", "MatMul", True,
                               r"Attention\.[qkv]/MatMul"),
    "attention_out": NodeGroup("attention output projections", "MatMul", True, r"Attention\.o/MatMul"),
    "ffn_in": NodeGroup("gated-GELU FFN input projections (wi_0, wi_1)", "MatMul", True,
                        r"DenseReluDense\.wi(_0|_1)?/MatMul"),
    "ffn_out": NodeGroup("FFN output projections (wo), whose outputs grow large in mT5", "MatMul", True,
                         r"DenseReluDense\.wo(_\d+)?/MatMul"),
    "attention_matmul": NodeGroup("activation x activation MatMuls: query x key scores and probabilities x values",
                                  "MatMul", False),
    "softmax": NodeGroup("attention softmax", "Softmax", False),
    "layer_norm": NodeGroup("the scale Mul of every RMS layer norm", "Mul", True, r"layer_norm/Mul"),
})


def node_groups(model) -> dict[str, list[str]]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) in each group of ``GROUPS`` (a node joins the
    first group it matches)."""
    initializers = {init.name for init in model.graph.initializer}
    found: dict[str, list[str]] = {group: [] for group in GROUPS}
    for node in model.graph.node:
        reads_weight = any(name in initializers for name in node.input)
        group = next((name for name, entry in GROUPS.items() if entry.matches(node, reads_weight)), None)
        if group is not None:
            found[group].append(node.name)
    return found


def group_problems(groups: tuple[str, ...]) -> list[str]:
    """A line naming every unknown group of ``groups`` and listing the known (empty when all are known)."""
    unknown = [g for g in groups if g not in GROUPS]
    return [f"unknown quantization group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}"] if unknown else []


def check_groups(groups: tuple[str, ...]) -> tuple[str, ...]:
    """``groups``, or ``UnknownNameError`` naming every unknown one and listing the known."""
    problems = group_problems(groups)
    if problems:
        raise UnknownNameError(problems[0])
    return groups


def select_nodes(model, groups: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    """Nodes of ``groups`` whose name matches none of the ``exclude`` glob patterns (``*wo*``, ``lm_head/*``)."""
    found = node_groups(model)
    return [name for group in check_groups(groups) for name in found[group]
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)]


def op_types(groups: tuple[str, ...]) -> list[str]:
    """The op types the quantizer must consider for ``groups``."""
    return sorted({GROUPS[g].op_type for g in groups})
