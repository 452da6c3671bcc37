"""Rotate the residual stream: outliers that live in the residual itself, spread over every channel.

Smoothing (``outliers.smoothing``) moves an outlier channel of a product's input into the product's
weight. A full-int8 model also quantizes the residual stream itself (the adds, the norms' arithmetic, every
projection's output), one range per tensor; outlier channels that training put into the residual then leave the
other channels a level or two, and no per-channel scale can be folded anywhere to help. An orthogonal matrix ``Q``
can (QuaRot, SpinQuant): the stream ``x`` becomes ``x Q``, which holds the same information with the outlier's
magnitude spread over every channel. RMS norm commutes with it (``||x Q|| = ||x||``), so in exact arithmetic the
model is unchanged once every weight that writes or reads the stream takes ``Q`` (ONNX MatMul weights are
``[in, out]``):

- writers: the token embedding's table and the ``o`` and ``wo`` projections: ``W Q``;
- readers: every product that reads an RMS norm's output (q/k/v, wi, the cross K/V, the lm_head):
  ``Q^T diag(g) W``, the norm's weight ``g`` folded in and set to ones (smoothing can still fold into it);
- a norm whose output is also a graph output (the encoder's: ``encoder_hidden_states``): its products read a copy
  of the unit scale, and the output turns back through a MatMul by ``Q^T diag(g)``, so the contract's tensors stay
  the fp32 export's.

``Q`` is a randomized Hadamard matrix (``random_rotation``); which one matters (SpinQuant), so ``ROTATION_SEEDS``
compete and the one with the least simulated int8 error of the norms' inputs on the calibration rows wins, and only
where it divides that error by ``MIN_GAIN``. The rotated graphs are then checked against the originals like any fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mt5lite.exporters.quantize.outliers.smoothing import MIN_GAIN, Graph, _module, _through_scalars

#: Seeds of the random rotations tried (the least measured error wins).
ROTATION_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)
#: The modules whose products write the residual stream.
_WRITERS = ("Attention.o", "DenseReluDense.wo")


def _haar(width: int, rng) -> np.ndarray:
    """A ``[width, width]`` orthogonal matrix drawn uniformly (Haar)."""
    q, r = np.linalg.qr(rng.standard_normal((width, width)))
    return q * np.sign(np.diag(r))[None, :]


def _hadamard(width: int) -> np.ndarray:
    """The normalized Sylvester Hadamard matrix of a power-of-two ``width``."""
    h = np.ones((1, 1))
    while h.shape[0] < width:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(width)


def random_rotation(width: int, seed: int) -> np.ndarray:
    """A randomized Hadamard rotation of ``width`` (float64), drawn with ``seed``: ``P S (R kron H)``, ``H`` the
    Hadamard matrix of the largest power of two dividing ``width``, ``R`` a Haar-random orthogonal matrix of the
    rest (mt5-small's 512: none; the demo's 192: 3), ``S`` random signs, ``P`` a random permutation. Every channel
    is spread evenly over the others (QuaRot: flatter than a Haar-random rotation; on the trained-outlier fixture
    its measured error was 0.130 against 0.145, and TFLite int8 agreement 0.973 against 0.968)."""
    rng = np.random.default_rng(seed)
    power = width & -width
    q = np.kron(_haar(width // power, rng), _hadamard(power))
    return (rng.choice([-1.0, 1.0], width)[:, None] * q)[rng.permutation(width)]


@dataclass
class NormScale:
    """An RMS norm's scale ``Mul``: its weight, the normalized tensor it scales, and the products that read it."""

    node: object
    normalized: str  # the scale Mul's other input: the norm's unit-scale output
    activation: str  # what the products read (past scalar Muls)
    products: list[str]
    shared: bool  # its output is also read by something that is not a product (a graph output)


def _normalizers(graph: Graph) -> list:
    """The Mul of every RMS norm that normalizes its input, ``x * rsqrt(mean(x^2) + eps)``, found by structure:
    a ReduceMean of a square of ``c`` (``x``, or its Cast), and the one other Mul that reads ``c``."""
    found = []
    for mean in (n for n in graph.model.graph.node if n.op_type == "ReduceMean"):
        square = graph.producers.get(mean.input[0])
        if square is None or not (square.op_type == "Pow" or (square.op_type == "Mul"
                                                              and square.input[0] == square.input[1])):
            continue
        muls = [n for n in graph.consumers.get(square.input[0], []) if n.op_type == "Mul" and n is not square]
        if len(muls) == 1:
            found.append(muls[0])
    return found


