"""Validate and load a local Hugging Face checkpoint directory of a registered family (``mt5lite.families``), safely.

Weights load from safetensors by default; pickle checkpoints (``pytorch_model.bin``) only with ``allow_pickle``;
``trust_remote_code`` is never used. Every problem with a directory is reported at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mt5lite.errors import CheckpointError, first_line
from mt5lite.families import FAMILIES, family_of
from mt5lite.manifest import lfs_hint
from mt5lite.quiet import quiet_third_party_logs

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILE = "spiece.model"


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of a validated checkpoint directory."""

    root: Path
    config: dict
    family: str  # its name in ``mt5lite.families.FAMILIES``
    weights: Path
    uses_pickle: bool
    tokenizer: Path


def inspect_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> CheckpointFiles:
    """Check that ``path`` is a loadable checkpoint of a registered family (``mt5lite.families``) and return its
    files; list every problem at once."""
    root = Path(path)
    if not root.exists():
        raise CheckpointError(f"{root}: no such directory; give a Hugging Face T5-family checkpoint directory")
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory; give a Hugging Face T5-family checkpoint directory")
    problems: list[str] = []
    config: dict = {}
    family = ""
    config_path = root / "config.json"
    if not config_path.is_file():
        problems.append("no config.json")
    else:
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"config.json is not valid JSON ({exc})")
        else:
            try:
                family = family_of(config if isinstance(config, dict) else {})
            except CheckpointError as exc:
                problems.append(str(exc))

    weights = next((root / name for name in SAFE_WEIGHTS if (root / name).is_file()), None)
    uses_pickle = False
    if weights is None:
        pickled = next((root / name for name in PICKLE_WEIGHTS if (root / name).is_file()), None)
        if pickled is None:
            problems.append(f"no weights (expected {SAFE_WEIGHTS[0]})")
        elif not allow_pickle:
            problems.append(
                f"only a pickle checkpoint ({pickled.name}) was found; pickle files can run code when loaded. "
                "Convert it to safetensors, or pass --allow-pickle if you trust its source"
            )
        else:
            weights, uses_pickle = pickled, True

    tokenizer = root / TOKENIZER_FILE
    if not tokenizer.is_file():
        problems.append(f"no {TOKENIZER_FILE} (the sentencepiece tokenizer of T5/mT5)")

    if problems:
        raise CheckpointError(f"{root} is not a usable T5-family checkpoint: " + "; ".join(problems))
    return CheckpointFiles(root, config, family, weights, uses_pickle, tokenizer)


def load_model(path: str | os.PathLike, allow_pickle: bool = False):
    """Load a checkpoint with its family's transformers class (``T5ForConditionalGeneration``, ...) in eval mode,
    fp32."""
    files = inspect_checkpoint(path, allow_pickle=allow_pickle)
    quiet_third_party_logs()
    import torch
    import transformers
    from safetensors import SafetensorError

    try:
        model = getattr(transformers, FAMILIES[files.family].model_class).from_pretrained(
            files.root,
            use_safetensors=not files.uses_pickle,
            trust_remote_code=False,
            local_files_only=True,
            dtype=torch.float32,
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        # A bad config (a shape it sets) shows as a bad weight: name both files.
        raise CheckpointError(f"{files.root}: the model could not be built from config.json and "
                              f"{files.weights.name} ({first_line(exc)}){lfs_hint(files.weights)}") from None
    model.eval()
    return model


def round_weights(model, dtype: str) -> None:
    """Round every weight of ``model`` to the torch dtype named ``dtype`` (``"float16"``) and back, in place: the
    fp32 model that loading a checkpoint saved in ``dtype`` gives."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(getattr(torch, dtype)))


def save_checkpoint(model, spiece: bytes, output_dir: str | os.PathLike, dtype: str | None = None) -> None:
    """Write ``model`` as a Hugging Face checkpoint (safetensors, config, generation config) with the tokenizer
    ``spiece`` (a serialized sentencepiece model), transformers' slow T5 tokenizer files and a ``tokenizer.json``
    with which ``AutoTokenizer`` gives sentencepiece's own ids (``mt5lite.hf_tokenizer``). With ``dtype``
    (``"float16"``) the weights are stored in it; ``model`` is left as it was."""
    import torch
    from transformers import GenerationConfig, T5Tokenizer

    from mt5lite.hf_tokenizer import write_tokenizer_json

    output = Path(output_dir)
    before = next(model.parameters()).dtype
    try:
        model.to(getattr(torch, dtype) if dtype else before).save_pretrained(output, safe_serialization=True)
    finally:
        model.to(before)
    (output / TOKENIZER_FILE).write_bytes(spiece)
    T5Tokenizer(vocab_file=str(output / TOKENIZER_FILE), extra_ids=0, legacy=False).save_pretrained(output)
    write_tokenizer_json(output / TOKENIZER_FILE, output)
    config = model.config
    GenerationConfig(decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.pad_token_id, max_new_tokens=32).save_pretrained(output)
