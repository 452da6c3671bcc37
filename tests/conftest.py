"""Shared fixtures: tiny random models derived from real configs, the demo model, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mt5lite.paths import DEMO_MODEL
from tests.fixtures import build_random_model, tiny_config

REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("USE_TF", "0")

#: Every registered model family (``mt5lite.families``) -> the published config its tiny test model derives from.
#: The parity, quantization and TFLite tests run on each (``tests/test_families.py`` checks that none is missing).
TINY_FAMILIES = {"mt5": "google/mt5-small", "t5": "t5-small", "t5-v1.1": "google/flan-t5-small",
                 "umt5": "google/umt5-small"}


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
