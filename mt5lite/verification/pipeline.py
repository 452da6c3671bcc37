"""One report for a whole pipeline run, the one a user reads first: every stage the run produced, from PyTorch
(the original, then the compressed checkpoint where compression ran) through ONNX fp32, int8 ONNX and TFLite.

For each stage: max |Δ logit| against PyTorch and against the stage it was made from (teacher-forced), greedy and
beam agreement with PyTorch, exact match and chrF overall and per language, its size on disk and its ms/token
(every stage decoding the same inputs in turn). An export is made from the latest fp32 stage before it (int8 ONNX
and TFLite are both made from the fp32 ONNX export); the first export from PyTorch; a compressed checkpoint from the
original, compared at the pieces both tokenizers share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mt5lite.reports import markdown_table, write_report
from mt5lite.verification.comparison import directory_bytes

PYTORCH = "pytorch"
ORIGINAL = "original"


def _against_source(source, candidate, texts: list[str]) -> float:
    """Max |Δ logit| of export ``candidate`` against export ``source`` (generators), teacher-forced on the
    source's greedy output."""
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.verification.teacher_forced import teacher_forced

    ids, mask = source.encode_batch(texts)
    targets = source.generate_ids(texts, DecodingOptions(max_new_tokens=16))
    found = teacher_forced(source.stepper, candidate.stepper, ids, mask, targets, source.decoder.decoder_start_id)
    return found.max_abs_diff["logits"]


def _quality(report_scores: dict) -> dict:
    return {"exact_match": report_scores["exact_match"], "chrf": report_scores["chrf"],
            "per_language": {lang: {"exact_match": row["exact_match"], "chrf": row["chrf"]}
                             for lang, row in report_scores["per_language"].items()}}


@dataclass(frozen=True)
class ReportSamples:
    """How many of the held-out inputs each measure of the pipeline report uses."""

    beam: int = 100  # beam search compared with PyTorch
    logits: int = 32  # teacher-forced logits against the stage each was made from
    speed: int = 16  # ms/token, the stages taking turns


def _checkpoint_stages(references: dict, model_dir: Path, original_dir, pairs) -> dict[str, dict]:
    """The rows of the PyTorch checkpoints (the original, when compressed from one, and the exported one)."""
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.verification.evaluation import evaluate

    stages = {}
    for name, reference in references.items():
        scores = evaluate(lambda batch, r=reference: r.generate(batch, DecodingOptions()), pairs)
        directory = Path(original_dir) if name == ORIGINAL else model_dir
        stages[name] = {"kind": "pytorch", "path": str(directory), "precision": "fp32",
                        "bytes": directory_bytes(directory),
                        "max_abs_logit_diff_vs_pytorch": 0.0 if name == PYTORCH else None,
                        "greedy_agreement": 1.0 if name == PYTORCH else None,
                        "beam_agreement": 1.0 if name == PYTORCH else None, **_quality(scores)}
    return stages


