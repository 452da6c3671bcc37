"""The ONNX Runtime generator refuses broken or mismatched files with a clear error, before any ORT call, and
imports no torch, transformers or TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from mt5lite.errors import InputError, ModelFileError
from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
from mt5lite.runtimes.onnx_runtime import OnnxGenerator
from mt5lite.runtimes.options import DecodingOptions
from tests.conftest import REPO_ROOT

CONFIG = OnnxExportConfig(max_source_length=16, max_target_length=8)


@pytest.fixture(scope="module")
def export_pair(tiny_mt5, tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    export_onnx(tiny_mt5, root / "a", CONFIG)
    export_onnx(tiny_mt5, root / "b", CONFIG)
    return root / "a", root / "b"


@pytest.fixture
def broken(export_pair, tmp_path, monkeypatch):
    """A fresh copy of export A to damage; any onnxruntime session creation fails the test."""
    import onnxruntime

    copy = tmp_path / "copy"
    shutil.copytree(export_pair[0], copy)

    def no_session(*args, **kwargs):
        raise AssertionError("an ONNX Runtime session was created for a broken export")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    return copy


def test_truncated_onnx_is_refused(broken):
    path = broken / "decoder.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="decoder.onnx: sha256 does not match"):
        OnnxGenerator(broken)


def test_a_git_lfs_pointer_in_place_of_the_weights_is_named_as_one(broken):
    (broken / "weights.bin").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(ModelFileError, match="weights.bin: sha256 does not match .*Git LFS pointer.*git lfs pull"):
        OnnxGenerator(broken)


def test_bit_flipped_onnx_is_refused(broken):
    path = broken / "encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="encoder.onnx: sha256 does not match"):
        OnnxGenerator(broken)


def test_manifest_from_another_export_is_refused(broken, export_pair):
    shutil.copy2(export_pair[1] / "manifest.json", broken / "manifest.json")
    with pytest.raises(ModelFileError, match="sha256 does not match .*another export"):
        OnnxGenerator(broken)


def test_missing_tokenizer_is_named(broken):
    (broken / "spiece.model").unlink()
    with pytest.raises(ModelFileError, match="spiece.model: missing"):
        OnnxGenerator(broken)


def test_tokenizer_with_another_hash_is_refused(broken):
    with open(broken / "spiece.model", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelFileError, match="spiece.model: sha256 does not match"):
        OnnxGenerator(broken)


def test_file_names_outside_the_folder_are_refused(broken):
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"]["../outside.onnx"] = "0" * 64
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="points outside the model folder"):
        OnnxGenerator(broken)


def test_missing_or_corrupt_manifest(broken):
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="manifest.json: not valid JSON"):
        OnnxGenerator(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="no manifest.json"):
        OnnxGenerator(broken)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m["graphs"].update(encoder=None), "graphs: no encoder graph"),
    (lambda m: m.update(graphs=["encoder"]), "graphs: no encoder graph"),
    (lambda m: m["files"].pop("spiece.model"), "the tokenizer file 'spiece.model' is not among the hashed files"),
])
def test_malformed_manifest_fields_are_refused_not_crashed_on(broken, edit, message):
    manifest = json.loads((broken / "manifest.json").read_text())
    edit(manifest)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=message):
        OnnxGenerator(broken)


@pytest.mark.parametrize("max_new_tokens, message", [(0, "at least 1"), (-3, "at least 1"), (9, "beyond this export")])
def test_max_new_tokens_out_of_range(export_pair, monkeypatch, max_new_tokens, message):
    generator = OnnxGenerator(export_pair[0])

    def no_run(*args, **kwargs):
        raise AssertionError("ONNX Runtime ran with an invalid option")

    for session in generator.backend.sessions.values():
        monkeypatch.setattr(session, "run", no_run)
    with pytest.raises(InputError, match=message):
        generator.generate(["words en: 1"], DecodingOptions(max_new_tokens=max_new_tokens))


def test_runtime_imports_no_torch_transformers_or_tensorflow(export_pair):
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Forbid(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "tensorflow"):
                    raise ImportError("forbidden import: " + name)
        sys.meta_path.insert(0, Forbid())
        from mt5lite.runtimes.onnx_runtime import OnnxGenerator
        from mt5lite.runtimes.options import DecodingOptions
        generator = OnnxGenerator({str(export_pair[0])!r}, threads=1)
        print(generator.generate(["words en: 3"], DecodingOptions(max_new_tokens=4, num_beams=2)))
        assert not any(m.split(".")[0] in ("torch", "transformers", "tensorflow") for m in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
