"""The int8 outlier step for exports made straight from PyTorch (ExecuTorch): the sites, strengths and error model
of ``outliers.smoothing``, measured with forward hooks on the contract's graphs and folded into the
model's own parameters.

First the residual stream is rotated where that lowers its measured error (``outliers.torch_rotation``):
the linears' per-tensor activation ranges then no longer meet a few huge channels, and XNNPACK's int8 embedding
(one range per row) no longer meets outlier columns. Sites by module: every RMS norm and
the linears that read it; ``wi_1`` (``wi``) and ``wo``; ``v`` and ``o``. The encoder's final norm output is also
the contract's ``encoder_hidden_states``: its fold goes into a per-channel scale the encoder graph applies for the
cross K/V alone (``EncoderGraph(cross_scale=...)``), as the ONNX graphs get a folded copy of the norm's scale. A
tied ``lm_head``'s norm is measured, not folded (its weight is the embedding).
Nothing is kept wide here: ExecuTorch measures each linear in its quantized program and gives dynamic
activations to those static int8 holds worse (``exporters.executorch.mixed``); ``TorchSmoothing.over_budget``
lists the products the error model still puts above ``KEEP_WIDE_ERROR``, for the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mt5lite.exporters.quantize.outliers.smoothing import (
    KEEP_WIDE_ERROR,
    Site,
    choose,
    rescale_states,
    site_report,
    state_scales,
)


def find_torch_sites(model) -> list[Site]:
    """Every group of linears that read one activation, named by module, with the fold that can smooth it."""
    sites = []
    relu = model.config.dense_act_fn == "relu"
    for stack in ("encoder", "decoder"):
        for index, block in enumerate(getattr(model, stack).block):
            for number, layer in enumerate(block.layer):
                prefix = f"{stack}.block.{index}.layer.{number}"
                if hasattr(layer, "DenseReluDense"):
                    ffn = layer.DenseReluDense
                    readers = [f"{prefix}.DenseReluDense.{n}" for n in ("wi_0", "wi_1", "wi") if hasattr(ffn, n)]
                    sites.append(Site("norm", stack, readers[0], readers, f"{prefix}.layer_norm", stack))
                    # wi_1 times the gate, or ReLU(wi): what commutes with a positive per-unit scale (GELU does not)
                    producer = "wi_1" if hasattr(ffn, "wi_1") else ("wi" if relu else None)
                    wo = f"{prefix}.DenseReluDense.wo"
                    sites.append(Site("ffn", stack, wo, [wo], f"{prefix}.DenseReluDense.{producer}", stack)
                                 if producer else Site("none", stack, wo, [wo]))
                    continue
                kind = "SelfAttention" if hasattr(layer, "SelfAttention") else "EncDecAttention"
                attention = f"{prefix}.{kind}"
                readers = [f"{attention}.{n}" for n in ("qkv" if kind == "SelfAttention" else "q")]
                sites.append(Site("norm", stack, readers[0], readers, f"{prefix}.layer_norm", stack))
                sites.append(Site("values", stack, f"{attention}.o", [f"{attention}.o"], f"{attention}.v", stack))
    cross = [f"decoder.block.{i}.layer.1.EncDecAttention.{n}" for i in range(len(model.decoder.block))
             for n in "kv"]
    sites.append(Site("cross", "encoder", cross[0], cross, "encoder.final_layer_norm", "encoder"))
    tied = model.config.tie_word_embeddings
    sites.append(Site("none" if tied else "norm", "decoder", "lm_head", ["lm_head"],
                      None if tied else "decoder.final_layer_norm", None if tied else "decoder"))
    return sites


def run_graphs(model, feeds: dict, max_target_length: int, runs: int | None = None, cross_scale=None,
               scales=None, output_rotation=None) -> list[dict]:
    """The contract graphs' outputs on ``runs`` feeds of each graph (all of them when None; ``sampled_runs``),
    decoder feeds rescaled by ``scales`` (``cross_scale``, ``output_rotation``: ``EncoderGraph``'s)."""
    import torch

    from mt5lite.contract import graph_feeds, graph_names
    from mt5lite.exporters.graphs import DecoderStepGraph, EncoderGraph
    from mt5lite.exporters.quantize.outliers.step import sampled_runs

    graphs = {"encoder": EncoderGraph(model, cross_scale, output_rotation).eval(),
              "decoder": DecoderStepGraph(model, max_target_length).eval()}
    found = []
    with torch.no_grad():
        for role, graph in graphs.items():
            inputs, outputs = graph_names(role, model.config.num_decoder_layers)
            for index in range(len(feeds[role])) if runs is None else sampled_runs(feeds[role], runs):
                feed = graph_feeds(inputs, rescale_states(feeds[role][index], scales or {}))
                values = graph(*[torch.from_numpy(np.ascontiguousarray(feed[name])) for name in inputs])
                found.append({name: v.numpy() for name, v in zip(outputs, values, strict=True)})
    return found


def measure_modules(model, linears: set[str], norms: set[str], feeds: dict, max_target_length: int) -> dict:
    """``ChannelStats`` over the calibration ``feeds`` (role -> a sequence of feed dicts) run through the contract's
    graphs, by module name: the input of each linear in ``linears``, and the normalized input ``x / rms(x)`` of
    each RMS norm in ``norms`` (what the residual stream's rotation is chosen on)."""
    from mt5lite.exporters.quantize.outliers.stats import StatsAccumulator

    found = StatsAccumulator(sum(len(f) for f in feeds.values()))

    def normalized(name, norm, args):
        x = args[0].detach().float()
        found.add(name, (x * (x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).rsqrt()).numpy())

    hooks = []
    for name, module in model.named_modules():
        if name in linears:
            hooks.append(module.register_forward_hook(
                lambda _m, args, _out, name=name: found.add(name, args[0].detach().float().numpy())))
        elif name in norms:
            hooks.append(module.register_forward_pre_hook(lambda m, args, name=name: normalized(name, m, args)))
    try:
        run_graphs(model, feeds, max_target_length)
    finally:
        for hook in hooks:
            hook.remove()
    return found.finish()


@dataclass
class TorchSmoothing:
    """What the outlier step did to a PyTorch model."""

    sites: list[Site]
    scales: dict  # the V states' rescaling (``state_scales``)
    cross_scale: object  # torch tensor [D]: the encoder output's scale for the cross K/V (None: not smoothed)
    over_budget: list[str]  # linears the error model still puts above KEEP_WIDE_ERROR after smoothing (for the report)
    check: dict = field(default_factory=dict)  # the fold check's largest relative differences
    rotation: dict = field(default_factory=dict)  # the residual stream's rotation (RotationChoice.report)
    output_rotation: object = None  # torch tensor [D, D]: turns the rotated encoder output back (None: not rotated)

    def report(self) -> dict:
        """``site_report`` of the sites, grouped like the ONNX graphs' products."""
        return {**site_report(self.sites, lambda site, product: _group(product), lambda site, product: False),
                "over_budget": self.over_budget, "fold_check": self.check, "scaled_states": sorted(self.scales),
                "rotation": self.rotation}


def _group(module: str) -> str:
    """The quantization group of a linear, found by the name its ONNX node would have."""
    from mt5lite.exporters.quantize.groups import GROUPS

    return next((name for name, group in GROUPS.items() if group.op_type == "MatMul" and group.name_pattern
                 and re.search(group.name_pattern, f"{module}/MatMul")), "other")


def _rotate(model, rows: list):
    """The residual stream's rotation, chosen on each norm's normalized calibration ``rows``
    (``outliers.rotation``) and folded into ``model`` where it lowers the error. Returns the choice and
    the encoder output's way back (None when not rotated)."""
    from mt5lite.exporters.quantize.outliers.rotation import choose_rotation, random_rotation
    from mt5lite.exporters.quantize.outliers.torch_rotation import rotate_model

    tied = "a tied lm_head is the embedding itself" if model.config.tie_word_embeddings else None
    choice = choose_rotation(rows, why_not=tied)
    if choice.seed is None:
        return choice, None
    return choice, rotate_model(model, random_rotation(choice.width, choice.seed))


def smooth_model(model, feeds: dict, max_target_length: int, activation: str = "static",
                 weight: str = "per-channel") -> TorchSmoothing:
    """Rotate the residual stream where that lowers its error (``_rotate``), measure every site on ``feeds``,
    choose its strength for the recipe (``int8_error``'s schemes), fold it into ``model``'s parameters in place,
    and check the contract's graphs (``EncoderGraph(model, cross_scale, output_rotation)``) against the unsmoothed
    ones (``ParityError`` beyond ``FOLD_RTOL``). The model alone, without the cross scale and the output rotation,
    no longer computes its cross-attention K/V and encoder output as before."""
    import torch

    from mt5lite.exporters.quantize.outliers.step import CHECK_RUNS, FoldCheck
    from mt5lite.exporters.quantize.outliers.torch_rotation import rms_norms

    sites = find_torch_sites(model)
    modules = dict(model.named_modules())
    expected = run_graphs(model, feeds, max_target_length, CHECK_RUNS)
    linears, norms = {s.activation for s in sites}, set(rms_norms(model))
    stats = measure_modules(model, linears, norms, feeds, max_target_length)  # one pass: sites and norms
    rotation, back = _rotate(model, [stats[name].rows for name in norms])
    if back is not None:  # rotated: the sites are measured again
        stats = measure_modules(model, linears, set(), feeds, max_target_length)
    for site in sites:
        weights = [modules[p].weight.detach().float().numpy().T for p in site.products]  # [in, out]
        choose(site, stats[site.activation], weights, activation, weight)
    cross_scale = None
    with torch.no_grad():
        for site in sites:
            if site.strength is None:
                continue
            m = torch.from_numpy(site.m.astype(np.float32))
            for product in site.products:
                modules[product].weight[:, :] *= m[None, :]
            if site.fold == "norm":
                modules[site.producer].weight[:] /= m
            elif site.fold == "cross":
                cross_scale = 1.0 / m
            else:  # ffn, values: the producer's output rows
                modules[site.producer].weight[:, :] /= m[:, None]
    config = model.config
    over = [p for s in sites for p, e in s.errors.items() if e["after"] > KEEP_WIDE_ERROR]
    smoothing = TorchSmoothing(sites, state_scales(sites, config.num_heads, config.d_kv), cross_scale, over,
                               rotation=rotation.report(), output_rotation=back)
    check = FoldCheck("smoothed model against the fp32 model")
    got = run_graphs(model, feeds, max_target_length, CHECK_RUNS, cross_scale, smoothing.scales, back)
    for before, after in zip(expected, got, strict=True):
        check.add(before, after, smoothing.scales)
    smoothing.check = check.verdict()
    return smoothing
