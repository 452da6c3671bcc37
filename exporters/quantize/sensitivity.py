"""Quantization sensitivity: quantize one node group at a time and measure what it does to the outputs.

Every variant is a static int8 export built from the same captured calibration feeds, compared with the fp32
export on held-out inputs that are neither the calibration data nor the task set the quality gate uses:
greedy agreement, and the teacher-forced logit error (every step of the fp32 greedy output, fed to both).
The default static recipe (``mt5lite.exporters.quantize.recipes.DEFAULT_STATIC_GROUPS``) is chosen from this table.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from mt5lite.reports import markdown_table, write_report


def _measure(reference: dict, candidate_dir: Path, texts: list[str], options, batch_size: int) -> dict:
    """Greedy agreement with the fp32 export, and the teacher-forced logit error on its greedy output."""
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator
    from mt5lite.verification.comparison import graph_bytes
    from mt5lite.verification.parity import agreement
    from mt5lite.verification.teacher_forced import Differences, teacher_forced

    candidate = OnnxGenerator(candidate_dir, threads=reference["threads"])
    ids, found = [], Differences()
    step = 1 if candidate.static_shapes else batch_size
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        input_ids, mask = candidate.encode_batch(chunk)
        ids += candidate.generate_ids(chunk, options)
        found.merge(teacher_forced(reference["generator"].stepper, candidate.stepper, input_ids, mask,
                                   reference["ids"][start : start + step], candidate.decoder.decoder_start_id))
    greedy, tokens = agreement(reference["ids"], ids)
    return {
        "quantized_nodes": sum(candidate.manifest.quantization.quantized_nodes.values()),
        "greedy_agreement": greedy, "token_agreement": tokens,
        "max_abs_logit_diff": found.max_abs_diff["logits"],
        "mean_relative_logit_error": found.mean_relative_logit_error,
        "size_ratio": graph_bytes(candidate_dir, candidate.manifest) / reference["bytes"],
    }


def sensitivity_analysis(export_dir: str | os.PathLike, texts: list[str], config=None, threads: int | None = None,
                         max_new_tokens: int = 32, batch_size: int = 32, progress: bool = False) -> dict:
    """Quantize each group of ``exporters.quantize.groups.GROUPS`` alone, then the default recipe and every group
    together, and measure each variant against the fp32 export in ``export_dir`` on ``texts``."""
    from tqdm import tqdm

    from mt5lite.exporters.quantize.groups import GROUPS
    from mt5lite.exporters.quantize.recipes import (
        DEFAULT_STATIC_GROUPS,
        QuantizeConfig,
        calibration_for,
        quantize_export,
    )
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.staging import scratch_directory
    from mt5lite.verification.comparison import graph_bytes
    from mt5lite.verification.evaluation import generate_in_batches

    # Each group's own sensitivity: nothing smoothed or kept wide behind its back.
    config = replace(config or QuantizeConfig(), recipe="static-int8", smooth=False, keep_wide=False)
    source = Path(export_dir)
    options = DecodingOptions(max_new_tokens=max_new_tokens)
    generator = OnnxGenerator(source, threads=threads)
    reference_ids = generate_in_batches(lambda batch: generator.generate_ids(batch, options), texts,
                                        1 if generator.static_shapes else batch_size)
    reference = {"generator": generator, "threads": threads, "ids": reference_ids,
                 "bytes": graph_bytes(source, generator.manifest)}
    calibration = calibration_for(source, config, progress)
    variants = [(group, (group,)) for group in GROUPS]
    variants += [("default recipe", DEFAULT_STATIC_GROUPS), ("every group", tuple(GROUPS))]
    rows = []
    with scratch_directory(source, "sensitivity") as work:  # beside the export
        for name, groups in tqdm(variants, desc="sensitivity", disable=not progress, unit="variant"):
            target = work / name.replace(" ", "-")
            row = {"variant": name, "groups": list(groups)}
            try:
                quantize_export(source, target, replace(config, groups=groups), calibration=calibration, gate=False)
                row.update(_measure(reference, target, texts, options, batch_size))
            except Exception as exc:  # a variant ORT cannot quantize or run is a finding, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            shutil.rmtree(target, ignore_errors=True)
            rows.append(row)
    return {
        "export": str(source), "n": len(texts), "max_new_tokens": max_new_tokens,
        "method": config.method.value if hasattr(config.method, "value") else config.method,
        "per_channel": config.per_channel, "format": getattr(config.format, "value", config.format),
        "calibration": {"file": str(config.calibration), "samples": len(calibration.encoder),
                        "decoder_steps": len(calibration.decoder)},
        "default_groups": list(DEFAULT_STATIC_GROUPS),
        "rows": rows,
    }


def sensitivity_markdown(report: dict) -> str:
    """The Markdown twin of a sensitivity report."""
    from mt5lite.exporters.quantize.groups import GROUPS

    rows = []
    for row in report["rows"]:
        what = GROUPS[row["variant"]].description if row["variant"] in GROUPS else ", ".join(row["groups"])
        if "error" in row:
            rows.append([row["variant"], what, "-", "-", "-", "-", "-", row["error"]])
            continue
        rows.append([row["variant"], what, row["quantized_nodes"], row["greedy_agreement"], row["token_agreement"],
                     f"{row['mean_relative_logit_error']:.4f}", f"{row['max_abs_logit_diff']:.3g}",
                     f"{row['size_ratio']:.1%}"])
    return "\n\n".join([
        "# Quantization sensitivity (static int8, one group at a time)",
        f"Export `{report['export']}`, {report['n']} held-out inputs, {report['method']} calibration on "
        f"{report['calibration']['samples']} samples and {report['calibration']['decoder_steps']} decoder steps, "
        f"per-channel {report['per_channel']}, format {report['format']}. Default recipe: "
        f"{', '.join(report['default_groups'])}.",
        markdown_table(["variant", "nodes", "quantized nodes", "greedy agreement", "token agreement",
                        "mean relative logit error", "max abs logit diff", "size vs fp32"], rows),
    ])


def write_sensitivity_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a sensitivity report as JSON plus its Markdown twin."""
    return write_report(report, path, sensitivity_markdown(report))
