"""The full-int8 conversion's stand-in lm_head: the spliced model against what TensorFlow makes of the real weights."""

from __future__ import annotations

import numpy as np
import pytest

from mt5lite.exporters.tflite.splice import activation_params, per_channel_int8


def test_per_channel_int8_is_symmetric_narrow_range_half_away_from_zero():
    weight = np.array([[0.5, -1.0, 0.25], [2.0, 0.0, -0.5], [0.0, 0.0, 0.0]], np.float32)
    values, scales = per_channel_int8(weight)
    assert scales[:2] == pytest.approx([1.0 / 127, 2.0 / 127])
    assert scales[2] == 1.0  # an all-zero row keeps a usable scale
    assert values.tolist() == [[64, -127, 32], [127, 0, -32], [0, 0, 0]]  # 63.5 -> 64, 31.75 -> 32
    assert values.min() >= -127


def test_activation_params_hold_zero_and_round_half_away_from_zero():
    scale, zero = activation_params(-1.0, 1.0)  # zero point -0.5 from either end: rounds to -1
    assert scale == pytest.approx(2.0 / 255) and zero == -1
    scale, zero = activation_params(2.0, 6.0)  # the range is widened to hold 0
    assert scale == pytest.approx(6.0 / 255) and zero == -128
    assert activation_params(0.0, 0.0) == (1.0, 0)


def _tensors(path):
    """Every tensor of every subgraph: (subgraph, index) -> (name, shape, buffer bytes, scales, zero points)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(path.read_bytes()), 0)
    found = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            data = model.Buffers(tensor.Buffer()).DataAsNumpy()
            q = tensor.Quantization()
            scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0)
            zeros = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0)
            found[s, t] = (tensor.Name(), tuple(tensor.ShapeAsNumpy()),
                           bytes(data) if isinstance(data, np.ndarray) else b"", np.array(scales), np.array(zeros))
    return found


def test_stand_in_lm_head_matches_converting_the_real_weights(static_export, tmp_path):
    """The int8 conversion with the lm_head as a stand-in (written in afterwards) against the same conversion
    with the real lm_head in TensorFlow's hands, on the demo model: every weight byte-identical, the lm_head's
    included; every quantization parameter identical except the logits', whose range comes from ONNX Runtime
    instead of TensorFlow's calibrator (within 0.1%). And the float model the converter handles loses the lm_head's
    float bytes, which is what the stand-in is for (converter memory)."""
    from mt5lite.exporters.quantize.calibration import CalibrationDraw
    from mt5lite.exporters.tflite.export import _prepare_int8, conversion_spec, convert_steps
    from mt5lite.manifest import load_manifest

    manifest = load_manifest(static_export)
    built, float_bytes = {}, {}
    for stand_in in (True, False):
        scratch = tmp_path / f"stand-in-{stand_in}"
        scratch.mkdir()
        spec = conversion_spec(static_export, manifest, scratch / "model.tflite", "int8", scratch)
        spec.use_stand_in = stand_in
        _prepare_int8(static_export, spec, CalibrationDraw(samples=100, max_decoder_steps=64), scratch, False,
                      manifest.model)
        converted = convert_steps(spec, scratch)
        assert bool(converted["stand_ins"]) is stand_in
        float_bytes[stand_in] = converted["bytes"]
        built[stand_in] = _tensors(scratch / "model.tflite")
    lm_head_floats = manifest.vocab_size * manifest.model.d_model * 4
    assert float_bytes[True] < float_bytes[False] - 0.9 * lm_head_floats
    spliced, real = built[True], built[False]
    assert spliced.keys() == real.keys()
    logits = []
    for key, (name, shape, data, scales, zeros) in real.items():
        got = spliced[key]
        assert got[1:3] == (shape, data), name  # shapes, weights (names may differ: the folded Muls are gone)
        if not (np.array_equal(got[3], scales) and np.array_equal(got[4], zeros)):
            logits.append(name)
            assert got[3] == pytest.approx(scales, rel=1e-3) and np.abs(got[4] - zeros).max() <= 1, name
    lm_head = [k for k, v in real.items() if v[1] == (manifest.vocab_size, manifest.model.d_model)
               and k[0] == 0]
    assert lm_head and len(logits) <= 3  # only the logits chain (FC output, slice) may differ
