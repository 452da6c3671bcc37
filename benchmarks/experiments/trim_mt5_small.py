"""Vocabulary trimming on a model of google/mt5-small's exact shape with a tokenizer of mT5's size: equality at
the kept ids, fp32 parity, the int8 exports' sizes, and decoding speed untrimmed against trimmed, in one run.

    python -m benchmarks.experiments.trim_mt5_small [--threads 2] [--inputs 16] [--new-tokens 32] [--output FILE.json]

The model is ``benchmarks.models.mt5_small`` (``tests.fixtures.mt5_small_250k``): random weights of mt5-small's
shape and a 250,100-piece sentencepiece model (mT5's own cannot be downloaded here). Steps, each cached under
``build/trim-mt5-small/``:

1. ``trim-vocab`` with the project's multilingual data (the default corpus);
2. the trimmed model against the original, teacher-forced in PyTorch, at the kept ids (encoder outputs, cross
   K/V, logits), held to the export tolerance;
3. fp32 static-shape ONNX export of both (each validated against PyTorch within the export tolerance), static
   int8 ONNX of both, full-int8 TFLite of the trimmed model, with their sizes on disk (every file of the export);
4. ms/token of the untrimmed and the trimmed static-int8 ONNX exports, batch 1, taking turns input by input.

Writes JSON; never a pass/fail on timing. Quality claims belong to the trained demo model: these weights are random.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

from benchmarks.models import mt5_small, once, trimmed_mt5_small
from benchmarks.timing import side_by_side, speed_arguments
from mt5lite.data import HELDOUT_SENTENCES, read_sentences
from mt5lite.paths import BUILD_DIR
from mt5lite.verification.comparison import directory_bytes

#: Calibration for both int8 exports: the same draw, so their speeds compare like with like.
CALIBRATION = {"samples": 128, "max_decoder_steps": 256}


def build(original: Path, work: Path) -> dict[str, Path]:
    """The trimmed checkpoint (``benchmarks.models.trimmed_mt5_small``, `make bench`'s trimmed row) and every
    export, reused when made by this code from the same files (``once``)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.quantize.calibration import CalibrationDraw
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
    from mt5lite.exporters.tflite.export import export_tflite

    static = OnnxExportConfig(static_shapes=True)
    paths = {"trimmed": trimmed_mt5_small(original, work)}

    def export_fp32(model: Path, path: Path) -> None:  # keeps the validation against PyTorch beside the export
        validation = export_onnx(model, path, static, force=True, progress=True).validation
        path.with_suffix(".validation.json").write_text(json.dumps(asdict(validation), indent=2), encoding="utf-8")

    for name, model in (("untrimmed", original), ("trimmed", paths["trimmed"])):
        fp32 = once(work / f"{name}-onnx-fp32", lambda p, m=model: export_fp32(m, p), inputs=(model,))
        paths[f"{name}-onnx-fp32"] = fp32
        paths[f"{name}-onnx-int8"] = once(work / f"{name}-onnx-int8", lambda p, s=fp32: quantize_export(
            s, p, QuantizeConfig(**CALIBRATION), force=True, progress=True, gate=False), inputs=(fp32,),
            options=CALIBRATION)
    paths["trimmed-tflite-int8"] = once(work / "trimmed-tflite-int8", lambda p: export_tflite(
        paths["trimmed-onnx-fp32"], p, "int8", force=True, calibration=CalibrationDraw(**CALIBRATION),
        progress=True, gate=False), inputs=(paths["trimmed-onnx-fp32"],), options=CALIBRATION)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Build what is missing, measure, and write the JSON report."""
    from mt5lite.compression.compress import read_sentencepiece
    from mt5lite.exporters.onnx.export import OnnxExportConfig
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator
    from mt5lite.verification.kept_ids import compare_trimmed
    from mt5lite.verification.teacher_forced import diff_rows

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    speed_arguments(parser, inputs=16, new_tokens=32, output="trim-mt5-small.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_TF", "0")

    original = mt5_small()
    work = BUILD_DIR / "trim-mt5-small"
    paths = build(original, work)
    texts = [s.text for s in read_sentences(HELDOUT_SENTENCES)[: args.inputs]]

    config = OnnxExportConfig()
    found = compare_trimmed(original, paths["trimmed"], texts)
    kept = diff_rows(found, config.atol, config.rtol, {})
    compress_report = json.loads((paths["trimmed"] / "compress_report.json").read_text(encoding="utf-8"))

    sizes = {name: directory_bytes(path) for name, path in paths.items()}
    checkpoint_bytes = (original / "model.safetensors").stat().st_size

    generators = {name: OnnxGenerator(paths[name], threads=args.threads)
                  for name in ("untrimmed-onnx-int8", "trimmed-onnx-int8")}
    speed = side_by_side(generators, texts, args.new_tokens)

    result = {
        "model": str(original), "threads": args.threads, "inputs": len(texts), "new_tokens": args.new_tokens,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "pieces": {"original": len(read_sentencepiece(original / "spiece.model").pieces),
                   "trimmed": len(read_sentencepiece(paths["trimmed"] / "spiece.model").pieces)},
        "trim_pass": compress_report["passes"][0],
        "kept_ids_vs_original": {"rows": kept, "within_tolerance": all(r["max_abs_diff"] <= r["tolerance"]
                                                                      for r in kept)},
        "fp32_export_validation": {name: json.loads(paths[name].with_suffix(".validation.json").read_text())
                                   for name in ("untrimmed-onnx-fp32", "trimmed-onnx-fp32")},
        "checkpoint_bytes": checkpoint_bytes,
        "untrimmed_fp32_onnx_vs_checkpoint": sizes["untrimmed-onnx-fp32"] / checkpoint_bytes,
        "bytes_on_disk": sizes,
        "int8_ms_per_token_median": speed,
        "trimmed_speedup": speed["untrimmed-onnx-int8"] / speed["trimmed-onnx-int8"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"pieces {result['pieces']['original']:,} -> {result['pieces']['trimmed']:,}")
    for row in kept:
        print(f"  kept ids, {row['output']}: max |diff| {row['max_abs_diff']:.2e} (tolerance {row['tolerance']:.2e})")
    for name, size in sizes.items():
        print(f"{name:>22}: {size / 1e6:8.1f} MB")
    for name, ms in speed.items():
        print(f"{name:>22}: {ms:6.2f} ms/token")
    print(f"trimmed int8 is {result['trimmed_speedup']:.2f}x faster per token; written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
