"""Structured pruning (prune-ffn, prune-heads, drop-layers): the matrices really shrink, a pruned model computes
exactly what the original computes with the removed structures zeroed, and it exports."""

from __future__ import annotations

import pytest
import torch

from mt5lite.checkpoint import load_model
from mt5lite.compression.compress import read_sentencepiece
from mt5lite.compression.importance import measure_importance
from mt5lite.compression.passes import parameter_count
from mt5lite.compression.prune import (
    DropLayersConfig,
    PruneFfnConfig,
    PruneHeadsConfig,
    drop_layers,
    prune_ffn,
    prune_heads,
)
from mt5lite.compression.structure import attentions, feed_forwards, non_embedding_parameters
from mt5lite.data import DEV_TASK, read_task_pairs
from mt5lite.runtimes.tokenizer import Tokenizer
from tests.conftest import run_cli


@pytest.fixture()
def tiny(tiny_model):
    return load_model(tiny_model), read_sentencepiece(tiny_model / "spiece.model")


def _logits(model, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 1000, (2, 9), generator=generator)
    labels = torch.randint(3, 1000, (2, 5), generator=generator)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).logits


def test_prune_ffn_removes_neurons_and_computes_what_zeroing_them_computes(tiny):
    model, tokenizer = tiny
    reference = load_model_copy(model)
    d_ff, d_model = model.config.d_ff, model.config.d_model
    pruned, _, report = prune_ffn(model, tokenizer, PruneFfnConfig(ffn_keep=0.25, importance_pairs=16))
    assert pruned.config.d_ff == d_ff // 4
    modules = dict(reference.named_modules())
    for ffn in feed_forwards(reference):
        dropped = sorted(set(range(d_ff)) - set(report.details["kept"][ffn.prefix]))
        with torch.no_grad():
            modules[ffn.prefix].wo.weight[:, dropped] = 0
        assert dict(pruned.named_modules())[ffn.prefix].wo.weight.shape == (d_model, d_ff // 4)
    assert torch.allclose(_logits(pruned), _logits(reference), atol=1e-5)
    layers = feed_forwards(reference)
    removed = len(layers) * (len(layers[0].inputs) + 1) * d_model * (d_ff - d_ff // 4)
    assert report.parameters == (parameter_count(reference), parameter_count(pruned))
    assert report.parameters[0] - report.parameters[1] == removed
    assert report.non_embedding_parameters == (non_embedding_parameters(reference), non_embedding_parameters(pruned))


def test_prune_heads_keeps_each_stacks_self_attention_heads_and_its_position_bias(tiny):
    model, tokenizer = tiny
    reference = load_model_copy(model)
    heads, d_kv = model.config.num_heads, model.config.d_kv
    pruned, _, report = prune_heads(model, tokenizer, PruneHeadsConfig(heads_keep=0.5, importance_pairs=16))
    assert pruned.config.num_heads == 1 and report.details["heads"] == [heads, 1]
    kept = report.details["kept"]
    for stack in ("encoder", "decoder"):
        own = {tuple(kept[a.prefix]) for a in attentions(reference) if a.stack == stack and a.kind == "self"}
        assert len(own) == 1  # the same heads in every layer: the position bias is shared by head index
    modules = dict(reference.named_modules())
    for attention in attentions(reference):
        for head in sorted(set(range(heads)) - set(kept[attention.prefix])):
            with torch.no_grad():
                modules[attention.prefix].o.weight[:, head * d_kv : (head + 1) * d_kv] = 0
    assert torch.allclose(_logits(pruned), _logits(reference), atol=1e-5)
    bias = pruned.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    assert bias.shape == (pruned.config.relative_attention_num_buckets, 1)


def test_drop_layers_keeps_block_zero_and_renumbers(tiny):
    model, tokenizer = tiny
    before = len(model.decoder.block)
    pruned, _, report = drop_layers(model, tokenizer, DropLayersConfig(encoder_layers_keep=0.5, decoder_layers_keep=0.5,
                                                                        importance_pairs=16))
    assert report.details["kept"] == {"encoder": [0], "decoder": [0]} and before == 2
    assert pruned.config.num_layers == pruned.config.num_decoder_layers == 1 == len(pruned.encoder.block)
    assert pruned.encoder.block[0].layer[0].SelfAttention.has_relative_attention_bias
    assert torch.isfinite(_logits(pruned)).all() and report.parameters[1] == parameter_count(pruned)


def test_importance_scores_every_structure_and_random_is_seeded(tiny_mt5):
    model = load_model(tiny_mt5)
    tokenizer = Tokenizer(tiny_mt5 / "spiece.model")
    found = measure_importance(model, read_task_pairs(DEV_TASK)[:8], tokenizer, batch_size=4)
    assert found.batches == 2 and len(found.heads) == len(attentions(model)) and len(found.blocks) == 4
    assert all(scores.shape == (model.config.d_ff,) and (scores >= 0).all() for scores in found.neurons.values())
    first, second = (measure_importance(model, [], tokenizer, "random", seed=5) for _ in range(2))
    assert all(torch.equal(first.neurons[k], second.neurons[k]) for k in first.neurons)


def test_neuron_importance_is_the_output_energy(tiny_mt5):
    """A neuron whose ``wo`` column is zero adds nothing and scores zero; doubling the column quadruples the score;
    the other neurons' scores do not move when a neuron is doubled in place of its output."""
    model = load_model(tiny_mt5)
    tokenizer = Tokenizer(tiny_mt5 / "spiece.model")
    pairs = read_task_pairs(DEV_TASK)[:8]
    prefix = feed_forwards(model)[-1].prefix  # the last layer: changing it changes no other layer's input
    wo = dict(model.named_modules())[prefix].wo.weight
    before = measure_importance(model, pairs, tokenizer, kinds=("neurons",)).neurons[prefix]
    with torch.no_grad():
        wo[:, 3] = 0
        wo[:, 5] *= 2
    after = measure_importance(model, pairs, tokenizer, kinds=("neurons",)).neurons[prefix]
    assert after[3] == 0 and before[3] > 0
    assert torch.allclose(after[5], 4 * before[5], rtol=1e-4)
    others = [i for i in range(len(before)) if i not in (3, 5)]
    assert torch.allclose(after[others], before[others], rtol=1e-4)


def test_a_pruned_model_exports_to_onnx_and_tflite_within_tolerance(tiny_mt5, tmp_path):
    from mt5lite.compression.compress import compress
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.tflite.export import export_tflite

    configs = {"prune-ffn": PruneFfnConfig(ffn_keep=0.5, importance_pairs=8),
               "prune-heads": PruneHeadsConfig(heads_keep=0.5, importance_pairs=8),
               "drop-layers": DropLayersConfig(encoder_layers_keep=0.5, decoder_layers_keep=0.5, importance_pairs=8)}
    compress(tiny_mt5, tmp_path / "pruned", list(configs), configs)
    onnx = tmp_path / "onnx"
    result = export_onnx(tmp_path / "pruned", onnx, OnnxExportConfig(max_source_length=16, max_target_length=8,
                                                                    static_shapes=True))  # validated against PyTorch
    assert result.manifest.model.num_heads == 1 and result.manifest.model.d_ff == 64
    tflite = export_tflite(onnx, tmp_path / "tflite", "fp32")  # validated against the ONNX export
    assert tflite.validation.checked_against_tolerance


@pytest.mark.parametrize(("args", "message"), [
    (["--passes", "prune-ffn", "--ffn-keep", "1.5"], "ffn_keep is 1.5: a count must be a whole number"),
    (["--passes", "prune-heads", "--heads-keep", "0"], "heads_keep must be a fraction in (0, 1] or a count"),
    (["--passes", "prune-ffn", "--ffn-keep", "5000"], "ffn_keep keeps 5000 feed-forward neurons per layer, but the"),
    (["--passes", "drop-layers", "--importance", "magic"], "unknown importance 'magic'; known: measured, random"),
])
def test_bad_pruning_targets_are_refused_in_one_line(tiny_mt5, tmp_path, args, message):
    result = run_cli("compress", "--model", str(tiny_mt5), "--output", str(tmp_path / "out"), "--no-quality", *args)
    stderr = result.stderr.decode().strip()
    assert result.returncode == 2 and message in stderr and len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()


def load_model_copy(model):
    """An independent copy of ``model`` (the passes rebuild, but the test zeroes weights in place)."""
    import copy

    return copy.deepcopy(model)