def unit_scales(graph: Graph, width: int) -> None:
    """Give every RMS norm a scale Mul that reads its weight as an initializer, so that every norm has a weight to
    rotate and smooth into: Identity nodes the exporter put between equal weights and their readers are bypassed,
    and a norm whose weight was folded away (all ones) gets a scale by ones; its output keeps the tensor's name."""
    from onnx import helper, numpy_helper

    aliases = {n.output[0]: n.input[0] for n in graph.model.graph.node
               if n.op_type == "Identity" and n.input[0] in graph.initializers and n.output[0] not in graph.outputs}
    for node in graph.model.graph.node:
        node.input[:] = [aliases.get(name, name) for name in node.input]
    for name in aliases:
        graph.model.graph.node.remove(graph.producers[name])
    graph.reindex()
    for normalizer in _normalizers(graph):
        readers = graph.consumers.get(normalizer.output[0], [])
        if len(readers) == 1 and readers[0].op_type == "Mul" and any(i in graph.initializers
                                                                      for i in readers[0].input):
            continue
        name, unit = normalizer.output[0], f"{normalizer.output[0]}.unit"
        normalizer.output[0] = unit
        ones = f"{normalizer.name}.scale.weight"
        graph.model.graph.initializer.append(numpy_helper.from_array(np.ones(width, np.float32), ones))
        position = list(graph.model.graph.node).index(normalizer) + 1
        graph.model.graph.node.insert(position, helper.make_node("Mul", [ones, unit], [name],
                                                                 name=f"{normalizer.name}.scale"))
    graph.reindex()


def norm_scales(graph: Graph) -> list[NormScale]:
    """Every RMS norm scale of ``graph`` that weight products read (``unit_scales`` first)."""
    found = []
    for normalizer in _normalizers(graph):
        readers = graph.consumers.get(normalizer.output[0], [])
        if len(readers) != 1 or readers[0].op_type != "Mul":
            continue
        node = readers[0]
        weights = [i for i in node.input if i in graph.initializers]
        if len(weights) != 1:
            continue
        activation = _through_scalars(graph, node.output[0])
        readers = graph.consumers.get(activation, [])
        products = [n.name for n in readers if n.name in graph.products]
        if products:
            shared = activation in graph.outputs or len(products) != len(readers)
            found.append(NormScale(node, normalizer.output[0], activation, products, shared))
    return found


def _tables(graph: Graph, width: int) -> list:
    """The Gathers of ``graph`` that look rows of ``width`` up from a weight table (the token embedding; the
    relative position bias tables are narrower)."""
    return [n for n in graph.model.graph.node if n.op_type == "Gather" and n.input[0] in graph.initializers
            and list(graph.initializers[n.input[0]].dims)[-1:] == [width]
            and "relative_attention_bias" not in n.name]


def rotatable(graphs: dict[str, Graph], width: int) -> str | None:
    """Why the graphs cannot be rotated (None when they can): a norm read past a scalar Mul by products and by
    other nodes has no place for the unit-scale copy; an embedding table read by anything but lookups (a tied
    lm_head through a Transpose) would be rotated on both sides."""
    for role, graph in graphs.items():
        for normalizer in _normalizers(graph):
            readers = graph.consumers.get(normalizer.output[0], [])
            out = readers[0].output[0] if len(readers) == 1 and readers[0].op_type == "Mul" else normalizer.output[0]
            activation = _through_scalars(graph, out)
            products = [n for n in graph.consumers.get(activation, []) if n.name in graph.products]
            shared = activation in graph.outputs or len(products) != len(graph.consumers.get(activation, []))
            if products and shared and activation != out:
                return f"the {role} norm {normalizer.name} is read past a scalar by products and by other nodes"
        for gather in _tables(graph, width):
            if any(n.op_type != "Gather" for n in graph.consumers[gather.input[0]]):
                return f"the {role} table {gather.input[0]} is read by more than lookups"
    return None


def _add_node(graph: Graph, node, after) -> None:
    position = list(graph.model.graph.node).index(after) + 1
    graph.model.graph.node.insert(position, node)
    for name in node.output:
        graph.producers[name] = graph.model.graph.node[position]


