"""The natural model's held-out table and model card (README.md), from its evaluation report."""

from __future__ import annotations

from pathlib import Path

from mt5lite.reports import markdown_table

#: The held-out table's columns: per language, the model against the copy-the-English-name baseline.
COLUMNS = ["language", "n", "chrF model", "chrF baseline", "exact match model", "exact match baseline"]


def heldout_table(report: dict) -> str:
    """Per-language chrF and exact match of the model and of the baseline, then all languages together."""
    heldout = report["heldout"]
    rows = [[lang, row["n"], f"{row['model']['chrf']:.1f}", f"{row['baseline']['chrf']:.1f}",
             row["model"]["exact_match"], row["baseline"]["exact_match"]]
            for lang, row in heldout["per_language"].items()]
    rows.append(["**all**", heldout["n"], f"{heldout['model']['chrf']:.1f}", f"{heldout['baseline']['chrf']:.1f}",
                 heldout["model"]["exact_match"], heldout["baseline"]["exact_match"]])
    return markdown_table(COLUMNS, rows)


def baseline_verdict(report: dict) -> str:
    """In how many languages the model's held-out chrF beats the baseline's, naming each language where it does not
    (with both figures)."""
    per_language = report["heldout"]["per_language"]
    misses = [f"{lang} ({row['model']['chrf']:.1f} against {row['baseline']['chrf']:.1f})"
              for lang, row in per_language.items() if row["model"]["chrf"] <= row["baseline"]["chrf"]]
    verdict = f"It beats the baseline's chrF in {len(per_language) - len(misses)} of {len(per_language)} languages"
    return verdict + (f"; not in {', '.join(misses)}." if misses else ".")


def evaluation_markdown(report: dict) -> str:
    """The Markdown twin of ``eval_report.json``."""
    heldout = report["heldout"]
    return "\n\n".join([
        f"# Evaluation: `{report['model']}`",
        f"Greedy decoding on {heldout['n']} held-out pairs of `data/natural/heldout.tsv`: chrF "
        f"{heldout['model']['chrf']:.1f} (copying the English name: {heldout['baseline']['chrf']:.1f}), exact match "
        f"{heldout['model']['exact_match']:.3f} ({heldout['baseline']['exact_match']:.3f}). {baseline_verdict(report)}",
        heldout_table(report),
    ])


def write_model_card(model_dir: Path, report: dict) -> Path:
    """Write ``README.md`` into ``model_dir`` from its evaluation report (with the ``training`` section)."""
    training, heldout = report["training"], report["heldout"]
    languages = list(heldout["per_language"])
    pretrain, finetune = training["pretrain"], training["finetune"]
    text = f"""---
language: [{", ".join(languages)}]
license: apache-2.0
library_name: transformers
tags: [mt5, text2text-generation, mt5lite-natural]
---

# mT5 Lite natural model

A scaled-down `MT5ForConditionalGeneration` ({report["parameters"]:,} parameters) trained from scratch by
`python -m mt5lite.natural.train` on the natural corpus (`data/natural`, issue 29): span-corruption pre-training
on monolingual text in {pretrain["languages"]} languages, then fine-tuning on a translation task from
CLDR names in {len(languages)} languages and {report["scripts"]} scripts. Inputs carry a task and language tag:

| input | output |
|---|---|
| `translate ja: Germany` | `ドイツ` |
| `translate ru: Euro` | `евро` |

It exists so that every stage of mT5 Lite can be measured on a model that learned natural multilingual text, in
many scripts. It translates short names, not sentences.

## Shape (mT5's quirks kept)

d_model {training["d_model"]}, d_kv {training["d_kv"]} x {training["num_heads"]} heads (not d_model / heads),
d_ff {training["d_ff"]} gated-GELU, {training["num_layers"]}+{training["num_decoder_layers"]} layers, relative
position buckets, untied `lm_head`, {report["vocab_size"]} embedding rows for {report["tokenizer_pieces"]}
sentencepiece pieces (unigram, byte fallback, split digits, identity normalisation; pad 0, eos 1, unk 2; sentinels
`<extra_id_0>` .. `<extra_id_{training["sentinels"] - 1}>` as user-defined pieces). The weights are stored in
{training["storage_dtype"]}, rounded so before the evaluation below; loading them with mT5 Lite gives fp32.

## Training

- **Pre-training**: {pretrain["steps"]} steps of batch {pretrain["batch_size"]} (learning rate
  {pretrain["learning_rate"]}, linear decay) of span corruption (15% of the pieces hidden in spans of 3 on
  average, as in mT5) on `monolingual.tsv`: CLDR name lists, dates and LLM-written prose
  ({pretrain["examples"]:,} examples); {pretrain["seconds"]:.0f} s.
- **Fine-tuning**: {finetune["steps"]} steps of batch {finetune["batch_size"]} (learning rate
  {finetune["learning_rate"]}, dropout {finetune["dropout"]}) on {finetune["examples"]:,} pairs: `train.tsv`, its
  pairs whose target contains the English name seen {training["copy_repeats"]} times in all, and a spelling pair
  per English name (`spell: Belgium` -> `-Belgium`) {training["spelling_repeats"]} times
  (`mt5lite.natural.augment`); {finetune["seconds"]:.0f} s. The checkpoint kept is step
  {finetune["kept_step"]}'s, the one with the lowest loss on `dev.tsv` (measured every {training["save_steps"]}
  steps).

Seed {training["seed"]}, {training["threads"]} CPU threads. No held-out or dev target is in the training pairs or the
monolingual text (`data/README.md`).

## Held-out results

Greedy decoding on `data/natural/heldout.tsv` ({heldout["n"]} pairs): chrF **{heldout["model"]["chrf"]:.1f}**,
exact match **{heldout["model"]["exact_match"]:.3f}**. The baseline copies the English name (the source after
`translate xx: `), which is right where a language writes the name as English does: chrF
{heldout["baseline"]["chrf"]:.1f}, exact match {heldout["baseline"]["exact_match"]:.3f}. {baseline_verdict(report)}

{heldout_table(report)}

## Data and licences

The model is under Apache-2.0. It was trained on CLDR data (Unicode License v3, through babel) and prose from
dataset-build (BSD-2-Clause), which an LLM wrote: see `data/README.md` for both notices.
"""
    path = model_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
