"""``mt5lite pipeline`` and ``mt5lite.pipeline``: the configuration file, the plan, stage reuse and the gate.

The runs here use a tiny random model with small settings (seconds per stage); the demo model's full run is
``make export-tflite`` and, from a wheel outside the checkout, ``make test-wheel``. Seeded kills are in the fault
matrix (tests/test_faults.py)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mt5lite.cli import main
from mt5lite.data import HELDOUT_TASK
from mt5lite.errors import InputError, QualityGateError
from mt5lite.workflow import configure, load_config, pipeline, plan
from mt5lite.workflow.config import as_table

#: Each pipeline stage -> the run that builds it here.
STAGE_CASES = {
    "compress": "test_compression_and_executorch_run_as_stages_too",
    "onnx": "test_a_run_builds_every_stage_then_reuses_every_stage",
    "parity-onnx": "test_a_run_builds_every_stage_then_reuses_every_stage",
    "onnx-int8": "test_a_run_builds_every_stage_then_reuses_every_stage",
    "tflite": "test_a_run_builds_every_stage_then_reuses_every_stage",
    "parity-tflite": "test_a_run_builds_every_stage_then_reuses_every_stage",
    "executorch": "test_compression_and_executorch_run_as_stages_too",
    "report": "test_a_run_builds_every_stage_then_reuses_every_stage",
}


def tiny_config(model: Path, output: Path, data: Path, **changes) -> str:
    """A pipeline file for a tiny model: short lengths, few samples, dynamic int8 (no calibration), TFLite fp32."""
    text = f"""
model = "{model}"
output = "{output}"
data = "{data}"
gate = false

[onnx]
max_source_length = 32
max_target_length = 32
validate_samples = 2

[calibration]
samples = 100
max_decoder_steps = 16

[quantize]
recipe = "dynamic-int8"

[tflite]
quantize = "fp32"
validate_samples = 2

