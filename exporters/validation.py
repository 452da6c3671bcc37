"""Validation run on every export of a checkpoint before it is kept: PyTorch against the export's engine (ONNX
Runtime, ExecuTorch) on held-out multilingual text."""

from __future__ import annotations

import warnings
from pathlib import Path

from mt5lite.data import HELDOUT_SENTENCES, Sentence, read_sentences
from mt5lite.exporters.result import Validation
from mt5lite.verification.parity import torch_greedy
from mt5lite.verification.teacher_forced import check_diffs, teacher_forced


def balanced_sample(sentences: list[Sentence], count: int) -> list[Sentence]:
    """Up to ``count`` sentences taken round-robin across languages, so every language is represented early."""
    by_language: dict[str, list[Sentence]] = {}
    for sentence in sentences:
        by_language.setdefault(sentence.lang, []).append(sentence)
    picked: list[Sentence] = []
    while len(picked) < count and any(by_language.values()):
        for queue in by_language.values():
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def heldout_sample(count: int) -> list[Sentence]:
    """``count`` held-out multilingual sentences (never used for calibration), balanced across languages."""
    return balanced_sample(read_sentences(HELDOUT_SENTENCES), count)


def validate_export(model, export_dir: Path, config, progress: bool = False) -> Validation:
    """Compare encoder outputs and teacher-forced step logits; raise ``ParityError`` listing every output if any
    differs by more than ``config.atol + config.rtol * max |reference|``. Returns the numbers."""
    from mt5lite.runtimes.generators import ENGINES, open_export
    from mt5lite.runtimes.tokenizer import Overflow
    from mt5lite.runtimes.torch_backend import TorchBackend

    generator = open_export(export_dir)
    samples = heldout_sample(config.validate_samples)
    with warnings.catch_warnings():  # long sentences are cut to the export's source length on purpose
        warnings.simplefilter("ignore")
        ids, mask = generator.encode_batch([s.text for s in samples], Overflow.TRUNCATE)
    suppressed = list(range(generator.tokenizer.piece_count, model.config.vocab_size))
    targets = torch_greedy(model, ids, mask, min(16, config.max_target_length), suppressed)
    found = teacher_forced(TorchBackend(model, config.max_target_length), generator.stepper, ids, mask, targets,
                           generator.decoder.decoder_start_id)
    outputs = {name: list(shape) for name, shape in generator.manifest.output_shapes.items()}
    stage = f"{ENGINES[generator.manifest.engine].label} export validation"
    rows = check_diffs(stage, found, config.atol, config.rtol, outputs)
    return Validation(len(samples), tuple(rows), tuple(sorted({s.lang for s in samples})))
