"""Train the bundled demo model: a scaled-down MT5ForConditionalGeneration on the numbers <-> words task.

``make demo-model`` runs ``python -m mt5lite.demo.train --output models/demo``. Everything is seeded, so the same
machine reproduces the same weights. The model keeps mT5's quirks: gated-GELU FFN, untied ``lm_head``,
relative-position buckets, ``d_kv`` that is not ``d_model / heads``, and more embedding rows than tokenizer pieces.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
from tqdm import tqdm
from transformers import MT5Config, MT5ForConditionalGeneration

from mt5lite.checkpoint import save_checkpoint
from mt5lite.data import CALIBRATION_SENTENCES, HELDOUT_TASK, read_sentences, read_task_pairs
from mt5lite.demo.config import DemoConfig
from mt5lite.demo.task import TASK_LANGUAGES, heldout_numbers, training_pairs
from mt5lite.natural.tokenizer import train_tokenizer as train_t5_tokenizer
from mt5lite.paths import DEMO_MODEL
from mt5lite.staging import staged_directory


def train_tokenizer(config: DemoConfig, texts: list[str], output_dir: Path) -> spm.SentencePieceProcessor:
    """Train a unigram sentencepiece model with T5's special ids (pad 0, eos 1, unk 2) and byte fallback, no
    sentinels (``mt5lite.natural.tokenizer``), into ``output_dir/spiece.model``."""
    model = train_t5_tokenizer(texts, config.vocab_pieces, sentinels=0, threads=config.threads)
    (output_dir / "spiece.model").write_bytes(model)
    return spm.SentencePieceProcessor(model_proto=model)


def seed_everything(config: DemoConfig) -> None:
    """Seed Python's, numpy's and torch's generators with ``config.seed`` and set torch's threads (``DemoConfig``,
    or ``NaturalConfig``: the same fields)."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)


def build_model(config: DemoConfig, pieces: int) -> MT5ForConditionalGeneration:
    """A randomly initialised mT5 of ``config``'s shape (its shape fields: ``DemoConfig``'s, or ``NaturalConfig``'s,
    which has the same names)."""
    rows = math.ceil(pieces / config.embedding_multiple) * config.embedding_multiple
    mt5_config = MT5Config(
        vocab_size=rows,
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.num_layers,
        num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = MT5ForConditionalGeneration(mt5_config)
    # transformers initialises an untied lm_head with std 1, which gives logits of std ~sqrt(d_model) and a first
    # loss near 45; scaled like a tied head, training leaves its plateau about 2000 steps sooner.
    with torch.no_grad():
        model.lm_head.weight.mul_(config.d_model**-0.5)
    return model


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def learning_rate(config: DemoConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak."""
    if step < config.warmup_steps:
        return config.peak_lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.final_lr_fraction
    return config.peak_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: DemoConfig, output_dir: Path) -> dict:
    """Train the tokenizer and the model into ``output_dir`` (a Hugging Face checkpoint directory)."""
    seed_everything(config)

    pairs = list(training_pairs(heldout_numbers()))
    sentences = [s.text for s in read_sentences(CALIBRATION_SENTENCES)]
    texts = [p.source for p in pairs] + [p.target for p in pairs] + sentences
    random.Random(config.seed).shuffle(texts)
    sp = train_tokenizer(config, texts, output_dir)

    sources = [sp.encode(p.source) + [1] for p in pairs]
    targets = [sp.encode(p.target) + [1] for p in pairs]
    # Draw numbers with a uniform count of digits, so 1- and 2-digit numbers are not drowned out by 4-digit ones.
    weights = np.array([1.0 / _digit_bucket_size(p) for p in pairs])
    weights /= weights.sum()

    model = build_model(config, sp.get_piece_size())
    model.train()
    decay = [p for n, p in model.named_parameters() if "layer_norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "layer_norm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.peak_lr,
    )
    rng = np.random.default_rng(config.seed)
    started = time.time()
    losses: list[float] = []
    progress = tqdm(range(config.steps), desc="training demo model", mininterval=5)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        batch = rng.choice(len(pairs), size=config.batch_size, p=weights)
        input_ids = _pad([sources[i] for i in batch], 0)
        labels = _pad([targets[i] for i in batch], -100)
        loss = model(input_ids=input_ids, attention_mask=(input_ids != 0).long(), labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 100 == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
    model.eval()
    return {
        "model": model,
        "train_seconds": round(time.time() - started, 1),
        "final_loss": float(np.mean(losses[-200:])),
    }


def _digit_bucket_size(pair) -> float:
    number = pair.target if pair.source.startswith("number") else pair.source.split(": ", 1)[1]
    digits = len(number)
    return 10.0 if digits == 1 else 9 * 10 ** (digits - 1)


def write_demo_report(model_dir: Path, model, config: DemoConfig, train_seconds: float, final_loss: float) -> dict:
    """Evaluate the trained model on the held-out task set; write ``eval_report.json``/``.md`` and the model card."""
    from mt5lite.demo.model_card import write_model_card
    from mt5lite.verification.evaluation import evaluate_model, write_evaluation_report

    report = evaluate_model(model_dir, read_task_pairs(HELDOUT_TASK))
    report["model"] = "models/demo"
    report["parameters"] = sum(p.numel() for p in model.parameters())
    report["vocab_size"] = model.config.vocab_size
    report["tokenizer_pieces"] = spm.SentencePieceProcessor(model_file=str(model_dir / "spiece.model")).get_piece_size()
    report["training"] = {**asdict(config), "train_seconds": train_seconds, "final_loss": final_loss,
                          "languages": list(TASK_LANGUAGES)}
    write_evaluation_report(report, model_dir / "eval_report.json")
    write_model_card(model_dir, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Train the demo model and write it, with its model card, to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEMO_MODEL)
    parser.add_argument("--steps", type=int, default=DemoConfig.steps)
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        parser.error(f"{args.output} already exists; use --force to replace it")
    train_and_write(args.output, args.steps, args.force)
    return 0


def train_and_write(output: Path, steps: int = DemoConfig.steps, force: bool = False) -> dict:
    """Train the demo model for ``steps`` and write it with its model card to ``output`` (staged beside it, renamed
    into place once complete; ``InputError`` if it exists without ``force``); prints and returns the held-out
    exact match and chrF."""
    config = DemoConfig(steps=steps)
    with staged_directory(output, force) as staging:
        result = train(config, staging)
        save_checkpoint(result["model"], (staging / "spiece.model").read_bytes(), staging)
        report = write_demo_report(staging, result["model"], config, result["train_seconds"], result["final_loss"])
    scores = {k: report[k] for k in ("exact_match", "chrf")}
    print(json.dumps(scores, indent=2))
    print(f"demo model written to {output} in {result['train_seconds']} s of training")
    return scores


if __name__ == "__main__":
    raise SystemExit(main())
