"""Parameter sharing and magnitude pruning: shared weights are stored once by the exports (the files shrink by the
shared bytes), sharing survives training, a tied head keeps T5's rescaling, and zeros shrink only the zip."""

from __future__ import annotations

import pytest
import torch

from mt5lite.checkpoint import load_model
from mt5lite.compression.compress import compress, read_sentencepiece
from mt5lite.compression.sharing import ShareLayersConfig, TieEmbeddingsConfig
from mt5lite.compression.sparsity import MagnitudePruneConfig, magnitude_prune
from mt5lite.compression.training import FinetuneConfig
from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

SMALL = OnnxExportConfig(max_source_length=16, max_target_length=8)


def _weights(export) -> int:
    return (export / "weights.bin").stat().st_size


def test_shared_layers_are_stored_once_by_the_export(tiny_mt5, tmp_path):
    report = compress(tiny_mt5, tmp_path / "shared", ["share-layers"], {"share-layers": ShareLayersConfig(2)})
    shared_bytes = report["passes"][0]["details"]["shared_bytes_fp32"]
    model = load_model(tmp_path / "shared")  # an ordinary checkpoint: each block holds its identical copy
    for stack in (model.encoder, model.decoder):
        first, second = (stack.block[i].layer[-1].DenseReluDense.wo.weight for i in (0, 1))
        assert torch.equal(first, second)
    plain = export_onnx(tiny_mt5, tmp_path / "plain-onnx", SMALL)
    shared = export_onnx(tmp_path / "shared", tmp_path / "shared-onnx", SMALL)  # validated against PyTorch
    saved = _weights(tmp_path / "plain-onnx") - _weights(tmp_path / "shared-onnx")
    assert shared.manifest.weights["unique_tensors"] < plain.manifest.weights["unique_tensors"]
    assert abs(saved - shared_bytes) <= 0.05 * shared_bytes  # page alignment and small layer norms aside


def test_shared_layers_are_stored_once_in_tflite_too(demo_model, tflite_fp32, tmp_path):
    """The demo model with every block of a stack shared, through the static ONNX export into TFLite (each export
    validated against the one before): model.tflite shrinks by the shared bytes."""
    from mt5lite.exporters.tflite.export import export_tflite

    report = compress(demo_model, tmp_path / "shared", ["share-layers"], {"share-layers": ShareLayersConfig(3)})
    shared_bytes = report["passes"][0]["details"]["shared_bytes_fp32"]
    export_onnx(tmp_path / "shared", tmp_path / "onnx",
                OnnxExportConfig(max_source_length=32, max_target_length=32, static_shapes=True))
    export_tflite(tmp_path / "onnx", tmp_path / "tflite", "fp32")
    saved = (tflite_fp32 / "model.tflite").stat().st_size - (tmp_path / "tflite" / "model.tflite").stat().st_size
    assert abs(saved - shared_bytes) <= 0.05 * shared_bytes


@pytest.mark.needs("train")
def test_sharing_survives_fine_tuning_in_the_same_run(tiny_mt5, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("en\twords en: 12\ttwelve\nfr\tnumber fr: douze\t12\n" * 4, encoding="utf-8")
    configs = {"share-layers": ShareLayersConfig(2),
               "finetune": FinetuneConfig(train_data=pairs, max_steps=3, batch_size=4, learning_rate=1e-2)}
    compress(tiny_mt5, tmp_path / "out", list(configs), configs)
    trained, original = load_model(tmp_path / "out"), load_model(tiny_mt5)
    first, second = (trained.decoder.block[i].layer[0].SelfAttention.q.weight for i in (0, 1))
    before = original.decoder.block[0].layer[0].SelfAttention.q.weight
    assert torch.equal(first, second) and not torch.equal(first, before)


def test_tied_embeddings_hold_the_vocabulary_once_and_keep_t5s_output_rescaling(tiny_mt5, tmp_path):
    report = compress(tiny_mt5, tmp_path / "tied", ["tie-embeddings"], {"tie-embeddings": TieEmbeddingsConfig()})
    model = load_model(tmp_path / "tied")
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.get_input_embeddings().weight
    before, after = report["passes"][0]["parameters"]
    assert before - after == model.config.vocab_size * model.config.d_model
    # The export's own validation: PyTorch (rescaling the decoder output by d_model ** -0.5) against ONNX Runtime.
    export = export_onnx(tmp_path / "tied", tmp_path / "tied-onnx", SMALL)
    assert export.manifest.model.tie_word_embeddings


def test_magnitude_pruning_zeroes_weights_and_shrinks_only_the_zip(tiny_mt5):
    model, tokenizer = load_model(tiny_mt5), read_sentencepiece(tiny_mt5 / "spiece.model")
    model, _, report = magnitude_prune(model, tokenizer, MagnitudePruneConfig(sparsity=0.6))
    assert abs(report.details["sparsity"] - 0.6) < 0.01 and report.parameters[0] == report.parameters[1]
    before, after = report.details["zipped_bytes"]
    assert after < 0.8 * before
    assert model.lm_head.weight.abs().min() > 0 or (model.lm_head.weight == 0).float().mean() < 0.01
