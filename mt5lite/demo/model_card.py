"""The model card (README.md) written beside the demo model."""

from __future__ import annotations

from pathlib import Path

from mt5lite.reports import markdown_table


def write_model_card(model_dir: Path, report: dict) -> Path:
    """Write ``README.md`` into ``model_dir`` from its evaluation report (with the ``training`` section)."""
    training = report["training"]
    rows = [[lang, r["n"], r["exact_match"], r["chrf"]] for lang, r in report["per_language"].items()]
    rows.append(["**all**", report["n"], report["exact_match"], report["chrf"]])
    text = f"""---
language: [{", ".join(training["languages"])}]
license: apache-2.0
library_name: transformers
tags: [mt5, text2text-generation, mt5lite-demo]
---

# mT5 Lite demo model

A scaled-down `MT5ForConditionalGeneration` ({report["parameters"]:,} parameters) trained from scratch by
`make demo-model` (`python -m mt5lite.demo.train`) on a task generated offline with `num2words`: numbers to words
and words to numbers in {len(training["languages"])} languages (Latin, Cyrillic, Arabic, Hebrew, Japanese, Hangul
and Thai scripts). It exists so that every stage of mT5 Lite can be measured on a model that has learned something.

Inputs carry a task and language tag, as T5 does:

| input | output |
|---|---|
| `words fr: 1234` | `mille deux cent trente-quatre` |
| `number ru: двести пять` | `205` |

## Shape (mT5's quirks kept)

d_model {training["d_model"]}, d_kv {training["d_kv"]} x {training["num_heads"]} heads (not d_model / heads),
d_ff {training["d_ff"]} gated-GELU, {training["num_layers"]}+{training["num_decoder_layers"]} layers, relative
position buckets, untied `lm_head`, {report["vocab_size"]} embedding rows for {report["tokenizer_pieces"]}
sentencepiece pieces (unigram, byte fallback, split digits, identity normalisation; pad 0, eos 1, unk 2).

## Training

{training["steps"]} steps of batch {training["batch_size"]}, AdamW (peak learning rate {training["peak_lr"]},
{training["warmup_steps"]} warm-up steps, cosine decay), seed {training["seed"]}, {training["threads"]} CPU threads:
{training["train_seconds"]:.0f} s of training. Numbers in the held-out set are never seen in training for that
language, in either direction.

## Held-out results

Greedy decoding on `data/task/heldout.tsv` ({report["n"]} pairs): exact match **{report["exact_match"]:.3f}**,
chrF **{report["chrf"]:.1f}**.

{markdown_table(["language", "n", "exact match", "chrF"], rows)}
"""
    path = model_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
