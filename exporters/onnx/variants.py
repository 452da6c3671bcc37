"""A static export's graph at another fixed shape (a batched decoder step, a source-length bucket): the same nodes
and the same initializers, pointing into the same ``weights.bin``, with its inputs and outputs declared at the new
shape and the few constants that spell the shape out replaced. A copy of the graph's structure, no weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mt5lite.contract import GraphSpec, layer_input

#: A graph at another shape must match the graph it comes from to this (max |diff| <= atol + rtol x max
#: |reference|): GEMM kernels for other row counts may sum in another order (weight-int8 on the demo model: 2.4e-6,
#: measured before its checks ran at accuracy level 0; see ``without_activation_rounding``).
TOLERANCE = (1e-5, 1e-6)
#: ... except where activations are quantized dynamically (``DynamicQuantizeLinear``): one scale spans the batch
#: and every source position, as in every dynamic-shape export, so the outputs differ by quantization noise: 1.5% of
#: the largest |value| on the demo model (0.29 on logits of about 20), 5.2% on the natural model's static int8
#: (cross_k of its 32-position bucket, 2026-12-05), 16% on the trained outlier fixture's encoder output (its
#: 16-position bucket, 2026-12-06: amplified residual channels make one scale coarser for the rest). A graph that
#: mixed rows or positions up would be off by the outputs' own size, so 25% still tells the two apart.
DYNAMIC_TOLERANCE = (0.0, 0.25)


def constant_values(model) -> dict[str, object]:
    """The ``Constant`` nodes of ``model`` (an ``onnx.ModelProto``) by output name: their ``TensorProto``."""
    return {node.output[0]: node.attribute[0].t for node in model.graph.node
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"}


def write_variant(directory: Path, base: GraphSpec, variant: GraphSpec, role: str,
                  constants: dict | None = None) -> None:
    """Write ``variant.file`` in ``directory``: the graph of ``base`` (in ``directory``) with its inputs and outputs
    declared as ``variant`` declares them, the values of its ``Constant`` nodes named in ``constants`` (output name
    -> ``TensorProto``) replaced, and its role stamped; checked with the ONNX checker's full shape inference. A
    name in ``constants`` the graph lacks is a ``ValueError``."""
    import onnx

    model = onnx.load(str(directory / base.file), load_external_data=False)
    shapes = {tensor.name: tensor.shape for tensor in (*variant.inputs, *variant.outputs)}
    for value in (*model.graph.input, *model.graph.output):
        for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name], strict=True):
            dim.dim_value = size
    found = constant_values(model)
    missing = sorted(set(constants or {}) - set(found))
    if missing:
        raise ValueError(f"{base.file} has no constant {', '.join(missing)}")
    for name, tensor in (constants or {}).items():
        found[name].CopyFrom(tensor)
    del model.graph.value_info[:]  # the shapes inferred inside at the old shape; the checker infers them again
    for entry in model.metadata_props:
        if entry.key == "mt5lite.graph":
            entry.value = role
    onnx.save_model(model, str(directory / variant.file))
    onnx.checker.check_model(str(directory / variant.file), full_check=True)


def tolerance_of(directory: Path, spec: GraphSpec) -> tuple[float, float]:
    """The tolerance a variant of graph ``spec`` is held to: ``DYNAMIC_TOLERANCE`` where it quantizes activations
    dynamically, else ``TOLERANCE``."""
    import onnx

    model = onnx.load(str(directory / spec.file), load_external_data=False)
    return DYNAMIC_TOLERANCE if any(node.op_type == "DynamicQuantizeLinear" for node in model.graph.node) \
        else TOLERANCE


def _rounds_activations(node) -> bool:
    """Whether ``node`` is a ``MatMulNBits`` that rounds its float input at run time: accuracy level 2, 3 or 4
    (fp16, bf16 or int8 compute; weight-int8 uses 4, int8 per block); 0 and 1 compute in float32."""
    from onnx.helper import get_attribute_value

    return node.op_type == "MatMulNBits" and any(
        a.name == "accuracy_level" and get_attribute_value(a) >= 2 for a in node.attribute)


@contextmanager
def without_activation_rounding(directory: Path, specs: tuple[GraphSpec, ...]) -> Iterator[list[Path]]:
    """The files of ``specs`` in ``directory`` to run a variant check on: the graphs themselves, or, where they
    round activations at run time (``MatMulNBits`` at accuracy level 2-4), twins at accuracy level 0
    (the same int8 weights, float compute), written beside them and removed afterwards.

    Rounding each activation to int8 at run time turns the last-bit differences of kernels for other row counts
    into whole quantization steps, which grow layer by layer: mt5-small's shape with random weights, a batch-4
    step against the batch-1 step row by row, differed by 2.2 on logits of 12.8. The variant check asks whether the
    variant computes what its base computes, row for row; the twins answer that without the rounding. What the
    rounding does to decoded ids is measured separately (``docs/onnx-export.md``)."""
    import onnx

    models = [onnx.load(str(directory / spec.file), load_external_data=False) for spec in specs]
    if not any(_rounds_activations(node) for model in models for node in model.graph.node):
        yield [directory / spec.file for spec in specs]
        return
    twins = [directory / f".check-{spec.file}" for spec in specs]
    try:
        for model, twin in zip(models, twins, strict=True):
            for node in model.graph.node:
                if _rounds_activations(node):
                    next(a for a in node.attribute if a.name == "accuracy_level").i = 0
            onnx.save_model(model, str(twin))
        yield twins
    finally:
        for twin in twins:
            twin.unlink(missing_ok=True)


def check_variant(directory: Path, base: GraphSpec, variant: GraphSpec, feeds: dict[str, np.ndarray],
                  run_base: Callable, what: str, compared_with: str) -> None:
    """Run ``variant`` on ``feeds`` and ``run_base(session)`` (the base graph's outputs for the same inputs, by
    name, shaped like the variant's); ``ParityError`` naming ``what`` and ``compared_with`` when any output
    differs beyond the tolerance (``tolerance_of``). Graphs that round activations at run time (int8, fp16 or
    bf16 compute in ``MatMulNBits``) are checked without that rounding (``without_activation_rounding``)."""
    import onnxruntime as ort

    from mt5lite.verification.teacher_forced import Differences, check_diffs

    options = ort.SessionOptions()
    options.log_severity_level = 3
    names = [tensor.name for tensor in variant.outputs]
    with without_activation_rounding(directory, (base, variant)) as files:
        base_session, variant_session = (ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
                                         for file in files)
        got = dict(zip(names, variant_session.run(names, feeds), strict=True))
        expected = run_base(base_session, names)
    found = Differences()
    for name in names:
        found.add(name, got[name], expected[name])
    check_diffs(what, found, *tolerance_of(directory, base),
                {name: list(got[name].shape) for name in names}, compared_with)


def random_feeds(spec: GraphSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds for graph ``spec`` (static shapes), row by row different: random token ids, masks of random real
    lengths (at least 1), ``position`` halfway through the cache, random floats for the rest."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in spec.inputs:
        shape = list(tensor.shape)
        if tensor.name in ("input_ids", "decoder_input_ids"):
            feeds[tensor.name] = rng.integers(0, 64, size=shape, dtype=np.int64)
        elif tensor.name.endswith("attention_mask"):
            lengths = rng.integers(1, shape[1] + 1, size=(shape[0], 1))
            feeds[tensor.name] = (np.arange(shape[1]) < lengths).astype(np.int64)
        elif tensor.name == "position":
            cache = spec.tensors[layer_input("self_k_cache", 0)]  # [B,H,T_max,d_kv]
            feeds[tensor.name] = np.array([cache.shape[2] // 2], dtype=np.int64)
        else:
            feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds
