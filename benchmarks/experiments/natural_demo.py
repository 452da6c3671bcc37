"""Every stage of mT5 Lite on the natural model (issue 29): a model that learned natural text in 64 languages.

    python -m benchmarks.experiments.natural_demo [--model models/natural] [--sections ...] [--threads 2]

Sections (``SECTIONS``; each writes its part of one JSON and Markdown report, rewritten after each section):

- ``parity``: the fp32 static ONNX export against PyTorch (the exporter's own validation) and the fp32 TFLite
  export against the ONNX export (its validation, then greedy agreement on every held-out pair).
- ``int8``: every int8 recipe (static, dynamic and weight-int8 ONNX, full-int8 TFLite, ExecuTorch int8), each
  calibrated on the natural training inputs, and fp16 as a control, compared with the fp32 ONNX export on the
  2,560 held-out pairs: greedy agreement (also where fp32 is exactly right), exact match and chrF overall and per
  language, the quality gate.
- ``trim``: ``trim-vocab`` to 5 and to 20 of the languages (the corpus: their training pairs and monolingual
  text, and every training input, English names), with and without the pieces spelled in their characters
  (``--keep-spelled``), each exported (fp32 ONNX) and decoded beside the untrimmed
  export: outputs identical in the kept languages (also counting only the untrimmed outputs the trimmed
  vocabulary spells without bytes), exact match and chrF in the dropped ones, how much of their own
  text no piece covers any more and the warning ``mt5lite generate`` prints, size and ms/token side by side.
- ``scripts``: the share of greedy-identical outputs of static int8 and full-int8 TFLite against fp32 (and of fp16,
  the control), per script, on the held-out pairs and on the project's held-out natural sentences
  (``data/sentences/heldout.tsv``).
- ``outliers``: the activation statistics the outlier step measures (per node group, the worst channel's range
  over the median channel's) on the natural model and on the demo model.
- ``student``: the lite recipe (trim, drop layers + prune FFN, distil, fine-tune) with the natural model as the
  teacher, on its fine-tuning pairs; chrF and exact match per language of teacher and student (PyTorch, greedy).

Never a pass/fail on timing; the gate's verdicts are reported, not enforced. Builds go to ``--work``, in a folder
named by the hash of the model's weights, config and tokenizer (``model_digest``), so a retrained model never reuses
what an earlier one built, and each build is remade when the code or what it is made from changes (``once``);
sections not run keep what an earlier run on the same model (the same hash) wrote to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.experiments.outliers_demo import build
from benchmarks.experiments.outliers_demo import row as recipe_row
from benchmarks.models import input_hash, once
from benchmarks.timing import side_by_side
from mt5lite.data import HELDOUT_SENTENCES, read_sentences
from mt5lite.natural.corpus import LANGUAGES
from mt5lite.natural.train import MONOLINGUAL, TRAIN_PAIRS, heldout_pairs
from mt5lite.paths import BUILD_DIR, DEMO_MODEL, NATURAL_MODEL
from mt5lite.reports import markdown_table, write_report

#: The int8 recipes measured (``outliers_demo.build`` builds each), and fp16 as the control: what rounding alone
#: does to the outputs of a model that is unsure of many of them.
INT8_RECIPES = ("static-int8", "dynamic-int8", "weight-int8", "tflite-int8", "executorch-int8", "fp16")
#: The languages each trimmed model keeps: 5 in five scripts, and 20 in nine.
FIVE = ("de", "ru", "ar", "hi", "ja")
TWENTY = ("de", "fr", "es", "pt", "it", "nl", "pl", "tr", "vi", "id", "ru", "uk", "ar", "fa", "hi", "bn", "ja", "zh",
          "ko", "th")
#: Each trimmed model: the languages it keeps, and whether it also keeps the pieces spelled in their characters
#: (``TrimVocabConfig.keep_spelled``).
TRIMS = {"trim-5": (FIVE, False), "trim-5-spelled": (FIVE, True), "trim-20": (TWENTY, False),
         "trim-20-spelled": (TWENTY, True)}
#: The exports the scripts section compares with fp32, and fp16 as the control: what rounding alone changes where
#: the model is unsure (the sentences are not its task), so a low share is not read as int8's fault.
SCRIPT_RECIPES = ("static-int8", "tflite-int8", "fp16")
#: Scripts of the held-out natural sentences' tags outside the natural corpus's languages.
SENTENCE_SCRIPTS = {"en": "Latn", "mul": "mixed"}


def decode(export: Path, texts: list[str], threads: int) -> list[list[int]]:
    """Greedy ids of ``texts`` from ``export`` (the project's batched decoding loop)."""
    from mt5lite.runtimes.generators import open_export
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.verification.evaluation import generate_in_batches

    generator = open_export(export, threads=threads)
    options = DecodingOptions(max_new_tokens=min(32, generator.backend.max_target_length))
    return generate_in_batches(lambda batch: generator.generate_ids(batch, options), texts, 32)


def export_fp32(model: Path, out: Path):
    """Export ``model`` to ``out`` as the fp32 static-shape ONNX export, validated against PyTorch (the
    ``ExportResult``)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    return export_onnx(model, out, OnnxExportConfig(static_shapes=True), force=True)


def fp32_onnx(model: Path, work: Path) -> Path:
    """The fp32 static-shape ONNX export of ``model`` under ``work`` (reused when made by this code from the same
    model: ``once``)."""
    return once(work / "onnx", lambda out: export_fp32(model, out), inputs=(model,))


def recipe_export(recipe: str, model: Path, onnx: Path, out: Path, calibration: Path) -> Path:
    """``recipe``'s export of ``model`` from its fp32 ONNX export ``onnx``, calibrated on ``calibration``, at ``out``
    (``outliers_demo.build``; reused when made by this code from the same files)."""
    return once(out, lambda path: build(recipe, model, onnx, path, calibration=calibration),
                inputs=(model, onnx, calibration), options=recipe)


def parity(context: dict) -> dict:
    """fp32 ONNX against PyTorch and fp32 TFLite against ONNX: the exporters' validations, and greedy agreement of
    TFLite with ONNX on the held-out pairs."""
    from mt5lite.exporters.tflite.export import export_tflite
    from mt5lite.verification.parity import agreement

    work, pairs = context["work"], context["pairs"]
    onnx = export_fp32(context["model"], work / "onnx")  # rebuilt: its validation is what this section reports
    tflite = export_tflite(work / "onnx", work / "tflite-fp32", "fp32", force=True)
    texts = [p.source for p in pairs]
    greedy, tokens = agreement(decode(work / "onnx", texts, context["threads"]),
                               decode(work / "tflite-fp32", texts, context["threads"]))
    return {"onnx_vs_pytorch": _validation(onnx.validation), "tflite_vs_onnx": _validation(tflite.validation),
            "tflite_greedy_agreement": greedy, "tflite_token_agreement": tokens, "n": len(pairs)}


def _validation(validation) -> dict:
    return {"samples": validation.samples, "languages": len(validation.languages),
            "max_abs_diff": {row["output"]: row["max_abs_diff"] for row in validation.rows},
            "tolerance": {row["output"]: row["tolerance"] for row in validation.rows}}


def int8(context: dict) -> dict:
    """Every int8 recipe against the fp32 ONNX export on the held-out pairs (calibrated on training inputs)."""
    from mt5lite.verification.comparison import compare_exports

    work, onnx = context["work"], fp32_onnx(context["model"], context["work"])
    rows = []
    for recipe in INT8_RECIPES:
        out = recipe_export(recipe, context["model"], onnx, work / recipe, TRAIN_PAIRS)
        report = compare_exports(onnx, out, context["pairs"], threads=context["threads"], speed_samples=24)
        rows.append(recipe_row("natural", recipe, report) | {
            "chrf": report["chrf"], "chrf_reference": report["chrf_reference"],
            "greedy_agreement_where_reference_exact": report["greedy_agreement_where_reference_exact"]})
        print(f"int8 {recipe:16s} agreement {rows[-1]['greedy_agreement']:.3f} "
              f"gate {'passed' if not rows[-1]['gate_failures'] else 'FAILED'}", flush=True)
    return {"calibration": str(TRAIN_PAIRS), "n": len(context["pairs"]), "rows": rows}


def trim_corpus(languages: tuple[str, ...], path: Path) -> Path:
    """A trim-vocab corpus for ``languages``: their training pairs and monolingual lines, and the inputs of every
    language's training pairs (``translate xx: <English name>``: the model reads English whatever the target
    language, so an English name trained only for other languages is still an input the kept ones get). Never
    held-out text."""
    lines = []
    for source in (TRAIN_PAIRS, MONOLINGUAL):
        for line in source.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if fields[0] in languages:
                lines.append(line)
            elif source == TRAIN_PAIRS and len(fields) == 3:
                lines.append("\t".join(fields[:2]))  # the input only
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def trimmed(model: Path, languages: tuple[str, ...], keep_spelled: bool, work: Path) -> Path:
    """``model`` trimmed to the pieces ``languages`` use, and with ``keep_spelled`` to those spelled in their
    characters (a ``compress`` run; reused when made by this code from the same files)."""
    from mt5lite.compression.compress import compress
    from mt5lite.compression.trim_vocab import TrimVocabConfig

    configs = {"trim-vocab": TrimVocabConfig(corpus=(trim_corpus(languages, work / "corpus.tsv"),),
                                             keep_spelled=keep_spelled)}
    return once(work / "model", lambda out: compress(model, out, ["trim-vocab"], configs, pairs=None, force=True),
                inputs=(model, work / "corpus.tsv"), options=configs)


def trim(context: dict) -> dict:
    """Trimmed to 5 and to 20 languages: kept languages identical, dropped ones measured, with how much of their
    text no piece covers any more and the warning ``generate`` prints for it, and size and speed side by side with
    the untrimmed export."""
    from mt5lite.cli import uncovered_warning
    from mt5lite.runtimes.generators import open_export
    from mt5lite.runtimes.tokenizer import Tokenizer
    from mt5lite.verification.comparison import directory_bytes
    from mt5lite.verification.evaluation import score

    work, pairs, threads = context["work"], context["pairs"], context["threads"]
    texts = [p.source for p in pairs]
    onnx = fp32_onnx(context["model"], work)
    full = Tokenizer(onnx / "spiece.model")
    untrimmed = [full.decode(ids) for ids in decode(onnx, texts, threads)]
    before = score(untrimmed, pairs)
    rows_of = defaultdict(list)
    for index, pair in enumerate(pairs):
        rows_of[pair.lang].append(index)
    own_text = {lang: [pairs[i].target for i in rows] for lang, rows in rows_of.items()}  # not the English sources
    uncovered_before = {lang: full.uncovered(text) for lang, text in own_text.items()}
    results = {}
    for name, (languages, keep_spelled) in TRIMS.items():
        checkpoint = trimmed(context["model"], languages, keep_spelled, work / name)
        export = once(work / name / "onnx", lambda out, c=checkpoint: export_fp32(c, out), inputs=(checkpoint,))
        tokenizer = Tokenizer(export / "spiece.model")
        outputs = [tokenizer.decode(ids) for ids in decode(export, texts, threads)]
        ours = score(outputs, pairs)
        # An untrimmed output with a character no kept piece spells (a wrong output in another language's letters)
        # is one the trimmed model can only write in bytes.
        spelled = [tokenizer.uncovered([text])[0] == 0 for text in untrimmed]
        per_language = {}
        for lang, rows in rows_of.items():
            missing, characters = tokenizer.uncovered(own_text[lang])
            writable = [i for i in rows if spelled[i]]
            per_language[lang] = {
                "kept": lang in languages, "identical": sum(outputs[i] == untrimmed[i] for i in rows) / len(rows),
                "identical_where_spelled": sum(outputs[i] == untrimmed[i] for i in writable) / max(len(writable), 1),
                "not_spelled": len(rows) - len(writable),
                "exact_match": ours["per_language"][lang]["exact_match"],
                "exact_match_untrimmed": before["per_language"][lang]["exact_match"],
                "chrf": ours["per_language"][lang]["chrf"], "chrf_untrimmed": before["per_language"][lang]["chrf"],
                "uncovered": missing / characters, "uncovered_untrimmed": uncovered_before[lang][0] / characters,
                "warning": uncovered_warning(missing, characters)}
        generators = {"untrimmed": open_export(onnx, threads=threads), name: open_export(export, threads=threads)}
        speed = side_by_side(generators, [p.source for p in pairs if p.lang in languages][:24], 16)
        results[name] = {"languages": list(languages), "keep_spelled": keep_spelled, "pieces": tokenizer.piece_count,
                         "pieces_untrimmed": full.piece_count, "size_bytes": directory_bytes(export),
                         "size_bytes_untrimmed": directory_bytes(onnx), "ms_per_token": speed[name],
                         "ms_per_token_untrimmed": speed["untrimmed"], "per_language": per_language}
        kept = [row for row in per_language.values() if row["kept"]]
        print(f"{name}: {tokenizer.piece_count} pieces, kept languages identical "
              f"{min(row['identical'] for row in kept):.3f} (lowest), where spelled "
              f"{min(row['identical_where_spelled'] for row in kept):.3f}", flush=True)
    return results


def scripts(context: dict) -> dict:
    """Greedy-identical share of static int8 and full-int8 TFLite (and fp16, the control) against fp32, per script,
    on the held-out pairs and the held-out natural sentences."""
    work, threads = context["work"], context["threads"]
    onnx = fp32_onnx(context["model"], work)
    exports = {recipe: recipe_export(recipe, context["model"], onnx, work / recipe, TRAIN_PAIRS)
               for recipe in SCRIPT_RECIPES}
    sentences = read_sentences(HELDOUT_SENTENCES)
    sets = {"heldout_pairs": [(LANGUAGES[p.lang], p.source) for p in context["pairs"]],
            "heldout_sentences": [(LANGUAGES.get(s.lang) or SENTENCE_SCRIPTS[s.lang], s.text) for s in sentences]}
    result = {}
    for name, rows in sets.items():
        texts = [text for _, text in rows]
        reference = decode(onnx, texts, threads)
        candidates = {recipe: decode(out, texts, threads) for recipe, out in exports.items()}
        by_script = defaultdict(list)
        for index, (script, _) in enumerate(rows):
            by_script[script].append(index)
        picks = {recipe: {script: token_picks(onnx, out, [texts[i] for i in indices], [reference[i] for i in indices],
                                              threads) for script, indices in by_script.items()}
                 for recipe, out in exports.items()}
        result[name] = {script: {"n": len(indices), "tokens": len(picks[SCRIPT_RECIPES[0]][script].same_top), **{
            recipe: sum(ids[i] == reference[i] for i in indices) / len(indices) for recipe, ids in candidates.items()},
            "per_token": {recipe: round(found[script].top_agreement, 4) for recipe, found in picks.items()},
            "flip_margin_median": {recipe: _median(found[script].flip_margins) for recipe, found in picks.items()}}
            for script, indices in sorted(by_script.items())}
        merged = {recipe: _merged(found.values()) for recipe, found in picks.items()}
        result[name]["all"] = {"n": len(rows),
                               "per_token": {recipe: round(f.top_agreement, 4) for recipe, f in merged.items()},
                               "flip_margin_median": {recipe: _median(f.flip_margins) for recipe, f in merged.items()},
                               **{recipe: sum(ids[i] == reference[i] for i in range(len(rows))) / len(rows)
                                  for recipe, ids in candidates.items()}}
    return result


def token_picks(reference: Path, candidate: Path, texts: list[str], targets: list[list[int]], threads: int):
    """Teacher-forced on ``reference``'s greedy ids ``targets``: at every step, whether export ``candidate`` picks
    the token ``reference`` picks (``teacher_forced.Differences``: ``same_top``, ``flip_margins``)."""
    from mt5lite.runtimes.generators import open_export
    from mt5lite.verification.teacher_forced import Differences, teacher_forced

    sides = open_export(reference, threads=threads), open_export(candidate, threads=threads)
    found = Differences()
    for start in range(0, len(texts), 32):
        ids, mask = sides[0].encode_batch(texts[start : start + 32])
        found.merge(teacher_forced(sides[0].stepper, sides[1].stepper, ids, mask, targets[start : start + 32],
                                   sides[0].decoder.decoder_start_id))
    return found


def _merged(parts):
    """One ``teacher_forced.Differences`` holding every one of ``parts``."""
    from mt5lite.verification.teacher_forced import Differences

    merged = Differences()
    for found in parts:
        merged.merge(found)
    return merged


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def outliers(context: dict) -> dict:
    """Per node group, the worst channel's range over the median channel's, as static int8's outlier step measured
    it, on the natural model (calibrated on its training inputs) and on the demo model (on its task's dev pairs,
    as ``lite_demo`` calibrates it)."""
    from mt5lite.data import DEV_TASK
    from mt5lite.manifest import load_manifest

    work = context["work"]
    built = {"natural": (context["model"], fp32_onnx(context["model"], work), TRAIN_PAIRS, work / "static-int8"),
             "demo": (DEMO_MODEL, fp32_onnx(DEMO_MODEL, work / "demo"), DEV_TASK, work / "demo" / "static-int8")}
    result = {}
    for name, (model, onnx, calibration, out) in built.items():
        recipe_export("static-int8", model, onnx, out, calibration)
        groups = load_manifest(out, verify_hashes=False).quantization.outliers["groups"]
        result[name] = {group: {"worst_ratio": row["worst_ratio"], "worst_node": row["worst_node"],
                                "smoothed": row["smoothed"], "products": row["products"]}
                        for group, row in groups.items()}
    return result


def student_pairs(path: Path) -> Path:
    """The student's training pairs, written to ``path``: the teacher's own fine-tuning pairs, ``train.tsv`` with its
    copy and spelling pairs (``mt5lite.natural.augment``, as ``NaturalConfig`` repeats them). On ``train.tsv``
    alone the student lost what the spelling pairs taught the teacher (zu chrF 24.4 below it, 2026-12-05)."""
    from mt5lite.data import read_task_pairs, write_task_pairs
    from mt5lite.natural.augment import fine_tuning_pairs
    from mt5lite.natural.config import NaturalConfig

    config = NaturalConfig()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_task_pairs(fine_tuning_pairs(read_task_pairs(TRAIN_PAIRS), config.copy_repeats, config.spelling_repeats),
                     path, "the natural model's fine-tuning pairs")
    return path


def student(context: dict) -> dict:
    """The lite recipe with the natural model as teacher, trained on the teacher's fine-tuning pairs: chrF and exact
    match per language, teacher and student."""
    from benchmarks.models import lite_stages

    work = context["work"] / "lite"
    paths = lite_stages(work, student_pairs(work / "train.tsv"), context["student_steps"], context["pairs"],
                        teacher=context["model"])
    reports = {stage: json.loads((paths[stage] / "compress_report.json").read_text(encoding="utf-8"))
               for stage in ("trimmed", "student")}
    teacher = reports["trimmed"]["quality"]["before"]  # the first stage's input is the teacher
    after = reports["student"]["passes"][-1]["quality_after"]
    return {"steps": context["student_steps"], "teacher": teacher, "student": after,
            "parameters": (reports["trimmed"]["passes"][0]["parameters"][0],
                           reports["student"]["passes"][-1]["parameters"][1]),
            "gaps": {lang: teacher["per_language"][lang]["chrf"] - row["chrf"]
                     for lang, row in after["per_language"].items()}}


#: Each section: what it measures (its function), in the report's order.
SECTIONS = {"parity": parity, "int8": int8, "trim": trim, "scripts": scripts, "outliers": outliers,
            "student": student}


def model_digest(model: Path) -> str:
    """The first 16 hex digits of the hash of what the model computes (``input_hash``: its weights, config and
    tokenizer, not its card or report): what names its build folder and keys the report's sections."""
    return input_hash(model)[:16]


