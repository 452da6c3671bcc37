"""A static export's decoder step at further batch sizes (beam search's beams in one call), sharing every weight.

The decoder-step graph takes its batch from its inputs: no op fixes it (heads are split by reshapes to ``-1``; the
cache write and the masks broadcast). So the step at batch B is the same nodes and the same initializers, pointing
into the same ``weights.bin``, with the batch axes of its inputs and outputs declared B: a copy of the graph's
structure, no weights. Before it is kept it runs on B different rows and must give what the batch-1 step gives for
each row (graphs that round activations at run time, weight-int8's ``MatMulNBits`` and dynamic int8's
``MatMulInteger``, are compared as float-compute twins: ``variants.without_activation_rounding``).
"""

from __future__ import annotations

from pathlib import Path

from mt5lite.contract import GraphSpec, batch_rows, batched_role, concat_rows, parse_role, with_shape
from mt5lite.errors import InputError
from mt5lite.exporters.onnx.variants import check_variant, random_feeds, write_variant


def batch_problems(batches) -> list[str]:
    """What is wrong with the further batch sizes an export's decoder step is asked to serve."""
    bad = [b for b in batches if not isinstance(b, int) or isinstance(b, bool) or not 2 <= b <= 64]
    return [f"decoder batch sizes must be whole numbers from 2 to 64, got {', '.join(map(repr, bad))}"] if bad else []


def write_batched_decoders(directory: Path, graphs: dict[str, GraphSpec], batches) -> dict[str, GraphSpec]:
    """Write ``decoder_b{B}.onnx`` beside the staged ``decoder`` graph in ``directory`` for every batch ``B`` of
    ``batches``: the decoder step with its batch fixed at B, pointing into the same weight file. Each is checked
    (ONNX checker, full shape inference) and run against the batch-1 step row by row (``ParityError`` beyond
    ``variants.TOLERANCE``; weight-int8 and dynamic int8 in float compute, ``without_activation_rounding``). Returns
    ``graphs`` with exactly these batched steps, and no graph derived from them (earlier ones dropped)."""
    problems = batch_problems(batches)
    if problems:
        raise InputError("; ".join(problems))
    result = {role: spec for role, spec in graphs.items() if parse_role(role) and parse_role(role).batch == 1}
    decoder = graphs["decoder"]
    for batch in sorted(set(batches)):
        role = batched_role(batch)
        spec = with_shape(decoder, f"{role}.onnx", batch=batch)
        write_variant(directory, decoder, spec, role)
        feeds = random_feeds(spec)

        def row_by_row(session, names, feeds=feeds, batch=batch):
            return concat_rows([dict(zip(names, session.run(names, batch_rows(feeds, slice(row, row + 1))),
                                         strict=True)) for row in range(batch)])

        check_variant(directory, decoder, spec, feeds, row_by_row,
                      f"{spec.file} (the decoder step at batch {batch})", "the batch-1 decoder step row by row")
        result[role] = spec
    return result
