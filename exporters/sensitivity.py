"""Quantization sensitivity: quantize one node group at a time and measure what it does to the outputs.

Every variant is a static int8 export built from the same captured calibration feeds, compared with the fp32
export on held-out inputs that are neither the calibration data nor the task set the quality gate uses:
greedy agreement, and the teacher-forced logit error (every step of the fp32 greedy output, fed to both).
The default static recipe (``exporters.quantize.DEFAULT_STATIC_GROUPS``) is chosen from this table.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from mt5lite.reports import markdown_table, write_report


def teacher_forced_logit_error(reference, candidate, input_ids, attention_mask, targets: list[list[int]],
                               start_id: int) -> dict:
    """Feed both step backends the same tokens (``targets``, the reference's greedy output) and compare logits
    at every real step: max |difference|, max |reference| and the mean relative error
    ``||candidate - reference|| / ||reference||``."""
    batch, length = len(targets), max(len(t) for t in targets)
    tokens = np.zeros((batch, length), dtype=np.int64)
    tokens[:, 0] = start_id
    for row, target in enumerate(targets):
        tokens[row, 1 : len(target)] = target[:-1]
    state = {}
    for name, backend in (("reference", reference), ("candidate", candidate)):
        cross_k, cross_v = backend.encode(input_ids, attention_mask)
        shape = (cross_k.shape[0], batch, cross_k.shape[2], backend.max_target_length, cross_k.shape[4])
        state[name] = [backend, cross_k, cross_v, np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
    max_diff, max_reference, relative = 0.0, 0.0, []
    for position in range(length):
        logits = {}
        for name, (backend, cross_k, cross_v, cache_k, cache_v) in state.items():
            out, new_k, new_v = backend.step(tokens[:, position : position + 1], position, attention_mask,
                                             cross_k, cross_v, cache_k, cache_v)
            cache_k[:, :, :, position] = new_k[:, :, :, 0]
            cache_v[:, :, :, position] = new_v[:, :, :, 0]
            logits[name] = out.astype(np.float64)
        live = [row for row, target in enumerate(targets) if position < len(target)]
        diff = logits["candidate"][live] - logits["reference"][live]
        max_diff = max(max_diff, float(np.abs(diff).max()))
        max_reference = max(max_reference, float(np.abs(logits["reference"][live]).max()))
        relative += list(np.linalg.norm(diff, axis=-1) / np.linalg.norm(logits["reference"][live], axis=-1))
    return {"max_abs_logit_diff": max_diff, "max_abs_logit": max_reference,
            "mean_relative_logit_error": float(np.mean(relative))}


def _measure(reference, candidate_dir: Path, texts: list[str], options, batch_size: int) -> dict:
    from mt5lite.export_comparison import graph_bytes
    from mt5lite.parity import agreement
    from runtimes.onnx_runtime import OnnxGenerator

    candidate = OnnxGenerator(candidate_dir, threads=reference["threads"])
    ids, errors, weights = [], [], []
    step = 1 if candidate.static_shapes else batch_size
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        input_ids, mask = candidate.encode_batch(chunk)
        ids += candidate.generate_ids(chunk, options)
        targets = reference["ids"][start : start + step]
        errors.append(teacher_forced_logit_error(reference["generator"].backend, candidate.backend, input_ids, mask,
                                                 targets, candidate.decoder.decoder_start_id))
        weights.append(sum(len(t) for t in targets))
    greedy, tokens = agreement(reference["ids"], ids)
    quantization = candidate.manifest["quantization"]
    return {
        "quantized_nodes": sum(quantization["quantized_nodes"].values()),
        "greedy_agreement": greedy, "token_agreement": tokens,
        "max_abs_logit_diff": max(e["max_abs_logit_diff"] for e in errors),
        "mean_relative_logit_error": float(np.average([e["mean_relative_logit_error"] for e in errors],
                                                      weights=weights)),
        "size_ratio": graph_bytes(candidate_dir, candidate.manifest) / reference["bytes"],
    }


def sensitivity_analysis(export_dir: str | os.PathLike, texts: list[str], config=None, threads: int | None = None,
                         max_new_tokens: int = 32, batch_size: int = 32, progress: bool = False) -> dict:
    """Quantize each group of ``exporters.quant_groups.GROUPS`` alone, then the default recipe and every group
    together, and measure each variant against the fp32 export in ``export_dir`` on ``texts``."""
    from tqdm import tqdm

    from exporters.quant_groups import GROUPS
    from exporters.quantize import DEFAULT_STATIC_GROUPS, QuantizeConfig, Recipe, calibration_for, quantize_export
    from mt5lite.export_comparison import graph_bytes
    from runtimes.onnx_runtime import OnnxGenerator
    from runtimes.options import DecodingOptions

    config = replace(config or QuantizeConfig(), recipe=Recipe.STATIC_INT8).validate()
    source = Path(export_dir)
    options = DecodingOptions(max_new_tokens=max_new_tokens)
    generator = OnnxGenerator(source, threads=threads)
    reference_ids = []
    step = 1 if generator.static_shapes else batch_size
    for start in range(0, len(texts), step):
        reference_ids += generator.generate_ids(texts[start : start + step], options)
    reference = {"generator": generator, "threads": threads, "ids": reference_ids,
                 "bytes": graph_bytes(source, generator.manifest)}
    calibration = calibration_for(source, config, progress)
    variants = [(group, (group,)) for group in GROUPS]
    variants += [("default recipe", DEFAULT_STATIC_GROUPS), ("every group", tuple(GROUPS))]
    rows = []
    work = Path(tempfile.mkdtemp(prefix="mt5lite-sensitivity-"))
    try:
        for name, groups in tqdm(variants, desc="sensitivity", disable=not progress, unit="variant"):
            target = work / name.replace(" ", "-")
            row = {"variant": name, "groups": list(groups)}
            try:
                quantize_export(source, target, replace(config, groups=groups), calibration=calibration)
                row.update(_measure(reference, target, texts, options, batch_size))
            except Exception as exc:  # a variant ORT cannot quantize or run is a finding, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            shutil.rmtree(target, ignore_errors=True)
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
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
    from exporters.quant_groups import GROUPS

    rows = []
    for row in report["rows"]:
        what = GROUPS.get(row["variant"], ", ".join(row["groups"]))
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