def rotate(graphs: dict[str, Graph], q: np.ndarray) -> None:
    """Rotate the residual stream of ``graphs`` (role -> ``Graph``, changed in place) by the orthogonal ``q``."""
    import onnx
    from onnx import helper, numpy_helper

    width = q.shape[0]
    for graph in graphs.values():
        unit_scales(graph, width)
        scales = norm_scales(graph)
        for node in _tables(graph, width):
            graph.set_weight(node, graph.weight(node) @ q)
        for name, node in list(graph.products.items()):
            if _module(name).endswith(_WRITERS):
                graph.set_weight(node, graph.weight(node) @ q)
        for scale in scales:
            gain = graph.weight(scale.node).reshape(-1).astype(np.float64)
            reads = q.T * gain[None, :]  # Q^T diag(g)
            for product in scale.products:
                node = graph.products[product]
                graph.set_weight(node, reads @ graph.weight(node))
            ones = np.ones_like(graph.weight(scale.node))
            if not scale.shared:
                graph.set_weight(scale.node, ones)
                continue
            # The products read a unit-scale copy; the output turns back: normalized @ Q^T diag(g).
            copy = onnx.NodeProto()
            copy.CopyFrom(scale.node)
            copy.name, copy.output[0] = f"{scale.node.name}.rotated", f"{scale.node.output[0]}.rotated"
            _add_node(graph, copy, scale.node)
            copy = graph.producers[copy.output[0]]
            graph.set_weight(copy, ones)
            for reader in graph.consumers.get(scale.activation, []):
                if reader.name in scale.products:
                    reader.input[:] = [copy.output[0] if i == scale.activation else i for i in reader.input]
            back = f"{_module(scale.node.name)}.rotation_back"
            tensor = numpy_helper.from_array(reads.astype(np.float32), back)
            graph.model.graph.initializer.append(tensor)
            graph.initializers[back] = tensor
            turn = helper.make_node("MatMul", [scale.normalized, back], [scale.node.output[0]],
                                    name=f"{_module(scale.node.name)}/MatMul")
            position = list(graph.model.graph.node).index(scale.node)
            graph.model.graph.node.remove(scale.node)
            graph.model.graph.node.insert(position, turn)


def static_error(rows: np.ndarray) -> float:
    """The relative error of quantizing ``rows`` to one uint8 range (what full int8 does to a tensor)."""
    from mt5lite.exporters.quantize.error_model import uniform

    rows = rows.astype(np.float64)
    got = uniform(rows, float(rows.min()), float(rows.max()))
    return float(np.linalg.norm(got - rows) / max(np.linalg.norm(rows), 1e-30))


@dataclass
class RotationChoice:
    """The rotation chosen for the residual stream, and the measured error that chose it."""

    seed: int | None  # None: not rotated
    error_before: float  # summed over the norms' inputs
    errors: dict[int, float] = field(default_factory=dict)  # seed -> summed error rotated
    why_not: str | None = None
    width: int = 0  # d_model: the rotation's size

    def report(self) -> dict:
        """What the manifest records."""
        after = self.errors[self.seed] if self.seed is not None else self.error_before
        return {"seed": self.seed, "error_before": round(self.error_before, 5), "error_after": round(after, 5),
                "seeds_tried": len(self.errors), "min_gain": MIN_GAIN, **({"why_not": self.why_not}
                                                                          if self.why_not else {})}


def choose_rotation(rows: list[np.ndarray], graphs: dict[str, Graph] | None = None,
                    why_not: str | None = None) -> RotationChoice:
    """Pick the rotation of ``ROTATION_SEEDS`` with the least summed ``static_error`` of the norms' normalized
    inputs (``rows``: each norm's sampled calibration rows), kept only where it divides the unrotated error by
    ``MIN_GAIN``; none where the ONNX ``graphs`` cannot be rotated (``rotatable``) or ``why_not`` says so."""
    before = sum(static_error(r) for r in rows)
    width = rows[0].shape[1]
    why_not = why_not or (rotatable(graphs, width) if graphs is not None else None)
    if why_not is not None:
        return RotationChoice(None, before, why_not=why_not, width=width)
    errors = {}
    for seed in ROTATION_SEEDS:
        q = random_rotation(width, seed)
        errors[seed] = sum(static_error(r @ q) for r in rows)
    best = min(errors, key=errors.get)
    return RotationChoice(best if errors[best] * MIN_GAIN <= before else None, before, errors, width=width)


def normalized_inputs(graphs: dict[str, Graph]) -> dict[str, list[str]]:
    """role -> the normalized tensors of its RMS norms (what the rotation is measured on)."""
    return {role: sorted({n.output[0] for n in _normalizers(graph)}) for role, graph in graphs.items()}
