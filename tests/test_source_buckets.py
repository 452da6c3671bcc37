"""A static export's source-length buckets (``encoder_s16``, ``decoder_s16``, ``decoder_b4_s16``): the graphs at a
shorter source length, every weight shared, a short input running the shortest that holds it, and outputs identical
to padding it to ``max_source_length``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mt5lite.contract import encoder_feeds, parse_role
from mt5lite.errors import CheckpointError, InputError, ModelFileError, ParityError
from mt5lite.exporters.onnx.buckets import recorded_constants, write_source_buckets
from mt5lite.exporters.onnx.export import OnnxExportConfig
from mt5lite.exporters.onnx.variants import constant_values
from mt5lite.exporters.validation import heldout_sample
from mt5lite.manifest import MANIFEST_NAME, load_manifest
from mt5lite.runtimes.generators import open_export
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.tokenizer import Overflow

#: Short task inputs (a few tokens: the 16-position bucket) and held-out sentences (past 16: the full length).
SHORT = ["words fr: 12", "words de: 3", "numbers en: forty-two", "words ja: 7"]


def test_the_static_export_has_buckets_below_its_source_length(static_export):
    manifest = load_manifest(static_export)
    assert manifest.max_source_length == 32 and manifest.source_lengths == [16, 32]  # default 16, 32 below S
    assert sorted(manifest.graphs) == ["decoder", "decoder_b4", "decoder_b4_s16", "decoder_s16", "encoder",
                                       "encoder_s16"]
    assert manifest.graphs["encoder_s16"].tensors["input_ids"].shape == (1, 16)
    assert manifest.graphs["decoder_b4_s16"].tensors["cross_k_0"].shape[::2] == (4, 16)
    weights = static_export / "weights.bin"
    for role in ("encoder_s16", "decoder_s16", "decoder_b4_s16"):
        graph = onnx.load(str(static_export / manifest.graphs[role].file), load_external_data=False)
        locations = {e.value for t in graph.graph.initializer for e in t.external_data if e.key == "location"}
        assert locations == {"weights.bin"}, role
        assert (static_export / manifest.graphs[role].file).stat().st_size < 0.02 * weights.stat().st_size


def test_only_the_encoders_position_constants_change(static_export):
    """What a bucket replaces: the encoder's relative-position tables and shape constants; the decoder step takes
    its source length from its inputs alone."""
    constants = recorded_constants(static_export, load_manifest(static_export).graphs)
    assert list(constants) == [16] and constants[16]["decoder"] == {}
    shapes = sorted(tuple(numpy_helper.to_array(t).shape) for t in constants[16]["encoder"].values())
    assert (16, 16) in shapes and all(len(shape) <= 2 for shape in shapes)


@pytest.mark.parametrize("export", ["static_export", "static_int8", "tflite_fp32", "tflite_int8"])
def test_short_inputs_run_the_bucket_and_decode_identically(export, request, monkeypatch):
    path = request.getfixturevalue(export)
    bucketed, full = open_export(path), open_export(path, full_length=True)
    seen = []

    def encode(feeds, role="encoder", run=bucketed.backend.encode):
        seen.append(role)
        return run(feeds, role)

    monkeypatch.setattr(bucketed.backend, "encode", encode)
    texts = SHORT + [s.text for s in heldout_sample(4)]
    for beams in (1, 4):
        options = DecodingOptions(num_beams=beams, max_new_tokens=12)
        for text in texts:
            assert bucketed.generate_ids([text], options, Overflow.TRUNCATE) == \
                full.generate_ids([text], options, Overflow.TRUNCATE), (text, beams)
    assert bucketed.encode_batch(SHORT)[0].shape == (4, 16) and full.encode_batch(SHORT)[0].shape == (4, 32)
    assert set(seen) == {"encoder_s16", "encoder"}


def test_a_quantized_export_keeps_its_quantization_in_its_buckets(static_export, static_int8):
    source, quantized = load_manifest(static_export), load_manifest(static_int8)
    assert sorted(quantized.graphs) == sorted(source.graphs)
    assert recorded_constants(static_int8, quantized.graphs).keys() == {16}
    full = onnx.load(str(static_int8 / "encoder.onnx"), load_external_data=False)
    short = onnx.load(str(static_int8 / "encoder_s16.onnx"), load_external_data=False)
    assert [n.op_type for n in full.graph.node] == [n.op_type for n in short.graph.node]
    scales = {t.name: t for t in full.graph.initializer if "scale" in t.name}
    assert scales and all(t == scales[t.name] for t in short.graph.initializer if t.name in scales)


def _encoder_graphs(static_export, tmp_path):
    root = tmp_path / "export"
    shutil.copytree(static_export, root)
    graphs = {role: spec for role, spec in load_manifest(root).graphs.items() if role == "encoder"}
    return root, graphs


def test_a_bucket_without_its_constants_is_refused(static_export, tmp_path):
    root, graphs = _encoder_graphs(static_export, tmp_path)
    with pytest.raises(CheckpointError, match="encoder.onnx cannot take source-length bucket 16 .*--source-buckets"):
        write_source_buckets(root, graphs, {16: {"encoder": {}}})


def test_a_bucket_that_computes_otherwise_is_refused(static_export, tmp_path):
    """The relative-position buckets of length 16 replaced by zeros: shapes hold, the encoder's outputs do not."""
    root, graphs = _encoder_graphs(static_export, tmp_path)
    constants = recorded_constants(static_export, load_manifest(static_export).graphs)[16]["encoder"]
    model = onnx.load(str(root / "encoder.onnx"), load_external_data=False)
    tables = [name for name, t in constants.items() if numpy_helper.to_array(t).shape == (16, 16)
              and numpy_helper.to_array(t).max() > 0]
    assert tables and all(name in constant_values(model) for name in tables)
    for name in tables:
        constants[name] = numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(constants[name])), name)
    with pytest.raises(ParityError, match=r"encoder_s16.onnx \(the encoder over 16 source positions\)"):
        write_source_buckets(root, graphs, {16: {"encoder": constants}})


