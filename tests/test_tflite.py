"""TFLite conversion of the static-shape graphs and the LiteRT generator: ops, layout, parity, refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from mt5lite.contract import encoder_feeds
from mt5lite.data import read_task_pairs
from mt5lite.errors import InputError, ModelFileError
from mt5lite.exporters.quantize.calibration import CalibrationDraw
from mt5lite.exporters.tflite.export import export_tflite
from mt5lite.exporters.tflite.inspection import read_signatures
from mt5lite.manifest import load_manifest
from mt5lite.runtimes.litert import LiteRTGenerator
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.verification.parity import ParityOptions, parity_report
from tests.conftest import REPO_ROOT, run_cli

FP32_ATOL = 1e-4  # TFLite fp32 vs PyTorch, on logits


#: Every TFLite precision gets a build in test_no_flex_ops_in_any_default_build (tests/test_registries.py checks
#: that this covers the registry).
PRECISION_CASES = ("fp32", "fp16", "dynamic-int8", "int8")
#: float part -> the op kinds its nodes may be (``exporters.tflite.float_parts``).
FLOAT_PART_CASES = {"attention": {"BATCH_MATMUL", "SOFTMAX", "ADD", "MUL", "CONCATENATION", "STRIDED_SLICE"},
                    "residual": {"MUL", "MEAN", "ADD", "RSQRT"}}


def _pairs(step: int = 10):
    return read_task_pairs()[::step]


def test_tflite_export_keeps_the_contract(static_export, tflite_fp32):
    onnx_manifest = load_manifest(static_export)
    manifest = load_manifest(tflite_fp32)
    assert manifest.engine == "litert" and manifest.precision == "fp32"
    assert {"model.tflite", "spiece.model", "tokenizer.json"} <= set(manifest.files)
    assert not any(name.endswith((".onnx", ".bin", ".data")) for name in manifest.files)  # no ONNX weights copied
    for role in ("encoder", "decoder"):  # same names, shapes and dtypes as the ONNX graphs
        graph, onnx_graph = manifest.graphs[role], onnx_manifest.graphs[role]
        assert graph.file == "model.tflite" and graph.signature == role
        assert (graph.inputs, graph.outputs) == (onnx_graph.inputs, onnx_graph.outputs)
    assert manifest.quantization.source_export_id == onnx_manifest.export_id
    generator = LiteRTGenerator(tflite_fp32, full_length=True)  # padded to the encoder's S, no shorter bucket
    ids, mask = generator.encode_batch(["words ko: 58"])
    outputs = generator.backend.encode(encoder_feeds(ids, mask))
    for tensor in manifest.graphs["encoder"].outputs:
        assert tuple(outputs[tensor.name].shape) == tensor.shape, tensor.name


@pytest.mark.parametrize("quantize", PRECISION_CASES)
def test_no_flex_ops_in_any_default_build(static_export, tflite_fp32, tflite_int8, tmp_path, quantize):
    out = {"fp32": tflite_fp32, "int8": tflite_int8}.get(quantize, tmp_path / quantize)
    if not out.exists():
        export_tflite(static_export, out, quantize, gate=False)
    manifest = load_manifest(out)
    for role, ops in manifest.engine_info["ops"].items():
        assert ops and "FULLY_CONNECTED" in ops, role
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], (role, ops)
    assert manifest.engine_info["flex_ops"] == [] and manifest.engine_info["android_library"] is None
    report = parity_report(REPO_ROOT / "models" / "demo", out, _pairs(20), ParityOptions(num_beams=1, beam_samples=1))
    floor = {"fp32": 1.0, "fp16": 0.99, "dynamic-int8": 0.97, "int8": 0.95}[quantize]
    assert report["greedy_agreement"] >= floor


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_embedding_is_stored_once_for_both_signatures(request, precision):
    export = request.getfixturevalue(f"tflite_{precision}")
    manifest = load_manifest(export)
    embedding = manifest.vocab_size * manifest.model.d_model * {"fp32": 4, "int8": 1}[precision]
    signatures, sizes = read_signatures(export / "model.tflite")
    tables = [{index for index in signature.buffers if sizes[index] == embedding} for signature in signatures.values()]
    assert sorted(signatures) == ["decoder", "decoder_b4", "decoder_b4_s16", "decoder_s16", "encoder", "encoder_s16"]
    assert set.intersection(*tables), "the signatures do not read one embedding buffer (one copy in the file)"
    # the batch-4 step and the source-length buckets read their kind's weights: none of their own but the bucket
    # encoder's relative-position bias ([16,16,H], folded by the converter)
    weights_of = {role: {index for index in signatures[role].buffers if sizes[index] >= 1024} for role in signatures}
    for role in ("decoder_b4", "decoder_s16", "decoder_b4_s16", "encoder_s16"):
        kind, bias = role.split("_")[0], 16 * 16 * manifest.model.num_heads * 4
        assert weights_of[role] & weights_of[kind], role
        assert all(sizes[index] <= bias for index in weights_of[role] - weights_of[kind]), role
    weights = manifest.weights
    assert weights["shared_bytes"] >= embedding and weights["buffer_bytes"] == sum(sizes.values())


def test_the_decoder_signatures_share_their_quantization_vectors(tflite_int8):
    """Every decoder signature quantizes the lm_head alike (per output channel): its scales and zero points are
    stored once in the file, each signature's tensor pointing at them (``exporters.tflite.flatbuffer.pack``)."""
    from ai_edge_litert import schema_py_generated as schema

    manifest = load_manifest(tflite_int8)
    model = schema.Model.GetRootAsModel((tflite_int8 / "model.tflite").read_bytes(), 0)
    lm_heads = []
    for index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(index)
        for tensor in map(graph.Tensors, range(graph.TensorsLength())):
            quantization = tensor.Quantization()
            if quantization is not None and quantization.ScaleLength() == manifest.vocab_size:
                table = quantization._tab  # where the scale (field 8) and zero-point (field 10) vectors start
                lm_heads.append((table.Vector(table.Offset(8)), table.Vector(table.Offset(10))))
    decoders = [role for role in manifest.graphs if role.startswith("decoder")]
    assert len(lm_heads) == len(decoders) == 4 and len(set(lm_heads)) == 1


