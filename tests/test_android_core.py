"""The Android app's pure-Kotlin core (android_demo/core), compiled with Debian's Kotlin 1.3 and run on the JVM with
JUnit 4 against golden files the Python side writes: tokenizer ids, decoding replayed from the Python LiteRT run,
and refusal of bad exports. ``make test`` installs the toolchain first (``make jvm-toolchain``); where it cannot be
installed, these tests skip and say so in one line.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.android_golden import write_decoding_golden, write_real_golden, write_tokenizer_golden
from tests.conftest import REPO_ROOT, run_cli

SOURCES = [REPO_ROOT / "android_demo" / "core" / "src", REPO_ROOT / "android_demo" / "jvm-litert" / "src"]
JARS = Path("/usr/share/java")
TEST_CLASSES = ["dev.mt5lite.core.TokenizerParityTest", "dev.mt5lite.core.DecodingParityTest",
                "dev.mt5lite.core.ManifestTest", "dev.mt5lite.litert.RealLiteRtTest"]


def _toolchain() -> list[Path]:
    """The JUnit classpath, or a skip naming what is missing."""
    jars = [JARS / "junit4.jar", JARS / "hamcrest-core.jar", JARS / "kotlin-stdlib.jar", JARS / "jna.jar"]
    missing = [str(j) for j in jars if not j.is_file()] + [t for t in ("kotlinc", "java") if not shutil.which(t)]
    if missing:
        pytest.skip(f"JVM toolchain not installed ({', '.join(missing)}): run make jvm-toolchain (Debian kotlin, "
                    "junit4, libjna-java)")
    return jars


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The core, the JVM LiteRT binding and their tests compiled into one jar, at Kotlin language level 1.3."""
    jars = _toolchain()
    out = tmp_path_factory.mktemp("jvm") / "core-tests.jar"
    sources = sorted(str(p) for root in SOURCES for p in root.rglob("*.kt"))
    done = subprocess.run(["kotlinc", "-language-version", "1.3", "-api-version", "1.3", "-jvm-target", "1.8",
                           "-nowarn", "-cp", ":".join(map(str, jars)), "-d", str(out), *sources],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, jars


@pytest.fixture(scope="module")
def golden(tflite_fp32, tflite_int8, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("golden")
    write_tokenizer_golden(directory)
    write_decoding_golden(tflite_fp32, directory)
    write_real_golden({"fp32": tflite_fp32, "int8": tflite_int8}, directory)
    return directory


def _junit(compiled, golden: Path, test_class: str) -> str:
    jar, jars = compiled
    done = subprocess.run(["java", f"-Dgolden.dir={golden}", "-cp", ":".join(map(str, [jar, *jars])),
                           "org.junit.runner.JUnitCore", test_class], capture_output=True, text=True, timeout=900)
    report = REPO_ROOT / "build" / "reports" / f"jvm-{test_class.rsplit('.', 1)[-1]}.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(done.stdout + done.stderr, encoding="utf-8")
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return done.stdout


def test_kotlin_tokenizer_gives_sentencepieces_ids(compiled, golden):
    out = _junit(compiled, golden, TEST_CLASSES[0])
    assert "0 mismatches" in out and "OK (3 tests)" in out


def test_kotlin_decoding_replays_the_python_litert_run_token_for_token(compiled, golden):
    out = _junit(compiled, golden, TEST_CLASSES[1])
    assert "greedy: 60 of 60 token-identical" in out and "4-beam: 20 of 20 token-identical" in out, out


def test_kotlin_core_refuses_bad_exports(compiled, golden):
    assert "OK (6 tests)" in _junit(compiled, golden, TEST_CLASSES[2])


def test_kotlin_core_on_real_litert_gives_the_python_runtimes_tokens(compiled, golden):
    out = _junit(compiled, golden, TEST_CLASSES[3])
    for export in ("fp32", "int8"):
        assert f"{export} export, greedy: 600 of 600 token-identical" in out, out
        assert f"{export} export, 4-beam: 100 of 100 token-identical" in out, out
        assert "ms per 4-beam token on the JVM (the beams in one call of decoder/decoder_b4)" in out, out


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "src" / "main").mkdir(parents=True)
    (app / "src" / "main" / "AndroidManifest.xml").write_text("<manifest/>", encoding="utf-8")
    return app


def test_android_assets_copy_the_export_by_its_manifest_with_samples_and_golden_outputs(tflite_fp32, tmp_path):
    import json

    from mt5lite.data import read_task_pairs
    from mt5lite.exporters.apps.android_assets import bundle_for_android
    from mt5lite.manifest import load_manifest

    app = _app(tmp_path)
    written = bundle_for_android(tflite_fp32, app, read_task_pairs())
    assets = app / "src" / "main" / "assets"
    manifest = load_manifest(assets / "model")  # every copied file has the manifest's sha256
    assert sorted(p.name for p in (assets / "model").iterdir()) == sorted([*manifest.files, "manifest.json"])
    samples = json.loads((assets / "samples.json").read_text(encoding="utf-8"))
    assert samples["prompt"] == "{task} {lang}: {text}" and samples["tasks"] == ["number", "words"]
    assert len(samples["languages"]) == 10 and len(samples["samples"]) == 10 * 2 * 5
    golden = json.loads((assets / "golden.json").read_text(encoding="utf-8"))
    assert written["golden_cases"] == len(golden["cases"]) == 60 and golden["export_id"] == manifest.export_id
    assert {c["beams"] for c in golden["cases"]} == {1, 4} and all(c["ids"][-1] == 1 for c in golden["cases"])


def test_android_assets_refuse_an_onnx_export_or_a_folder_that_is_not_the_app(static_export, tflite_fp32, tmp_path):
    app = _app(tmp_path)
    result = run_cli("android-assets", "--export", str(static_export), "--app", str(app))
    assert result.returncode == 2 and b"is an onnxruntime export; the app runs LiteRT" in result.stderr
    result = run_cli("android-assets", "--export", str(tflite_fp32), "--app", str(tmp_path))
    assert result.returncode == 2 and b"is not an Android app module" in result.stderr
    assert b"Traceback" not in result.stderr and not (app / "src" / "main" / "assets").exists()
