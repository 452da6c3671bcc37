"""Loading checkpoints safely: safetensors by default, pickle only behind a flag, every problem named."""

from __future__ import annotations

import shutil

import pytest

from mt5lite.checkpoint import inspect_checkpoint, load_model
from mt5lite.errors import CheckpointError


def test_demo_model_loads_as_mt5(demo_model):
    model = load_model(demo_model)
    config = model.config
    assert config.model_type == "mt5"
    assert config.feed_forward_proj == "gated-gelu"
    assert config.tie_word_embeddings is False
    assert config.d_kv * config.num_heads != config.d_model  # mT5's quirk is kept
    assert not model.training


def test_tiny_models_load(tiny_model):
    files = inspect_checkpoint(tiny_model)
    assert files.weights.name == "model.safetensors" and not files.uses_pickle
    assert load_model(tiny_model).config.model_type == files.config["model_type"]


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        inspect_checkpoint(tmp_path / "nope")


def test_directory_that_is_not_a_checkpoint_lists_every_problem(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(tmp_path)
    message = str(info.value)
    assert "no config.json" in message and "no weights" in message and "no spiece.model" in message


def test_wrong_model_type(tmp_path, tiny_mt5):
    shutil.copytree(tiny_mt5, tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="model_type is 'bert'"):
        inspect_checkpoint(tmp_path / "m")


def _pickle_only_copy(tiny_mt5, target):
    import torch

    shutil.copytree(tiny_mt5, target)
    state = load_model(tiny_mt5).state_dict()
    (target / "model.safetensors").unlink()
    torch.save(state, target / "pytorch_model.bin")
    return target


def test_pickle_only_checkpoint_needs_the_flag(tmp_path, tiny_mt5):
    target = _pickle_only_copy(tiny_mt5, tmp_path / "pickled")
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        load_model(target)
    model = load_model(target, allow_pickle=True)
    assert model.config.model_type == "mt5"


def test_truncated_weights_are_a_checkpoint_error(tmp_path, tiny_mt5):
    target = tmp_path / "truncated"
    shutil.copytree(tiny_mt5, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="could not be built from config.json and model.safetensors"):
        load_model(target)
    weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(CheckpointError, match="model.safetensors .*a Git LFS pointer, not the file: fetch it"):
        load_model(target)


def test_trust_remote_code_is_never_used(tmp_path, tiny_mt5):
    target = tmp_path / "remote"
    shutil.copytree(tiny_mt5, target)
    config = (target / "config.json").read_text()
    (target / "config.json").write_text(config.replace('"model_type"', '"auto_map": {"AutoModelForSeq2SeqLM": '
                                                                          '"evil.Model"}, "model_type"', 1))
    (target / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    model = load_model(target)
    assert type(model).__module__.startswith("transformers.")
