"""A static export's decoder step at further batch sizes (beam search's beams in one call), sharing every weight.

The decoder-step graph takes its batch from its inputs: no op fixes it (heads are split by reshapes to ``-1``; the
cache write and the masks broadcast). So the step at batch B is the same nodes and the same initializers, pointing
into the same ``weights.bin``, with the batch axes of its inputs and outputs declared B: a copy of the graph's
structure, no weights. Before it is kept it runs on B different rows and must give what the batch-1 step gives for
each row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mt5lite.contract import BATCH_AXIS, GraphSpec, batched_role, role_kind, with_batch
from mt5lite.errors import InputError

#: A batched step must match the batch-1 step row by row to this (max |diff| <= atol + rtol x max |reference|):
#: GEMM kernels for B rows may sum in another order than those for one row (weight-int8 on the demo model: 2.4e-6).
TOLERANCE = (1e-5, 1e-6)
#: ... except where activations are quantized dynamically (``DynamicQuantizeLinear``): one scale spans the batch, as
#: in every dynamic-shape export, so rows differ by quantization noise (demo model: 0.29 on logits of about 20).
#: A graph that mixed rows up would be off by the outputs' own size.
DYNAMIC_TOLERANCE = (0.0, 0.05)


def batch_problems(batches) -> list[str]:
    """What is wrong with the further batch sizes an export's decoder step is asked to serve."""
    bad = [b for b in batches if not isinstance(b, int) or isinstance(b, bool) or not 2 <= b <= 64]
    return [f"decoder batch sizes must be whole numbers from 2 to 64, got {', '.join(map(repr, bad))}"] if bad else []


def write_batched_decoders(directory: Path, graphs: dict[str, GraphSpec], batches) -> dict[str, GraphSpec]:
    """Write ``decoder_b{B}.onnx`` beside the staged ``decoder`` graph in ``directory`` for every batch ``B`` of
    ``batches``: the decoder step with its batch fixed at B, pointing into the same weight file. Each is checked
    (ONNX checker, full shape inference) and run against the batch-1 step row by row (``ParityError`` beyond
    ``TOLERANCE``, or ``DYNAMIC_TOLERANCE`` for dynamically quantized activations). Returns ``graphs`` with
    exactly these batched steps (earlier ones dropped)."""
    import onnx

    problems = batch_problems(batches)
    if problems:
        raise InputError("; ".join(problems))
    result = {role: spec for role, spec in graphs.items() if role_kind(role) != "decoder" or role == "decoder"}
    if not batches:
        return result
    decoder = graphs["decoder"]
    model = onnx.load(str(directory / decoder.file), load_external_data=False)
    dynamic = any(node.op_type == "DynamicQuantizeLinear" for node in model.graph.node)
    tolerance = DYNAMIC_TOLERANCE if dynamic else TOLERANCE
    for batch in sorted(set(batches)):
        role = batched_role(batch)
        spec = with_batch(decoder, batch, f"{role}.onnx")
        batched = onnx.ModelProto()
        batched.CopyFrom(model)
        for value in (*batched.graph.input, *batched.graph.output):
            axis = BATCH_AXIS[value.name]
            if axis is not None:
                value.type.tensor_type.shape.dim[axis].dim_value = batch
        del batched.graph.value_info[:]  # the batch-1 shapes inferred inside; the checker infers them again
        for entry in batched.metadata_props:
            if entry.key == "mt5lite.graph":
                entry.value = role
        onnx.save_model(batched, str(directory / spec.file))
        onnx.checker.check_model(str(directory / spec.file), full_check=True)
        _check_rows(directory, decoder, spec, tolerance)
        result[role] = spec
    return result


def _row_feeds(spec: GraphSpec, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds of ``batch`` different rows for the decoder step ``spec`` describes (at batch 1): random tokens,
    masks, cross K/V and caches, the position halfway through the cache."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in spec.inputs:
        shape = [batch if axis == BATCH_AXIS[tensor.name] else size for axis, size in enumerate(tensor.shape)]
        if tensor.name == "decoder_input_ids":
            feeds[tensor.name] = rng.integers(0, 64, size=shape, dtype=np.int64)
        elif tensor.name == "encoder_attention_mask":
            feeds[tensor.name] = (np.arange(shape[1]) < rng.integers(1, shape[1] + 1, size=(batch, 1))).astype(
                np.int64)
        elif tensor.name == "position":
            feeds[tensor.name] = np.array([spec.tensors["self_k_cache"].shape[3] // 2], dtype=np.int64)
        else:
            feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _check_rows(directory: Path, single: GraphSpec, batched: GraphSpec, tolerance) -> None:
    """Run ``batched`` on its batch of different rows and ``single`` on each row; ``ParityError`` when any output
    differs beyond ``tolerance``."""
    import onnxruntime as ort

    from mt5lite.contract import batch_rows, concat_rows
    from mt5lite.verification.teacher_forced import Differences, check_diffs

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(directory / spec.file), options, providers=["CPUExecutionProvider"])
                for spec in (single, batched)]
    names = [t.name for t in single.outputs]
    batch = batched.tensors["decoder_input_ids"].shape[0]
    feeds = _row_feeds(single, batch)
    together = dict(zip(names, sessions[1].run(names, feeds), strict=True))
    apart = concat_rows([dict(zip(names, sessions[0].run(names, batch_rows(feeds, slice(row, row + 1))),
                                  strict=True)) for row in range(batch)])
    found = Differences()
    for name in names:
        found.add(name, together[name], apart[name])
    check_diffs(f"{batched.file} (the decoder step at batch {batch})", found, *tolerance,
                {name: list(together[name].shape) for name in names}, "the batch-1 decoder step row by row")