[report]
beam_samples = 2
"""
    for key, value in changes.items():
        text = text.replace(key, value)
    return text


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory) -> Path:
    """20 held-out pairs, two per language."""
    lines = HELDOUT_TASK.read_text(encoding="utf-8").splitlines()
    seen: dict[str, int] = {}
    kept = []
    for line in lines:
        lang = line.split("\t")[0]
        if seen.get(lang, 0) < 2:
            seen[lang] = seen.get(lang, 0) + 1
            kept.append(line)
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_run(tiny_mt5, small_pairs, tmp_path_factory):
    """A complete pipeline run on the tiny model: its config file, output and result."""
    root = tmp_path_factory.mktemp("pipeline")
    config = root / "pipeline.toml"
    config.write_text(tiny_config(tiny_mt5, root / "out", small_pairs))
    return config, root / "out", pipeline(config)


@pytest.mark.parametrize("body, message", [
    ("[onnx]\nmax_source_lenght = 64\n", r"\[onnx\]: unknown key 'max_source_lenght'; known keys: atol, "
     "decoder_batches, external_data_bytes, max_source_length, max_target_length, opset, rtol, source_buckets, "
     "validate_samples$"),
    ("modle = 'x'\n", r"unknown key 'modle'; known keys: model, output, data, gate, threads, allow_pickle and the "
     r"sections \[compress\], \[onnx\]"),
    ("[tflit]\nquantize = 'int8'\n", r"unknown key 'tflit'"),
    ("[tflite]\nquantize = 'int4'\n", r"unknown TFLite precision 'int4'; known: fp32, fp16, dynamic-int8, int8"),
    ("[quantize]\nrecipe = 'int4'\n", r"unknown recipe 'int4'; known: static-int8"),
    ("[quantize]\nsamples = 10\n", r"\[quantize\]: unknown key 'samples'; known keys: exclude, format"),
    ("[onnx]\nopset = 'seventeen'\n", r"\[onnx\] opset: expects int, got 'seventeen'"),
    ("[compress]\npasses = ['trim-vocab']\n[compress.trim-vocab]\ncorpuss = 'x'\n",
     r"\[compress.trim-vocab\]: unknown key 'corpuss'; known keys: "),
    ("[compress]\npasses = ['shrink']\n", r"unknown compression pass 'shrink'; known: prune-ffn, "),
    ("[executorch]\nenabled = 'yes'\n", r"\[executorch\] enabled: expects true or false, got 'yes'"),
    ("[onnx\n", r"not valid TOML"),
    ("threads = '4'\n", r"threads: expects int, got '4'"),
    ("[compress]\npasses = ['trim-vocab']\n[compress.trim-vocab]\ncorpus = 'x.tsv'\n",
     r"\[compress.trim-vocab\] corpus: expects a list, got 'x.tsv'"),
    ("[compress]\npasses = ['distill']\n[compress.distill]\nteacher = 'nowhere'\n",
     r"nowhere: the teacher is not a checkpoint directory"),
])
def test_a_bad_config_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, body, message):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    code = main(["pipeline", "--config", str(config), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_the_printed_config_reads_back_as_the_same_config(tmp_path, capsys):
    assert main(["pipeline", "--print-config", "--tflite", "dynamic-int8", "--int8", "none",
                 "--executorch", "int8", "--compress", "trim-vocab", "--corpus", "x.tsv"]) == 0
    path = tmp_path / "printed.toml"
    path.write_text(capsys.readouterr().out)
    config = load_config(path)
    assert config.tflite.quantize == "dynamic-int8" and config.quantize is None
    assert config.executorch.quantize == "int8" and config.compress.passes == ("trim-vocab",)
    assert config.pass_options == {"trim-vocab": {"corpus": (Path("x.tsv"),)}}
    assert as_table(config) == as_table(load_config(path)) and config == load_config(path)


def test_a_run_builds_every_stage_then_reuses_every_stage(tiny_run, capsys):
    config, out, first = tiny_run
    assert [s.name for s in first.stages] == ["onnx", "parity-onnx", "onnx-int8", "tflite", "parity-tflite",
                                              "report"]
    assert not any(s.reused for s in first.stages)
    report = json.loads(first.report.read_text())
    assert list(report["stages"]) == ["pytorch", "onnx", "onnx-int8", "tflite"]
    for name in ("onnx", "onnx-int8", "tflite"):
        assert json.loads((out / name / "manifest.json").read_text())["export_id"]
    assert load_config(out / "pipeline.toml") == load_config(config)
    assert main(["pipeline", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": reused") == 6 and "pipeline report: " in printed, printed
    hidden = sorted(p.name for p in out.rglob(".*") if p.name != ".pipeline" and ".pipeline" not in p.parts)
    assert hidden == [], hidden


def test_a_changed_option_or_input_reruns_that_stage_and_what_builds_on_it(tiny_run, small_pairs, tmp_path):
    config_path, out, _ = tiny_run
    config = load_config(config_path)
    assert all(p.reuse for p in plan(config))
    changed = {p.name for p in plan(replace(config, report=replace(config.report, beam_samples=3))) if not p.reuse}
    assert changed == {"report"}
    changed = {p.name for p in plan(replace(config, threads=1)) if not p.reuse}
    assert changed == {"onnx-int8", "tflite", "parity-tflite", "report"}  # what measures speed, and after
    changed = {p.name for p in plan(replace(config, tflite=replace(config.tflite, quantize="fp16")))
               if not p.reuse}
    assert changed == {"tflite", "parity-tflite", "report"}
    pairs = tmp_path / "pairs.tsv"  # same name, one line less: a content change
    pairs.write_text("\n".join(small_pairs.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    changed = {p.name for p in plan(replace(config, data=pairs)) if not p.reuse}
    assert changed == {"parity-onnx", "onnx-int8", "tflite", "parity-tflite", "report"}
    assert not any(p.reuse for p in plan(config, force=True))


def test_a_missing_output_is_rebuilt(tiny_run, tmp_path):
    config_path, out, _ = tiny_run
    config = load_config(config_path)
    (out / "reports" / "pipeline.png").rename(tmp_path / "moved.png")
    try:
        assert [(p.name, p.why) for p in plan(config) if not p.reuse] == [("report", "an output is missing")]
    finally:
        (tmp_path / "moved.png").rename(out / "reports" / "pipeline.png")


def test_a_failed_gate_stops_the_pipeline_names_the_stage_and_keeps_the_export(tiny_mt5, small_pairs, tmp_path,
                                                                               capsys):
    config = tmp_path / "gated.toml"
    config.write_text(tiny_config(tiny_mt5, tmp_path / "out", small_pairs, **{"gate = false": "gate = true"}))
    with pytest.raises(QualityGateError, match=r"^stage onnx-int8: the dynamic-int8 export misses the quality gate"):
        pipeline(config)
    assert (tmp_path / "out" / "onnx-int8" / "manifest.json").is_file()  # kept for inspection
    assert not (tmp_path / "out" / "tflite").exists()  # later stages did not run
    assert not (tmp_path / "out" / ".pipeline" / "onnx-int8.json").exists()  # and it runs again next time
    assert main(["pipeline", "--config", str(config)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("mt5lite pipeline: stage onnx-int8: the dynamic-int8 export misses") and "--no-gate" in last


def test_the_options_of_the_command_line_and_the_api_agree(tmp_path):
    config = configure(None, output=tmp_path, int8="weight-int8", tflite="none", executorch="fp32", gate=False)
    assert config.quantize.recipe == "weight-int8" and config.tflite is None and config.executorch.quantize == "fp32"
    assert config.output == tmp_path and config.gate is False
    assert [p.name for p in plan(config)] == ["onnx", "parity-onnx", "onnx-int8", "executorch", "report"]
    with pytest.raises(InputError, match="unknown compression pass 'shrink'"):
        configure(None, compress="trim-vocab,shrink").compress.chain()


@pytest.mark.needs("executorch")
def test_compression_and_executorch_run_as_stages_too(tiny_mt5, small_pairs, tmp_path):
    config = tmp_path / "more.toml"
    config.write_text(tiny_config(tiny_mt5, tmp_path / "out", small_pairs) + "\n[compress]\npasses = ['trim-vocab']\n"
                      "quality = false\n[executorch]\nquantize = 'fp32'\nvalidate_samples = 2\n")
    result = pipeline(config, int8="none", tflite="none")
    assert [s.name for s in result.stages] == ["compress", "onnx", "parity-onnx", "executorch", "report"]
    out = tmp_path / "out"
    trimmed = json.loads((out / "onnx" / "manifest.json").read_text())["vocab_size"]
    assert trimmed < json.loads((tiny_mt5 / "config.json").read_text())["vocab_size"]  # exported after trimming
    assert json.loads((out / "executorch" / "manifest.json").read_text())["engine"] == "executorch"
    report = json.loads(result.report.read_text())
    assert list(report["stages"]) == ["original", "pytorch", "onnx", "executorch"]


def test_a_rebuilt_stage_forgets_what_builds_on_it_first(tiny_run):
    from mt5lite.workflow.runner import _depending_on

    steps = plan(load_config(tiny_run[0]))
    assert _depending_on(steps, "onnx") == ["onnx", "parity-onnx", "onnx-int8", "tflite", "parity-tflite", "report"]
    assert _depending_on(steps, "tflite") == ["tflite", "parity-tflite", "report"]


def test_a_pass_reads_files_by_content(tiny_mt5, small_pairs, tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("de\tzwei\n", encoding="utf-8")
    config = configure(load_config(None), model=tiny_mt5, output=tmp_path / "out", compress="trim-vocab",
                       pass_options={"trim-vocab": {"corpus": (corpus,)}})
    before = {p.name: p.key for p in plan(config)}
    corpus.write_text("de\tdrei\n", encoding="utf-8")
    after = {p.name: p.key for p in plan(config)}
    assert before["compress"] != after["compress"] and before["onnx"] != after["onnx"]
    with pytest.raises(InputError, match=r"\[compress.trim-vocab\]: .*unexpected keyword argument 'bogus'"):
        pipeline(config, pass_options={"trim-vocab": {"bogus": 1}})
    assert not (tmp_path / "out").exists()  # refused before anything was written
