"""The split ONNX export: graphs, manifest, validation, atomic writes, and parity of the ONNX Runtime generator."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from mt5lite.data import read_task_pairs
from mt5lite.errors import InputError, ParityError
from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
from mt5lite.manifest import SpecialTokens, load_manifest
from mt5lite.runtimes.onnx_runtime import OnnxGenerator
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.torch_backend import TorchBackend
from mt5lite.runtimes.torch_reference import TorchReference
from mt5lite.verification.teacher_forced import Differences, teacher_forced

# Ops that TFLite has as builtins (after onnx2tf); no If, Loop or Scan.
TFLITE_FRIENDLY_OPS = {
    "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Div", "Equal", "Expand", "Gather", "Greater",
    "Less", "LessOrEqual", "Log", "MatMul", "Mul", "Neg", "Pow", "ReduceMean", "Reshape", "Shape", "Slice",
    "Softmax", "Sqrt", "Sub", "Tanh", "Transpose", "Unsqueeze", "Squeeze", "Where", "Abs", "Min", "Max", "Erf",
    "Relu", "Range", "Not", "And", "Or", "Identity", "Gemm",
}
FP32_ATOL = 1e-4  # fp32 ONNX Runtime vs PyTorch, on logits and encoder outputs


def test_export_layout_and_manifest(demo_export):
    names = {p.name for p in demo_export.iterdir()}
    assert {"encoder.onnx", "decoder.onnx", "spiece.model", "manifest.json"} <= names
    manifest = load_manifest(demo_export)
    assert set(manifest.files) >= {"encoder.onnx", "decoder.onnx", "spiece.model"}
    assert manifest.max_target_length == 32 and manifest.special_tokens == SpecialTokens(pad=0, eos=1,
                                                                                         decoder_start=0)
    assert manifest.vocab_size == 1280 and manifest.tokenizer.pieces == 1200
    decoder = manifest.graphs["decoder"]
    layers = manifest.model.num_decoder_layers
    layered = ("cross_k", "cross_v", "self_k_cache", "self_v_cache")
    assert [t.name for t in decoder.inputs] == ["decoder_input_ids", "position", "encoder_attention_mask", *(
        f"{name}_{layer}" for name in layered for layer in range(layers))]
    # one layer per input: the graph never slices a stacked cache (that would copy all of it at every step)
    assert decoder.tensors["self_k_cache_0"].shape == ("batch", manifest.model.num_heads, 32, manifest.model.d_kv)
    graph = onnx.load(str(demo_export / "decoder.onnx"), load_external_data=False).graph
    inputs = {t.name for t in decoder.inputs}
    assert not [node.op_type for node in graph.node if node.op_type in {"Gather", "Split", "Slice"}
                and node.input[0] in inputs]


@pytest.mark.parametrize("graph", ["encoder.onnx", "decoder.onnx"])
def test_graphs_pass_the_checker_and_use_only_tflite_friendly_ops(demo_export, graph):
    path = demo_export / graph
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"If", "Loop", "Scan"}
    assert ops <= TFLITE_FRIENDLY_OPS, ops - TFLITE_FRIENDLY_OPS
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["mt5lite.export_id"] == load_manifest(demo_export).export_id
    assert metadata["mt5lite.max_target_length"] == "32"


def test_greedy_and_beam_match_pytorch_on_held_out_inputs(demo_model, demo_export):
    pairs = read_task_pairs()[::10]  # 60 inputs, every language and both directions
    sources = [p.source for p in pairs]
    generator, reference = OnnxGenerator(demo_export), TorchReference(demo_model)
    for options in (DecodingOptions(max_new_tokens=32), DecodingOptions(max_new_tokens=32, num_beams=4)):
        assert generator.generate_ids(sources, options) == reference.generate_ids(sources, options)


def test_tiny_models_greedy_and_beam_match_pytorch(tiny_model, tiny_export):
    sources = ["words en: 12", "number fr: douze", "Привет, мир! 👋", "東京は近い"]
    generator, reference = OnnxGenerator(tiny_export), TorchReference(tiny_model)
    for options in (DecodingOptions(max_new_tokens=12), DecodingOptions(max_new_tokens=12, num_beams=4)):
        assert generator.generate_ids(sources, options) == reference.generate_ids(sources, options)


def test_padded_batch_equals_single_inputs(demo_export):
    generator = OnnxGenerator(demo_export)
    sources = ["words de: 9", "number ko: 구천구백구십구", "words th: 4711", "number en: one thousand and one"]
    batched = generator.generate_ids(sources)
    assert batched == [generator.generate_ids([s])[0] for s in sources]


def test_every_cache_position_matches_pytorch_up_to_the_last(tiny_model, tiny_export):
    from mt5lite.checkpoint import load_model

    generator = OnnxGenerator(tiny_export)
    model = load_model(tiny_model)
    ids, mask = generator.encode_batch(["words en: 1234", "number ru: сто"])
    t_max = generator.backend.max_target_length
    rng = np.random.default_rng(0)
    targets = [rng.integers(3, 1000, size=t_max).tolist() for _ in range(2)]  # fill positions 0 .. T_max - 1
    found = teacher_forced(TorchBackend(model, t_max), generator.stepper, ids, mask, targets, start_id=0)
    assert set(found.max_abs_diff) == {"encoder_hidden_states", "cross_k", "cross_v", "logits"}
    assert max(found.max_abs_diff.values()) <= FP32_ATOL, found.max_abs_diff
    assert len(found.same_top) == 2 * t_max and found.top_agreement == 1.0 and not found.flip_margins


def test_differences_count_the_picks_and_the_reference_margin_at_a_flip():
    found = Differences()
    reference = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 1.5]])
    found.add_picks(np.array([[0.0, 2.0, 2.5], [2.0, 0.0, 1.0]]), reference)  # row 0 flips to token 2
    assert found.same_top == [False, True] and found.flip_margins == [2.0] and found.top_agreement == 0.5


def test_static_shapes_export(demo_model, tmp_path):
    out = tmp_path / "static"
    export_onnx(demo_model, out, OnnxExportConfig(max_source_length=24, max_target_length=16, static_shapes=True))
    manifest = load_manifest(out)
    assert manifest.graphs["encoder"].inputs[0].shape == (1, 24)
    model = onnx.load(str(out / "decoder.onnx"))
    for tensor in model.graph.input:
        assert all(d.HasField("dim_value") for d in tensor.type.tensor_type.shape.dim), tensor.name
    sources = ["words es: 15", "number ja: 三百"]
    options = DecodingOptions(max_new_tokens=16)
    assert OnnxGenerator(out).generate_ids(sources, options) == TorchReference(demo_model).generate_ids(sources,
                                                                                                        options)


def test_refuses_to_overwrite_without_force(demo_model, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(InputError, match="already exists; use --force"):
        export_onnx(demo_model, out)


def test_failed_validation_leaves_nothing_behind(tiny_mt5, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ParityError) as info:
        export_onnx(tiny_mt5, out, OnnxExportConfig(max_source_length=16, max_target_length=8, atol=0.0, rtol=0.0))
    assert "logits: shape" in str(info.value) and "max |diff|" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_an_export(tiny_mt5, tmp_path):
    out = tmp_path / "again"
    config = OnnxExportConfig(max_source_length=16, max_target_length=8)
    first = export_onnx(tiny_mt5, out, config).manifest.export_id
    second = export_onnx(tiny_mt5, out, config, force=True).manifest.export_id
    assert first != second and load_manifest(out).export_id == second
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def _external(model) -> dict[str, tuple[str, int, int]]:
    """Initializer name -> (location, offset, length) of every external tensor of ``model``."""
    found = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            found[tensor.name] = (entries["location"], int(entries["offset"]), int(entries["length"]))
    return found


def test_external_data_stays_inside_the_folder(tiny_mt5, tmp_path):
    out = tmp_path / "external"  # external_data_bytes=1: the graphs are first saved with per-graph data files
    export_onnx(tiny_mt5, out, OnnxExportConfig(max_source_length=16, max_target_length=8, external_data_bytes=1))
    manifest = load_manifest(out)
    assert {"encoder.onnx", "decoder.onnx", "weights.bin"} <= set(manifest.files)
    assert {p.name for p in out.iterdir()} == set(manifest.files) | {"manifest.json"}  # no .data file left
    for graph in ("encoder.onnx", "decoder.onnx"):
        model = onnx.load(str(out / graph), load_external_data=False)
        assert {location for location, _, _ in _external(model).values()} == {"weights.bin"}  # inside the folder
        assert all(len(t.raw_data) < 1024 for t in model.graph.initializer)  # every weight matrix went out
    # Moved away from where it was written, the export still loads its weights and decodes as PyTorch does.
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    sources = ["words en: 5", "number fr: douze", "words ja: 2026", "number ko: 오십팔"]
    generator, reference = OnnxGenerator(moved), TorchReference(tiny_mt5)
    for options in (DecodingOptions(max_new_tokens=8), DecodingOptions(max_new_tokens=8, num_beams=3)):
        assert generator.generate_ids(sources, options) == reference.generate_ids(sources, options)


def test_a_weight_both_graphs_use_is_stored_once(demo_model, demo_export):
    manifest = load_manifest(demo_export)
    encoder, decoder = (_external(onnx.load(str(demo_export / f"{role}.onnx"), load_external_data=False))
                        for role in ("encoder", "decoder"))
    shared = set(encoder.values()) & set(decoder.values())
    embedding = manifest.vocab_size * manifest.model.d_model * 4
    assert [length for _, _, length in shared] == [embedding]  # the token embedding: one copy, two readers
    assert manifest.weights["tensors"] == len(encoder) + len(decoder)
    assert manifest.weights["unique_tensors"] == len(set(encoder.values()) | set(decoder.values()))
    assert all(offset % 4096 == 0 for _, offset, _ in [*encoder.values(), *decoder.values()])  # mappable
    # On disk no larger than the checkpoint (+5%): before, each graph held its own embedding.
    assert (demo_export / "weights.bin").stat().st_size <= 1.05 * (demo_model / "model.safetensors").stat().st_size


def test_bad_export_options_are_named(tiny_mt5, tmp_path):
    with pytest.raises(InputError, match="max_source_length must be at least 2.*max_target_length must be"):
        export_onnx(tiny_mt5, tmp_path / "x", OnnxExportConfig(max_source_length=1, max_target_length=0))
    assert not (tmp_path / "x").exists()


def test_over_long_input_errors_or_truncates(demo_export):
    generator = OnnxGenerator(demo_export)
    long_text = "words en: " + "1 " * 100
    with pytest.raises(InputError, match="more than the maximum of 64"):
        generator.generate([long_text])
    from mt5lite.runtimes.tokenizer import Overflow

    with pytest.warns(UserWarning, match="truncated to 64 tokens"):
        assert len(generator.generate([long_text], overflow=Overflow.TRUNCATE)) == 1


def test_copy_of_an_export_is_usable_elsewhere(demo_export, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(demo_export, moved)
    assert OnnxGenerator(moved).generate(["words en: 42"]) == ["forty-two"]
