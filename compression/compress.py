"""``mt5lite compress``: run registered passes on a checkpoint and write an ordinary Hugging Face checkpoint.

Pipeline: check the passes and the output -> load the checkpoint and its ``spiece.model`` -> measure held-out
quality -> each pass, then quality again -> write the checkpoint (safetensors, config, ``spiece.model``, the slow
T5 tokenizer files) and ``compress_report.json`` + ``.md`` into a staged directory, renamed into place only when
everything passed. ``export onnx``, ``parity``, ``evaluate``, ``generate`` and transformers' ``from_pretrained``
take the result unchanged.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from mt5lite.compression.passes import PASSES
from mt5lite.compression.structure import untie_for_saving
from mt5lite.compression.training import end_data_parallel, is_main_process, training_directory
from mt5lite.errors import InputError
from mt5lite.reports import markdown_table, write_report
from mt5lite.spiece import read_sentencepiece

REPORT_NAME = "compress_report.json"


def greedy_quality(model, tokenizer_path: Path, pairs, progress: bool = False) -> dict | None:
    """Exact match and chrF, overall and per language, of greedy decoding on ``pairs`` (None without pairs)."""
    if not pairs:
        return None
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.runtimes.tokenizer import Tokenizer
    from mt5lite.runtimes.torch_reference import TorchReference
    from mt5lite.verification.evaluation import evaluate

    reference = TorchReference.from_model(model, Tokenizer(tokenizer_path))
    report = evaluate(lambda batch: reference.generate(batch, DecodingOptions()), pairs, progress=progress)
    return {key: report[key] for key in ("exact_match", "chrf", "n", "per_language")}


def compress(model_dir: str | os.PathLike, output_dir: str | os.PathLike, passes: list[str], configs: dict,
             pairs=None, force: bool = False, allow_pickle: bool = False, progress: bool = False) -> dict:
    """Run ``passes`` (registered names, in order; ``configs`` maps a name to its config, defaults otherwise) on
    the checkpoint in ``model_dir`` and write the result to ``output_dir``; ``pairs`` (task pairs) measure quality
    before and after each pass. Returns the report also written as ``compress_report.json``."""
    from mt5lite.checkpoint import inspect_checkpoint, load_model, save_checkpoint
    from mt5lite.staging import refuse_existing, staged_directory

    if not passes:
        raise InputError(f"no passes given; known: {', '.join(PASSES)}")
    chosen = [(name, PASSES[name]) for name in passes]
    configs = {name: configs.get(name) or entry.config() for name, entry in chosen}
    output = Path(output_dir)
    refuse_existing(output, force)
    files = inspect_checkpoint(model_dir, allow_pickle=allow_pickle)
    tokenizer = read_sentencepiece(files.tokenizer)
    model = load_model(files.root, allow_pickle=allow_pickle)
    main = is_main_process()  # under torchrun / accelerate launch, every rank trains and rank 0 writes
    # Data-parallel: the other ranks wait in collectives while rank 0 measures, so quality is measured after the
    # last pass only (a long evaluation could outlast the collectives' timeout).
    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1
    before = greedy_quality(model, files.tokenizer, pairs, progress) if main and alone else None
    report = {"model": str(model_dir), "output": str(output), "passes": [], "quality": {"before": before}}
    with ExitStack() as stack:
        staging = stack.enter_context(staged_directory(output, force)) if main else None
        stack.enter_context(training_directory(output.parent / f"{output.name}.training"))
        for index, (name, entry) in enumerate(chosen):
            model, tokenizer, step = entry.run(model, tokenizer, configs[name])
            row = step.to_dict()
            row["details"] = {k: v for k, v in row["details"].items() if k != "id_map"}
            row["quality_after"] = None
            if main and (alone or index == len(chosen) - 1):
                spiece = staging / "spiece.model"
                spiece.write_bytes(tokenizer.SerializeToString())
                row["quality_after"] = greedy_quality(model, spiece, pairs, progress)
            report["passes"].append(row)
        if main:
            untie_for_saving(model)  # shared layers are saved as identical copies; the exports store them once
            save_checkpoint(model, tokenizer.SerializeToString(), staging)
            write_report(report, staging / REPORT_NAME, compress_markdown(report))
    end_data_parallel()  # the other ranks wait here until rank 0 has written the output
    return report


def compress_markdown(report: dict) -> str:
    """The Markdown twin of a compression report."""
    rows = []
    quality = report["quality"]["before"]
    for row in report["passes"]:
        after = row["quality_after"]
        rows.append([row["name"], f"{row['parameters'][0]:,} -> {row['parameters'][1]:,}",
                     f"{row['bytes'][0] / 1e6:.1f} -> {row['bytes'][1] / 1e6:.1f}",
                     f"{row['vocabulary'][0]} -> {row['vocabulary'][1]}",
                     "-" if quality is None else f"{quality['exact_match']:.3f} -> {after['exact_match']:.3f}",
                     "-" if quality is None else f"{quality['chrf']:.1f} -> {after['chrf']:.1f}"])
        quality = after
    parts = [f"# Compression report: `{report['model']}` -> `{report['output']}`",
             markdown_table(["pass", "parameters", "MB (fp32)", "pieces", "exact match", "chrF"], rows)]
    before = report["quality"]["before"]
    if before is not None:
        final = report["passes"][-1]["quality_after"]
        per_language = [[lang, row["n"], row["exact_match"], final["per_language"][lang]["exact_match"],
                         f"{row['chrf']:.1f}", f"{final['per_language'][lang]['chrf']:.1f}"]
                        for lang, row in before["per_language"].items()]
        parts.append(markdown_table(["language", "n", "EM before", "EM after", "chrF before", "chrF after"],
                                    per_language))
    parts += [f"- **{row['name']}**: {row['summary']}" for row in report["passes"]]
    return "\n\n".join(parts)
