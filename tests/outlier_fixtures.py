"""Outlier fixtures: checkpoints that compute what their source computes, with activation outliers put in by exact
rescalings (issue 25), for the tests and benchmarks of the int8 recipes. Not part of the wheel.

Real T5 v1.1 / mT5 checkpoints carry a few activation channels hundreds of times larger than the rest. Each
rescaling below leaves the function unchanged in exact arithmetic (the fp32 logits move only by rounding) and puts
such channels on the inputs of the quantized products:

- ``norm``: channel ``c`` of every RMS norm's weight x ``s``, and column ``c`` of every linear that reads that norm's
  output / ``s`` (q/k/v after a self-attention norm, q after a cross-attention norm, ``wi_0``/``wi_1``/``wi`` after an
  FFN norm, every decoder layer's cross k/v after the encoder's final norm, an untied ``lm_head`` after the decoder's
  final norm);
- ``ffn``: row ``j`` of ``wi_1`` (``wi`` for ReLU) x ``f`` and column ``j`` of ``wo`` / ``f``;
- ``values``: output row ``j`` of every attention's ``v`` x ``s`` and column ``j`` of its ``o`` / ``s``;
- ``residual``: the embedding and every ``o``/``wo`` output x ``a`` (RMS norm is scale-invariant); with ``a``
  around 1,000 the residual stream leaves fp16's range, as T5 v1.1's does. Untied ``lm_head`` only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Outliers:
    """How strong each rescaling is (1: left out) and where it lands."""

    norm: float = 60.0  # RMS-norm weight channels x s, the consumers' columns / s
    ffn: float = 200.0  # FFN hidden units: wi_1 (wi) row x f, wo column / f
    values: float = 60.0  # attention values: v row x s, o column / s
    residual: float = 1.0  # the whole residual stream x a
    channels: int = 3  # channels (units) rescaled per place
    seed: int = 0


#: The issue's strong fixture: three channels per place, x60 on norms and values, x200 on FFN units.
STRONG = Outliers()
#: A mild one: only the FFN units, x30 (already enough to fail static int8's gate before smoothing).
MILD = Outliers(norm=1.0, values=1.0, ffn=30.0)
#: The fp16-overflow fixture: the residual stream x10,000, nothing else (the demo's peaks 14 -> 140,000 > 65,504).
RESIDUAL_OVERFLOW = Outliers(norm=1.0, ffn=1.0, values=1.0, residual=10000.0)


def _scale_columns(linear, columns, factor: float) -> None:
    linear.weight[:, columns] *= factor


def _scale_rows(linear, rows, factor: float) -> None:
    linear.weight[rows, :] *= factor


def add_outliers(model, outliers: Outliers) -> dict:
    """Rescale ``model`` (a transformers T5/mT5/umT5 seq2seq model) in place as ``outliers`` says; returns the
    channels and units chosen per place. The function is unchanged in exact arithmetic."""
    import torch

    config = model.config
    rng = np.random.default_rng(outliers.seed)
    pick = lambda size: sorted(int(i) for i in rng.choice(size, outliers.channels, replace=False))  # noqa: E731
    channels = pick(config.d_model)  # the same residual channels in every norm, as in real checkpoints
    chosen = {"norm_channels": channels, "ffn_units": {}, "value_channels": {}}
    untied = not config.tie_word_embeddings
    cross_kv = [block.layer[1].EncDecAttention for block in model.decoder.block]
    with torch.no_grad():
        for stack in (model.encoder, model.decoder):
            for index, block in enumerate(stack.block):
                for layer in block.layer:
                    attention = getattr(layer, "SelfAttention", None) or getattr(layer, "EncDecAttention", None)
                    ffn = getattr(layer, "DenseReluDense", None)
                    if outliers.norm != 1.0:
                        layer.layer_norm.weight[channels] *= outliers.norm
                        if ffn is not None:
                            readers = [getattr(ffn, n) for n in ("wi_0", "wi_1", "wi") if hasattr(ffn, n)]
                        elif hasattr(layer, "SelfAttention"):
                            readers = [attention.q, attention.k, attention.v]
                        else:
                            readers = [attention.q]
                        for linear in readers:
                            _scale_columns(linear, channels, 1.0 / outliers.norm)
                    if ffn is not None and outliers.ffn != 1.0:
                        units = pick(ffn.wo.weight.shape[1])
                        chosen["ffn_units"][f"{_stack(stack, model)}.{index}"] = units
                        _scale_rows(getattr(ffn, "wi_1", None) or ffn.wi, units, outliers.ffn)
                        _scale_columns(ffn.wo, units, 1.0 / outliers.ffn)
                    if attention is not None and outliers.values != 1.0:
                        units = pick(attention.v.weight.shape[0])
                        chosen["value_channels"][f"{_stack(stack, model)}.{index}.{type(attention).__name__}"] = units
                        _scale_rows(attention.v, units, outliers.values)
                        _scale_columns(attention.o, units, 1.0 / outliers.values)
                    if outliers.residual != 1.0:
                        if not untied:
                            raise ValueError("a residual rescaling needs an untied lm_head (mT5, T5 v1.1, umT5)")
                        out = ffn.wo if ffn is not None else attention.o
                        out.weight *= outliers.residual
        if outliers.norm != 1.0:
            model.encoder.final_layer_norm.weight[channels] *= outliers.norm
            for attention in cross_kv:
                _scale_columns(attention.k, channels, 1.0 / outliers.norm)
                _scale_columns(attention.v, channels, 1.0 / outliers.norm)
            if untied:
                model.decoder.final_layer_norm.weight[channels] *= outliers.norm
                _scale_columns(model.lm_head, channels, 1.0 / outliers.norm)
        if outliers.residual != 1.0:
            model.shared.weight *= outliers.residual
    return {"outliers": asdict(outliers), **chosen}


def _stack(stack, model) -> str:
    return "encoder" if stack is model.encoder else "decoder"


def build_outlier_model(source: Path, output: Path, outliers: Outliers = STRONG) -> Path:
    """``source``'s checkpoint with ``outliers`` added, written to ``output`` (safetensors, same tokenizer), built
    once: an existing ``output`` with the same recipe is reused."""
    import json
    import shutil

    from mt5lite.checkpoint import load_model, save_checkpoint

    output = Path(output)
    stamp = output / "outliers.json"
    if stamp.is_file() and json.loads(stamp.read_text())["outliers"] == asdict(outliers):
        return output
    shutil.rmtree(output, ignore_errors=True)
    model = load_model(source)
    chosen = add_outliers(model, outliers)
    save_checkpoint(model, (Path(source) / "spiece.model").read_bytes(), output)
    stamp.write_text(json.dumps(chosen, indent=1))
    return output


#: The fp32 validation tolerance (relative to the peak) for exports of a model with amplified residual channels
#: that was not trained back: its stream's outlier channels make fp32 rounding differ between PyTorch and ONNX
#: Runtime beyond the default (``OnnxExportConfig.rtol``): 1.6e-4 on the demo model's logits (peak 7.5) on a CPU
#: without AVX2, against 1.3e-4 allowed; about 1e-3 on mt5-small's shape (logits near 100).
AMPLIFIED_RTOL = 2e-5


def amplify_residual_channels(model, channels: int = 3, factor: float = 30.0, seed: int = 0) -> list[int]:
    """Multiply ``channels`` residual-stream channels by ``factor`` where they enter the stream (the embedding's
    columns, every ``o``/``wo`` output row): unlike the rescalings above this changes the function (RMS norm is not
    channel-wise invariant), so quality drops until training recovers it, and the outliers it leaves are the
    model's own. Untied ``lm_head`` only. Returns the channels."""
    import torch

    if model.config.tie_word_embeddings:
        raise ValueError("amplifying residual channels needs an untied lm_head (mT5, T5 v1.1, umT5)")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(model.config.d_model, channels, replace=False))
    with torch.no_grad():
        model.shared.weight[:, chosen] *= factor
        for stack in (model.encoder, model.decoder):
            for block in stack.block:
                for layer in block.layer:
                    out = layer.DenseReluDense.wo if hasattr(layer, "DenseReluDense") else (
                        getattr(layer, "SelfAttention", None) or layer.EncDecAttention).o
                    out.weight[chosen, :] *= factor
    return chosen