def pipeline_report(model_dir: str | os.PathLike, exports: list[tuple[str, str | os.PathLike]], pairs,
                    original_dir: str | os.PathLike | None = None, samples: ReportSamples | None = None,
                    threads: int | None = None, allow_pickle: bool = False, progress: bool = False) -> dict:
    """Measure every stage: the PyTorch checkpoint ``model_dir`` (after ``original_dir`` when it was compressed
    from it) and the ``exports`` (name, directory), in pipeline order, on the held-out ``pairs`` (``samples``:
    how many inputs each measure uses)."""
    from mt5lite.runtimes.generators import open_export
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.runtimes.torch_reference import TorchReference
    from mt5lite.verification.comparison import time_per_token
    from mt5lite.verification.kept_ids import at_kept_ids, kept_ids
    from mt5lite.verification.parity import ParityOptions, parity_report

    pairs = list(pairs)
    texts = [p.source for p in pairs]
    model_dir = Path(model_dir)
    samples = samples or ReportSamples()
    beam_samples, logit_samples, speed_samples = samples.beam, samples.logits, samples.speed
    references = {PYTORCH: TorchReference(model_dir, allow_pickle=allow_pickle, threads=threads)}
    if original_dir is not None:
        references = {ORIGINAL: TorchReference(original_dir, allow_pickle=allow_pickle, threads=threads),
                      **references}
    stages = _checkpoint_stages(references, model_dir, original_dir, pairs)
    if original_dir is not None:
        stages[PYTORCH]["previous"] = ORIGINAL
        # The compressed checkpoint against the original, at the pieces its tokenizer kept.
        stages[PYTORCH]["max_abs_logit_diff_vs_previous"] = at_kept_ids(
            references[ORIGINAL], references[PYTORCH], kept_ids(original_dir, model_dir),
            texts[:logit_samples]).max_abs_diff["logits"]
    generators, previous = {}, PYTORCH
    for name, directory in exports:
        generators[name] = open_export(directory, threads=threads)
        parity = parity_report(model_dir, directory, pairs, ParityOptions(beam_samples=beam_samples), threads=threads,
                               allow_pickle=allow_pickle, progress=progress)
        vs_previous = (parity["max_abs_logit_diff"] if previous == PYTORCH
                       else _against_source(generators[previous], generators[name], texts[:logit_samples]))
        stages[name] = {"kind": generators[name].manifest.engine, "path": str(directory),
                        "precision": generators[name].manifest.precision,
                        "bytes": directory_bytes(directory),
                        "previous": previous, "max_abs_logit_diff_vs_previous": vs_previous,
                        "max_abs_logit_diff_vs_pytorch": parity["max_abs_logit_diff"],
                        "greedy_agreement": parity["greedy_agreement"], "beam_agreement": parity["beam_agreement"],
                        "exact_match": parity["exact_match"]["candidate"], "chrf": parity["chrf"]["candidate"],
                        "per_language": {lang: {"exact_match": r["candidate"]["exact_match"],
                                                "chrf": r["candidate"]["chrf"]}
                                         for lang, r in parity["per_language"].items()}}
        if stages[name]["precision"] == "fp32":
            previous = name
    speed = time_per_token({**references, **generators}, texts[:speed_samples], DecodingOptions(), rounds=1)
    for name, row in speed.items():
        stages[name]["ms_per_token"] = row["ms_per_token"]
    return {"model": str(model_dir), "original": str(original_dir) if original_dir else None, "n": len(pairs),
            "beam_n": min(beam_samples, len(pairs)), "speed_samples": min(speed_samples, len(pairs)),
            "threads": threads, "stages": stages}


def _cell(value, digits: int = 3, scientific: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if scientific else f"{value:.{digits}f}"


def pipeline_markdown(report: dict) -> str:
    """The Markdown twin of a pipeline report: one row per stage, then exact match per language."""
    stages = report["stages"]
    rows = [[name, s["kind"], s["precision"], f"{s['bytes'] / 1e6:.2f}",
             _cell(s["max_abs_logit_diff_vs_pytorch"], scientific=True),
             f"{_cell(s.get('max_abs_logit_diff_vs_previous'), scientific=True)} ({s.get('previous', '-')})",
             _cell(s["greedy_agreement"]), _cell(s["beam_agreement"]), _cell(s["exact_match"]),
             _cell(s["chrf"], 1), _cell(s.get("ms_per_token"), 2)] for name, s in stages.items()]
    languages = sorted({lang for s in stages.values() for lang in s["per_language"]})
    per_language = [[lang] + [f"{s['per_language'][lang]['exact_match']:.3f} / {s['per_language'][lang]['chrf']:.1f}"
                              for s in stages.values()] for lang in languages]
    return "\n\n".join([
        "# Pipeline report",
        f"Every stage of the run on {report['n']} held-out inputs (beam agreement on {report['beam_n']}, 4 beams; "
        f"ms/token: greedy, batch 1, {report['speed_samples']} inputs, the stages taking turns). Logit differences "
        "are teacher-forced; each stage's previous stage is the one it was made from.",
        markdown_table(["stage", "engine", "precision", "MB", "max |Δ logit| vs PyTorch", "vs previous",
                        "greedy agreement", "beam agreement", "exact match", "chrF", "ms/token"], rows),
        "## Exact match / chrF per language",
        markdown_table(["language", *stages], per_language),
    ])


def pipeline_plot(report: dict, path: Path) -> Path:
    """Quality (exact match) and size by stage, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["stages"])
    stages = list(report["stages"].values())
    figure, size_axis = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    size_axis.bar(names, [s["bytes"] / 1e6 for s in stages], color="tab:blue", alpha=0.6)
    size_axis.set_ylabel("MB on disk", color="tab:blue")
    quality_axis = size_axis.twinx()
    quality_axis.plot(names, [s["exact_match"] for s in stages], "o-", color="tab:red")
    quality_axis.set_ylabel("exact match", color="tab:red")
    quality_axis.set_ylim(0, 1.02)
    size_axis.set_title("Quality and size by stage")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_pipeline_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """JSON, its Markdown twin and the PNG plot (same stem)."""
    json_path, md_path = write_report(report, path, pipeline_markdown(report))
    return json_path, md_path, pipeline_plot(report, json_path.with_suffix(".png"))

