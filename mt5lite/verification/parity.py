"""Numerical parity between the PyTorch reference and an exported backend, and the parity report.

Two levels, as the best verification suites do: logits close (teacher-forced on PyTorch's own greedy output), then
generated ids identical (greedy and beam search), then task quality for both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt5lite.contract import through_eos
from mt5lite.reports import markdown_table, write_report
from mt5lite.verification.teacher_forced import Differences, teacher_forced


def torch_greedy(model, input_ids: np.ndarray, mask: np.ndarray, max_new_tokens: int, suppressed: list[int],
                 num_beams: int = 1) -> list[list[int]]:
    """PyTorch ``generate`` ids per row (without the start token), up to and including eos."""
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                             suppress_tokens=suppressed or None)
    return [through_eos(row, model.config.eos_token_id) for row in out[:, 1:].tolist()]


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[float, float]:
    """(fraction of identical sequences, fraction of identical tokens over aligned positions)."""
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    total = sum(max(len(x), len(y)) for x, y in zip(a, b, strict=True))
    equal = sum(sum(p == q for p, q in zip(x, y, strict=False)) for x, y in zip(a, b, strict=True))
    return same, (equal / total if total else 1.0)


@dataclass(frozen=True)
class ParityOptions:
    """What a parity comparison decodes: tokens per input, beams, the inputs beam search runs on (None: all) and
    how many inputs are decoded together."""

    max_new_tokens: int = 32
    num_beams: int = 4
    beam_samples: int | None = None
    batch_size: int = 32


def parity_report(model_dir: str | os.PathLike, export_dir: str | os.PathLike, pairs,
                  options: ParityOptions | None = None, threads: int | None = None, allow_pickle: bool = False,
                  progress: bool = False) -> dict:
    """Compare PyTorch with an export on ``pairs``: logits, greedy and beam ids, exact match and chrF
    (``options``: ``ParityOptions``)."""
    from tqdm import tqdm

    from mt5lite.checkpoint import load_model
    from mt5lite.runtimes.generators import open_export
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.runtimes.torch_backend import TorchBackend
    from mt5lite.verification.evaluation import score

    generator = open_export(export_dir, threads=threads)
    model = load_model(model_dir, allow_pickle=allow_pickle)
    torch_backend = TorchBackend(model, generator.backend.max_target_length)
    suppressed = list(range(generator.tokenizer.piece_count, model.config.vocab_size))
    pairs = list(pairs)
    options = options or ParityOptions()
    max_new_tokens, num_beams, batch_size = options.max_new_tokens, options.num_beams, options.batch_size
    greedy = DecodingOptions(max_new_tokens=max_new_tokens)
    beam = DecodingOptions(max_new_tokens=max_new_tokens, num_beams=num_beams)
    beam_pairs = pairs[: options.beam_samples or len(pairs)]
    ref_greedy, cand_greedy, ref_beam, cand_beam = [], [], [], []
    found = Differences()
    for start in tqdm(range(0, len(pairs), batch_size), desc="parity", disable=not progress, unit="batch"):
        batch = [p.source for p in pairs[start : start + batch_size]]
        ids, mask = generator.encode_batch(batch)
        reference = torch_greedy(model, ids, mask, max_new_tokens, suppressed)
        ref_greedy += reference
        cand_greedy += generator.generate_ids(batch, greedy)
        found.merge(teacher_forced(torch_backend, generator.stepper, ids, mask, reference,
                                   generator.decoder.decoder_start_id))
        in_beam = [p.source for p in beam_pairs[start : start + batch_size]]
        if in_beam:
            b_ids, b_mask = generator.encode_batch(in_beam)
            ref_beam += torch_greedy(model, b_ids, b_mask, max_new_tokens, suppressed, num_beams)
            cand_beam += generator.generate_ids(in_beam, beam)
    greedy_agreement, token_agreement = agreement(ref_greedy, cand_greedy)
    beam_agreement, _ = agreement(ref_beam, cand_beam)
    decode = generator.tokenizer.decode
    reference_scores = score([decode(r) for r in ref_greedy], pairs)
    candidate_scores = score([decode(c) for c in cand_greedy], pairs)
    return {
        "reference": str(model_dir), "candidate": str(export_dir),
        "candidate_precision": generator.manifest.precision,
        "n": len(pairs), "beam_n": len(beam_pairs), "num_beams": num_beams, "max_new_tokens": max_new_tokens,
        "max_abs_logit_diff": found.max_abs_diff["logits"],
        "max_abs_logit": found.max_abs_reference["logits"],
        "max_abs_diff": found.max_abs_diff,
        "greedy_agreement": greedy_agreement, "token_agreement": token_agreement, "beam_agreement": beam_agreement,
        "exact_match": {"reference": reference_scores["exact_match"], "candidate": candidate_scores["exact_match"]},
        "chrf": {"reference": reference_scores["chrf"], "candidate": candidate_scores["chrf"]},
        "per_language": {lang: {"reference": reference_scores["per_language"][lang],
                                "candidate": candidate_scores["per_language"][lang]}
                         for lang in reference_scores["per_language"]},
        "greedy_mismatches": [{"source": p.source, "reference": decode(r), "candidate": decode(c)}
                              for p, r, c in zip(pairs, ref_greedy, cand_greedy, strict=True) if r != c][:20],
    }


def parity_markdown(report: dict) -> str:
    """The Markdown twin of a parity report."""
    rows = [[lang, r["reference"]["n"], r["reference"]["exact_match"], r["candidate"]["exact_match"],
             r["reference"]["chrf"], r["candidate"]["chrf"]] for lang, r in report["per_language"].items()]
    summary = markdown_table(["measure", "value"], [
        ["max abs logit diff", f"{report['max_abs_logit_diff']:.3g}"],
        ["greedy agreement", report["greedy_agreement"]], ["token agreement", report["token_agreement"]],
        [f"beam agreement ({report['num_beams']} beams, n={report['beam_n']})", report["beam_agreement"]],
        ["exact match (reference / candidate)",
         f"{report['exact_match']['reference']:.3f} / {report['exact_match']['candidate']:.3f}"],
        ["chrF (reference / candidate)", f"{report['chrf']['reference']:.1f} / {report['chrf']['candidate']:.1f}"],
    ])
    return "\n\n".join([
        "# Parity: PyTorch vs export",
        f"Reference `{report['reference']}`, candidate `{report['candidate']}` ({report['candidate_precision']}), "
        f"{report['n']} held-out inputs.",
        summary,
        markdown_table(["language", "n", "EM ref", "EM cand", "chrF ref", "chrF cand"], rows),
    ])


def write_parity_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a parity report as JSON plus its Markdown twin."""
    return write_report(report, path, parity_markdown(report))
