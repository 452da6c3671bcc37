"""The "lite" recipe on the demo model, stage by stage: one row for the teacher and one after each stage.

    python -m benchmarks.experiments.lite_demo [--steps 2500] [--threads 2] [--output FILE.json]

Stages (``benchmarks.models.lite_stages``, which `make bench`'s student row shares; each a ``compress`` run, so
each checkpoint is kept under ``build/lite/``): trim-vocab on the task's training texts -> drop-layers + prune-ffn
(importance on 400 training pairs) -> distill from the teacher -> finetune.
Every checkpoint is exported like ``make export-tflite`` does (fp32 static ONNX validated against PyTorch, static
int8 ONNX and full-int8 TFLite, both calibrated on the task's dev pairs, the TFLite validated against the ONNX
export); the student's full-int8 TFLite is held to the quantization gate. Columns: parameters (non-embedding
apart), sizes, ms/token of the full-int8 TFLite exports decoded side by side (taking turns input by input, forced
length), exact match overall and per language on the 600 held-out pairs, training time. Writes JSON and Markdown;
never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.models import lite_stages, training_file
from benchmarks.timing import side_by_side, speed_arguments
from mt5lite.data import DEV_TASK, HELDOUT_TASK, read_task_pairs
from mt5lite.paths import BUILD_DIR
from mt5lite.reports import markdown_table, write_report
from mt5lite.verification.comparison import directory_bytes

STAGES = ("teacher", "trimmed", "pruned", "distilled", "student")


def exports(checkpoint: Path, work: Path) -> dict[str, Path]:
    """fp32 static ONNX, static int8 ONNX and full-int8 TFLite of ``checkpoint`` (reused when already there)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.quantize.calibration import CalibrationDraw
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
    from mt5lite.exporters.tflite.export import export_tflite

    out = {"onnx": work / "onnx", "onnx-int8": work / "onnx-int8", "tflite-int8": work / "tflite-int8"}
    if not (out["onnx"] / "manifest.json").is_file():
        export_onnx(checkpoint, out["onnx"], OnnxExportConfig(static_shapes=True), force=True)
    # Calibrated on the task's dev pairs (disjoint from the held-out set): with the default natural sentences the
    # student's full int8 missed the gate on Thai (3.3 points below its fp32 export, limit 3).
    if not (out["onnx-int8"] / "manifest.json").is_file():
        quantize_export(out["onnx"], out["onnx-int8"], QuantizeConfig(calibration=DEV_TASK), force=True, gate=False)
    if not (out["tflite-int8"] / "manifest.json").is_file():
        export_tflite(out["onnx"], out["tflite-int8"], "int8", force=True, calibration=CalibrationDraw(DEV_TASK),
                      gate=False)
    return out


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2500, help="optimizer steps of distill (finetune: half)")
    speed_arguments(parser, inputs=40, new_tokens=16, output="lite-demo.json")
    return parser.parse_args(argv)


def stage_rows(paths: dict[str, Path], built: dict[str, dict], speed: dict[str, float],
               gates: dict[str, dict]) -> dict[str, dict]:
    """One row per stage: parameters, sizes, speed, quality (from the stage's ``compress`` report; the teacher's
    is the first report's "before") and its full int8 against its own fp32 export."""
    from mt5lite.checkpoint import load_model
    from mt5lite.compression.passes import parameter_count
    from mt5lite.compression.structure import non_embedding_parameters

    rows = {}
    quality = json.loads((paths["trimmed"] / "compress_report.json").read_text(encoding="utf-8"))["quality"]["before"]
    for name in STAGES:
        model = load_model(paths[name])
        if name != "teacher":
            report = json.loads((paths[name] / "compress_report.json").read_text(encoding="utf-8"))
            quality = report["passes"][-1]["quality_after"]
            seconds = sum(p["details"].get("seconds", 0) for p in report["passes"])
        else:
            seconds = 0
        rows[name] = {
            "parameters": parameter_count(model), "non_embedding_parameters": non_embedding_parameters(model),
            "bytes": {kind: directory_bytes(path) for kind, path in built[name].items()},
            "tflite_int8_ms_per_token": speed[name],
            "exact_match": quality["exact_match"], "chrf": quality["chrf"],
            "per_language": {lang: row["exact_match"] for lang, row in quality["per_language"].items()},
            "training_seconds": seconds,
            "int8": {"greedy_agreement": gates[name]["greedy_agreement"],
                     "exact_match_fp32": gates[name]["exact_match_reference"],
                     "exact_match_int8": gates[name]["exact_match"], "gate_passed": gates[name]["gate"]["passed"]},
        }
    return rows


