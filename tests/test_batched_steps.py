"""A static export's decoder step at batch 4 (``decoder_b4``): the beams of beam search in one call, every weight
shared with the batch-1 step, and outputs identical to decoding row by row."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from mt5lite.contract import parse_role
from mt5lite.errors import InputError, ModelFileError, ParityError
from mt5lite.exporters.onnx.batched import write_batched_decoders
from mt5lite.exporters.onnx.export import OnnxExportConfig
from mt5lite.exporters.onnx.variants import without_activation_rounding
from mt5lite.exporters.tflite.batched_ranges import quantization_mismatches
from mt5lite.exporters.validation import heldout_sample
from mt5lite.manifest import MANIFEST_NAME, load_manifest
from mt5lite.runtimes.generators import open_export
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.tokenizer import Overflow

TRUNCATE = Overflow.TRUNCATE  # held-out sentences run past the static export's 32 tokens


def test_static_export_serves_batch_4_from_the_same_weights(static_export):
    manifest = load_manifest(static_export)
    assert manifest.decoder_batches == {1: "decoder", 4: "decoder_b4"}
    batched = manifest.graphs["decoder_b4"]
    assert batched.tensors["self_k_cache_0"].shape[0] == 4 and batched.tensors["logits"].shape[0] == 4
    assert batched.external_data == manifest.graphs["decoder"].external_data == ("weights.bin",)
    graph = onnx.load(str(static_export / batched.file), load_external_data=False)
    locations = {entry.value for t in graph.graph.initializer for entry in t.external_data if entry.key == "location"}
    assert locations == {"weights.bin"}
    assert (static_export / batched.file).stat().st_size < 0.01 * (static_export / "weights.bin").stat().st_size


@pytest.fixture(scope="module")
def static_weight_int8(static_export, tmp_path_factory) -> Path:
    """The static export quantized by weight-int8: ``MatMulNBits`` rounds its activations to int8 at run time."""
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export

    out = tmp_path_factory.mktemp("weight-int8") / "int8"
    quantize_export(static_export, out, QuantizeConfig(recipe="weight-int8", samples=100, max_decoder_steps=64),
                    gate=False)
    return out


def test_weight_int8_records_its_arm64_need_and_warns_where_it_is_missing(static_weight_int8, monkeypatch):
    """ONNX Runtime's 8-bit ``MatMulNBits`` kernels need the arm64 dot-product instructions; opening the export on a
    CPU without them (a Cortex-A72: Raspberry Pi 4) warns in one line, and nowhere else."""
    import warnings

    from mt5lite.runtimes import onnx_runtime

    assert load_manifest(static_weight_int8).quantization.details["arm64_needs"] == ["asimddp"]
    monkeypatch.setattr(onnx_runtime, "arm64_features", lambda: set())
    with pytest.warns(UserWarning, match="asimddp.*--recipe static-int8"):
        open_export(static_weight_int8)
    monkeypatch.setattr(onnx_runtime, "arm64_features", lambda: {"asimddp"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_export(static_weight_int8)


@pytest.mark.parametrize("export", ["static_export", "static_int8", "static_weight_int8", "tflite_fp32",
                                    "tflite_int8"])
def test_beams_in_one_call_are_identical_to_row_by_row(export, request, monkeypatch):
    """(weight-int8 rounds activations at run time, so a near tie may turn; the demo model's inputs have none.)"""
    path = request.getfixturevalue(export)
    batched, rows = open_export(path), open_export(path, row_by_row=True)
    roles = {"batched": [], "rows": []}
    for name, generator in (("batched", batched), ("rows", rows)):
        def step(feeds, role="decoder", run=generator.backend.step, seen=roles[name]):
            seen.append(role)
            return run(feeds, role)
        monkeypatch.setattr(generator.backend, "step", step)  # records which graph each engine call runs
    texts = [s.text for s in heldout_sample(8)]
    for beams in (4, 1):
        options = DecodingOptions(num_beams=beams, max_new_tokens=12)
        assert batched.generate_ids(texts, options, TRUNCATE) == rows.generate_ids(texts, options, TRUNCATE)
    # beams: 4 rows per input; greedy: 8 inputs, 4 at a time
    batches = {name: {parse_role(role).batch for role in seen} for name, seen in roles.items()}
    assert batches == {"batched": {4}, "rows": {1}}


@pytest.fixture(scope="module")
def static_dynamic_int8(static_export, tmp_path_factory) -> Path:
    """The static export quantized by dynamic-int8: ``DynamicQuantizeLinear`` scales span every row and position."""
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export

    out = tmp_path_factory.mktemp("dynamic-int8") / "int8"
    quantize_export(static_export, out, QuantizeConfig(recipe="dynamic-int8"), gate=False)
    return out


def test_dynamic_int8_variants_are_checked_on_float_products(static_dynamic_int8):
    """Dynamic int8's one scale over every row rounds a batch of 4 otherwise than each row alone, so its twins
    compute each dynamically quantized product in float with the dequantized weights: no ``MatMulInteger`` left,
    the graph's function to within its quantization noise, and the twins removed after."""
    import onnxruntime as ort

    from mt5lite.exporters.onnx.variants import random_feeds

    spec = load_manifest(static_dynamic_int8).graphs["decoder"]
    before = sorted(p.name for p in static_dynamic_int8.iterdir())
    feeds = random_feeds(spec)
    outputs = []
    with without_activation_rounding(static_dynamic_int8, (spec,)) as (twin,):
        for path in (static_dynamic_int8 / spec.file, twin):
            ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
            assert ("MatMulInteger" in ops) == (path != twin)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outputs.append(session.run(["logits"], feeds)[0])
    graph, twin_logits = outputs
    assert 0 < np.abs(twin_logits - graph).max() < 0.05 * np.abs(graph).max()
    assert sorted(p.name for p in static_dynamic_int8.iterdir()) == before


@pytest.mark.parametrize("weights", ["int8", "uint8"])
def test_a_dynamically_quantized_product_computes_in_float_in_its_twin(weights):
    """``DynamicQuantizeLinear`` -> ``MatMulInteger`` -> ``Cast`` -> ``Mul`` (ONNX Runtime's dynamic int8) becomes
    x @ dequantized weights in float, with weights of either sign and per-column zero points that are not 0; a
    ``MatMulInteger`` that reads another quantizer's zero point is left as it was."""
    import onnxruntime as ort
    from onnx import TensorProto, numpy_helper

    from mt5lite.exporters.onnx.variants import float_compute

    rng = np.random.default_rng(0)
    low, high, dtype = (-128, 128, np.int8) if weights == "int8" else (0, 256, np.uint8)
    w = rng.integers(low, high, (16, 8)).astype(dtype)
    zero = rng.integers(1, 50, 8).astype(dtype)  # per column, none of them 0
    scale = (rng.random(8) * 0.01 + 0.001).astype(np.float32)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["x_q", "x_s", "x_z"]),
             helper.make_node("MatMulInteger", ["x_q", "w", "x_z", "w_z"], ["p"]),
             helper.make_node("Cast", ["p"], ["p_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x_s", "w_s"], ["s"]),
             helper.make_node("Mul", ["p_f", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(zero, "w_z"),
                               numpy_helper.from_array(scale, "w_s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    exact = x @ ((w.astype(np.float32) - zero.astype(np.float32)) * scale)

    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(["y"], {"x": x})[0]

    rounded = run(model)
    assert float_compute(model) and "MatMulInteger" not in {n.op_type for n in model.graph.node}
    assert np.abs(run(model) - exact).max() <= 1e-5 * np.abs(exact).max() < np.abs(rounded - exact).max()
    other = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    other.graph.node[1].input[2] = "w_z"  # not the quantizer's zero point: not this rewrite's pattern
    assert not float_compute(other)


@pytest.mark.parametrize("export", ["static_export", "static_dynamic_int8", "static_weight_int8"])
def test_a_step_that_mixes_rows_is_refused(export, request, tmp_path):
    """A decoder whose logits depend on the other rows (here: plus their mean) passes at batch 1 but not at 4, also
    where the check runs its twins without run-time activation rounding (weight-int8's ``MatMulNBits``, dynamic
    int8's ``MatMulInteger``)."""
    root = tmp_path / "export"
    shutil.copytree(request.getfixturevalue(export), root)
    model = onnx.load(str(root / "decoder.onnx"), load_external_data=False)
    dynamic = any(node.op_type == "DynamicQuantizeLinear" for node in model.graph.node)
    assert dynamic == (export == "static_dynamic_int8"), "the dynamic case is no longer covered"
    producer = next(node for node in model.graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_rows"
    model.graph.node.extend([
        helper.make_node("ReduceMean", ["logits_rows"], ["logits_mean"], axes=[0], keepdims=1),
        helper.make_node("Add", ["logits_rows", "logits_mean"], ["logits"])])
    onnx.save(model, str(root / "decoder.onnx"))
    graphs = dict(load_manifest(root, verify_hashes=False).graphs)
    with pytest.raises(ParityError, match="decoder step at batch 4.*batch-1 decoder step row by row"):
        write_batched_decoders(root, graphs, [4])
    assert not list(root.glob(".check-*"))  # the float-compute twins are gone after a refusal too


def test_variants_are_checked_without_run_time_activation_rounding(static_weight_int8):
    """Rounding activations to int8 inside ``MatMulNBits`` turns last-bit kernel differences into whole steps, so the
    check runs twins at accuracy level 0 (same weights, float compute), written beside the graphs and removed."""
    manifest = load_manifest(static_weight_int8)
    specs = (manifest.graphs["decoder"], manifest.graphs["decoder_b4"])
    before = sorted(p.name for p in static_weight_int8.iterdir())

    def levels(path):
        model = onnx.load(str(path), load_external_data=False)
        return {a.i for n in model.graph.node if n.op_type == "MatMulNBits" for a in n.attribute
                if a.name == "accuracy_level"}

    assert levels(static_weight_int8 / "decoder.onnx") == {4}
    with without_activation_rounding(static_weight_int8, specs) as files:
        assert [f.parent for f in files] == [static_weight_int8] * 2  # beside weights.bin, which they point into
        assert [levels(f) for f in files] == [{0}, {0}]
    assert sorted(p.name for p in static_weight_int8.iterdir()) == before


def test_a_weight_int8_batched_step_is_checked_on_its_twins(static_weight_int8, tmp_path, monkeypatch):
    from mt5lite.exporters.onnx import variants

    root = tmp_path / "export"
    shutil.copytree(static_weight_int8, root)
    opened = []
    original = variants.without_activation_rounding

    @contextmanager
    def recorded(directory, specs):
        with original(directory, specs) as files:
            opened.extend(file.name for file in files)
            yield files

    monkeypatch.setattr(variants, "without_activation_rounding", recorded)
    write_batched_decoders(root, dict(load_manifest(root, verify_hashes=False).graphs), [4])
    assert opened == [".check-decoder.onnx", ".check-decoder_b4.onnx"]


def test_batch_sizes_are_checked():
    with pytest.raises(InputError, match="whole numbers from 2 to 64, got 1, 100"):
        OnnxExportConfig(static_shapes=True, decoder_batches=(1, 4, 100))
    assert OnnxExportConfig(decoder_batches=()).decoder_batches == ()


def _rewrite_manifest(root, change) -> None:
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data["graphs"])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("change", "message"), [
    (lambda graphs: graphs.update(decoder_x=graphs["decoder"]), "unknown graph 'decoder_x'"),
    (lambda graphs: graphs.update(decoder_b8=graphs["decoder_b4"]),
     "decoder_b8 logits has shape .4, 1280., not batch 8"),
    (lambda graphs: graphs["decoder_b4"]["outputs"].pop(), "decoder_b4 outputs are"),
])
def test_manifest_refuses_a_bad_batched_step(static_export, tmp_path, change, message):
    root = tmp_path / "export"
    shutil.copytree(static_export, root)
    _rewrite_manifest(root, change)
    with pytest.raises(ModelFileError, match=message):
        load_manifest(root)



def test_full_int8_quantizes_the_batched_step_as_the_batch_1_step(tflite_int8):
    """Calibrated at batch 4 the float kernels round otherwise; the batched step gets the batch-1 step's ranges."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = (tflite_int8 / "model.tflite").read_bytes()
    assert quantization_mismatches(model, "decoder", "decoder_b4") == 0
    # one scale a single ulp off is counted
    parsed = schema.ModelT.InitFromPackedBuf(model, 0)
    batched = next(s.subgraphIndex for s in parsed.signatureDefs if s.signatureKey == b"decoder_b4")
    graph = parsed.subgraphs[batched]
    tensor = next(graph.tensors[op.outputs[0]] for op in graph.operators
                  if graph.tensors[op.outputs[0]].type == schema.TensorType.INT8)  # an activation
    tensor.quantization.scale = np.nextafter(np.asarray(tensor.quantization.scale, np.float32), np.float32(1))
    builder = flatbuffers.Builder(len(model))
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    assert quantization_mismatches(bytes(builder.Output()), "decoder", "decoder_b4") == 1
