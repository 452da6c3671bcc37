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
#: measured before its checks ran without run-time activation rounding; see ``without_activation_rounding``).
TOLERANCE = (1e-5, 1e-6)


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


def _rounds_activations(node) -> bool:
    """Whether ``node`` is a ``MatMulNBits`` that rounds its float input at run time: accuracy level 2, 3 or 4
    (fp16, bf16 or int8 compute; weight-int8 uses 4, int8 per block); 0 and 1 compute in float32."""
    from onnx.helper import get_attribute_value

    return node.op_type == "MatMulNBits" and any(
        a.name == "accuracy_level" and get_attribute_value(a) >= 2 for a in node.attribute)


def _float_product(product, quantized) -> list:
    """Nodes that compute a ``MatMulInteger`` (``product``) of a ``DynamicQuantizeLinear``'s output (``quantized``)
    in float: the quantizer's float input over its scale, times the integer weights less their zero point, into the
    same output. The ``Mul`` by both scales after it then gives the float product of the input and the dequantized
    weights, with no activation rounded."""
    from onnx import TensorProto, helper

    out = product.output[0]
    weights, zero = product.input[1], product.input[3] if len(product.input) > 3 else ""
    nodes = [helper.make_node("Div", [quantized.input[0], quantized.output[1]], [f"{out}/float_a"]),
             helper.make_node("Cast", [weights], [f"{out}/float_b"], to=TensorProto.FLOAT)]
    if zero:
        nodes += [helper.make_node("Cast", [zero], [f"{out}/float_zero"], to=TensorProto.FLOAT),
                  helper.make_node("Sub", [f"{out}/float_b", f"{out}/float_zero"], [f"{out}/float_bz"])]
    return [*nodes, helper.make_node("MatMul", [f"{out}/float_a", nodes[-1].output[0]], [out])]


def float_compute(model) -> bool:
    """Turn off run-time activation rounding in ``model`` (an ``onnx.ModelProto``), in place; whether it had any.
    ``MatMulNBits`` at accuracy level 2-4 goes to level 0 (the same int8 weights, float compute); a ``MatMulInteger``
    of a ``DynamicQuantizeLinear``'s output becomes the float product with the dequantized weights
    (``_float_product``): dynamic quantization takes one scale over every row and source position, so a graph at
    another batch or length rounds the same values otherwise. (ONNX Runtime may fold the weights' ``Cast``, so a
    session of such a twin can hold them in float32.)"""
    quantizers = {node.output[0]: node for node in model.graph.node if node.op_type == "DynamicQuantizeLinear"}
    nodes, changed = [], False
    for node in model.graph.node:
        quantizer = quantizers.get(node.input[0]) if node.op_type == "MatMulInteger" else None
        if quantizer is not None and node.input[2:3] == quantizer.output[2:3]:  # its zero point, too
            nodes.extend(_float_product(node, quantizer))
            changed = True
            continue
        if _rounds_activations(node):
            next(a for a in node.attribute if a.name == "accuracy_level").i = 0
            changed = True
        nodes.append(node)
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        del model.graph.value_info[:]  # the products' outputs were int32
    return changed


@contextmanager
def without_activation_rounding(directory: Path, specs: tuple[GraphSpec, ...]) -> Iterator[list[Path]]:
    """The files of ``specs`` in ``directory`` to run a variant check on: the graphs themselves, or, where they
    round activations at run time, twins in float compute (``float_compute``: the same int8 weights), written
    beside them and removed afterwards.

    Rounding each activation to int8 at run time turns the last-bit differences of kernels for other row counts
    into whole quantization steps, which grow layer by layer: mt5-small's shape with random weights, a batch-4
    step against the batch-1 step row by row, differed by 2.2 on logits of 12.8 (weight-int8's ``MatMulNBits``).
    Dynamic quantization's one scale over every row and position rounds a batch or a shorter source otherwise:
    16% of the largest output on the trained outlier fixture's 16-position encoder (2026-12-06). The variant check
    asks whether the variant computes what its base computes, row for row; the twins answer that without the
    rounding. What the rounding does to decoded ids is measured separately (``docs/onnx-export.md``)."""
    import onnx

    models = [onnx.load(str(directory / spec.file), load_external_data=False) for spec in specs]
    if not any([float_compute(model) for model in models]):  # a list, not a generator: every model is rewritten
        yield [directory / spec.file for spec in specs]
        return
    twins = [directory / f".check-{spec.file}" for spec in specs]
    try:
        for model, twin in zip(models, twins, strict=True):
            onnx.save_model(model, str(twin))
        yield twins
    finally:
        for twin in twins:
            twin.unlink(missing_ok=True)


def check_variant(directory: Path, base: GraphSpec, variant: GraphSpec, feeds: dict[str, np.ndarray],
                  run_base: Callable, what: str, compared_with: str) -> None:
    """Run ``variant`` on ``feeds`` and ``run_base(session)`` (the base graph's outputs for the same inputs, by
    name, shaped like the variant's); ``ParityError`` naming ``what`` and ``compared_with`` when any output
    differs beyond ``TOLERANCE``. Graphs that round activations at run time (int8, fp16 or bf16 compute in
    ``MatMulNBits``, dynamic quantization) are checked without that rounding (``without_activation_rounding``)."""
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
    check_diffs(what, found, *TOLERANCE,
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
