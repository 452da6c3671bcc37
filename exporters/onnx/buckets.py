"""A static export's graphs over shorter sources (source-length buckets), sharing every weight.

A static export pads every source to ``max_source_length`` (S), so a 6-token phrase would run the encoder over 128
positions and every step's cross-attention over 128. Buckets are the same graphs at shorter lengths: ``encoder_s16``
and ``decoder_s16`` (and ``decoder_b4_s16``) take 16 source positions; the runtimes pick the shortest that fits.

- The decoder step takes its source length from its inputs (the cross K/V and the encoder mask); no op fixes it.
- The encoder spells its length out in a few constants: the relative positions and their buckets (``[S,S]``
  tables), and reshape targets. Tracing the encoder at length s gives the same nodes, reading the same tensors, with
  only those constants different; they are what a bucket replaces (``traced_constants``).

So a bucket is the graph at S with its source axes declared s and those constants replaced: every initializer,
quantized or not, points into the same ``weights.bin``. A quantized export takes its buckets' constants from the
fp32 export it came from (``recorded_constants``), so its buckets keep its quantization as it is. Before a bucket
is kept it runs on inputs of at most s tokens and must give what the graph at S gives on them padded to S.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mt5lite.contract import GraphSpec, Role, parse_role, source_axis, source_buckets, to_source_length, with_shape
from mt5lite.errors import CheckpointError, ModelFileError, first_line
from mt5lite.exporters.onnx.variants import check_variant, constant_values, random_feeds, write_variant

#: The source lengths a static export serves besides ``max_source_length`` (those below it), unless told otherwise:
#: 16 for a phrase, 32 for a sentence. Each is a few hundred KB of graph structure (ONNX) or of signature (TFLite,
#: whose identical quantization vectors are stored once: ``exporters.tflite.flatbuffer``), and one more graph to
#: convert, calibrate and load.
DEFAULT_BUCKETS = (16, 32)


def bucket_problems(buckets, max_source_length: int) -> list[str]:
    """What is wrong with the source-length buckets asked of an export whose longest source is
    ``max_source_length``."""
    bad = [b for b in buckets if not isinstance(b, int) or isinstance(b, bool) or not 2 <= b < max_source_length]
    return [f"source-length buckets must be whole numbers from 2 to max_source_length - 1 "
            f"({max_source_length - 1}), got {', '.join(map(repr, bad))}"] if bad else []


def chosen_buckets(buckets, max_source_length: int) -> tuple[int, ...]:
    """The buckets an export config asks for: ``buckets`` itself, or with None the default ones below
    ``max_source_length``."""
    if buckets is None:
        return tuple(b for b in DEFAULT_BUCKETS if b < max_source_length)
    return tuple(sorted(set(buckets)))


def traced_constants(module, spec: GraphSpec, source: int, base: Path, opset: int) -> dict:
    """The constants of graph ``base`` (``spec``, traced from ``module``) that differ when ``module`` is traced at
    ``source`` positions, with their values there (output name -> ``TensorProto``). ``CheckpointError`` when the
    trace at ``source`` differs in more than constants."""
    import warnings

    import onnx
    import torch

    from mt5lite.exporters.onnx.export import sample_inputs
    from mt5lite.staging import scratch_directory

    short = with_shape(spec, spec.file, source=source)
    with scratch_directory(base, "bucket") as scratch, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(module, sample_inputs(short), str(scratch / base.name), dynamo=False, opset_version=opset,
                          input_names=[t.name for t in short.inputs], output_names=[t.name for t in short.outputs],
                          do_constant_folding=True)
        traced = onnx.load(str(scratch / base.name), load_external_data=False)
    model = onnx.load(str(base), load_external_data=False)
    if _structure(model) != _structure(traced):
        raise CheckpointError(f"{spec.file} traced at {source} source positions differs from the one at "
                              f"{spec.tensors['input_ids'].shape[1]} in more than its constants; export without "
                              "source-length buckets (--source-buckets with no value)")
    return _changed(constant_values(model), constant_values(traced))


def recorded_constants(directory: Path, graphs: dict[str, GraphSpec]) -> dict[int, dict[str, dict]]:
    """The constants each source-length bucket of the export in ``directory`` replaced, per bucket and graph kind:
    what differs between its ``encoder``/``decoder`` and their buckets (``encoder_s16``, ``decoder_s16``)."""
    import onnx

    def constants(role: str) -> dict:
        return constant_values(onnx.load(str(directory / graphs[role].file), load_external_data=False))

    found = {}
    for bucket in source_buckets(graphs):
        found[bucket] = {}
        for kind in ("encoder", "decoder"):
            role = Role(kind, source=bucket).name
            if role not in graphs:
                raise ModelFileError(f"{directory}: the export has encoder_s{bucket} but no {role}; re-export it")
            found[bucket][kind] = _changed(constants(kind), constants(role))
    return found


def write_source_buckets(directory: Path, graphs: dict[str, GraphSpec], constants: dict[int, dict[str, dict]]
                         ) -> dict[str, GraphSpec]:
    """Write every graph of ``graphs`` at full length (``encoder``, ``decoder``, ``decoder_b4``) again at each
    bucket length of ``constants`` (bucket -> graph kind -> the constants to replace, ``traced_constants``), beside
    it in ``directory``: ``encoder_s16.onnx``, pointing into the same weight files. Each is checked (ONNX checker,
    full shape inference) and run against its graph at full length on inputs padded to it (``ParityError``).
    Returns ``graphs`` with exactly these buckets (earlier ones dropped)."""
    import onnx

    full = {role: spec for role, spec in graphs.items() if parse_role(role).source is None}
    result = dict(full)
    for bucket in sorted(constants):
        for role, spec in full.items():
            parsed = parse_role(role)
            name = Role(parsed.kind, parsed.batch, bucket).name
            variant = with_shape(spec, f"{name}.onnx", source=bucket)
            try:
                write_variant(directory, spec, variant, name, constants[bucket][parsed.kind])
            except (ValueError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
                raise CheckpointError(f"{spec.file} cannot take source-length bucket {bucket} ({first_line(exc)}); "
                                      "export without buckets (--source-buckets with no value)") from None
            feeds = random_feeds(variant)
            check_variant(directory, spec, variant, feeds, _padded_run(feeds, spec),
                          f"{variant.file} (the {parsed.kind} over {bucket} source positions)",
                          f"{spec.file} on the same inputs padded")
            result[name] = variant
    return result


def _padded_run(feeds: dict[str, np.ndarray], full: GraphSpec):
    """A ``check_variant`` runner: the graph at full length (``full``) on ``feeds`` zero-padded to its length, its
    outputs cut back to the bucket's length."""
    length = next(value.shape[source_axis(name)] for name, value in feeds.items() if source_axis(name) is not None)
    padded = to_source_length(feeds, next(t.shape[source_axis(t.name)] for t in full.inputs
                                          if source_axis(t.name) is not None))

    def run(session, names):
        return to_source_length(dict(zip(names, session.run(names, padded), strict=True)), length)
    return run


def _structure(model) -> list[tuple]:
    """The nodes of ``model`` as op type, inputs and outputs (node names aside: exports rename them)."""
    return [(node.op_type, tuple(node.input), tuple(node.output)) for node in model.graph.node]


def _changed(full: dict, short: dict) -> dict:
    """The constants of ``short`` whose value differs from ``full``'s of the same name."""
    from onnx import numpy_helper

    return {name: tensor for name, tensor in short.items()
            if name in full and not _same(numpy_helper.to_array(full[name]), numpy_helper.to_array(tensor))}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
