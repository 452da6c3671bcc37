"""fp16's outlier step: keep the residual stream inside fp16's range by scaling it down, exactly.

T5 v1.1 / mT5 residual streams can exceed fp16's 65,504 (transformers #5651): the residual adds then overflow to inf
wherever fp16 kernels run them. RMS norm is scale-invariant, so dividing everything that enters the stream (the token
embedding, every attention ``o`` and FFN ``wo`` output) by ``d`` leaves every norm's output, and so the function,
unchanged (each norm's epsilon is divided by ``d^2`` with it). ``d`` is the power of two that brings the stream's
peak, measured on the calibration feeds (what each RMS norm squares), under ``FP16_RESIDUAL_LIMIT``: a power of two
divides exactly, and the limit leaves 16x headroom for inputs the calibration draw did not show. The scaled graphs
are checked against the fp32 ones like a fold.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mt5lite.contract import ROLES, graph_feeds
from mt5lite.exporters.onnx.probe import load_with_weights, probe_session
from mt5lite.exporters.quantize.outliers.smoothing import Graph
from mt5lite.exporters.quantize.outliers.step import SmoothedGraphs, check_fold, sampled_runs, write_graphs

#: The residual stream's measured peak is brought under this (fp16's largest value is 65,504).
FP16_RESIDUAL_LIMIT = 4096.0
#: Calibration runs per graph the peak is measured on.
PEAK_RUNS = 64


def stream_tensors(graph: Graph) -> list[str]:
    """The residual stream where each RMS norm reads it: the input of the norm's square."""
    return [node.input[0] for node in graph.model.graph.node if node.op_type == "Pow" and "layer_norm" in node.name]


def _entries(graph: Graph):
    """The nodes whose weights write into the stream: the embedding lookups, every ``o`` and ``wo``."""
    from mt5lite.exporters.quantize.groups import GROUPS

    embeddings = GROUPS["embeddings"]
    for node in graph.model.graph.node:
        reads_weight = any(i in graph.initializers for i in node.input)
        if embeddings.matches(node, reads_weight):
            yield node
    for name, node in graph.products.items():
        if name.split("/")[0].endswith(("Attention.o", "DenseReluDense.wo")):
            yield node


def _epsilons(graph: Graph):
    """The constant each RMS norm adds to its mean square (``Add`` of a ``Constant`` inside a norm)."""
    for node in graph.model.graph.node:
        if node.op_type == "Add" and "layer_norm" in node.name:
            for name in node.input:
                constant = graph.producers.get(name)
                if constant is not None and constant.op_type == "Constant":
                    yield constant


def residual_peak(files: dict[str, Path], feeds: dict, runs: int = PEAK_RUNS) -> float:
    """The largest magnitude the residual stream takes on ``runs`` calibration feeds of each graph."""
    import onnx

    peak = 0.0
    for role in ROLES:
        model = onnx.load(str(files[role]), load_external_data=False)
        names = stream_tensors(Graph(role, model))
        session = probe_session(model, files[role].parent, names)
        inputs = [i.name for i in session.get_inputs()]
        for index in sampled_runs(feeds[role], runs):
            feed = graph_feeds(inputs, feeds[role][index])
            peak = max([peak] + [float(np.abs(v).max()) for v in session.run(names, feed)])
    return peak


def scale_residual(files: dict[str, Path], feeds: dict, config, scratch: Path, dims) -> SmoothedGraphs:
    """The fp16 recipe's outlier step (``config.smooth`` off: measured, not scaled): both graphs with the
    residual stream divided by the power of two that brings its measured peak under ``FP16_RESIDUAL_LIMIT``."""
    peak = residual_peak(files, feeds)
    divisor = 2.0 ** math.ceil(math.log2(peak / FP16_RESIDUAL_LIMIT)) if peak > FP16_RESIDUAL_LIMIT else 1.0
    if not config.smooth:
        divisor = 1.0
    from onnx import numpy_helper

    graphs = {role: Graph(role, load_with_weights(files[role])) for role in ROLES}
    for graph in graphs.values():
        for node in _entries(graph) if divisor != 1.0 else ():
            graph.set_weight(node, graph.weight(node) / divisor)
        for constant in _epsilons(graph) if divisor != 1.0 else ():  # mean(x^2) shrinks by divisor^2: eps too
            value = numpy_helper.to_array(constant.attribute[0].t)
            constant.attribute[0].t.CopyFrom(numpy_helper.from_array(value / np.float32(divisor**2)))
    scaled = SmoothedGraphs(write_graphs(graphs, scratch), files, [], {}, {role: [] for role in ROLES}, {},
                            {"residual_peak": peak, "residual_divisor": divisor,
                             "residual_limit": FP16_RESIDUAL_LIMIT})
    scaled.check = check_fold(files, scaled, feeds)
    scaled.notes["residual_peak_after"] = residual_peak(scaled.files, feeds)
    return scaled
