"""The outlier step of every int8 recipe: diagnose, smooth, check the fold, and say what must stay wide.

Pipeline: both fp32 graphs with their weights -> for a recipe that quantizes the residual stream itself (full
int8), its rotation (``outliers.rotation``) where that lowers the stream's measured error -> the sites
(``outliers.smoothing.find_sites``) -> each site's activation measured on the calibration feeds
(``activation_stats``) -> a strength per site chosen from the recipe's simulated error (``int8_error``) -> folds
applied -> the smoothed graphs written to scratch and run against the originals on calibration feeds
(``ParityError`` when they differ beyond fp32 rounding) -> the products still above ``KEEP_WIDE_ERROR``. The
quantizer then runs on the smoothed graphs, with decoder feeds rescaled where the
contract's V states are held scaled (``SmoothedGraphs.decoder_feeds``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mt5lite.contract import ROLES, graph_feeds
from mt5lite.errors import ParityError
from mt5lite.exporters.onnx.probe import load_with_weights
from mt5lite.exporters.quantize.outliers.rotation import choose_rotation, normalized_inputs, random_rotation, rotate
from mt5lite.exporters.quantize.outliers.smoothing import (
    FOLDS,
    KEEP_WIDE_ERROR,
    Graph,
    Site,
    choose,
    find_sites,
    rescale_states,
    site_report,
    state_scales,
)

#: Calibration runs of each graph the smoothed graphs are checked on.
CHECK_RUNS = 8
#: The smoothed graphs' outputs may differ from the originals' by this much of each output's largest magnitude.
FOLD_RTOL = 1e-4


@dataclass(frozen=True)
class ErrorModel:
    """How a recipe quantizes products (``mt5lite.exporters.quantize.error_model``'s schemes)."""

    activation: str  # a key of ACTIVATION_SCHEMES
    weight: str  # a key of WEIGHT_SCHEMES
    # Rotate the residual stream where that lowers the int8 error of the norms' outputs (one range per tensor: static
    # and full int8; the products that read a norm then no longer meet outlier channels)
    rotate: bool = False


class TransformedFeeds:
    """A sequence of feed dicts passed through ``transform`` on the way out."""

    def __init__(self, feeds, transform):
        self.feeds, self.transform = feeds, transform

    def __len__(self) -> int:
        return len(self.feeds)

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.feeds[index])


def rescaled_feeds(feeds, scales: dict):
    """Decoder ``feeds`` of an unsmoothed export as a smoothed one reads them (its V states divided by ``scales``,
    ``state_scales``); ``feeds`` itself when nothing is scaled."""
    return TransformedFeeds(feeds, lambda feed: rescale_states(feed, scales)) if scales else feeds


@dataclass
class SmoothedGraphs:
    """The smoothed fp32 graphs, and what the quantizer and the report need to know of them."""

    files: dict[str, Path]  # role -> the smoothed ONNX graph (its weights beside it)
    sources: dict[str, Path]  # role -> the fp32 graph it was made from
    sites: list[Site]
    scales: dict  # the V states' rescaling (``state_scales``)
    kept_wide: dict[str, list[str]]  # role -> products to keep wide
    check: dict  # the fold check's largest differences
    notes: dict = field(default_factory=dict)  # what else the step measured and did (fp16: the residual's scale)

    def decoder_feeds(self, feeds):
        """The fp32 export's decoder feeds as the smoothed decoder reads them."""
        return rescaled_feeds(feeds, self.scales)

    def report(self) -> dict:
        """What the manifest and the quantization report record: per node group, the worst channel found, the
        strengths chosen, the worst error before and after, and the products kept wide."""
        groups = _product_groups(self.sources)
        wide = {(role, p) for role, products in self.kept_wide.items() for p in products}
        return {**site_report(self.sites, lambda site, product: groups[site.role].get(product, "other"),
                              lambda site, product: (site.role, product) in wide),
                "fold_check": self.check, **self.notes}