def build_trained_outlier_model(source: Path, output: Path, train_data: Path, steps: int = 2000, channels: int = 3,
                                factor: float = 30.0, seed: int = 0) -> Path:
    """``source`` with ``channels`` residual channels amplified ``factor`` times, then fine-tuned ``steps`` steps
    on ``train_data`` (the project's ``finetune`` pass) until it recovers: outliers that come from training, not
    from a rescaling a tool could invert. Built once (an existing ``output`` with the same recipe is reused)."""
    import json
    import shutil

    from mt5lite.checkpoint import load_model, save_checkpoint
    from mt5lite.compression.compress import compress
    from mt5lite.compression.training import FinetuneConfig

    output = Path(output)
    recipe = {"channels": channels, "factor": factor, "steps": steps, "seed": seed, "learning_rate": 1e-3}
    stamp = output / "outliers.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("trained") == recipe:
        return output
    amplified = output.with_name(output.name + "-amplified")
    shutil.rmtree(amplified, ignore_errors=True)
    model = load_model(source)
    chosen = amplify_residual_channels(model, channels, factor, seed)
    save_checkpoint(model, (Path(source) / "spiece.model").read_bytes(), amplified)
    config = FinetuneConfig(train_data=Path(train_data), max_steps=steps, batch_size=32, learning_rate=1e-3,
                            save_steps=max(steps // 4, 1), train_seed=seed)
    compress(amplified, output, ["finetune"], {"finetune": config}, force=True, progress=True)
    shutil.rmtree(amplified, ignore_errors=True)
    stamp.write_text(json.dumps({"trained": recipe, "residual_channels": chosen}, indent=1))
    return output


def activation_ratios(model, input_ids, attention_mask) -> dict[str, float]:
    """Per linear layer: the largest input channel's max |x| over the median channel's, on one batch (what the
    diagnosis sees, measured in PyTorch)."""
    import torch

    found: dict[str, float] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            def hook(_module, args, _output, name=name):
                peak = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
                found[name] = max(found.get(name, 0.0), float(peak.max() / peak.median().clamp_min(1e-12)))
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids[:, :4])
    finally:
        for handle in hooks:
            handle.remove()
    return found
