"""The Python front door: ``mt5lite.load`` over every engine and a checkpoint, ``generate`` and ``stream``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mt5lite
from mt5lite.errors import InputError
from mt5lite.runtimes.generators import open_generator
from mt5lite.runtimes.options import DecodingOptions

TEXTS = ["words fr: 1234", "words ja: 58", "digits de: dreiundzwanzig", "words ar: 7"]


@pytest.fixture(params=["onnx", "tflite-int8", "checkpoint"])
def model_path(request, demo_export, tflite_int8, demo_model):
    return {"onnx": demo_export, "tflite-int8": tflite_int8, "checkpoint": demo_model}[request.param]


def test_load_generates_what_the_generator_does_and_stream_joins_to_it(model_path):
    model = mt5lite.load(model_path)
    reference = open_generator(model_path).generate(TEXTS, DecodingOptions(num_beams=2))
    assert model.generate(TEXTS, num_beams=2) == reference
    greedy = model.generate(TEXTS)
    assert model.generate(TEXTS[0]) == greedy[0]  # one string in, one string out
    for text, expected in zip(TEXTS, greedy, strict=True):
        pieces = list(model.stream(text))
        assert "".join(pieces) == expected and all(pieces), pieces
        assert len(pieces) > 1 or len(expected.split()) == 1, pieces  # it does stream


def test_the_manifest_facts(demo_export, tflite_int8, demo_model):
    onnx, tflite, checkpoint = mt5lite.load(demo_export), mt5lite.load(tflite_int8), mt5lite.load(demo_model)
    assert (onnx.engine, onnx.precision, onnx.languages) == ("onnxruntime", "fp32", [])
    assert (onnx.max_source_length, onnx.max_target_length) == (64, 32)
    assert (tflite.engine, tflite.precision) == ("litert", "int8")
    assert len(tflite.languages) >= 10 and "ja" in tflite.languages
    assert (checkpoint.engine, checkpoint.manifest, checkpoint.max_target_length) == ("pytorch", None, None)
    assert "litert" in repr(tflite)


def test_bad_input_is_an_input_error(demo_export):
    model = mt5lite.load(demo_export)
    with pytest.raises(InputError, match="beyond this export's cache"):
        list(model.stream(TEXTS[0], max_new_tokens=100))
    with pytest.raises(InputError):
        model.generate([""])
    with pytest.raises(InputError, match="streaming decodes one input greedily"):
        model._generator.decoder.stream(*model._generator.encode_batch(TEXTS[:2]), DecodingOptions()).__next__()
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        mt5lite.lod  # noqa: B018


def test_import_mt5lite_is_light_and_lists_its_names():
    code = ("import sys, mt5lite; mt5lite.load; print(sorted(m for m in ('torch', 'transformers', 'onnx', "
            "'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    assert {"load", "pipeline", "export_onnx", "quantize_export", "export_tflite"} <= set(mt5lite.__all__)
    for name in mt5lite.__all__:
        assert getattr(mt5lite, name) is not None
        assert name == "__version__" or getattr(mt5lite, name).__doc__, name
