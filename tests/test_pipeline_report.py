"""The pipeline report (`mt5lite pipeline-report`, the last step of `make export-tflite`): every stage of the run is
in it with every measure, each stage is compared with the one it was made from, and a compressed checkpoint with
its original."""

from __future__ import annotations

import json

from mt5lite.compression.compress import compress
from mt5lite.data import HELDOUT_TASK, read_task_pairs
from mt5lite.verification.pipeline import ReportSamples, pipeline_report, write_pipeline_report
from tests.conftest import run_cli

STAGE_KEYS = {"kind", "path", "precision", "bytes", "max_abs_logit_diff_vs_pytorch", "greedy_agreement",
              "beam_agreement", "exact_match", "chrf", "per_language", "ms_per_token"}
PAIRS = read_task_pairs(HELDOUT_TASK)[::30]  # 20 pairs, every language
SMALL = {"samples": ReportSamples(beam=4, logits=4, speed=2)}


def test_the_report_holds_every_stage_of_the_run(demo_model, static_export, tflite_int8, executorch_fp32, tmp_path):
    report = pipeline_report(demo_model, [("onnx", static_export), ("tflite", tflite_int8),
                                          ("executorch", executorch_fp32)], PAIRS, **SMALL)
    stages = report["stages"]
    assert list(stages) == ["pytorch", "onnx", "tflite", "executorch"]
    assert all(STAGE_KEYS <= set(stage) for stage in stages.values())
    assert all(set(stage["per_language"]) == {p.lang for p in PAIRS} for stage in stages.values())
    onnx, tflite = stages["onnx"], stages["tflite"]
    assert onnx["previous"] == "pytorch" and onnx["max_abs_logit_diff_vs_pytorch"] < 1e-3
    assert onnx["greedy_agreement"] == 1.0 and onnx["beam_agreement"] == 1.0
    assert tflite["previous"] == "onnx" and tflite["precision"] == "int8"  # made from the fp32 ONNX export
    assert 0 < tflite["max_abs_logit_diff_vs_previous"] and tflite["bytes"] < onnx["bytes"]
    executorch = stages["executorch"]  # made from the checkpoint, like the ONNX export
    assert executorch["kind"] == "executorch" and executorch["max_abs_logit_diff_vs_pytorch"] < 1e-3
    assert executorch["greedy_agreement"] == 1.0 and executorch["beam_agreement"] == 1.0
    paths = write_pipeline_report(report, tmp_path / "pipeline.json")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and all(p.stat().st_size for p in paths)
    markdown = paths[1].read_text(encoding="utf-8")
    assert all(f"| {name} |" in markdown for name in stages)
    assert json.loads(paths[0].read_text(encoding="utf-8"))["stages"].keys() == stages.keys()


def test_a_compressed_checkpoint_is_compared_with_its_original(demo_model, tmp_path):
    compress(demo_model, tmp_path / "trimmed", ["trim-vocab"], {})
    stages = pipeline_report(tmp_path / "trimmed", [], PAIRS, original_dir=demo_model, **SMALL)["stages"]
    assert list(stages) == ["original", "pytorch"]
    assert stages["pytorch"]["previous"] == "original"
    assert stages["pytorch"]["max_abs_logit_diff_vs_previous"] < 1e-4  # trimming keeps the kept ids' logits
    assert stages["pytorch"]["bytes"] < stages["original"]["bytes"]


def test_a_malformed_stage_is_refused_in_one_line(demo_model, tmp_path):
    result = run_cli("pipeline-report", "--model", str(demo_model), "--stage", "onnx", "--report",
                     str(tmp_path / "p.json"))
    assert result.returncode == 2 and not (tmp_path / "p.json").exists()
    assert result.stderr.decode().strip().count("\n") == 0 and "NAME=DIR" in result.stderr.decode()
