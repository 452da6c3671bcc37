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


#: Cases of the full matrix that once gave a defect, rerun in every quick run. 363: a bit flip in a per-channel
#: zero point of the TFLite model, which XNNPACK refuses only when the interpreter allocates.
ONCE_ESCAPED = (363,)


def test_cases_that_once_escaped_are_named(pristine, tmp_path):
    for index in ONCE_ESCAPED:
        results = run_matrix(pristine, tmp_path / "scratch", SEED, 1, start=index)
        _check(results)


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


def test_threads_sharing_one_litert_generator_get_one_compiled_model_each(tflite_int8):
    from mt5lite.data import read_task_pairs
    from mt5lite.runtimes.litert import LiteRTGenerator

    texts = [p.source for p in read_task_pairs()[:12]]
    generator = LiteRTGenerator(tflite_int8, threads=1)
    sequential = {text: generator.generate([text])[0] for text in texts}
    main_runners = id(generator.backend._runners())
    outputs, results = _concurrent(generator, texts, 4, 6)
    assert all(found == {sequential[text]} for text, found in outputs.items())
    seen = {runner for _, _, runner in results}
    assert len(seen) == 4 and main_runners not in seen  # one set of compiled models per thread, none shared


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


# --- fuzzed text through generate, both runtimes ----------------------------------------------------------------

#: Hand-made hostile inputs: broken UTF-8 (as the CLI hands it over: lone surrogates), NUL and controls, bidi marks,
#: ZWJ sequences, combining-mark storms, ten times the longest input, whitespace only, mixed scripts.
HOSTILE = [
    b"words fr: \xff\xfe12".decode("utf-8", "surrogateescape"), "words fr: \ud800", "\udfff", "\x00", "a\x00b",
    "words fr: 12\x00\x01\x02\x1b[31m", "\x7f\x80\x9f", "\u202eword fr: 21\u202c", "\u200f\u200eنص عربي\u200e",
    "👨\u200d👩\u200d👧\u200d👦 " * 20, "🏳️\u200d🌈", "e" + "\u0301" * 500, "Z̴̡̛̞͎̬̦̙̗̼͎̈́̂̓̔̑͐̆ͅ" * 40, "words de: 99" * 400,
    "x" * 20000, " ", "\t\n\r\u3000\u00a0\u2028\u2029", "", "words ja: 四千 число 42 مرحبا שלום नमस्ते",
    "\ufeffwords en: 7", "\ufffd\ufffe\uffff", "\U0010ffff\U000e0001", "<pad></s><unk>▁▁▁", "words fr: 1" + "\n" * 50,
]


def _texts():
    from hypothesis import strategies as st

    marks = st.sampled_from(["\u200d", "\u200e", "\u200f", "\u202e", "\u0301", "\u0489", "\x00", "\ufeff", " ", "\n"])
    return st.one_of(
        st.text(max_size=300),  # any code points but surrogates
        st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")),  # what the CLI gets from bytes
        st.lists(st.one_of(marks, st.characters()), max_size=400).map("".join),
        st.builds(lambda t, n: t * n, st.text(min_size=1, max_size=8), st.integers(1, 600)),  # long repeats
    )


def _run_text(generator, text: str) -> str:
    """``output`` or ``error`` for one text; fails on anything else (a raw exception, a multi-line error, output
    that is not valid text)."""
    from mt5lite.errors import InputError
    from mt5lite.runtimes.options import DecodingOptions

    try:
        outputs = generator.generate([text], DecodingOptions(max_new_tokens=4))
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return "error"
    assert len(outputs) == 1 and isinstance(outputs[0], str), outputs
    outputs[0].encode("utf-8")  # printable: no lone surrogates
    return "output"