def markdown(rows: dict[str, dict]) -> str:
    """The stage table in Markdown."""
    table = [[name, f"{r['parameters'] / 1e6:.2f} M ({r['non_embedding_parameters'] / 1e6:.2f} M)",
              f"{r['bytes']['onnx'] / 1e6:.1f} / {r['bytes']['onnx-int8'] / 1e6:.1f} / "
              f"{r['bytes']['tflite-int8'] / 1e6:.1f}", f"{r['tflite_int8_ms_per_token']:.2f}",
              f"{r['exact_match']:.3f}", f"{min(r['per_language'].values()):.3f}",
              f"{r['int8']['greedy_agreement']:.3f} / "
              f"{r['int8']['exact_match_int8'] - r['int8']['exact_match_fp32']:+.3f}",
              f"{r['training_seconds']:.0f}"]
             for name, r in rows.items()]
    return "# The lite recipe on the demo model\n\n" + markdown_table(
        ["stage", "parameters (non-embedding)", "MB: fp32 ONNX / int8 ONNX / int8 TFLite", "ms/token (TFLite int8)",
         "exact match", "worst language", "int8 vs own fp32: agreement / exact match", "training s"], table)


def main(argv: list[str] | None = None) -> int:
    """Build every stage and its exports, measure, and write the table."""
    from mt5lite.runtimes.litert import LiteRTGenerator
    from mt5lite.verification.comparison import compare_and_gate

    args = parse_arguments(argv)
    os.environ.setdefault("USE_TF", "0")

    work = BUILD_DIR / "lite"
    pairs = read_task_pairs(HELDOUT_TASK)
    paths = lite_stages(work, training_file(work / "train.tsv"), args.steps, pairs)
    built = {name: exports(path, work / f"{name}-export") for name, path in paths.items()}
    # Each stage's full int8 against its own fp32 export: does fine-tuning before int8 narrow the gap?
    gates = {name: compare_and_gate(b["onnx"], b["tflite-int8"], pairs,
                                    BUILD_DIR / "reports" / f"lite-{name}-tflite-int8.json")[0]
             for name, b in built.items()}
    gate = gates["student"]

    generators = {name: LiteRTGenerator(b["tflite-int8"], threads=args.threads) for name, b in built.items()}
    texts = [p.source for p in pairs[:: max(1, len(pairs) // args.inputs)][: args.inputs]]
    rows = stage_rows(paths, built, side_by_side(generators, texts, args.new_tokens), gates)
    teacher = rows["teacher"]
    result = {"steps": args.steps, "threads": args.threads, "inputs": len(texts), "new_tokens": args.new_tokens,
              "stages": rows, "student_gate": gate["gate"],
              "student_non_embedding_fraction": rows["student"]["non_embedding_parameters"]
              / teacher["non_embedding_parameters"],
              "student_speedup": teacher["tflite_int8_ms_per_token"] / rows["student"]["tflite_int8_ms_per_token"]}
    table = markdown(rows)
    write_report(result, args.output, table)
    print(table)
    print(f"student: {result['student_non_embedding_fraction']:.1%} of the teacher's non-embedding parameters, "
          f"{result['student_speedup']:.2f}x faster per token; TFLite int8 gate "
          f"{'passed' if gate['gate']['passed'] else 'FAILED: ' + '; '.join(gate['gate']['failures'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
