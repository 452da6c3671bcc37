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

from tests.android_golden import write_decoding_golden, write_tokenizer_golden
from tests.conftest import REPO_ROOT

CORE = REPO_ROOT / "android_demo" / "core" / "src"
JARS = Path("/usr/share/java")
TEST_CLASSES = ["dev.mt5lite.core.TokenizerParityTest", "dev.mt5lite.core.DecodingParityTest",
                "dev.mt5lite.core.ManifestTest"]


def _toolchain() -> list[Path]:
    """The JUnit classpath, or a skip naming what is missing."""
    jars = [JARS / "junit4.jar", JARS / "hamcrest-core.jar", JARS / "kotlin-stdlib.jar"]
    missing = [str(j) for j in jars if not j.is_file()] + [t for t in ("kotlinc", "java") if not shutil.which(t)]
    if missing:
        pytest.skip(f"JVM toolchain not installed ({', '.join(missing)}): run make jvm-toolchain (Debian kotlin, "
                    "junit4, libjna-java)")
    return jars


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The core and its tests compiled into one jar, at Kotlin language level 1.3."""
    jars = _toolchain()
    out = tmp_path_factory.mktemp("jvm") / "core-tests.jar"
    sources = sorted(str(p) for p in CORE.rglob("*.kt"))
    done = subprocess.run(["kotlinc", "-language-version", "1.3", "-api-version", "1.3", "-jvm-target", "1.8",
                           "-nowarn", "-cp", ":".join(map(str, jars)), "-d", str(out), *sources],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, jars


@pytest.fixture(scope="module")
def golden(tflite_fp32, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("golden")
    write_tokenizer_golden(directory)
    write_decoding_golden(tflite_fp32, directory)
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