def _product_groups(files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """role -> product node -> its quantization group, for the outlier report."""
    import onnx

    from mt5lite.exporters.quantize.groups import node_groups

    found = {}
    for role, path in files.items():
        groups = node_groups(onnx.load(str(path), load_external_data=False))
        found[role] = {node: group for group, nodes in groups.items() for node in nodes}
    return found


def smooth_graphs(files: dict[str, Path], feeds: dict, model: ErrorModel, scratch: Path, heads: int,
                  d_kv: int, smooth: bool = True, keep_wide: bool = True) -> SmoothedGraphs:
    """Smooth the fp32 graphs ``files`` (role -> ONNX file) for a recipe quantizing as ``model`` says, from the
    calibration ``feeds`` (role -> a sequence of feed dicts) captured with them; write the smoothed graphs into
    ``scratch``. ``smooth`` off: measured only; ``keep_wide`` off: nothing kept wide."""
    from mt5lite.exporters.quantize.outliers.stats import collect_stats

    graphs = {role: Graph(role, load_with_weights(files[role])) for role in ROLES}
    sites, rotation = find_sites(graphs), None
    norms = normalized_inputs(graphs) if model.rotate and smooth else {role: [] for role in ROLES}
    # One pass over the calibration feeds measures the sites' activations and, for the rotation, the norms' inputs
    stats = {role: collect_stats(files[role], sorted({s.activation for s in sites if s.role == role}
                                                     | set(norms[role])), feeds[role]) for role in ROLES}
    measured = files
    if model.rotate and smooth:
        rotation = choose_rotation([stats[role][name].rows for role in ROLES for name in norms[role]], graphs)
        if rotation.seed is not None:  # the sites are found and measured again on the rotated graphs
            graphs, measured = _rotated(graphs, rotation, scratch / "rotated")
            sites = find_sites(graphs)
            stats = {role: collect_stats(measured[role], sorted({s.activation for s in sites if s.role == role}),
                                         feeds[role]) for role in ROLES}
    for site in sites:
        graph = graphs[site.role]
        weights = [graph.weight(graph.products[p]) for p in site.products]
        choose(site, stats[site.role][site.activation], weights, model.activation, model.weight, smooth)
    for site in sites:
        if site.strength is not None:
            graph = graphs[site.role]
            for product in site.products:  # X / m reaches the product: its weight's rows take m
                node = graph.products[product]
                graph.set_weight(node, graph.weight(node) * site.m[:, None])
            FOLDS[site.fold].apply(graphs, site)
    folded = any(site.strength is not None for site in sites)
    written = write_graphs(graphs, scratch) if folded else dict(measured)
    # A whole site stays wide when one of its products must: ONNX Runtime's QDQ quantizer gives every reader of an
    # activation the same quantized copy of it.
    kept = {role: [p for s in sites if s.role == role and keep_wide
                   and any(e["after"] > KEEP_WIDE_ERROR for e in s.errors.values()) for p in s.products]
            for role in ROLES}
    smoothed = SmoothedGraphs(written, files, sites, state_scales(sites, heads, d_kv), kept, {})
    smoothed.check = check_fold(files, smoothed, feeds) if folded or measured is not files else {}
    smoothed.notes["scaled_states"] = sorted(smoothed.scales)  # held divided per channel (state_scales)
    if rotation is not None:
        smoothed.notes["rotation"] = rotation.report()
    return smoothed


def _rotated(graphs: dict[str, Graph], choice, scratch: Path) -> tuple[dict[str, Graph], dict[str, Path]]:
    """``graphs`` with their residual stream rotated as ``choice`` (``outliers.rotation.RotationChoice``)
    says, written into ``scratch``: the rotated graphs, reloaded, and their files."""
    rotate(graphs, random_rotation(choice.width, choice.seed))
    written = write_graphs(graphs, scratch)
    return {role: Graph(role, load_with_weights(written[role])) for role in ROLES}, written


def smoothing(model: ErrorModel):
    """The outlier step of an int8 recipe quantizing as ``model`` says: ``(files, feeds, config, scratch, dims)
    -> SmoothedGraphs``, honouring the config's ``smooth`` and ``keep_wide``."""
    def prepare(files: dict[str, Path], feeds: dict, config, scratch: Path, dims) -> SmoothedGraphs:
        return smooth_graphs(files, feeds, model, scratch, dims.num_heads, dims.d_kv, smooth=config.smooth,
                             keep_wide=config.keep_wide)
    return prepare


def write_graphs(graphs: dict[str, Graph], scratch: Path) -> dict[str, Path]:
    """Save each changed graph into ``scratch`` (weights beside it, replaced initializers dropped)."""
    import onnx

    scratch.mkdir(parents=True, exist_ok=True)
    written = {}
    for role, graph in graphs.items():
        graph.drop_unused()
        written[role] = scratch / f"smoothed-{role}.onnx"
        onnx.save_model(graph.model, str(written[role]), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=written[role].name + ".data", size_threshold=1024)
    return written


def sampled_runs(feeds, runs: int) -> range:
    """The indices of ``runs`` feeds spread evenly over ``feeds``."""
    step = max(1, len(feeds) // runs)
    return range(0, min(len(feeds), step * runs), step)


class FoldCheck:
    """Outputs of a folded model against the original's (``add`` them run by run), relative to each output's
    largest magnitude; ``verdict`` raises ``ParityError`` beyond ``FOLD_RTOL``."""

    def __init__(self, stage: str):
        self.stage, self.rows = stage, {}

    def add(self, expected: dict, got: dict, scales: dict) -> None:
        """One run's outputs (``expected`` from the original, its V states rescaled here by ``scales``)."""
        expected = rescale_states(expected, scales)
        for name, value in expected.items():
            value = np.asarray(value, dtype=np.float64)
            diff = float(np.abs(np.asarray(got[name], dtype=np.float64) - value).max())
            row = self.rows.setdefault(name, {"output": name, "shape": list(value.shape), "max_abs_diff": 0.0,
                                              "tolerance": FOLD_RTOL})
            row["max_abs_diff"] = max(row["max_abs_diff"], diff / max(float(np.abs(value).max()), 1e-12))

    def verdict(self) -> dict:
        """Each output's largest relative difference, or ``ParityError``."""
        if any(not row["max_abs_diff"] <= FOLD_RTOL for row in self.rows.values()):
            raise ParityError(f"{self.stage} (differences relative to each output's largest value)",
                              list(self.rows.values()))
        return {name: row["max_abs_diff"] for name, row in self.rows.items()}


def check_fold(files: dict[str, Path], smoothed: SmoothedGraphs, feeds: dict, runs: int = CHECK_RUNS) -> dict:
    """Run the original and the smoothed graphs on ``runs`` calibration feeds of each graph and compare every
    output (the V states rescaled); ``ParityError`` when one differs by more than ``FOLD_RTOL`` of its largest
    magnitude. Returns each output's largest relative difference."""
    import onnxruntime as ort

    check = FoldCheck("smoothed graphs against the fp32 export")
    for role in ROLES:
        original = ort.InferenceSession(str(files[role]), providers=["CPUExecutionProvider"])
        folded = ort.InferenceSession(str(smoothed.files[role]), providers=["CPUExecutionProvider"])
        names, inputs = [o.name for o in original.get_outputs()], [i.name for i in original.get_inputs()]
        for index in sampled_runs(feeds[role], runs):
            feed = feeds[role][index]
            rescaled = graph_feeds(inputs, rescale_states(feed, smoothed.scales))
            check.add(dict(zip(names, original.run(names, graph_feeds(inputs, feed)), strict=True)),
                      dict(zip(names, folded.run(names, rescaled), strict=True)), smoothed.scales)
    return check.verdict()
