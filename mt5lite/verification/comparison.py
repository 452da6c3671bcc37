"""Compare a quantized (or otherwise derived) export with its fp32 export: outputs, quality, size and speed.

Both exports run through the same ONNX Runtime generator on the same held-out pairs, so every difference in the
report comes from the graphs. Speed is measured in the same run, alternating the two exports.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt5lite.errors import QualityGateError
from mt5lite.manifest import Manifest
from mt5lite.reports import markdown_table, write_report
from mt5lite.verification.evaluation import generate_in_batches, score
from mt5lite.verification.parity import agreement

#: The quality gate of a quantized export against its fp32 export (DESIGN.md, "What good means").
MIN_GREEDY_AGREEMENT = 0.97
MAX_EXACT_MATCH_DROP = 0.01
MAX_LANGUAGE_EXACT_MATCH_DROP = 0.03
#: An output "loops" when it fills ``max_new_tokens`` without eos and its last tokens are one token repeated.
LOOP_TAIL = 4


class _FiniteCheck:
    """A step hook that counts the decoder steps whose logits hold NaN or Inf."""

    def __init__(self):
        self.nonfinite_steps = 0

    def __call__(self, feeds: dict, outputs: dict) -> None:
        if not np.isfinite(outputs["logits"]).all():
            self.nonfinite_steps += 1


def directory_bytes(path: str | os.PathLike) -> int:
    """Every file of an export or checkpoint directory (graphs, weights, tokenizer files, manifest)."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def graph_bytes(export_dir: str | os.PathLike, manifest: Manifest) -> int:
    """Bytes of an export's model files (the graphs and their external data, not the tokenizer or manifest)."""
    names = {name for graph in manifest.graphs.values() for name in graph.files}  # shared files once
    return sum((Path(export_dir) / name).stat().st_size for name in names)


def loops(ids: list[int], max_new_tokens: int, eos_id: int) -> bool:
    """Whether ``ids`` ran to ``max_new_tokens`` without eos, ending in one token repeated ``LOOP_TAIL`` times."""
    return (len(ids) >= max_new_tokens and eos_id not in ids and len(ids) >= LOOP_TAIL
            and len(set(ids[-LOOP_TAIL:])) == 1)


def time_per_token(generators: dict, texts: list[str], options, rounds: int = 2) -> dict[str, dict]:
    """Greedy decoding time per generated token of each generator, one input at a time, the generators taking
    turns on each input (so drift in machine load hits both alike); the best of ``rounds`` per generator."""
    best = {name: float("inf") for name in generators}
    tokens = {name: 0 for name in generators}
    for _ in range(rounds):
        spent = {name: 0.0 for name in generators}
        counted = {name: 0 for name in generators}
        for text in texts:
            for name, generator in generators.items():
                start = time.perf_counter()
                out = generator.generate_ids([text], options)[0]
                spent[name] += time.perf_counter() - start
                counted[name] += len(out)
        for name in generators:
            if spent[name] < best[name]:
                best[name], tokens[name] = spent[name], counted[name]
    return {name: {"seconds": best[name], "tokens": tokens[name], "ms_per_token": 1000 * best[name] / tokens[name]}
            for name in generators}


