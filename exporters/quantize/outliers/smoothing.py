"""Activation outliers: find them, migrate them into the weights (SmoothQuant), and keep wide what int8 cannot hold.

Real T5 v1.1 / mT5 checkpoints have a few activation channels hundreds of times larger than the rest; one int8 range
per tensor then leaves the other channels a level or two. Every product ``Y = X W`` an int8 recipe quantizes is
part of a **site**: an activation ``X`` that one or more weight MatMuls read, and what produces ``X``. Dividing
``X``'s channel ``c`` by ``m_c`` and multiplying row ``c`` of every reader's weight by ``m_c`` leaves ``Y`` exact; the
``1/m_c`` is folded into the producer (``FOLDS``):

- ``norm``: the RMS norm's weight (q/k/v, wi_0/wi_1, the cross k/v, the lm_head read a norm's output); a norm whose
  output is also read elsewhere (the encoder's final norm: ``encoder_hidden_states``) gets a folded copy of its
  scale ``Mul`` for the products;
- ``ffn``: the output columns of ``wi_1`` (``wi`` for ReLU), for ``wo``;
- ``values``: the output columns of ``v``, for ``o``. The values then reach ``o`` through the contract's state
  tensors (``cross_v``, the self-attention cache), which hold them scaled: ``state_scales`` says by what, so
  calibration feeds captured from the fp32 export can be rescaled alike.

``m_c = max|X_c|^a / max|W_c|^(1-a)`` (SmoothQuant), with the strength ``a`` chosen per site, from
``STRENGTHS``, as the one with the least simulated error (``mt5lite.exporters.quantize.error_model``) on the calibration
rows; ``None`` (no smoothing) competes too, and a strength is kept only where it divides the error by ``MIN_GAIN``.
A site with a product still above ``KEEP_WIDE_ERROR`` after that is kept wide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mt5lite.registry import Registry

#: SmoothQuant migration strengths tried per site (None: not smoothed).
STRENGTHS = (None, 0.4, 0.5, 0.65)
#: A site is smoothed only where that divides its simulated error by at least this much.
MIN_GAIN = 1.5
#: A product whose simulated relative error is still above this after smoothing stays wide (float activations).
KEEP_WIDE_ERROR = 0.05
#: Channel magnitudes below this are treated as dead (no migration).
TINY = 1e-6


def _module(node_name: str) -> str:
    """The module a renamed node comes from (``decoder.block.0.layer.2.DenseReluDense.wo/MatMul`` ->
    ``decoder.block.0.layer.2.DenseReluDense.wo``)."""
    return node_name.rsplit("/", 1)[0]


def _layer_index(module: str) -> int:
    return int(module.split(".block.")[1].split(".")[0])


@dataclass
class Graph:
    """One ONNX graph being smoothed: the model (weights loaded) and look-ups over it."""

    role: str
    model: object

    def __post_init__(self):
        from onnx import numpy_helper

        self.arrays = {}
        self._to_array = numpy_helper.to_array
        self.reindex()

    def reindex(self) -> None:
        """Build the look-ups again (after nodes were added or rewired)."""
        self.initializers = {t.name: t for t in self.model.graph.initializer}
        self.producers = {out: node for node in self.model.graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in self.model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.model.graph.output}
        self.products = {node.name: node for node in self.model.graph.node
                         if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in self.initializers}
        self.by_module = {_module(name): node for name, node in self.products.items()}

    def weight(self, node) -> np.ndarray:
        """The weight a MatMul or scale Mul reads (its initializer input)."""
        name = next(i for i in node.input if i in self.initializers)
        if name not in self.arrays:
            self.arrays[name] = self._to_array(self.initializers[name]).astype(np.float32)
        return self.arrays[name]

    def set_weight(self, node, array: np.ndarray) -> None:
        """Give ``node`` a weight of its own holding ``array`` (the old initializer may be shared)."""
        from onnx import numpy_helper

        index = next(i for i, name in enumerate(node.input) if name in self.initializers)
        name = f"{node.input[index]}.smoothed.{node.name.replace('/', '.')}"
        tensor = numpy_helper.from_array(array.astype(np.float32), name)
        self.model.graph.initializer.append(tensor)
        self.initializers[name] = tensor
        self.arrays[name] = array.astype(np.float32)
        node.input[index] = name

    def drop_unused(self) -> None:
        """Remove the initializers no node reads any more (those a fold replaced)."""
        read = {name for node in self.model.graph.node for name in node.input}
        kept = [t for t in self.model.graph.initializer if t.name in read]
        del self.model.graph.initializer[:]
        self.model.graph.initializer.extend(kept)


@dataclass
class Site:
    """An activation read by weight products, and the producer its ``1/m`` folds into."""

    fold: str  # a key of FOLDS, "none" (measured, not smoothed), or in PyTorch models "cross" (torch_smoothing)
    role: str  # the graph of the products
    activation: str  # the tensor they read
    products: list[str]  # MatMul node names
    producer: str | None = None  # the node (or module, for values) the fold changes
    producer_role: str | None = None
    strength: float | None = None
    m: np.ndarray | None = None
    errors: dict[str, dict] = field(default_factory=dict)  # product -> {"before", "after"}
    outlier_ratio: float = 1.0
    outlier_channel: int = 0


@dataclass(frozen=True)
class Fold:
    """Where one kind of site's ``1/m`` goes."""

    description: str
    apply: Callable  # (graphs: dict[role, Graph], site) -> None