def test_full_int8_is_integer_but_attention_and_residual_with_calibrated_masks(tflite_int8):
    from mt5lite.exporters.tflite.attention import BACK, FORWARD

    manifest = load_manifest(tflite_int8)
    quantization = manifest.quantization
    assert manifest.precision == "int8"
    assert quantization.details["activations"] == ("int8; float: attention's scores, softmax and weighted values; "
                                                   "float: the residual stream and RMS norms")
    calibration = quantization.calibration
    assert calibration["samples"] >= 100 and len(calibration["languages"]) >= 10 and calibration["decoder_steps"]
    for role in ("encoder", "decoder"):
        mask = calibration["masking_constants"][role]
        assert -1000 < mask["value"] < 0 and mask["value"] <= mask["bound"] and mask["masked_rows"] > 0
    for role, signature in read_signatures(tflite_int8 / "model.tflite")[0].items():
        float_ops = {op.name for op in signature.ops if "float32" in op.input_dtypes}
        residual = {"MUL", "MEAN", "ADD", "RSQRT"}  # the residual adds and RMS norms
        assert float_ops <= {"QUANTIZE", "SOFTMAX"} | BACK | FORWARD | residual, (role, float_ops)
        softmax = [op for op in signature.ops if op.name == "SOFTMAX"]
        assert softmax and all(op.input_dtypes == ("float32",) for op in softmax), role
        # Every product of two activations float, but the self-attention's weights times the cached values (one per
        # decoder layer), which TensorFlow's quantizer quantizes through the slice of the softmax
        int8_products = [op for op in signature.ops if op.name == "BATCH_MATMUL" and "int8" in op.input_dtypes]
        assert len(int8_products) == (manifest.model.num_decoder_layers if role.startswith("decoder") else 0), role
        products = [op.input_dtypes[:2] for op in signature.ops if op.name == "FULLY_CONNECTED"]
        assert products and all(dtypes == ("int8", "int8") for dtypes in products), role
    for tensor in manifest.graphs["decoder"].outputs:  # the contract's float outputs are kept
        assert tensor.dtype == "float32"