@pytest.mark.parametrize("examples", [150, pytest.param(10_000, marks=pytest.mark.faults)])
def test_fuzzed_text_gets_an_output_or_a_one_line_error(demo_export, tflite_int8, examples):
    from collections import Counter

    from hypothesis import HealthCheck, given, settings

    from mt5lite.runtimes.litert import LiteRTGenerator
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator

    generators = {"onnxruntime": OnnxGenerator(demo_export, threads=1),
                  "litert": LiteRTGenerator(tflite_int8, threads=1)}
    counts = Counter()

    def check(text: str) -> None:
        for engine, generator in generators.items():
            counts[f"{engine} {_run_text(generator, text)}"] += 1

    for text in HOSTILE:
        check(text)
    given(_texts())(settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))(check))()
    assert sum(counts.values()) >= 2 * (len(HOSTILE) + examples * 0.9)
    if examples >= 10_000:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
        report["fuzzed_text"] = {"strings": sum(counts.values()) // 2, "hand_made": len(HOSTILE), **counts}
        REPORT.write_text(json.dumps(report, indent=2) + "\n")


# --- killed commands ---------------------------------------------------------------------------------------------

#: command -> its arguments ({model}: the demo checkpoint, {export}: its ONNX export, {static}: its static export).
KILLED_COMMANDS = {
    "export-onnx": ("export", "onnx", "--model", "{model}"),
    "quantize": ("quantize", "--export", "{export}", "--samples", "100", "--max-decoder-steps", "32", "--no-gate",
                 "--report", "{reports}/q.json"),
    "export-tflite": ("export", "tflite", "--export", "{static}", "--quantize", "fp32"),
    "compress": ("compress", "--model", "{model}", "--passes", "trim-vocab", "--no-quality"),
}


@pytest.mark.faults
@pytest.mark.parametrize("name", list(KILLED_COMMANDS))
def test_a_killed_command_leaves_nothing_and_the_next_run_sweeps(demo_model, demo_export, static_export, tmp_path,
                                                                  name, kills=20):
    """SIGKILL at seeded random moments of a full run's duration, 20 times: never a partial output; the next run
    succeeds and leaves nothing hidden beside its output (the killed runs' staging and scratch directories are
    swept). ``make test`` runs the quick version on quantize (tests/test_quantize.py)."""
    import random
    import signal
    import subprocess
    import sys
    import time

    out, reports = tmp_path / "out", tmp_path / "reports"
    values = {"model": demo_model, "export": demo_export, "static": static_export, "reports": reports}
    command = [sys.executable, "-m", "mt5lite", *(a.format(**values) for a in KILLED_COMMANDS[name]),
               "--output", str(out), "--force"]
    env = {**os.environ, "USE_TF": "0"}
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    duration = time.monotonic() - start
    rng = random.Random(f"{SEED} {name}")
    for _ in range(kills):
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.05, 1.0) * duration)
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert not out.exists() or (out / "manifest.json").is_file() or (out / "config.json").is_file()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out", "reports"))
    assert left == [], f"left beside the output after {kills} kills: {left}"