def _fold_norm(graphs: dict, site: Site) -> None:
    graph = graphs[site.role]
    scale = next(n for n in graph.model.graph.node if n.name == site.producer)
    readers = graph.consumers.get(site.activation, [])
    shared = site.activation in graph.outputs or any(n.name not in site.products for n in readers)
    if shared:  # a copy of the scale Mul, folded, for the products alone (found only where they read it directly)
        import onnx

        copy = onnx.NodeProto()
        copy.CopyFrom(scale)
        copy.name, copy.output[0] = f"{scale.name}.smoothed", f"{scale.output[0]}.smoothed"
        position = list(graph.model.graph.node).index(scale) + 1
        graph.model.graph.node.insert(position, copy)
        for node in readers:
            if node.name in site.products:
                node.input[0] = copy.output[0]
        scale = graph.model.graph.node[position]  # the inserted node (insert copies the message)
    graph.set_weight(scale, graph.weight(scale) / site.m)


def _fold_columns(graphs: dict, site: Site) -> None:
    graph = graphs[site.producer_role]
    producer = graph.by_module[site.producer]
    graph.set_weight(producer, graph.weight(producer) / site.m[None, :])


#: Every kind of fold.
FOLDS: Registry[Fold] = Registry("smoothing fold", {
    "norm": Fold("into the RMS norm's weight (a folded copy where its output is also read elsewhere)", _fold_norm),
    "ffn": Fold("into the output columns of wi_1 (wi for ReLU)", _fold_columns),
    "values": Fold("into the output columns of v (the contract's V state holds the values scaled)", _fold_columns),
})


def _is_scalar(graph: Graph, name: str) -> bool:
    from onnx import numpy_helper

    if name in graph.initializers:
        return int(np.prod(graph.initializers[name].dims)) == 1
    node = graph.producers.get(name)
    return node is not None and node.op_type == "Constant" and numpy_helper.to_array(node.attribute[0].t).size == 1


def _through_scalars(graph: Graph, tensor: str) -> str:
    """Where ``tensor`` leads through Muls by a scalar (T5's tied-``lm_head`` scale, mT5's 1.0) that are its only
    reader: per-channel scaling commutes with them."""
    while tensor not in graph.outputs:
        readers = graph.consumers.get(tensor, [])
        if len(readers) != 1 or readers[0].op_type != "Mul":
            break
        other = [i for i in readers[0].input if i != tensor]
        if len(other) != 1 or not _is_scalar(graph, other[0]):
            break
        tensor = readers[0].output[0]
    return tensor


def find_sites(graphs: dict) -> list[Site]:
    """Every activation that weight products read, in both graphs, with the fold that can smooth it (``none``
    where no fold applies: measured and kept wide if need be, never smoothed)."""
    sites, placed = [], set()
    for role, graph in graphs.items():
        for node in graph.model.graph.node:  # norms: a scale Mul reading a weight, whose output products read
            if node.op_type != "Mul" or "layer_norm" not in node.name or not any(
                    i in graph.initializers for i in node.input):
                continue
            activation = _through_scalars(graph, node.output[0])
            products = [n.name for n in graph.consumers.get(activation, []) if n.name in graph.products]
            readers = graph.consumers.get(activation, [])
            shared = activation in graph.outputs or len(readers) != len(products)
            if products:
                fold = "none" if shared and activation != node.output[0] else "norm"
                sites.append(Site(fold, role, activation, products, node.name if fold == "norm" else None,
                                  role if fold == "norm" else None))
                placed.update((role, p) for p in products)
        for name, node in graph.products.items():
            module = _module(name)
            if (role, name) in placed:
                continue
            source = None
            if module.endswith("DenseReluDense.wo"):
                stem = module[: -len("wo")]
                # wi_1 times the gate, or ReLU(wi): what commutes with a positive per-unit scale (GELU(wi) does not)
                gate = graph.producers.get(node.input[0])
                producer = stem + "wi_1" if gate is not None and gate.op_type == "Mul" else (
                    stem + "wi" if gate is not None and gate.op_type == "Relu" else None)
                source = ("ffn", producer if producer in graph.by_module else None, role)
            elif module.endswith("Attention.o"):
                stem = module[: -len("o")] + "v"
                owner = next((r for r, g in graphs.items() if stem in g.by_module), None)
                source = ("values", stem if owner else None, owner)
            fold, producer, producer_role = source if source and source[1] else ("none", None, None)
            sites.append(Site(fold, role, node.input[0], [name], producer, producer_role))
            placed.add((role, name))
    return sites


