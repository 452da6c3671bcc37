"""Name the exported graph's weight nodes after the PyTorch modules they come from.

The TorchScript exporter names nodes by call scope, which loses the layer index inside the decoder-step graph
(``/q/MatMul``, ``/q_1/MatMul``, ...). Quantization recipes, sensitivity groups and ``--exclude`` patterns need
stable names, so every node that reads a model parameter is renamed after that parameter's module:
``decoder.block.0.layer.1.EncDecAttention.q/MatMul``, ``lm_head/MatMul``, ``shared/Gather``.
A parameter is recognised by the bytes of its initializer (Linear weights are stored transposed).
"""

from __future__ import annotations

import hashlib

import numpy as np


def _fingerprint(array: np.ndarray) -> tuple:
    array = np.ascontiguousarray(array)
    return array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest()


def parameter_fingerprints(model) -> dict[tuple, str]:
    """Map the fingerprint of every parameter, as stored (``W``) and as a traced Linear stores it (``W.T``), to its
    module's qualified name. A tied weight keeps its first name as ``W`` (the embedding) and its last as ``W.T``
    (``lm_head``)."""
    names: dict[tuple, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        module = name.rsplit(".", 1)[0]
        array = parameter.detach().float().numpy()
        names.setdefault(_fingerprint(array), module)
        if array.ndim == 2:
            names[_fingerprint(array.T)] = module
    return names


def name_nodes_by_parameter(graph, fingerprints: dict[tuple, str]) -> int:
    """Rename, in place, each node of ``graph`` (an ``onnx.GraphProto``) that reads a known parameter to
    ``<module>/<op_type>`` (made unique with ``_1``, ``_2``, ... when two nodes share a module, as layer norms of a
    freshly initialised model do). Returns the number of renamed nodes."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    keys: dict[str, tuple] = {}
    used = {node.name for node in graph.node}
    renamed = 0
    for node in graph.node:
        for name in node.input:
            if name not in initializers:
                continue
            if name not in keys:
                keys[name] = _fingerprint(numpy_helper.to_array(initializers[name]))
            module = fingerprints.get(keys[name])
            if module is None:
                continue
            base = f"{module}/{node.op_type}"
            candidate, suffix = base, 0
            while candidate in used and candidate != node.name:
                suffix += 1
                candidate = f"{base}_{suffix}"
            used.discard(node.name)
            used.add(candidate)
            node.name = candidate
            renamed += 1
            break
    return renamed