def markdown(report: dict) -> str:
    """The Markdown twin of the report (the sections that ran)."""
    parts = ["# Every stage on the natural model",
             f"Model `{report['model']}` (its weights, config and tokenizer: sha256 {report['model_sha256']}...); "
             f"{report['threads']} threads."]
    if "parity" in report:
        found = report["parity"]
        parts += ["## fp32 parity", markdown_table(["stage", "max |diff| per output (tolerance)"], [
            [stage, ", ".join(f"{name} {value:.2e} ({found[stage]['tolerance'][name]:.1e})"
                              for name, value in found[stage]["max_abs_diff"].items())]
            for stage in ("onnx_vs_pytorch", "tflite_vs_onnx")]),
            f"TFLite fp32 against ONNX fp32: greedy agreement {found['tflite_greedy_agreement']:.3f} on "
            f"{found['n']} held-out pairs."]
    if "int8" in report:
        parts += ["## int8 recipes against fp32", markdown_table(
            ["recipe", "greedy agreement", "where fp32 is exact", "exact match (fp32)", "chrF (fp32)",
             "worst language (points)", "gate", "MB"],
            [[r["recipe"], f"{r['greedy_agreement']:.3f}", f"{r['greedy_agreement_where_reference_exact']:.3f}",
              f"{r['exact_match']:.3f} ({r['exact_match_reference']:.3f})",
              f"{r['chrf']:.1f} ({r['chrf_reference']:.1f})",
              f"{r['worst_language']} {-r['worst_language_drop'] * 100:+.1f}",
              "passes" if not r["gate_failures"] else "; ".join(r["gate_failures"]), f"{r['size_bytes'] / 1e6:.2f}"]
             for r in report["int8"]["rows"]])]
    for name, found in report.get("trim", {}).items():
        rows = [[lang, "kept" if row["kept"] else "dropped", f"{row['identical']:.3f}",
                 f"{row['identical_where_spelled']:.3f} ({row['not_spelled']})" if "not_spelled" in row else "-",
                 f"{row['chrf']:.1f} ({row['chrf_untrimmed']:.1f})",
                 f"{row['uncovered']:.0%} ({row['uncovered_untrimmed']:.0%})", "yes" if row["warning"] else "-"]
                for lang, row in found["per_language"].items()]
        spelled = " and the pieces spelled in their characters" if found.get("keep_spelled") else ""
        parts += [f"## {name}: {', '.join(found['languages'])}{spelled}",
                  f"{found['pieces']:,} pieces of {found['pieces_untrimmed']:,}; fp32 ONNX export (every file) "
                  f"{found['size_bytes'] / 1e6:.1f} MB against {found['size_bytes_untrimmed'] / 1e6:.1f} MB; "
                  f"{found['ms_per_token']:.2f} ms/token against {found['ms_per_token_untrimmed']:.2f} (side by side).",
                  markdown_table(["language", "", "identical to untrimmed",
                                  "identical where the untrimmed output is in kept pieces' letters (outputs not)",
                                  "chrF (untrimmed)",
                                  "target characters no piece covers (untrimmed)", "warning"], rows)]
    for name, found in report.get("scripts", {}).items():
        recipes = [recipe for recipe in SCRIPT_RECIPES if recipe in next(iter(found.values()))]
        per_token = all("per_token" in row for row in found.values())
        header = ["script", "n", *recipes] + ([f"{r} per token (median margin at a flip)" for r in recipes]
                                              if per_token else [])
        parts += [f"## Greedy-identical to fp32 per script: {name.replace('_', ' ')}", markdown_table(header, [
            [script, row["n"], *(f"{row[recipe]:.3f}" for recipe in recipes),
             *([f"{row['per_token'][r]:.3f} ({_margin(row['flip_margin_median'][r])})" for r in recipes]
               if per_token else [])] for script, row in found.items()])]
    if "outliers" in report:
        groups = sorted({g for found in report["outliers"].values() for g in found})
        parts += ["## Activation outliers (worst channel over median, per node group)", markdown_table(
            ["group", *report["outliers"]], [[g, *(f"{found[g]['worst_ratio']:.1f}" if g in found else "-"
                                                   for found in report["outliers"].values())] for g in groups])]
    if "student" in report:
        found = report["student"]
        parts += [f"## Lite student ({found['parameters'][0]:,} -> {found['parameters'][1]:,} parameters; "
                  f"{found['steps']:,} distillation and {found['steps'] // 2:,} fine-tuning steps)",
                  markdown_table(["language", "teacher chrF", "student chrF", "gap"],
                                 [[lang, f"{found['teacher']['per_language'][lang]['chrf']:.1f}",
                                   f"{row['chrf']:.1f}", f"{found['gaps'][lang]:+.1f}"]
                                  for lang, row in found["student"]["per_language"].items()])]
    return "\n\n".join(parts)


