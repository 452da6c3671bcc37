"""Every registered model family (``mt5lite.families``) through the pipeline on a tiny model derived from its
published config: fp32 ONNX parity (here and in ``tests/test_onnx_export.py``, which run on ``tiny_model`` too),
static int8, and TFLite fp32 and full int8 with builtin ops only, the LiteRT run held against ONNX fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mt5lite.errors import CheckpointError
from mt5lite.families import FAMILIES, family_of
from mt5lite.manifest import load_manifest
from tests.conftest import TINY_FAMILIES
from tests.fixtures import REAL_CONFIGS

#: The fp32 ONNX export of a tiny model: dynamic shapes for parity and int8, static (batch 1) for TFLite.
SOURCE, TARGET = 32, 12


def test_every_tiny_fixture_is_of_its_own_family():  # tests/test_registries.py checks that none is missing
    for family, config in TINY_FAMILIES.items():
        assert family_of(REAL_CONFIGS[config]) == family, (family, config)


def test_families_are_told_apart_and_an_unknown_one_lists_them():
    assert family_of({"model_type": "t5", "feed_forward_proj": "relu"}) == "t5"
    assert family_of({"model_type": "t5", "feed_forward_proj": "gated-gelu"}) == "t5-v1.1"
    assert family_of({"model_type": "t5"}) == "t5"  # transformers' default feed-forward is ReLU
    assert family_of({"model_type": "umt5", "feed_forward_proj": "relu"}) == "umt5"
    with pytest.raises(CheckpointError, match=r"model_type is 'bart'; supported families: t5 \(model_type t5\), "
                                              r"t5-v1.1 \(model_type t5\), mt5 \(model_type mt5\), umt5"):
        family_of({"model_type": "bart"})


def test_umt5_has_a_bias_table_per_layer_and_mt5_one_per_stack(tiny_model):
    from mt5lite.checkpoint import inspect_checkpoint, load_model
    from mt5lite.exporters.graphs import DecoderStepGraph

    family = inspect_checkpoint(tiny_model).family
    model = load_model(tiny_model)
    step = DecoderStepGraph(model, TARGET)
    layers = model.config.num_decoder_layers
    assert step.tables == (layers if FAMILIES[family].per_layer_bias else 1)
    tables = [getattr(step, f"position_bias_{index}") for index in range(step.tables)]
    assert all(table.shape == (TARGET, model.config.num_heads, TARGET) for table in tables)
    if step.tables > 1:  # each layer's own table, not block 0's repeated
        assert not any(np.allclose(tables[0].numpy(), table.numpy()) for table in tables[1:])


@pytest.fixture(scope="session")
def tiny_static(tiny_model, tmp_path_factory) -> Path:
    """Each family's tiny model exported with static shapes (batch 1), the source of its TFLite builds."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("family-static") / "onnx"
    export_onnx(tiny_model, out, OnnxExportConfig(max_source_length=SOURCE, max_target_length=TARGET,
                                                  static_shapes=True))
    return out


def test_manifest_names_the_family(tiny_model, tiny_export):
    from mt5lite.checkpoint import inspect_checkpoint

    manifest = load_manifest(tiny_export)
    assert manifest.source["family"] == inspect_checkpoint(tiny_model).family


def test_static_int8_converts_and_stays_close(tiny_model, tiny_export, tmp_path):
    from mt5lite.data import read_task_pairs
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
    from mt5lite.verification.parity import ParityOptions, parity_report

    out = tmp_path / "int8"
    quantize_export(tiny_export, out, QuantizeConfig(), gate=False)
    manifest = load_manifest(out)
    assert manifest.precision == "int8" and manifest.quantization.recipe == "static-int8"
    ops = {node.op_type for node in onnx.load(str(out / "decoder.onnx"), load_external_data=False).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Random tiny models have flat distributions, so the gate (a trained model's) does not apply; a broken
    # quantization (an unmasked -1e9 range, a wrong scale) is far outside these bounds.
    report = parity_report(tiny_model, out, read_task_pairs()[::40], ParityOptions(max_new_tokens=TARGET, num_beams=1))
    assert report["max_abs_logit_diff"] <= 0.25 * report["max_abs_logit"]
    assert report["token_agreement"] >= 0.6


def test_tflite_builtin_ops_only_and_litert_matches_onnx_fp32(tiny_static, tmp_path):
    from mt5lite.exporters.tflite.export import export_tflite
    from mt5lite.exporters.tflite.inspection import read_signatures

    results = {precision: export_tflite(tiny_static, tmp_path / precision, precision, gate=False)
               for precision in ("fp32", "int8")}
    for precision, result in results.items():
        for role, names in result.manifest.engine_info["ops"].items():
            assert "FULLY_CONNECTED" in names, (precision, role)
            assert not [n for n in names if n.startswith("Flex") or n == "CUSTOM"], (precision, role, names)
    for role, signature in read_signatures(tmp_path / "int8" / "model.tflite")[0].items():
        weights = [op.input_dtypes[1] for op in signature.ops if op.name == "FULLY_CONNECTED"]
        assert weights and all(w == "int8" for w in weights), role
    # LiteRT fp32 against ONNX Runtime fp32, teacher-forced on held-out multilingual sentences, every output.
    validation = results["fp32"].validation
    assert validation.checked_against_tolerance and validation.samples >= 8
    assert {row["output"] for row in validation.rows} == {"encoder_hidden_states", "cross_k", "cross_v", "logits"}
    for row in validation.rows:
        assert row["max_abs_diff"] <= row["tolerance"], row
