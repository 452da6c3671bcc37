"""Shared fixtures: tiny random models derived from real configs, the demo model, a CLI runner."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mt5lite.cli import EXTRA_OF_MODULE
from mt5lite.paths import DEMO_MODEL
from tests.fixtures import build_random_model, tiny_config

REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("USE_TF", "0")

#: Every registered model family (``mt5lite.families``) -> the published config its tiny test model derives from.
#: The parity, quantization and TFLite tests run on each (``tests/test_families.py`` checks that none is missing).
TINY_FAMILIES = {"mt5": "google/mt5-small", "t5": "t5-small", "t5-v1.1": "google/flan-t5-small",
                 "umt5": "google/umt5-small"}


#: The inner loop's cut (make test-quick): tests that take 4 s or more here, their fixtures' setup included (a
#: conversion, training, an ExecuTorch or TFLite int8 export, a Kotlin compile, a CLI subprocess importing torch),
#: measured with --durations; every parametrisation of a listed test is heavy. make test runs them all.
HEAVY_TESTS = frozenset({
    "tests/test_natural_train.py::test_a_tiny_run_writes_a_loadable_checkpoint_and_a_report_of_every_language",
    "tests/test_cli.py::test_a_malicious_pickle_never_runs",
    "tests/test_cli.py::test_evaluate_writes_json_and_markdown",
    "tests/test_cli.py::test_generate_prints_what_the_python_api_returns",
    "tests/test_cli.py::test_generate_with_an_onnx_export",
    "tests/test_cli.py::test_generate_with_the_default_model",
    "tests/test_cli.py::test_killed_export_leaves_no_output_directory",
    "tests/test_cli.py::test_parity_report",
    "tests/test_cli.py::test_pickle_only_checkpoint_without_the_flag",
    "tests/test_compression.py::test_a_corpus_that_covers_nothing_is_refused",
    "tests/test_compression.py::test_a_model_with_fewer_rows_than_its_tokenizer_is_refused",
    "tests/test_compression.py::test_a_vocabulary_smaller_than_the_special_and_byte_pieces_is_refused",
    "tests/test_compression.py::test_trimmed_checkpoint_is_an_ordinary_hugging_face_checkpoint",
    "tests/test_compression.py::test_trimmed_demo_tokenizes_every_heldout_text_the_same_up_to_the_id_map",
    "tests/test_data.py::test_heldout_numbers_are_never_training_examples",
    "tests/test_executorch.py::test_demo_fp32_matches_pytorch_on_held_out_pairs",
    "tests/test_executorch.py::test_fp32_matches_pytorch_greedy_and_beam",
    "tests/test_executorch.py::test_demo_static_int8_is_calibrated_smaller_and_passes_the_gate",
    "tests/test_executorch.py::test_the_export_keeps_the_contract_in_one_program",
    "tests/test_families.py::test_tflite_builtin_ops_only_and_litert_matches_onnx_fp32",
    "tests/test_faults.py::test_a_full_or_read_only_disk_is_one_line_and_leaves_nothing",
    "tests/test_faults.py::test_corrupted_files_quick_subset",
    "tests/test_generation.py::test_beam_search_matches_generate_on_the_demo_model",
    "tests/test_onnx_to_tf_ops.py::test_translation_matches_onnxruntime",
    "tests/test_outliers.py::test_default_recipes_pass_the_gate_on_the_strong_fixture",
    "tests/test_outliers.py::test_full_int8_tflite_keeps_a_rotated_residual_stream_float",
    "tests/test_outliers.py::test_full_int8_tflite_passes_the_gate_on_the_strong_fixture",
    "tests/test_outliers.py::test_lookup_tables_with_outlier_columns_get_a_range_per_column",
    "tests/test_outliers.py::test_products_int8_cannot_hold_stay_wide",
    "tests/test_outliers.py::test_residual_outliers_from_training_are_rotated_and_a_plain_stream_is_not",
    "tests/test_outliers.py::test_without_smoothing_the_gate_refuses_and_names_the_outliers",
    "tests/test_pipeline_report.py::test_the_report_holds_every_stage_of_the_run",
    "tests/test_prune.py::test_a_pruned_model_exports_to_onnx_and_tflite_within_tolerance",
    "tests/test_prune.py::test_bad_pruning_targets_are_refused_in_one_line",
    "tests/test_quantize.py::test_a_killed_run_leaves_nothing_the_next_run_does_not_sweep",
    "tests/test_quantize.py::test_other_int8_forms",
    "tests/test_quantize.py::test_quantize_cli_exits_1_when_the_gate_fails",
    "tests/test_quantize.py::test_quantize_cli_writes_export_and_report",
    "tests/test_quantize.py::test_refuses_quantized_source_existing_output_and_bad_options",
    "tests/test_quantize.py::test_static_int8_holds_int8_weights_and_qdq_nodes",
    "tests/test_sensitivity.py::test_every_variant_is_measured",
    "tests/test_sensitivity.py::test_one_row_per_group_then_the_default_recipe_and_every_group",
    "tests/test_sharing.py::test_shared_layers_are_stored_once_in_tflite_too",
    "tests/test_tflite.py::test_no_flex_ops_in_any_default_build",
    "tests/test_tflite_splice.py::test_stand_in_lm_head_matches_converting_the_real_weights",
    "tests/test_training.py::test_a_killed_training_run_resumes_from_its_checkpoint",
    "tests/test_training.py::test_data_parallel_runs_measure_quality_after_the_last_pass_only",
    "tests/test_training.py::test_the_lite_recipe_chains_trim_prune_distill_finetune",
    "tests/test_training.py::test_two_processes_average_gradients_and_only_rank_zero_writes",
    "tests/test_workflow.py::test_a_changed_option_or_input_reruns_that_stage_and_what_builds_on_it",
    "tests/test_workflow.py::test_a_failed_gate_stops_the_pipeline_names_the_stage_and_keeps_the_export",
    "tests/test_workflow.py::test_a_run_builds_every_stage_then_reuses_every_stage",
    "tests/test_workflow.py::test_compression_and_executorch_run_as_stages_too",
    "tests/test_registries.py::test_every_engine_opens_its_exports",
    "tests/test_tflite.py::test_the_embedding_is_stored_once_for_both_signatures",
})

#: Fixtures whose setup alone takes 4 s or more (a Kotlin compile, an ExecuTorch or TFLite int8 export, a whole
#: pipeline run, a sensitivity analysis): every test that asks for one is heavy too.
HEAVY_FIXTURES = frozenset({"compiled", "golden", "executorch_fp32", "tflite_int8", "tiny_pte", "tiny_run", "analysis"})


#: The suite runs on the [export,dev] install; the extras beyond it are optional. A test marked ``needs(extra)``, or
#: asking for a fixture below, skips with one line when a module of that extra (``EXTRA_OF_MODULE``) is missing.
EXTRA_FIXTURES = {"executorch_fp32": "executorch", "tiny_pte": "executorch", "training_corpus": "train"}


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a blocked or half-installed module
        return True


def extra_missing(extra: str) -> str | None:
    """The first module of ``extra`` (pyproject.toml's optional dependencies) that is not installed, or None."""
    return next((m for m, e in EXTRA_OF_MODULE.items() if e == extra and _missing(m)), None)


def pytest_configure(config: pytest.Config) -> None:
    """Stop in one line when the install lacks what every test needs (the [export] extra)."""
    missing = extra_missing("export")
    if missing:
        pytest.exit(f"the tests need the export extra ({missing} is not installed): run make install, "
                    "or pip install -e '.[export,dev]'", returncode=4)


def _needed_extras(item: pytest.Item) -> set[str]:
    marked = {mark.args[0] for mark in item.iter_markers("needs")}
    return marked | {EXTRA_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in EXTRA_FIXTURES}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the ``HEAVY_TESTS`` and the tests using ``HEAVY_FIXTURES`` ``heavy`` (make test-quick leaves them out);
    skip, with one line, each test whose extra is not installed."""
    missing = {}
    for item in items:
        if item.nodeid.split("[")[0] in HEAVY_TESTS or HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.heavy)
        for extra in sorted(_needed_extras(item)):
            if extra not in missing:  # looked up once per extra, not once per test
                missing[extra] = extra_missing(extra)
            if module := missing[extra]:
                item.add_marker(pytest.mark.skip(
                    reason=f"needs the {extra} extra ({module} is not installed): pip install -e '.[{extra}]'"))


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The bundled, trained demo model."""
    return DEMO_MODEL


@pytest.fixture(scope="session", params=list(TINY_FAMILIES), ids=lambda family: f"tiny-{family}")
def tiny_model(request, tmp_path_factory) -> Path:
    """A tiny random model of each family, derived from its published config (mT5 and T5 v1.1: untied,
    gated-GELU; T5: tied, ReLU; umT5: mT5's with a relative-position bias in every layer)."""
    out = tmp_path_factory.mktemp(request.param)
    return build_random_model(tiny_config(TINY_FAMILIES[request.param]), out / "model", seed=7)


@pytest.fixture(scope="session")
def tiny_mt5(tmp_path_factory) -> Path:
    """A tiny random model derived from google/mt5-small's config."""
    return build_random_model(tiny_config("google/mt5-small"), tmp_path_factory.mktemp("tiny_mt5") / "m", seed=3)


@pytest.fixture(scope="session")
def demo_export(demo_model, tmp_path_factory):
    """The demo model's fp32 ONNX export (dynamic shapes, S=64, T_max=32)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("exports") / "demo"
    export_onnx(demo_model, out, OnnxExportConfig(max_source_length=64, max_target_length=32))
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_model, tmp_path_factory):
    """Each tiny model's fp32 ONNX export (S=32, T_max=12)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("exports") / "tiny"
    export_onnx(tiny_model, out, OnnxExportConfig(max_source_length=32, max_target_length=12))
    return out


@pytest.fixture(scope="session")
def static_export(demo_model, tmp_path_factory) -> Path:
    """The demo model's static-shape fp32 ONNX export (batch 1, S=32, T_max=32), the source of TFLite builds."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("static") / "onnx"
    export_onnx(demo_model, out, OnnxExportConfig(max_source_length=32, max_target_length=32, static_shapes=True))
    return out


@pytest.fixture(scope="session")
def static_int8(static_export, tmp_path_factory) -> Path:
    """The static export quantized by the default (static int8) recipe: it gets its batched step and its
    source-length buckets again, from its quantized graphs."""
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export

    out = tmp_path_factory.mktemp("static-int8") / "int8"
    quantize_export(static_export, out, QuantizeConfig(samples=100, max_decoder_steps=64), gate=False)
    return out


@pytest.fixture(scope="session")
def tflite_fp32(static_export, tmp_path_factory) -> Path:
    """The static export converted to TFLite fp32."""
    from mt5lite.exporters.tflite.export import export_tflite

    out = tmp_path_factory.mktemp("tflite") / "fp32"
    export_tflite(static_export, out, "fp32")
    return out


def run_cli(*args: str | bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m mt5lite ARGS`` in a subprocess; return the completed process (bytes output)."""
    env = dict(os.environ, USE_TF="0", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mt5lite", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="session")
def tflite_int8(static_export, tmp_path_factory) -> Path:
    """The demo model's full-int8 TFLite export (calibrated on the project's multilingual samples)."""
    from mt5lite.exporters.tflite.export import export_tflite

    out = tmp_path_factory.mktemp("tflite") / "int8"
    export_tflite(static_export, out, "int8", gate=False)
    return out


@pytest.fixture(scope="session")
def executorch_fp32(demo_model, tmp_path_factory) -> Path:
    """The demo model's fp32 ExecuTorch export (one model.pte, S=32, T_max=32)."""
    from mt5lite.exporters.executorch.export import ExecutorchExportConfig, export_executorch

    out = tmp_path_factory.mktemp("executorch") / "demo-fp32"
    export_executorch(demo_model, out, ExecutorchExportConfig(max_source_length=32, max_target_length=32))
    return out