def test_bucket_lengths_are_checked():
    with pytest.raises(InputError, match=r"from 2 to max_source_length - 1 \(31\), got 32, 1"):
        OnnxExportConfig(max_source_length=32, static_shapes=True, source_buckets=(16, 32, 1))
    assert OnnxExportConfig(source_buckets=()).source_buckets == ()


@pytest.mark.parametrize(("change", "message"), [
    (lambda graphs: graphs.update(encoder_s8=graphs.pop("encoder_s16")),
     r"encoder_s8 input_ids has shape \[1, 16\], not source length 8"),
    (lambda graphs: graphs.update(encoder_s40=graphs["encoder"]), "encoder_s40 is a source-length bucket not shorter"),
    (lambda graphs: graphs.update(encoder_b4=graphs["encoder"]), "unknown graph 'encoder_b4'"),
    (lambda graphs: graphs.pop("decoder_b4_s16"), "source-length bucket 16 has no decoder_b4_s16"),
])
def test_manifest_refuses_a_bad_bucket(static_export, tmp_path, change, message):
    root = tmp_path / "export"
    shutil.copytree(static_export, root)
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data["graphs"])
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=message):
        load_manifest(root)


def test_roles_name_kind_batch_and_length():
    assert parse_role("decoder_b4_s16").name == "decoder_b4_s16"
    assert (parse_role("encoder_s16").kind, parse_role("encoder_s16").source) == ("encoder", 16)
    assert [parse_role(r) for r in ("encoder_b4", "decoder_b1", "decoder_s16_b4", "decoder_s0")] == [None] * 4


def test_inputs_padded_otherwise_run_on_the_bucket_that_holds_them(static_export):
    """Feeds padded for another export (a parity check compares two) are padded to a length the graphs take, and
    the outputs cut back to the feeds' own length."""
    generator = open_export(static_export)
    ids, mask = generator.tokenizer.encode_batch(SHORT)  # padded to the longest input only
    assert ids.shape[1] < 16
    found = generator.stepper.encode(encoder_feeds(ids, mask))
    padded = generator.stepper.encode(encoder_feeds(*generator.encode_batch(SHORT)))
    assert found["cross_k"].shape[3] == ids.shape[1]
    np.testing.assert_array_equal(found["cross_k"], padded["cross_k"][:, :, :, : ids.shape[1]])
    assert generator.tokenizer.encode_batch(SHORT, pad_to=[16, 32])[0].shape == (4, 16)
    assert generator.tokenizer.encode_batch(SHORT, pad_to=24)[0].shape == (4, 24)


def test_onnx_runtime_loads_a_further_graph_when_it_first_runs(static_export):
    """Each ONNX Runtime session packs the weights it reads for itself: only what runs is loaded."""
    generator = open_export(static_export)
    assert sorted(generator.backend.sessions) == ["decoder", "encoder"]
    generator.generate(["words fr: 12"])
    assert sorted(generator.backend.sessions) == ["decoder", "decoder_s16", "encoder", "encoder_s16"]
