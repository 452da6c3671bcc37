"""Quantization: node groups, calibration data, what the quantized graphs hold, the contract, and the quality gate
on the trained demo model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from mt5lite.data import Sentence, read_tagged_texts, read_task_pairs
from mt5lite.errors import InputError, ModelFileError
from mt5lite.exporters.quantize.calibration import MIN_SAMPLES, CalibrationWarning, draw_samples
from mt5lite.exporters.quantize.groups import node_groups, select_nodes
from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
from mt5lite.manifest import load_manifest
from mt5lite.runtimes.onnx_runtime import OnnxGenerator
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.verification.comparison import compare_exports, quality_gate
from tests.conftest import run_cli

WEIGHT_GROUPS = ("embeddings", "lm_head", "attention_qkv", "attention_out", "ffn_in", "ffn_out")


def _sentences(counts: dict[str, int]) -> list[Sentence]:
    return [Sentence(lang, f"{lang} sentence {i}") for lang, n in counts.items() for i in range(n)]


@pytest.fixture(scope="session")
def demo_int8(demo_export, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quantized") / "int8"
    quantize_export(demo_export, out, QuantizeConfig(), gate=False)
    return out


def _graph(export: Path, role: str) -> onnx.ModelProto:
    return onnx.load(str(export / load_manifest(export).graphs[role].file))


# --- node groups -----------------------------------------------------------------------------------------------

def test_node_groups_find_every_layer(demo_export):
    dims = load_manifest(demo_export).model
    encoder, decoder = (node_groups(_graph(demo_export, role)) for role in ("encoder", "decoder"))
    layers, decoder_layers = dims.num_layers, dims.num_decoder_layers
    assert len(encoder["ffn_out"]) == layers and len(decoder["ffn_out"]) == decoder_layers
    assert len(encoder["ffn_in"]) == 2 * layers  # gated GELU: wi_0 and wi_1
    # encoder: self q, k, v per layer + the decoder's cross k, v; decoder: self q, k, v + cross q per layer
    assert len(encoder["attention_qkv"]) == 3 * layers + 2 * decoder_layers
    assert len(decoder["attention_qkv"]) == 4 * decoder_layers
    assert decoder["lm_head"] == ["lm_head/MatMul"] and encoder["lm_head"] == []
    assert len(decoder["embeddings"]) == 1 and len(decoder["softmax"]) == 2 * decoder_layers
    assert all(name.startswith("decoder.block.") for name in decoder["ffn_out"])


def test_exclude_patterns_remove_nodes(demo_export):
    model = _graph(demo_export, "decoder")
    every = select_nodes(model, WEIGHT_GROUPS)
    kept = select_nodes(model, WEIGHT_GROUPS, exclude=("*DenseReluDense.wo*", "lm_head/*"))
    assert len(every) - len(kept) == 3 + 1
    with pytest.raises(InputError, match="unknown quantization group.*known: embeddings"):
        select_nodes(model, ("attention",))


# --- calibration data ------------------------------------------------------------------------------------------

def test_draw_is_balanced_across_languages():
    drawn = draw_samples(_sentences({"en": 300, "th": 60, "ja": 60}), 150)
    counts = {lang: sum(s.lang == lang for s in drawn) for lang in ("en", "th", "ja")}
    assert counts == {"en": 50, "th": 50, "ja": 50}
    assert drawn == draw_samples(_sentences({"en": 300, "th": 60, "ja": 60}), 150)  # fixed seed


def test_feed_reader_is_an_onnx_runtime_calibration_reader():
    from onnxruntime.quantization import CalibrationDataReader

    from mt5lite.exporters.quantize.calibration import FeedReader

    reader = FeedReader([{"x": np.zeros(1)}, {"x": np.ones(1)}])
    assert isinstance(reader, CalibrationDataReader)
    assert [feed["x"][0] for feed in iter(reader.get_next, None)] == [0.0, 1.0]
    reader.rewind()
    assert reader.get_next()["x"][0] == 0.0


def test_feed_store_keeps_feeds_on_disk_slot_by_slot(tmp_path):
    from mt5lite.exporters.quantize.calibration import FeedReader, FeedStore

    store = FeedStore(tmp_path / "feeds")
    feeds = [{"ids": np.full((1, 3), i, np.int64), "k": np.full((2, 2), i / 2, np.float32)} for i in range(3)]
    for i, feed in enumerate(feeds):
        store.put(i, feed)
    store.put(1, feeds[2])  # a reservoir overwrites a slot
    again = FeedStore(tmp_path / "feeds")  # read back from disk alone
    assert len(again) == 3
    assert [int(again[i]["ids"][0, 0]) for i in range(3)] == [0, 2, 2]
    assert again[2]["k"].dtype == np.float32 and again[2]["k"].shape == (2, 2) and again[2]["k"][0, 0] == 1.0
    reader = FeedReader(again)
    assert len(list(iter(reader.get_next, None))) == 3
    with pytest.raises(IndexError):
        store.put(5, feeds[0])  # slots are written in order: no gap
    with pytest.raises(ValueError, match="shape"):
        store.put(3, {"ids": np.zeros((1, 4), np.int64), "k": feeds[0]["k"]})


def test_too_few_samples_is_an_error_naming_the_gap(demo_export, tmp_path):
    with pytest.raises(InputError, match=r"has 99 samples, 1 short of the 100"):
        draw_samples(_sentences({"en": 60, "fr": 39}), 256, source="mine.tsv")
    with pytest.raises(InputError, match=r"--samples is 40: .*at least 100 samples \(60 more\)"):
        draw_samples(_sentences({"en": 200}), 40)
    path = tmp_path / "small.tsv"
    path.write_text("".join(f"en\tsentence {i}\n" for i in range(MIN_SAMPLES - 10)), encoding="utf-8")
    result = run_cli("quantize", "--export", str(demo_export), "--output", str(tmp_path / "out"),
                     "--calibration", str(path))
    assert result.returncode == 2 and b"10 short of the 100" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_rare_language_warns_by_name():
    with pytest.warns(CalibrationWarning, match="'th' is only 2.0% of the draw"):
        draw_samples(_sentences({"en": 120, "fr": 120, "th": 5}), 245)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        draw_samples(_sentences({"en": 60, "fr": 60, "th": 60}), 180)  # balanced: no warning
        # 23 languages share the project's data evenly (4.3% each): only under half an even share warns
        draw_samples(read_tagged_texts(), 256)


# --- what the quantized graphs hold ----------------------------------------------------------------------------

def test_static_int8_holds_int8_weights_and_qdq_nodes(demo_export, demo_int8):
    manifest = load_manifest(demo_int8)
    quantization = manifest.quantization
    assert manifest.precision == "int8" and quantization.recipe == "static-int8"
    assert quantization.source_export_id == load_manifest(demo_export).export_id
    assert quantization.calibration["samples"] == 256 and quantization.calibration["decoder_steps"] > 100
    for role in ("encoder", "decoder"):
        expected = len(select_nodes(_graph(demo_export, role), WEIGHT_GROUPS))
        model = _graph(demo_int8, role)
        ops = [n.op_type for n in model.graph.node]
        int8_weights = [t for t in model.graph.initializer  # the embedding table is quantized like an activation
                        if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(t.dims) == 2]
        float_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                         and len(t.dims) == 2 and t.dims[0] * t.dims[1] > 1000]
        assert quantization.quantized_nodes[role] == expected
        assert len(int8_weights) == expected and ops.count("DequantizeLinear") >= expected
        assert ops.count("QuantizeLinear") > 0
        assert all(t.name.startswith("position_bias") or "relative_attention_bias" in t.name for t in float_weights)
        metadata = {p.key: p.value for p in model.metadata_props}
        assert metadata["mt5lite.export_id"] == manifest.export_id and metadata["mt5lite.precision"] == "int8"


@pytest.mark.parametrize("recipe,expected_op", [("dynamic-int8", "DynamicQuantizeLinear"),
                                                ("static-int8", "QLinearMatMul")])
def test_other_int8_forms(demo_export, tmp_path, recipe, expected_op):
    config = QuantizeConfig(recipe=recipe, format="qoperator" if recipe == "static-int8" else "qdq")
    quantize_export(demo_export, tmp_path / "q", config, gate=False)
    ops = [n.op_type for n in _graph(tmp_path / "q", "decoder").graph.node]
    assert expected_op in ops and ("MatMulInteger" in ops or "QLinearMatMul" in ops)
    generator = OnnxGenerator(tmp_path / "q")
    assert generator.generate(["words fr: 1234"]) == ["mille deux cent trente-quatre"]


def test_fp16_keeps_wo_and_layer_norms_in_fp32(demo_export, tmp_path):
    quantize_export(demo_export, tmp_path / "fp16", QuantizeConfig(recipe="fp16"), gate=False)
    model = _graph(tmp_path / "fp16", "decoder")
    dtypes = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        weights = [dtypes[i] for i in node.input if i in dtypes and node.op_type in ("MatMul", "Mul")]
        if "DenseReluDense.wo" in node.name or "layer_norm" in node.name:
            assert all(d == onnx.TensorProto.FLOAT for d in weights), node.name
        elif node.op_type == "MatMul" and weights:
            assert weights == [onnx.TensorProto.FLOAT16], node.name
    io = [t.type.tensor_type.elem_type for t in list(model.graph.input) + list(model.graph.output)]
    assert onnx.TensorProto.FLOAT16 not in io  # the contract's dtypes are unchanged
    report = compare_exports(demo_export, tmp_path / "fp16", read_task_pairs()[::6], speed_samples=0)
    assert report["nonfinite_steps"] == {"reference": 0, "candidate": 0}
    assert report["greedy_agreement"] >= 0.99 and report["greedy_agreement_where_reference_exact"] >= 0.99


# --- contract, refusals, atomic output ---------------------------------------------------------------------------

def test_quantized_export_runs_unchanged_and_is_verified(demo_int8, tmp_path):
    generator = OnnxGenerator(demo_int8)
    outputs = generator.generate(["words ja: 4821", "number ru: триста семь"], DecodingOptions(num_beams=4))
    assert outputs == ["四千八百二十一", "307"]
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in demo_int8.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    data = bytearray((tampered / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="decoder.onnx: sha256 does not match"):
        OnnxGenerator(tampered)


def test_refuses_quantized_source_existing_output_and_bad_options(demo_export, demo_int8, tmp_path):
    with pytest.raises(InputError, match="already quantized"):
        quantize_export(demo_int8, tmp_path / "again", gate=False)
    with pytest.raises(InputError, match="already exists; use --force"):
        quantize_export(demo_export, demo_int8, gate=False)
    with pytest.raises(InputError, match="unknown method 'kl'"):
        QuantizeConfig(method="kl")
    with pytest.raises(InputError, match="nothing to quantize"):
        quantize_export(demo_export, tmp_path / "none", QuantizeConfig(groups=("lm_head",), exclude=("lm_head*",)))
    assert not (tmp_path / "none").exists()


def test_failed_quantization_leaves_nothing(demo_export, tmp_path, monkeypatch):
    import mt5lite.exporters.quantize.recipes as quantize

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash inside the quantizer")

    monkeypatch.setattr(quantize, "_to_int8", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        quantize_export(demo_export, tmp_path / "out", QuantizeConfig(recipe="dynamic-int8"), gate=False)
    assert list(tmp_path.iterdir()) == []


# --- the quality gate on the trained demo model ------------------------------------------------------------------

def test_static_int8_passes_the_quality_gate_on_the_demo_model(demo_export, demo_int8):
    report = compare_exports(demo_export, demo_int8, read_task_pairs(), speed_samples=0)
    assert quality_gate(report) == []
    assert report["greedy_agreement"] >= 0.97
    assert report["exact_match"] >= report["exact_match_reference"] - 0.01
    assert report["loops"]["new"] == 0
    assert report["size_bytes"] <= 0.30 * report["size_bytes_reference"]


def test_quality_gate_catches_regressions():
    report = {"greedy_agreement": 0.96, "exact_match": 0.90, "exact_match_reference": 0.93,
              "per_language": {"th": {"exact_match": 0.80, "exact_match_reference": 0.90}},
              "loops": {"new": 2}, "nonfinite_steps": {"reference": 0, "candidate": 3}}
    failures = " | ".join(quality_gate(report))
    for expected in ("greedy agreement 0.960", "3.0 points below fp32", "th: exact match 10.0 points",
                     "2 outputs loop", "non-finite"):
        assert expected in failures


def test_quantize_cli_writes_export_and_report(demo_export, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli("quantize", "--export", str(demo_export), "--output", str(tmp_path / "int8"),
                     "--recipe", "dynamic-int8", "--report", str(report))
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(report.read_text())
    for key in ("recipe", "size_bytes", "size_bytes_reference", "quantized_nodes", "greedy_agreement",
                "exact_match", "exact_match_reference", "per_language"):
        assert key in data
    assert data["recipe"] == "dynamic-int8" and data["gate"]["passed"] is True
    assert set(data["per_language"]["th"]) >= {"exact_match", "exact_match_reference", "chrf", "chrf_reference"}
    assert report.with_suffix(".md").is_file() and b"quality gate: passed" in result.stdout
    assert np.isfinite(data["speed"]["speedup"])


def test_quantize_cli_exits_1_when_the_gate_fails(demo_export, tmp_path):
    # Quantizing the softmax alone breaks decoding (its input spans the -1e9 attention mask): the gate must say so.
    result = run_cli("quantize", "--export", str(demo_export), "--output", str(tmp_path / "q"), "--groups",
                     "softmax", "--report", str(tmp_path / "report.json"))
    assert result.returncode == 1, result.stderr.decode()
    assert b"misses the quality gate" in result.stderr and b"quality gate: FAILED" in result.stdout
    assert json.loads((tmp_path / "report.json").read_text())["gate"]["passed"] is False


def test_quantized_lookups_gather_int8_rows_then_dequantize():
    """``DequantizeLinear(table) -> Gather`` becomes ``Gather -> DequantizeLinear`` (same values, one row read);
    a per-axis scale is left alone."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mt5lite.exporters.quantize.gather_rows import gather_then_dequantize

    table = np.random.default_rng(0).integers(-128, 127, (50, 8), dtype=np.int8)

    def model(scale):
        inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(scale, "scale"),
                 numpy_helper.from_array(np.zeros(scale.shape, np.int8), "zero")]
        nodes = [helper.make_node("DequantizeLinear", ["table", "scale", "zero"], ["dq"], axis=1),
                 helper.make_node("Gather", ["dq", "ids"], ["rows"], name="embed/Gather")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
                                  [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [2, 3, 8])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    ids = np.array([[1, 4, 49], [0, 0, 7]], dtype=np.int64)
    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(None, {"ids": ids})[0]

    per_tensor = model(np.array(0.05, np.float32))
    before = run(per_tensor)
    assert gather_then_dequantize(per_tensor) == 1
    assert [n.op_type for n in per_tensor.graph.node] == ["Gather", "DequantizeLinear"]
    assert per_tensor.graph.node[0].input[0] == "table" and np.array_equal(run(per_tensor), before)
    per_axis = model(np.full(8, 0.05, np.float32))
    assert gather_then_dequantize(per_axis) == 0 and per_axis.graph.node[0].op_type == "DequantizeLinear"


def test_products_of_one_activation_fuse_into_one_with_the_same_values():
    """Block-quantized products that read the same input with the same K, bits, block and accuracy level become
    one ``MatMulNBits`` and a ``Split``, bit for bit; a product with another block size, or another input, stays."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mt5lite.exporters.quantize.fuse_products import fuse_parallel_products

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def product(name, source, n, block=32):
        inits.extend([numpy_helper.from_array(rng.integers(0, 256, (n, 64 // block, block), dtype=np.uint8),
                                              f"{name}_w"),
                      numpy_helper.from_array(rng.random((n, 64 // block), dtype=np.float32) * 0.01, f"{name}_s")])
        nodes.append(helper.make_node("MatMulNBits", [source, f"{name}_w", f"{name}_s"], [name], name=name,
                                      domain="com.microsoft", K=64, N=n, bits=8, block_size=block, accuracy_level=4))

    for name, n in (("q", 24), ("k", 24), ("v", 40)):
        product(name, "x", n)
    product("other_block", "x", 8, block=16)
    product("other_input", "y", 8)
    outputs = ["q", "k", "v", "other_block", "other_input"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 1, 64])
                                           for n in ("x", "y")],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    feeds = {n: rng.standard_normal((2, 1, 64)).astype(np.float32) for n in ("x", "y")}

    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(outputs, feeds)

    before = run(model)
    assert fuse_parallel_products(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulNBits") == 3 and ops.count("Split") == 1
    fused = next(n for n in model.graph.node if n.name == "q+k+v")
    assert {a.name: helper.get_attribute_value(a) for a in fused.attribute}["N"] == 88
    assert not {"q_w", "k_w", "v_w", "q_s"} & {t.name for t in model.graph.initializer}
    for old, new in zip(before, run(model), strict=True):
        assert np.array_equal(old, new)


def test_a_killed_run_leaves_nothing_the_next_run_does_not_sweep(demo_export, tmp_path):
    """SIGKILL at random moments of `mt5lite quantize` (seeded): no partial output, and the next run succeeds and
    removes the hidden staging and scratch directories the killed ones left; a live run's are left alone."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from mt5lite.staging import hidden_directory, remove_hidden, sweep

    out = tmp_path / "q"
    command = [sys.executable, "-m", "mt5lite", "quantize", "--export", str(demo_export), "--output", str(out),
               "--samples", "100", "--max-decoder-steps", "32", "--no-gate", "--report", str(tmp_path / "r" / "q.json"),
               "--force"]
    rng = random.Random(0)
    for _ in range(3):
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 6.0))
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert not out.exists() or (out / "manifest.json").is_file()  # never a half-written output
    killed = ("import os, signal; from mt5lite.staging import hidden_directory; "
              f"hidden_directory({str(out)!r}, 'tmp'); os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", killed])  # one killed while staging, for certain
    live = hidden_directory(out, "scratch")  # this process's: alive, so kept
    left = [p for p in tmp_path.glob(".q.*-*") if p.is_dir() and p != live]
    assert left
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "manifest.json").is_file()
    assert [p for p in tmp_path.glob(".q.*") if p not in (live, live.with_name(live.name + ".owner"))] == []
    assert live.is_dir() and not any(p.exists() for p in left)
    remove_hidden(live)
    assert sweep(out) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["q", "r"]


def test_scratch_beside_an_output_in_a_folder_not_made_yet_makes_the_folder(tmp_path):
    """``mt5lite quantize --output new/folder/q``: the scratch directories are made before the staging one, so they
    make the output's folder too (they failed with a raw FileNotFoundError)."""
    from mt5lite.staging import scratch_directory

    out = tmp_path / "new" / "folder" / "q"
    with scratch_directory(out, "calibration") as scratch:
        assert scratch.is_dir() and scratch.parent == out.parent
    assert list(out.parent.iterdir()) == []


def test_sweep_removes_unowned_hidden_directories_only_once_stale(tmp_path):
    """A hidden directory without an owner file (an older version's, or one killed before writing it) is swept once
    it is older than UNOWNED_STALE_S, never while it may still be in use; other names are never touched."""
    import os
    import time

    from mt5lite.staging import UNOWNED_STALE_S, sweep

    out = tmp_path / "export"
    old, new, other = tmp_path / ".export.tmp-old", tmp_path / ".export.tmp-new", tmp_path / ".other.tmp-x"
    for path in (old, new, other):
        path.mkdir()
    past = time.time() - UNOWNED_STALE_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    assert sweep(out) == [old]
    assert new.is_dir() and other.is_dir()