def compare_exports(reference_dir: str | os.PathLike, candidate_dir: str | os.PathLike, pairs,
                    threads: int | None = None, max_new_tokens: int = 32, batch_size: int = 32, speed_samples: int = 64,
                    progress: bool = False) -> dict:
    """Decode ``pairs`` with both exports; report agreement (also on the pairs the reference gets exactly right),
    quality per language, loops, non-finite logits, sizes, quantized node counts and decoding speed per token."""
    from tqdm import tqdm

    from mt5lite.runtimes.generators import open_export
    from mt5lite.runtimes.options import DecodingOptions

    pairs = list(pairs)
    generators = {"reference": open_export(reference_dir, threads=threads),
                  "candidate": open_export(candidate_dir, threads=threads)}
    # No more new tokens than the smaller self-attention cache holds.
    max_new_tokens = min([max_new_tokens] + [g.backend.max_target_length for g in generators.values()])
    options = DecodingOptions(max_new_tokens=max_new_tokens)
    checks = {name: _FiniteCheck() for name in generators}
    for name, generator in generators.items():
        generator.add_step_hook(checks[name])
    texts = [p.source for p in pairs]
    ids = {name: generate_in_batches(lambda batch, g=g: g.generate_ids(batch, options), texts, batch_size)
           for name, g in tqdm(generators.items(), desc="decoding held-out set", disable=not progress, unit="export")}
    eos = generators["reference"].manifest.special_tokens.eos
    decode = generators["reference"].tokenizer.decode
    outputs = {name: [decode(x) for x in ids[name]] for name in ids}
    scores = {name: score(outputs[name], pairs) for name in ids}
    # Where fp32 is right, the model is sure of its output; elsewhere near-tied logits flip under any rounding
    right = [i for i, pair in enumerate(pairs) if outputs["reference"][i].strip() == pair.target.strip()]
    looping = {name: [i for i, x in enumerate(ids[name]) if loops(x, max_new_tokens, eos)] for name in ids}
    greedy, tokens = agreement(ids["reference"], ids["candidate"])
    speed = time_per_token(generators, texts[:speed_samples], options) if speed_samples else None
    manifests = {name: g.manifest for name, g in generators.items()}
    quantization = manifests["candidate"].quantization
    per_graph = dict(quantization.quantized_nodes) if quantization else {}
    return {
        "recipe": quantization.recipe if quantization else manifests["candidate"].precision,
        "reference": str(reference_dir), "candidate": str(candidate_dir), "n": len(pairs),
        "max_new_tokens": max_new_tokens,
        "size_bytes": graph_bytes(candidate_dir, manifests["candidate"]),
        "size_bytes_reference": graph_bytes(reference_dir, manifests["reference"]),
        "quantized_nodes": sum(per_graph.values()), "quantized_nodes_per_graph": per_graph,
        "greedy_agreement": greedy, "token_agreement": tokens,
        "greedy_agreement_where_reference_exact": (
            sum(ids["reference"][i] == ids["candidate"][i] for i in right) / len(right) if right else None),
        "exact_match": scores["candidate"]["exact_match"], "exact_match_reference": scores["reference"]["exact_match"],
        "chrf": scores["candidate"]["chrf"], "chrf_reference": scores["reference"]["chrf"],
        "per_language": {
            lang: {"n": row["n"], "exact_match": row["exact_match"],
                   "exact_match_reference": scores["reference"]["per_language"][lang]["exact_match"],
                   "chrf": row["chrf"], "chrf_reference": scores["reference"]["per_language"][lang]["chrf"]}
            for lang, row in scores["candidate"]["per_language"].items()},
        "loops": {"reference": len(looping["reference"]), "candidate": len(looping["candidate"]),
                  "new": len(set(looping["candidate"]) - set(looping["reference"]))},
        "nonfinite_steps": {name: check.nonfinite_steps for name, check in checks.items()},
        "speed": speed and {**speed, "threads": threads, "samples": min(speed_samples, len(texts)),
                            "speedup": speed["reference"]["ms_per_token"] / speed["candidate"]["ms_per_token"]},
        "quantization": quantization.to_dict() if quantization else {},
        "mismatches": [{"source": p.source, "reference": decode(r), "candidate": decode(c)}
                       for p, r, c in zip(pairs, ids["reference"], ids["candidate"], strict=True) if r != c][:20],
    }


def quality_gate(report: dict) -> list[str]:
    """The ways ``report`` misses the quantization quality gate (empty when it passes)."""
    failures = []
    if report["greedy_agreement"] < MIN_GREEDY_AGREEMENT:
        failures.append(f"greedy agreement {report['greedy_agreement']:.3f} < {MIN_GREEDY_AGREEMENT}")
    drop = report["exact_match_reference"] - report["exact_match"]
    if drop > MAX_EXACT_MATCH_DROP + 1e-9:
        failures.append(f"exact match {drop * 100:.1f} points below fp32 (> {MAX_EXACT_MATCH_DROP * 100:.0f})")
    for lang, row in report["per_language"].items():
        drop = row["exact_match_reference"] - row["exact_match"]
        if drop > MAX_LANGUAGE_EXACT_MATCH_DROP + 1e-9:
            failures.append(f"{lang}: exact match {drop * 100:.1f} points below fp32 "
                            f"(> {MAX_LANGUAGE_EXACT_MATCH_DROP * 100:.0f})")
    if report["loops"]["new"]:
        failures.append(f"{report['loops']['new']} outputs loop on one token where fp32 did not")
    if any(report["nonfinite_steps"].values()):
        failures.append(f"non-finite logits: {report['nonfinite_steps']}")
    return failures


#: What to try when an int8 recipe's products carry outliers it could not hold: the next recipe, wider inside.
WIDER_RECIPE = {"static-int8": "--recipe weight-int8", "dynamic-int8": "--recipe weight-int8",
                "weight-int8": "--recipe fp16", "tflite-int8": "--quantize dynamic-int8",
                "executorch-int8": "mt5lite quantize --recipe weight-int8 on the ONNX export"}


def outlier_advice(report: dict, worst: int = 2) -> str:
    """For a failed int8 export whose manifest diagnosed activation outliers: the node groups with the worst
    ones (largest channel over the median) and the recipe to try; empty when nothing was diagnosed."""
    outliers = (report.get("quantization") or {}).get("outliers")
    if not outliers or not outliers.get("groups"):
        return ""
    rows = sorted(outliers["groups"].items(), key=lambda item: -item[1]["worst_ratio"])[:worst]
    found = ", ".join(f"{group} x{row['worst_ratio']:.0f} ({row['worst_node']})" for group, row in rows)
    wider = WIDER_RECIPE.get(report.get("recipe", ""))
    return f"; worst activation outliers: {found}" + (f"; try {wider}" if wider else "")