def _margin(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=NATURAL_MODEL)
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--student-steps", type=int, default=10000,
                        help="distillation steps (fine-tuning: half); against the 14,000-step teacher, 16 of 64 "
                             "languages were over 3 chrF below it at 5,000 and 12 at 10,000 (2026-12-06)")
    parser.add_argument("--per-language", type=int, default=40, help="held-out pairs per language (all: 40)")
    parser.add_argument("--work", type=Path, default=BUILD_DIR / "natural-demo")
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "natural-demo.json")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        parser.exit(2, f"{parser.prog}: error: {args.model}: no natural model there; run make natural-model\n")
    digest = model_digest(args.model)
    context = {"model": args.model, "work": args.work / digest, "threads": args.threads,
               "student_steps": args.student_steps, "pairs": heldout_pairs(args.per_language)}
    report = {"model": os.path.relpath(args.model), "model_sha256": digest, "threads": args.threads}
    if args.output.is_file():  # the sections not run now keep what an earlier run of the same model measured
        earlier = json.loads(args.output.read_text(encoding="utf-8"))
        if earlier.get("model_sha256") == digest:
            report = {**earlier, **report}
    for name in args.sections:
        report[name] = SECTIONS[name](context)
        written = write_report(report, args.output, markdown(report))
    print("report:", *written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