@pytest.mark.faults
def test_a_killed_pipeline_resumes_and_ends_as_an_uninterrupted_run(tiny_mt5, tmp_path, kills=12):
    """``mt5lite pipeline`` on the tiny model, SIGKILLed at seeded random moments of a full run's duration, each
    time rerun without --force: every stage's output is either absent or complete (its manifest's hashes verify),
    the last run completes, its figures are the uninterrupted run's, and nothing hidden is left beside them."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from mt5lite.manifest import load_manifest
    from tests.test_workflow import tiny_config

    pairs = tmp_path / "pairs.tsv"
    lines = [line for line in (Path(__file__).parents[1] / "data" / "task" / "heldout.tsv").read_text(
        encoding="utf-8").splitlines() if not line.startswith("#")]
    pairs.write_text("\n".join(lines[::30]) + "\n", encoding="utf-8")
    env = {**os.environ, "USE_TF": "0"}

    def command(out: Path) -> list[str]:
        config = tmp_path / f"{out.name}.toml"
        config.write_text(tiny_config(tiny_mt5, out, pairs))
        return [sys.executable, "-m", "mt5lite", "pipeline", "--config", str(config)]

    def figures(out: Path) -> dict:
        stamps = {p.stem: json.loads(p.read_text())["summary"] for p in (out / ".pipeline").glob("*.json")}
        stamps["report"] = {name: row["exact_match"] for name, row in stamps["report"]["stages"].items()}
        return stamps

    start = time.monotonic()
    done = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    duration = time.monotonic() - start
    out = tmp_path / "killed"
    rng = random.Random(f"{SEED} pipeline")
    for _ in range(kills):
        run = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.05, 1.0) * duration)
        run.send_signal(signal.SIGKILL)
        run.wait()
        for name in ("onnx", "onnx-int8", "tflite"):
            if (out / name).exists():
                load_manifest(out / name)  # complete: every file there, every hash right
    done = subprocess.run(command(out), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert figures(out) == figures(tmp_path / "whole")
    hidden = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob(".*") if ".pipeline" not in p.parts)
    assert hidden == [], f"left behind after {kills} kills: {hidden}"


# --- unsafe files ---------------------------------------------------------------------------------------------------

def _external_data_to(location: str):
    def edit(folder: Path) -> None:
        import onnx

        model = onnx.load(str(folder / "decoder.onnx"), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        (folder / "decoder.onnx").write_bytes(model.SerializeToString())
    return edit


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_folder_is_refused(demo_export, tmp_path, where):
    """A graph whose weights point out of the folder (``../``, an absolute path, a symlink leaving it) is refused by
    the runtime and by the quantizer, with a one-line error naming the graph; the file outside is never read."""
    from mt5lite.errors import ModelFileError
    from mt5lite.runtimes.generators import open_export
    from tests.conftest import run_cli

    outside = tmp_path / "outside.bin"
    outside.write_bytes((demo_export / "weights.bin").read_bytes())
    location = {"parent": "../outside.bin", "absolute": str(outside), "symlink": "link.bin"}[where]
    folder = tmp_path / "export"
    if where == "symlink":
        import shutil

        shutil.copytree(demo_export, folder)
        (folder / "link.bin").symlink_to(outside)
        _external_data_to(location)(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        import hashlib

        manifest["files"]["decoder.onnx"] = hashlib.sha256((folder / "decoder.onnx").read_bytes()).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    else:
        _rehashed_copy(demo_export, folder, _external_data_to(location))
    before = outside.stat().st_atime_ns
    with pytest.raises(ModelFileError, match="decoder.onnx"):
        open_export(folder)
    result = run_cli("quantize", "--export", str(folder), "--output", str(tmp_path / "q"), "--recipe",
                     "dynamic-int8", "--no-gate")
    stderr = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in stderr and "decoder.onnx" in stderr, stderr
    assert outside.stat().st_atime_ns == before and not (tmp_path / "q").exists()


@pytest.mark.faults
@pytest.mark.parametrize("command", [
    ("quantize", "--export", "{export}", "--samples", "100", "--max-decoder-steps", "32", "--no-gate"),
    ("export", "tflite", "--export", "{static}", "--quantize", "int8", "--samples", "100",
     "--max-decoder-steps", "32", "--no-gate"),
], ids=["quantize-static-int8", "export-tflite-int8"])
def test_nothing_is_written_outside_the_output_folder(demo_export, static_export, tmp_path, command):
    """Calibration feeds, mask probes and every scratch file go beside the output: nothing of the toolkit's lands in
    the system's temporary directory, and the output's folder holds the output alone afterwards."""
    import subprocess
    import sys

    system_tmp, parent = tmp_path / "system-tmp", tmp_path / "parent"
    system_tmp.mkdir()
    parent.mkdir()
    args = [a.format(export=demo_export, static=static_export) for a in command]
    env = {**os.environ, "USE_TF": "0", "TMPDIR": str(system_tmp), "TEMP": str(system_tmp), "TMP": str(system_tmp)}
    done = subprocess.run([sys.executable, "-m", "mt5lite", *args, "--output", str(parent / "out"),
                           "--report", str(parent / "out.report.json")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # ONNX Runtime itself writes a 51-byte session marker, $TMPDIR/.ses, whenever it creates a session (any
    # process: the runtime's too); nothing of the toolkit's may be there.
    assert sorted(p.name for p in system_tmp.iterdir() if p.name != ".ses") == []
    assert sorted(p.name for p in parent.iterdir()) == ["out", "out.report.json", "out.report.md"]
