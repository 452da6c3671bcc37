"""Train the natural model: a scaled-down mT5, pre-trained with span corruption, fine-tuned on CLDR names.

    python -m mt5lite.natural.train --output models/natural [--force] [--pretrain-steps N --finetune-steps N]

Steps: train the tokenizer on the monolingual text and the training pairs (never dev or held-out) -> build the model
(the demo's builder: mT5's quirks, ``lm_head`` scaled) -> pre-train on span corruption of ``monolingual.tsv`` ->
fine-tune on ``train.tsv`` (its copy pairs seen again, with spelling pairs: ``mt5lite.natural.augment``) with
dropout 0.1, keeping the checkpoint with the lowest loss on ``dev.tsv`` (both
through ``compression.training.train``, whose checkpoints go to
``<output>.training/`` beside the output, so a killed run resumes) -> greedy exact match and chrF per language on
``heldout.tsv`` with the weights rounded to ``NaturalConfig.storage_dtype`` (float16), against copying the English
name -> checkpoint (stored in float16), ``eval_report.json`` and model card, staged beside the output and renamed
into place once complete. Everything is seeded (``NaturalConfig``).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import sentencepiece as spm

from mt5lite.checkpoint import round_weights, save_checkpoint
from mt5lite.compression.compress import greedy_quality
from mt5lite.compression.training import TrainingOptions, train, training_directory
from mt5lite.data import Sentence, TaskPair, read_sentences, read_task_pairs
from mt5lite.demo.train import build_model, seed_everything
from mt5lite.errors import InputError
from mt5lite.natural.augment import english_name, fine_tuning_pairs
from mt5lite.natural.config import NaturalConfig, Stage
from mt5lite.natural.corpus import LANGUAGES, NATURAL_DIR
from mt5lite.natural.model_card import evaluation_markdown, write_model_card
from mt5lite.natural.span_corruption import pretraining_pairs
from mt5lite.natural.tokenizer import sentinel_ids, train_tokenizer
from mt5lite.reports import write_report
from mt5lite.staging import staged_directory
from mt5lite.verification.evaluation import score

#: The corpus files each step reads (``mt5lite.natural.corpus``).
MONOLINGUAL = NATURAL_DIR / "monolingual.tsv"
TRAIN_PAIRS = NATURAL_DIR / "train.tsv"
DEV_PAIRS = NATURAL_DIR / "dev.tsv"
HELDOUT_PAIRS = NATURAL_DIR / "heldout.tsv"
#: The report written beside the checkpoint (with its Markdown twin, ``eval_report.md``).
REPORT_NAME = "eval_report.json"


def tokenizer_texts(config: NaturalConfig, sentences: list[Sentence], pairs: list[TaskPair]) -> list[str]:
    """What the tokenizer learns from: the monolingual text and the training pairs' sources and targets, shuffled
    with the seed (the first ``config.tokenizer_texts`` of them when set)."""
    texts = [s.text for s in sentences] + [p.source for p in pairs] + [p.target for p in pairs]
    random.Random(config.seed).shuffle(texts)
    return texts[: config.tokenizer_texts]


def stage_options(stage: Stage, data: Path, config: NaturalConfig, eval_data: Path | None = None) -> TrainingOptions:
    """``compression.training.train``'s options for ``stage`` (``data``: the file its examples come from;
    ``eval_data``: held-out pairs whose lowest loss picks the checkpoint kept), checked when made, so a bad value
    fails before anything is trained."""
    return TrainingOptions(train_data=data, max_steps=stage.steps, batch_size=stage.batch_size,
                           learning_rate=stage.learning_rate, save_steps=config.save_steps, train_seed=config.seed,
                           eval_data=eval_data, dropout=stage.dropout)


def run_stage(model, spiece: bytes, pairs: list[TaskPair], options: TrainingOptions, name: str) -> dict:
    """Train ``model`` in place on ``pairs``; returns the batch size, learning rate, dropout, loss curve (and held-out
    losses with the step kept, where ``options`` has ``eval_data``), steps, seconds and number of examples."""
    curve = train(model, spiece, pairs, options, name)
    return {"batch_size": options.batch_size, "learning_rate": options.learning_rate, "dropout": options.dropout,
            **curve, "examples": len(pairs)}


def pretraining_examples(sentences: list[Sentence], spiece: bytes, options: TrainingOptions,
                         config: NaturalConfig) -> list[TaskPair]:
    """As many span-corruption examples of ``sentences`` as the steps use (at least; each pass over the text hides
    fresh spans)."""
    processor = spm.SentencePieceProcessor(model_proto=spiece)
    return pretraining_pairs(sentences, processor, sentinel_ids(processor, config.sentinels),
                             np.random.default_rng(config.seed), options.max_steps * options.batch_size)


def heldout_pairs(per_language: int) -> list[TaskPair]:
    """The first ``per_language`` held-out pairs of each language, in the file's order."""
    taken: dict[str, int] = defaultdict(int)
    kept = []
    for pair in read_task_pairs(HELDOUT_PAIRS):
        if taken[pair.lang] < per_language:
            taken[pair.lang] += 1
            kept.append(pair)
    return kept


def copy_baseline(pair: TaskPair) -> str:
    """The trivial baseline's output: the source after its ``translate xx: `` prefix, i.e. the English name."""
    return english_name(pair)


def _side_by_side(model_scores: dict, baseline_scores: dict) -> dict:
    keys = ("exact_match", "chrf")
    return {"n": model_scores["n"], "model": {k: model_scores[k] for k in keys},
            "baseline": {k: baseline_scores[k] for k in keys}}


