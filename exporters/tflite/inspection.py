"""Read a ``.tflite`` file's structure signature by signature: its ops, their input dtypes, and which weight buffers
the signatures share.

LiteRT's interpreter lists the ops of the first subgraph only; a multi-signature model (the encoder and the decoder
step in one file) keeps each signature in its own subgraph, so the flatbuffer is read directly, through the schema
module that the ai-edge-litert wheel ships. The file is memory-mapped and no weight is copied.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Op:
    """One operator of a subgraph: its name (a builtin such as ``FULLY_CONNECTED``, or a custom code such as
    ``FlexErf``) and the dtypes of its inputs (numpy names; ``None`` for an omitted optional input)."""

    name: str
    input_dtypes: tuple[str | None, ...]


@dataclass(frozen=True)
class Signature:
    """One signature of a model: its ops and the constant buffers (weights) its tensors read."""

    ops: tuple[Op, ...]
    buffers: frozenset[int]


def _enum_names(enum: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_") and isinstance(value, int)}


def read_signatures(path: str | Path) -> tuple[dict[str, Signature], dict[int, int]]:
    """Every signature of the model at ``path`` by key, and the size in bytes of each non-empty buffer by index."""
    from ai_edge_litert import schema_py_generated as schema

    builtins, dtypes = _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        model = schema.Model.GetRootAs(data, 0)
        sizes = {}
        for index in range(model.BuffersLength()):
            buffer = model.Buffers(index)
            size = buffer.Size() or buffer.DataLength()  # Size: data kept outside the flatbuffer (files over 2 GB)
            if size:
                sizes[index] = size
        codes = []
        for index in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(index)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = code.CustomCode()
            codes.append(custom.decode() if custom else builtins.get(builtin, f"BUILTIN_{builtin}"))
        signatures = {}
        for index in range(model.SignatureDefsLength()):
            definition = model.SignatureDefs(index)
            graph = model.Subgraphs(definition.SubgraphIndex())
            tensors = [graph.Tensors(t) for t in range(graph.TensorsLength())]
            ops = []
            for o in range(graph.OperatorsLength()):
                op = graph.Operators(o)
                inputs = [op.Inputs(i) for i in range(op.InputsLength())]
                ops.append(Op(codes[op.OpcodeIndex()], tuple(
                    dtypes[tensors[i].Type()].lower() if i >= 0 else None for i in inputs)))
            buffers = frozenset(t.Buffer() for t in tensors if t.Buffer() in sizes)
            signatures[definition.SignatureKey().decode()] = Signature(tuple(ops), buffers)
        del model
    return signatures, sizes


def shared_buffers(signatures: dict[str, Signature], sizes: dict[int, int]) -> dict:
    """How signatures (``read_signatures``' result) share weights: buffers read by more than one signature, their
    bytes, and the bytes of all constant buffers (each stored once in the file)."""
    readers: dict[int, int] = {}
    for signature in signatures.values():
        for index in signature.buffers:
            readers[index] = readers.get(index, 0) + 1
    shared = [index for index, count in readers.items() if count > 1]
    return {"signatures": sorted(signatures), "shared_buffers": len(shared),
            "shared_bytes": sum(sizes[i] for i in shared), "buffer_bytes": sum(sizes.values())}
