"""Random models with the exact configs of google/mt5-small and google/umt5-small (slow: each builds and caches
about 1.2 GB once). The export test writes each model's sizes to ``build/reports/<name>-shape.json``."""

from __future__ import annotations

import pytest

from mt5lite.paths import BUILD_DIR
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.torch_reference import TorchReference
from tests.fixtures import REAL_CONFIGS, random_real_model

pytestmark = pytest.mark.slow

#: config -> its parameter count. umT5's: mt5-small's layers, a 256,384-row embedding and lm_head, and a bias
#: table (32 buckets x 6 heads) in each of the 7 self-attention layers past block 0 of each stack.
PARAMETERS = {"google/mt5-small": 300_176_768, "google/umt5-small": 306_601_984}


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_random_model_has_the_real_shape_and_generates(name):
    reference = TorchReference(random_real_model(name))
    config = reference.model.config
    for key, value in REAL_CONFIGS[name].items():
        if key not in ("model_type", "dropout_rate"):
            assert getattr(config, key) == value, key
    assert config.model_type == REAL_CONFIGS[name]["model_type"]
    assert sum(p.numel() for p in reference.model.parameters()) == PARAMETERS[name]
    ids = reference.generate_ids(["words en: 12"], DecodingOptions(max_new_tokens=4))[0]
    assert 1 <= len(ids) <= 4 and all(t < reference.tokenizer.piece_count for t in ids)


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_random_model_onnx_export_matches_pytorch_and_reports_its_sizes(name, tmp_path):
    from mt5lite.data import read_task_pairs
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
    from mt5lite.reports import markdown_table, write_report
    from mt5lite.verification.comparison import directory_bytes
    from mt5lite.verification.parity import ParityOptions, parity_report

    model = random_real_model(name)
    out = tmp_path / "onnx"
    result = export_onnx(model, out, OnnxExportConfig(max_source_length=64, max_target_length=32,
                                                      validate_samples=4))
    report = parity_report(model, out, read_task_pairs()[::60], ParityOptions(beam_samples=4))
    # Logits reach ~135 on these random models, where fp32 PyTorch itself is 1.3e-4 from fp64: the tolerance scales.
    config = OnnxExportConfig()
    assert report["max_abs_logit_diff"] <= config.atol + config.rtol * report["max_abs_logit"]
    assert report["greedy_agreement"] == 1.0 and report["beam_agreement"] == 1.0

    quantize_export(out, tmp_path / "weight-int8", QuantizeConfig(recipe="weight-int8"), gate=False)
    sizes = {"checkpoint": directory_bytes(model), "onnx fp32": directory_bytes(out),
             "onnx weight-int8": directory_bytes(tmp_path / "weight-int8")}
    assert result.manifest.weights["unique_tensors"] < result.manifest.weights["tensors"]
    assert sizes["onnx fp32"] < 1.05 * sizes["checkpoint"]  # the embedding both graphs use is stored once
    write_report({"config": name, "parameters": PARAMETERS[name], "sizes_bytes": sizes,
                  "parity": {key: report[key] for key in ("max_abs_logit_diff", "max_abs_logit", "greedy_agreement",
                                                         "beam_agreement", "n", "beam_n")}},
                 BUILD_DIR / "reports" / f"{name.split('/')[-1]}-shape.json",
                 f"# {name}, random weights: sizes\n\n"
                 + markdown_table(["what", "MB"], [[what, round(size / 1e6, 1)] for what, size in sizes.items()]))