def choose(site: Site, stats, weights: list[np.ndarray], activation: str, weight_scheme: str,
           smooth: bool = True) -> None:
    """Pick ``site``'s strength (and ``m``) with the least simulated error summed over its products, and record
    each product's error before and after."""
    from mt5lite.exporters.quantize.error_model import relative_error

    site.outlier_ratio, site.outlier_channel = stats.outlier_ratio()
    absmax = np.maximum(stats.absmax, TINY)
    wmax = np.maximum(np.max([np.abs(w).max(axis=1) for w in weights], axis=0), TINY)
    ones = np.ones_like(absmax)
    best = None
    for strength in (STRENGTHS if smooth and site.fold != "none" else (None,)):
        m = ones if strength is None else np.where(stats.absmax > TINY, absmax**strength / wmax ** (1 - strength),
                                                   1.0)
        errors = [relative_error(stats, w, m, activation, weight_scheme) for w in weights]
        if best is None or sum(errors) < sum(best[2]) * (1 - 1e-3):
            best = (strength, m, errors)
        if strength is None:
            before = errors
    if best[0] is not None and sum(best[2]) * MIN_GAIN > sum(before):  # not worth moving the weights' ranges
        best = (None, ones, before)
    site.strength, site.m = best[0], best[1]
    site.errors = {p: {"before": b, "after": a} for p, b, a in zip(site.products, before, best[2], strict=True)}


def state_scales(sites: list[Site], heads: int, d_kv: int) -> dict[str, dict[int, np.ndarray]]:
    """How the smoothed export's V states relate to the fp32 export's: state tensor name -> decoder layer ->
    ``[H, 1, d_kv]`` divisor (the state is the fp32 one divided by it)."""
    scales: dict[str, dict[int, np.ndarray]] = {}
    for site in sites:
        if site.fold != "values" or site.strength is None or site.role != "decoder":
            continue
        names = ("cross_v",) if "EncDecAttention" in site.producer else ("self_v_cache", "new_self_v")
        for name in names:
            scales.setdefault(name, {})[_layer_index(site.producer)] = site.m.reshape(heads, 1, d_kv)
    return scales


def rescale_states(feed: dict[str, np.ndarray], scales: dict[str, dict[int, np.ndarray]]) -> dict:
    """``feed`` (fp32 export's tensors) with its V states as the smoothed export holds them."""
    out = dict(feed)
    for name, layers in scales.items():
        if name in out:
            value = np.array(out[name], dtype=np.float32, copy=True)  # [L, B, H, T, d_kv]
            for layer, divisor in layers.items():
                value[layer] /= divisor
            out[name] = value
    return out


def site_report(sites: list[Site], group_of: Callable, kept_wide: Callable) -> dict:
    """Per node group (``group_of(site, product)``): the worst channel found, the strengths chosen, the worst
    simulated error before and after, and the products kept wide (``kept_wide(site, product)``)."""
    rows: dict[str, dict] = {}
    for site in sites:
        for product, error in site.errors.items():
            row = rows.setdefault(group_of(site, product), {
                "products": 0, "worst_ratio": 0.0, "worst_node": None, "worst_channel": None, "smoothed": 0,
                "strengths": [], "worst_error_before": 0.0, "worst_error_after": 0.0, "kept_wide": []})
            row["products"] += 1
            if site.outlier_ratio > row["worst_ratio"]:
                row.update(worst_ratio=site.outlier_ratio, worst_node=product, worst_channel=site.outlier_channel)
            if site.strength is not None:
                row["smoothed"] += 1
                row["strengths"] = sorted(set(row["strengths"]) | {site.strength})
            row["worst_error_before"] = max(row["worst_error_before"], error["before"])
            row["worst_error_after"] = max(row["worst_error_after"], error["after"])
            if kept_wide(site, product):
                row["kept_wide"].append(product)
    return {"groups": rows, "keep_wide_error": KEEP_WIDE_ERROR, "sites": len(sites),
            "smoothed_sites": sum(s.strength is not None for s in sites),
            "kept_wide": sum(len(r["kept_wide"]) for r in rows.values())}