def compare_and_gate(reference_dir: str | os.PathLike, candidate_dir: str | os.PathLike, pairs,
                     report_path: str | os.PathLike | None = None, threads: int | None = None,
                     progress: bool = False) -> tuple[dict, Path, Path]:
    """Compare a derived export with its fp32 source on ``pairs`` (``compare_exports``), judge it by the quality
    gate, and write the report (JSON + Markdown; by default ``build/reports/quantize-<recipe>.json``). Returns the
    report, whose ``gate`` holds ``passed`` and the ``failures``, and the two report paths."""
    report = compare_exports(reference_dir, candidate_dir, pairs, threads=threads, progress=progress)
    failures = quality_gate(report)
    report["gate"] = {"failures": failures, "passed": not failures}
    path = Path(report_path) if report_path else Path("build/reports") / f"quantize-{report['recipe']}.json"
    return (report, *write_comparison_report(report, path))


@dataclass(frozen=True)
class Gate:
    """The quality gate an exporter holds what it writes to: compared with the fp32 export it was made from on
    ``pairs`` (``compare_and_gate``), the report written to ``report`` (JSON + Markdown; by default
    ``build/reports/quantize-<recipe>.json``), ``threads`` for the comparison. ``enforce``: a failed gate raises
    ``QualityGateError`` (the export is kept for inspection); off, it is only reported."""

    pairs: Sequence
    report: str | os.PathLike | None = None
    threads: int | None = None
    progress: bool = False
    enforce: bool = True

    def judge(self, reference_dir: str | os.PathLike, candidate_dir: str | os.PathLike) -> dict:
        """The comparison report of ``candidate_dir`` against ``reference_dir``, with the verdict (``gate``:
        ``passed``, ``failures``) and the files it was written to (``files``)."""
        report, json_path, md_path = compare_and_gate(reference_dir, candidate_dir, self.pairs, self.report,
                                                      self.threads, self.progress)
        report = {**report, "files": [str(json_path), str(md_path)]}
        if self.enforce and report["gate"]["failures"]:
            raise QualityGateError(gate_failure(report, candidate_dir), report)
        return report


def gate_failure(report: dict, kept: str | os.PathLike) -> str:
    """The one line that says an export missed the gate: why, where it is kept, the outlier advice and what to
    do next."""
    return (f"the {report['recipe']} export misses the quality gate ({'; '.join(report['gate']['failures'])}; "
            f"report: {report['files'][0]}); it is kept at {kept} for inspection{outlier_advice(report)}; measure "
            "on your task's held-out pairs with --data, or report only with --no-gate (gate=False from Python)")


def resolve_gate(gate: Gate | bool | None) -> Gate | None:
    """The gate an exporter applies: ``True`` is the default gate (the bundled demo task's held-out pairs,
    enforced), ``False`` or ``None`` none at all (the caller said so)."""
    if gate is True:
        from mt5lite.data import read_task_pairs

        return Gate(read_task_pairs())
    return gate or None


def comparison_markdown(report: dict) -> str:
    """The Markdown twin of a comparison report."""
    speed = report["speed"]
    measures = [
        ["size (MB)", f"{report['size_bytes_reference'] / 1e6:.2f}", f"{report['size_bytes'] / 1e6:.2f}"],
        ["exact match", report["exact_match_reference"], report["exact_match"]],
        ["chrF", f"{report['chrf_reference']:.1f}", f"{report['chrf']:.1f}"],
        ["outputs looping on one token", report["loops"]["reference"], report["loops"]["candidate"]],
    ]
    if speed:
        measures.append(["ms per token (greedy, batch 1)", f"{speed['reference']['ms_per_token']:.2f}",
                         f"{speed['candidate']['ms_per_token']:.2f}"])
    summary = markdown_table(["measure", "fp32", report["recipe"]], measures)
    rows = [[lang, r["n"], r["exact_match_reference"], r["exact_match"], f"{r['chrf_reference']:.1f}",
             f"{r['chrf']:.1f}"] for lang, r in report["per_language"].items()]
    pace = f", {speed['speedup']:.2f}x fp32's decoding speed" if speed else ""
    failures = report.get("gate", {}).get("failures")
    verdict = "passed" if failures == [] else ("failed: " + "; ".join(failures) if failures else "not evaluated")
    return "\n\n".join([
        f"# Quantization report: {report['recipe']}",
        f"`{report['candidate']}` against fp32 `{report['reference']}` on {report['n']} held-out inputs: "
        f"greedy agreement {report['greedy_agreement']:.3f}, token agreement {report['token_agreement']:.3f}, "
        f"{report['quantized_nodes']} quantized nodes, size "
        f"{report['size_bytes'] / report['size_bytes_reference']:.1%} of fp32{pace}. Quality gate: {verdict}.",
        summary,
        markdown_table(["language", "n", "EM fp32", "EM", "chrF fp32", "chrF"], rows),
    ])


def write_comparison_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a comparison report as JSON plus its Markdown twin."""
    return write_report(report, path, comparison_markdown(report))
