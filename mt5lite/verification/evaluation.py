"""Score generated text against references: exact match and chrF, overall and per language."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from mt5lite.data import TaskPair
from mt5lite.reports import markdown_table, write_report

#: Anything that turns a batch of source texts into a batch of output texts.
GenerateFn = Callable[[list[str]], list[str]]


def _chrf(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def score(predictions: Sequence[str], pairs: Sequence[TaskPair]) -> dict:
    """``exact_match`` (0 to 1), ``chrf`` (sacrebleu chrF, 0 to 100) and ``per_language`` for the predictions."""
    if len(predictions) != len(pairs):
        raise ValueError(f"{len(predictions)} predictions for {len(pairs)} references")
    by_language: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_language[pair.lang].append(index)

    def block(indices: list[int]) -> dict:
        hyps = [predictions[i].strip() for i in indices]
        refs = [pairs[i].target.strip() for i in indices]
        matches = sum(h == r for h, r in zip(hyps, refs, strict=True))
        return {"exact_match": matches / len(indices), "chrf": _chrf(hyps, refs), "n": len(indices)}

    overall = block(list(range(len(pairs))))
    return {
        "exact_match": overall["exact_match"],
        "chrf": overall["chrf"],
        "n": overall["n"],
        "per_language": {lang: block(indices) for lang, indices in sorted(by_language.items())},
    }


def generate_in_batches(generate: GenerateFn, sources: list[str], batch_size: int = 64,
                        progress: bool = False) -> list:
    """Run ``generate`` (texts or ids per input of a batch) over ``sources`` in batches, keeping order: the one
    batched-decode loop of the project."""
    from tqdm import tqdm

    outputs: list = []
    starts = range(0, len(sources), batch_size)
    for start in tqdm(starts, desc="generating", disable=not progress, unit="batch"):
        outputs.extend(generate(sources[start : start + batch_size]))
    return outputs


def evaluate(generate: GenerateFn, pairs: Sequence[TaskPair], batch_size: int = 64, progress: bool = False) -> dict:
    """Generate for every pair's source and score against its target; the report keeps the first mistakes."""
    pairs = list(pairs)
    predictions = generate_in_batches(generate, [p.source for p in pairs], batch_size, progress)
    report = score(predictions, pairs)
    report["errors"] = [
        {"lang": p.lang, "source": p.source, "reference": p.target, "prediction": h}
        for p, h in zip(pairs, predictions, strict=True)
        if h.strip() != p.target.strip()
    ][:50]
    return report


def evaluate_model(model_dir: str | os.PathLike, pairs: Sequence[TaskPair], options=None,
                   allow_pickle: bool = False, threads: int | None = None, batch_size: int = 64,
                   progress: bool = False) -> dict:
    """Evaluate a Hugging Face checkpoint (PyTorch reference) or an mt5lite export (ONNX Runtime)."""
    from mt5lite.runtimes.generators import open_generator
    from mt5lite.runtimes.options import DecodingOptions

    options = options or DecodingOptions()
    generator = open_generator(model_dir, allow_pickle=allow_pickle, threads=threads)
    report = evaluate(lambda batch: generator.generate(batch, options), pairs, batch_size, progress)
    report["model"] = str(Path(model_dir))
    report["decoding"] = {"num_beams": options.num_beams, "max_new_tokens": options.max_new_tokens}
    return report


def evaluation_markdown(report: dict, title: str = "Evaluation") -> str:
    """The Markdown twin of an evaluation report."""
    rows = [[lang, r["n"], r["exact_match"], r["chrf"]] for lang, r in report["per_language"].items()]
    rows.append(["**all**", report["n"], report["exact_match"], report["chrf"]])
    return "\n\n".join([
        f"# {title}",
        f"Model: `{report.get('model', '?')}`. Exact match {report['exact_match']:.3f}, chrF {report['chrf']:.1f}.",
        markdown_table(["language", "n", "exact match", "chrF"], rows),
    ])


def write_evaluation_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write an evaluation report as JSON plus its Markdown twin."""
    return write_report(report, path, evaluation_markdown(report))
