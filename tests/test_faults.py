"""The fault matrix (issue 15) on the demo model's files: a quick seeded subset here, every row in full with
``make test-faults`` (``-m faults``), which writes ``build/reports/faults.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fault_matrix import DEFECTS, run_matrix, summary

SEED = 15
FULL_CASES = int(os.environ.get("FAULT_CASES", "1000"))
REPORT = Path(__file__).resolve().parents[1] / "build" / "reports" / "faults.json"


@pytest.fixture(scope="module")
def pristine(demo_model, demo_export, tflite_int8) -> dict[str, Path]:
    return {"checkpoint": demo_model, "onnx": demo_export, "tflite": tflite_int8}


def _defects(results: list[dict]) -> list[str]:
    return [f"case {r['index']} {r['kind']} {r['mutation']} rehash={r['rehash']}: {r['outcome']}: {r['message']}"
            for r in results if r["outcome"] in DEFECTS]


def _check(results: list[dict]) -> None:
    defects = _defects(results)
    assert not defects, f"{len(defects)} of {len(results)} cases:\n" + "\n".join(defects[:40])
    for r in results:  # what cannot be a valid file of its kind must be refused, never run
        if r["mutation"] in ("empty", "lfs-pointer") or r["mutation"].startswith("edit-"):
            assert r["outcome"] == "named", r


def test_corrupted_files_quick_subset(pristine, tmp_path):
    """40 seeded cases, every file kind: no crash, no raw traceback, every error names its file."""
    _check(run_matrix(pristine, tmp_path / "scratch", SEED, 40))


@pytest.mark.faults
def test_corrupted_files_full_matrix(pristine, tmp_path):
    results = run_matrix(pristine, tmp_path / "scratch", SEED, FULL_CASES)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report["corrupted_files"] = {"seed": SEED, **summary(results), "defects": _defects(results)}
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    _check(results)


# --- concurrency: one generator shared by threads --------------------------------------------------------------

def _concurrent(generator, texts: list[str], threads: int, requests: int) -> tuple[dict, list]:
    """Each of ``threads`` threads sends ``requests`` texts (in its own order) to ``generator``; returns the
    outputs by text and what each thread saw as its backend's runners."""
    from concurrent.futures import ThreadPoolExecutor

    def worker(offset: int) -> list[tuple[str, str, int]]:
        done = []
        for i in range(requests):
            text = texts[(offset + i) % len(texts)]
            runners = getattr(generator.backend, "_runners", None)
            done.append((text, generator.generate([text])[0], id(runners()) if runners else 0))
        return done

    with ThreadPoolExecutor(threads) as pool:
        results = [r for part in pool.map(worker, range(0, threads * 7, 7)) for r in part]
    outputs: dict[str, set] = {}
    for text, output, _ in results:
        outputs.setdefault(text, set()).add(output)
    return outputs, results


@pytest.mark.parametrize("threads, requests", [(8, 12), pytest.param(8, 100, marks=pytest.mark.faults)])
def test_threads_sharing_one_onnx_generator_get_the_sequential_results(demo_export, threads, requests):
    from mt5lite.data import read_task_pairs
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator

    texts = [p.source for p in read_task_pairs()[:50]]
    generator = OnnxGenerator(demo_export, threads=1)
    sequential = {text: generator.generate([text])[0] for text in texts}
    outputs, results = _concurrent(generator, texts, threads, requests)
    assert len(results) == threads * requests
    assert all(found == {sequential[text]} for text, found in outputs.items())


def test_threads_sharing_one_litert_generator_get_one_interpreter_each(tflite_int8):
    from mt5lite.data import read_task_pairs
    from mt5lite.runtimes.litert import LiteRTGenerator

    texts = [p.source for p in read_task_pairs()[:12]]
    generator = LiteRTGenerator(tflite_int8, threads=1)
    sequential = {text: generator.generate([text])[0] for text in texts}
    main_runners = id(generator.backend._runners())
    outputs, results = _concurrent(generator, texts, 4, 6)
    assert all(found == {sequential[text]} for text, found in outputs.items())
    seen = {runner for _, _, runner in results}
    assert len(seen) == 4 and main_runners not in seen  # one interpreter set per thread, none shared


# --- version skew: newer than what runs here --------------------------------------------------------------------

def _rehashed_copy(export: Path, target: Path, edit) -> Path:
    import hashlib
    import shutil

    shutil.copytree(export, target)
    edit(target)
    manifest = json.loads((target / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((target / name).read_bytes()).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _edit_graph(field: str, value: int):
    def edit(folder: Path) -> None:
        import onnx

        model = onnx.load(str(folder / "decoder.onnx"), load_external_data=False)
        if field == "ir_version":
            model.ir_version = value
        else:
            next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = value
        (folder / "decoder.onnx").write_bytes(model.SerializeToString())
    return edit


@pytest.mark.parametrize("field, value, words", [
    ("ir_version", 99, ["IR version 99", "reads up to 1", "upgrade onnxruntime"]),
    ("opset", 99, ["opset 99", "reads up to 2", "upgrade onnxruntime"]),
])
def test_a_graph_newer_than_onnx_runtime_names_both_versions(demo_export, tmp_path, field, value, words):
    from mt5lite.errors import ModelFileError
    from mt5lite.runtimes.generators import open_export

    folder = _rehashed_copy(demo_export, tmp_path / "newer", _edit_graph(field, value))
    with pytest.raises(ModelFileError) as caught:
        open_export(folder)
    message = str(caught.value)
    assert "decoder.onnx" in message and "\n" not in message
    assert all(word in message for word in words), message


def test_a_manifest_newer_than_the_toolkit_names_both_versions(demo_export, tmp_path):
    from mt5lite.errors import ModelFileError
    from mt5lite.manifest import FORMAT_VERSION
    from mt5lite.runtimes.generators import open_export

    def edit(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["format_version"] = FORMAT_VERSION + 1
        (folder / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ModelFileError, match=f"newer mt5lite \\(format version {FORMAT_VERSION + 1}\\); this mt5lite "
                                             f"reads version {FORMAT_VERSION}: upgrade mt5lite"):
        open_export(_rehashed_copy(demo_export, tmp_path / "newer", edit))


# --- disk full, read-only output ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of 1 MB (and a read-only one) under ``tmp_path``; skips where mounting is not allowed."""
    import subprocess

    mounts = {"full": tmp_path / "full", "readonly": tmp_path / "readonly"}
    for name, options in (("full", "size=1m"), ("readonly", "size=1m,ro")):
        mounts[name].mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mounts[name])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mounts
    for path in mounts.values():
        subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.parametrize("command", [("quantize", "--export", "{demo_export}", "--recipe", "dynamic-int8", "--no-gate"),
                                     ("export", "onnx", "--model", "{demo_model}")], ids=["quantize", "export-onnx"])
@pytest.mark.parametrize("disk, reason", [("full", "no space left on device; free some space"),
                                          ("readonly", "read-only file system; choose a writable output")])
def test_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(small_disk, demo_export, demo_model, command, disk,
                                                                  reason):
    from tests.conftest import run_cli

    args = [a.format(demo_export=demo_export, demo_model=demo_model) for a in command]
    result = run_cli(*args, "--output", str(small_disk[disk] / "out"))
    stderr = result.stderr.decode()
    errors = [line for line in stderr.splitlines() if "error" in line]  # progress bars aside
    assert result.returncode == 2 and "Traceback" not in stderr, stderr
    assert len(errors) == 1 and reason in errors[0], stderr
    assert list(small_disk[disk].iterdir()) == []  # no output, no staging or scratch directory left