def evaluate_heldout(model, spiece_path: Path, pairs: list[TaskPair], progress: bool = False) -> dict:
    """Greedy exact match and chrF of ``model`` and of ``copy_baseline`` on ``pairs``, overall and per language."""
    ours = greedy_quality(model, spiece_path, pairs, progress)
    baseline = score([copy_baseline(pair) for pair in pairs], pairs)
    return {**_side_by_side(ours, baseline),
            "per_language": {lang: _side_by_side(row, baseline["per_language"][lang])
                             for lang, row in ours["per_language"].items()}}


def train_model(config: NaturalConfig, options: dict[str, TrainingOptions], staging: Path) -> tuple:
    """Seed, train the tokenizer (written to ``staging/spiece.model``), build the model and run both stages on it;
    returns ``(model, spiece bytes, {stage: curve})``."""
    seed_everything(config)
    sentences, pairs = read_sentences(MONOLINGUAL), read_task_pairs(TRAIN_PAIRS)
    spiece = train_tokenizer(tokenizer_texts(config, sentences, pairs), config.vocab_pieces, config.sentinels,
                             config.character_coverage, config.threads)
    (staging / "spiece.model").write_bytes(spiece)
    # The demo's builder (mT5's quirks, lm_head scaled): it reads only the shape fields both configs share.
    model = build_model(config, spm.SentencePieceProcessor(model_proto=spiece).get_piece_size())
    examples = {"pretrain": pretraining_examples(sentences, spiece, options["pretrain"], config),
                "finetune": fine_tuning_pairs(pairs, config.copy_repeats, config.spelling_repeats)}
    stages = {name: run_stage(model, spiece, examples[name], options[name], name) for name in options}
    stages["pretrain"]["languages"] = len({s.lang for s in sentences})
    return model, spiece, stages


def train_natural(config: NaturalConfig, output_dir: str | Path, progress: bool = False, force: bool = False) -> dict:
    """Train the natural model with ``config`` and write it to ``output_dir``: the checkpoint, ``eval_report.json``
    (+ ``.md``) and the model card, staged beside it and renamed into place once complete (``InputError`` if it
    exists without ``force``). Returns the report."""
    output = Path(output_dir)
    options = {"pretrain": stage_options(config.pretrain, MONOLINGUAL, config),
               "finetune": stage_options(config.finetune, TRAIN_PAIRS, config, DEV_PAIRS)}
    with staged_directory(output, force) as staging, \
            training_directory(output.parent / f"{output.name}.training"):
        model, spiece, stages = train_model(config, options, staging)
        return write_model(model, spiece, stages, config, output, staging, progress)


def write_model(model, spiece: bytes, stages: dict, config: NaturalConfig, output: Path, staging: Path,
                progress: bool = False) -> dict:
    """The trained ``model``'s weights rounded to ``config.storage_dtype``, evaluated on the held-out pairs and
    written to ``staging`` (``spiece.model`` already there): the checkpoint, stored in that dtype, its report
    (``stages``: each training run's curve) and model card. Returns the report."""
    round_weights(model, config.storage_dtype)
    heldout = evaluate_heldout(model, staging / "spiece.model", heldout_pairs(config.eval_per_language), progress)
    save_checkpoint(model, spiece, staging, config.storage_dtype)
    report = {"model": str(output), "parameters": sum(p.numel() for p in model.parameters()),
              "vocab_size": model.config.vocab_size,
              "tokenizer_pieces": spm.SentencePieceProcessor(model_proto=spiece).get_piece_size(),
              "scripts": len({LANGUAGES[lang] for lang in heldout["per_language"]}),
              "heldout": heldout, "training": {**asdict(config), **stages}}
    write_report(report, staging / REPORT_NAME, evaluation_markdown(report))
    write_model_card(staging, report)
    return report


def with_steps(config: NaturalConfig, pretrain_steps: int, finetune_steps: int) -> NaturalConfig:
    """``config`` with other step counts (smoke runs)."""
    return replace(config, pretrain=replace(config.pretrain, steps=pretrain_steps),
                   finetune=replace(config.finetune, steps=finetune_steps))


def train_and_write(output: str | Path, pretrain_steps: int = NaturalConfig.pretrain.steps,
                    finetune_steps: int = NaturalConfig.finetune.steps, force: bool = False) -> dict:
    """Train the natural model (the default config with these step counts) into ``output`` with progress bars;
    prints and returns the held-out chrF and exact match of the model and of the baseline."""
    report = train_natural(with_steps(NaturalConfig(), pretrain_steps, finetune_steps), output, progress=True,
                           force=force)
    scores = {side: report["heldout"][side] for side in ("model", "baseline")}
    seconds = sum(report["training"][stage]["seconds"] for stage in ("pretrain", "finetune"))
    print(json.dumps(scores, indent=2))
    print(f"natural model written to {output} in {seconds:.0f} s of training")
    return scores


def main(argv: list[str] | None = None) -> int:
    """Train the natural model and write it, with its report and model card, to ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m mt5lite.natural.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="checkpoint directory, e.g. models/natural")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    parser.add_argument("--pretrain-steps", type=int, default=NaturalConfig.pretrain.steps,
                        help=f"span-corruption steps (default: {NaturalConfig.pretrain.steps})")
    parser.add_argument("--finetune-steps", type=int, default=NaturalConfig.finetune.steps,
                        help=f"fine-tuning steps (default: {NaturalConfig.finetune.steps})")
    args = parser.parse_args(argv)
    try:
        train_and_write(args.output, args.pretrain_steps, args.finetune_steps, args.force)
    except InputError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