@pytest.mark.parametrize("part", FLOAT_PART_CASES)
def test_each_float_part_finds_ops_of_its_kinds_in_every_graph(tflite_fp32, part):
    from ai_edge_litert import schema_py_generated as schema

    from mt5lite.exporters.tflite.float_parts import FLOAT_PARTS
    from mt5lite.exporters.tflite.splice import op_names

    model = schema.ModelT.InitFromPackedBuf((tflite_fp32 / "model.tflite").read_bytes(), 0)
    found = set(FLOAT_PARTS[part].nodes(model))
    names = op_names(model)
    for graph in model.subgraphs:
        kinds = {graph.tensors[op.outputs[0]].name.decode(): names[op.opcodeIndex] for op in graph.operators}
        mine = found & set(kinds)
        assert mine and {kinds[name] for name in mine} <= FLOAT_PART_CASES[part], part


def test_attention_nodes_are_every_score_softmax_and_weighted_value_but_no_projection(tflite_fp32):
    from ai_edge_litert import schema_py_generated as schema

    from mt5lite.exporters.tflite.attention import attention_nodes
    from mt5lite.exporters.tflite.splice import op_names

    model = schema.ModelT.InitFromPackedBuf((tflite_fp32 / "model.tflite").read_bytes(), 0)
    found = set(attention_nodes(model))
    names = op_names(model)
    kinds: dict[str, set] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            kinds.setdefault(names[op.opcodeIndex], set()).add(graph.tensors[op.outputs[0]].name.decode())
    assert kinds["BATCH_MATMUL"] | kinds["SOFTMAX"] <= found
    assert not found & (kinds["FULLY_CONNECTED"] | kinds["RSQRT"] | kinds["GATHER"] | kinds.get("GELU", set()))
    assert found & kinds["CONCATENATION"] and found & kinds["ADD"]  # the scores' concatenation, bias and mask adds
    assert kinds["ADD"] - found  # but not the residual stream's adds
    assert found <= set().union(*(kinds[k] for k in ("BATCH_MATMUL", "SOFTMAX", "ADD", "MUL", "CONCATENATION",
                                                     "STRIDED_SLICE") if k in kinds))


def test_tflite_fp32_matches_pytorch(demo_model, tflite_fp32):
    report = parity_report(demo_model, tflite_fp32, _pairs(10), ParityOptions(beam_samples=20))
    assert report["max_abs_logit_diff"] <= FP32_ATOL
    assert report["greedy_agreement"] == 1.0 and report["beam_agreement"] == 1.0
    assert report["exact_match"]["candidate"] == report["exact_match"]["reference"]


def test_litert_beam_search_and_generate(tflite_fp32):
    generator = LiteRTGenerator(tflite_fp32, threads=1)
    assert generator.generate(["words fr: 1234", "number ja: 三百"], DecodingOptions(num_beams=4)) == [
        "mille deux cent trente-quatre", "300"]


def test_litert_keeps_read_only_inputs_in_place_and_copies_the_rest(tflite_fp32):
    """A read-only input given again is not copied in again (the step's cross K/V and mask), yet every step sees
    its own values: an array changed in place (the cache) or a new read-only array is copied, and the outputs equal
    a fresh runtime's."""
    import numpy as np

    from mt5lite.runtimes.decoding import StepState

    def backend():
        return LiteRTGenerator(tflite_fp32, threads=1).backend

    kept, fresh = backend(), backend()
    signature = kept._runners()["decoder"]
    copies = []

    class Counting:  # the real input buffer, its writes counted by input name
        def __init__(self, name, buffer):
            self.name, self.buffer, self.capsule = name, buffer, buffer.capsule

        def write(self, data):
            copies.append(self.name)
            self.buffer.write(data)

    signature._inputs = {name: Counting(name, buffer) for name, buffer in signature._inputs.items()}
    ids = np.zeros((1, kept.specs["encoder"].inputs[0].shape[1]), np.int64)
    ids[0, :3] = [5, 6, 1]
    mask = (ids != 0).astype(np.int64)
    encoded = fresh.encode(encoder_feeds(ids, mask))
    state = StepState.start(mask, encoded["cross_k"], encoded["cross_v"], kept.max_target_length)
    other = StepState.start(mask, encoded["cross_k"] * 2, encoded["cross_v"], kept.max_target_length)
    for step, chosen in enumerate((state, state, other, state)):
        chosen.cache_k[:, :, :, step] = step + 1  # changed in place: must be copied in every time
        feeds = {"decoder_input_ids": np.array([[0]]), "position": np.array([step]),
                 "encoder_attention_mask": chosen.mask, "cross_k": chosen.cross_k, "cross_v": chosen.cross_v,
                 "self_k_cache": chosen.cache_k, "self_v_cache": chosen.cache_v}
        copies.clear()
        got, want = kept.step(feeds), fresh.step(feeds)
        assert all(np.array_equal(got[name], want[name]) for name in want)
        assert "self_k_cache_0" in copies
        for name in ("cross_k_0", "cross_k_1"):  # a new view of each layer, of the same read-only array: kept
            assert (name in copies) == (step != 1)


def test_refusals(demo_export, static_export, tflite_fp32, tmp_path):
    with pytest.raises(InputError, match="--samples is 50: static calibration needs at least 100"):
        export_tflite(static_export, tmp_path / "int8", "int8", calibration=CalibrationDraw(samples=50), gate=False)
    with pytest.raises(InputError, match="max_decoder_steps must be at least 1, got 0"):
        export_tflite(static_export, tmp_path / "int8", "int8", calibration=CalibrationDraw(max_decoder_steps=0))
    with pytest.raises(InputError, match="has dynamic shapes.*--static-shapes"):
        export_tflite(demo_export, tmp_path / "dyn", "fp32")
    with pytest.raises(InputError, match="unknown TFLite precision 'int4'"):
        export_tflite(static_export, tmp_path / "x", "int4", gate=False)
    with pytest.raises(InputError, match="already exists; use --force"):
        export_tflite(static_export, tflite_fp32, "fp32")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_corrupted_or_mismatched_tflite_is_refused_before_invoke(tflite_fp32, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tflite_fp32, broken)
    data = bytearray((broken / "model.tflite").read_bytes())
    data[len(data) // 3] ^= 0x5A
    (broken / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="model.tflite: sha256 does not match"):
        LiteRTGenerator(broken)
    foreign = tmp_path / "foreign"
    shutil.copytree(tflite_fp32, foreign)
    (foreign / "model.tflite").write_bytes(b"TFL3" + b"\0" * 64)  # a wrong file, its hash recorded
    manifest = json.loads((foreign / "manifest.json").read_text())
    from mt5lite.manifest import sha256_file

    manifest["files"]["model.tflite"] = sha256_file(foreign / "model.tflite")
    (foreign / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="model.tflite: LiteRT cannot load its 'encoder' signature"):
        LiteRTGenerator(foreign)
    unsigned = tmp_path / "unsigned"
    shutil.copytree(tflite_fp32, unsigned)
    manifest = json.loads((unsigned / "manifest.json").read_text())
    del manifest["graphs"]["decoder"]["signature"]
    (unsigned / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="names no signature for the decoder graph; re-export"):
        LiteRTGenerator(unsigned)


def test_export_tflite_cli_refuses_bad_calibration(static_export, tmp_path):
    few = tmp_path / "few.tsv"
    few.write_text("en\tone sentence\nde\tein Satz\n", encoding="utf-8")
    result = run_cli("export", "tflite", "--export", str(static_export), "--output", str(tmp_path / "t"),
                     "--quantize", "int8", "--calibration", str(few))
    assert result.returncode == 2 and b"few.tsv has 2 samples, 98 short" in result.stderr
    assert b"Traceback" not in result.stderr and not (tmp_path / "t").exists()


def test_litert_runtime_imports_no_torch_transformers_or_tensorflow(tflite_fp32):
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Forbid(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "tensorflow", "onnxruntime"):
                    raise ImportError("forbidden import: " + name)
        sys.meta_path.insert(0, Forbid())
        from mt5lite.runtimes.litert import LiteRTGenerator
        generator = LiteRTGenerator({str(tflite_fp32)!r}, threads=1)
        print(generator.generate(["words en: 3"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "three" in result.stdout
