"""Numerical parity between the PyTorch reference and an exported backend, and the parity report.

Two levels, as the best verification suites do: logits close (teacher-forced on PyTorch's own greedy output), then
generated ids identical (greedy and beam search), then task quality for both.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mt5lite.errors import ParityError
from mt5lite.reports import markdown_table, write_report


def torch_greedy(model, input_ids: np.ndarray, mask: np.ndarray, max_new_tokens: int, suppressed: list[int],
                 num_beams: int = 1) -> list[list[int]]:
    """PyTorch ``generate`` ids per row (without the start token), up to and including eos."""
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                             suppress_tokens=suppressed or None)
    eos = model.config.eos_token_id
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


class Differences:
    """Running max |candidate - reference| and max |reference| per output."""

    def __init__(self):
        self.max_abs_diff: dict[str, float] = {}
        self.max_abs_reference: dict[str, float] = {}

    def add(self, name: str, candidate: np.ndarray, reference: np.ndarray) -> None:
        """Fold in one comparison (arrays of the same shape, already restricted to valid entries)."""
        diff = float(np.abs(candidate - reference).max()) if reference.size else 0.0
        scale = float(np.abs(reference).max()) if reference.size else 0.0
        self.max_abs_diff[name] = max(diff, self.max_abs_diff.get(name, 0.0))
        self.max_abs_reference[name] = max(scale, self.max_abs_reference.get(name, 0.0))

    def merge(self, other: Differences) -> None:
        """Fold in another set of differences."""
        for name, value in other.max_abs_diff.items():
            self.max_abs_diff[name] = max(value, self.max_abs_diff.get(name, 0.0))
            self.max_abs_reference[name] = max(other.max_abs_reference[name], self.max_abs_reference.get(name, 0.0))


def teacher_forced_diffs(model, backend, input_ids: np.ndarray, mask: np.ndarray, targets: list[list[int]],
                         static_batch: bool) -> Differences:
    """Differences of encoder outputs and of every step's logits, feeding both sides the same target tokens
    (only real positions count: not padding, not past a target's end)."""
    import torch

    start = model.config.decoder_start_token_id
    heads, d_kv = model.config.num_heads, model.config.d_kv
    found = Differences()
    rows = range(len(targets))
    for group in [[r] for r in rows] if static_batch else [list(rows)]:
        ids, m = input_ids[group], mask[group]
        valid = m.astype(bool)
        length = max(len(targets[r]) for r in group)
        decoder_ids = np.zeros((len(group), length), dtype=np.int64)
        decoder_ids[:, 0] = start
        for i, r in enumerate(group):
            fed = targets[r][:-1]  # the step at position p is fed token p - 1 of the target
            decoder_ids[i, 1 : 1 + len(fed)] = fed
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(m),
                        decoder_input_ids=torch.from_numpy(decoder_ids))
            hidden = out.encoder_last_hidden_state
            ref_logits = out.logits.float().numpy()
            ref_cross = {
                name: np.stack([getattr(block.layer[1].EncDecAttention, proj)(hidden)
                                .reshape(len(group), -1, heads, d_kv).transpose(1, 2).numpy()
                                for block in model.decoder.block])
                for name, proj in (("cross_k", "k"), ("cross_v", "v"))
            }
        encoded = backend.encoder_outputs(ids, m)
        found.add("encoder_hidden_states", encoded["encoder_hidden_states"][valid], hidden.numpy()[valid])
        for name, reference in ref_cross.items():  # [L,B,H,S,d_kv]: compare real source positions only
            found.add(name, encoded[name].transpose(1, 3, 0, 2, 4)[valid], reference.transpose(1, 3, 0, 2, 4)[valid])
        cross_k, cross_v = encoded["cross_k"], encoded["cross_v"]
        layers, _, heads_, _, dkv = cross_k.shape
        cache_k = np.zeros((layers, len(group), heads_, backend.max_target_length, dkv), np.float32)
        cache_v = np.zeros_like(cache_k)
        for position in range(length):
            logits, new_k, new_v = backend.step(decoder_ids[:, position : position + 1], position, m, cross_k,
                                                cross_v, cache_k, cache_v)
            cache_k[:, :, :, position] = new_k[:, :, :, 0]
            cache_v[:, :, :, position] = new_v[:, :, :, 0]
            live = [i for i, r in enumerate(group) if position < len(targets[r])]
            found.add("logits", logits[live], ref_logits[live, position])
    return found


def check_diffs(stage: str, found: Differences, atol: float, rtol: float, shapes: dict[str, list]) -> list[dict]:
    """Rows of (output, shape, max |diff|, tolerance), the tolerance being ``atol + rtol * max |reference|``;
    raises ``ParityError`` listing all of them if any output is over (NaN is over)."""
    rows = []
    for name, value in found.max_abs_diff.items():
        tolerance = atol + rtol * found.max_abs_reference[name]
        rows.append({"output": name, "shape": shapes.get(name), "max_abs_diff": value,
                     "max_abs_reference": found.max_abs_reference[name], "tolerance": tolerance})
    if any(not (row["max_abs_diff"] <= row["tolerance"]) for row in rows):
        raise ParityError(stage, rows)
    return rows


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[float, float]:
    """(fraction of identical sequences, fraction of identical tokens over aligned positions)."""
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    total = sum(max(len(x), len(y)) for x, y in zip(a, b, strict=True))
    equal = sum(sum(p == q for p, q in zip(x, y, strict=False)) for x, y in zip(a, b, strict=True))
    return same, (equal / total if total else 1.0)


def parity_report(model_dir: str | os.PathLike, export_dir: str | os.PathLike, pairs, threads: int | None = None,
                  max_new_tokens: int = 32, num_beams: int = 4, beam_samples: int | None = None,
                  batch_size: int = 32, allow_pickle: bool = False, progress: bool = False) -> dict:
    """Compare PyTorch with an export on ``pairs``: logits, greedy and beam ids, exact match and chrF."""
    from tqdm import tqdm

    from mt5lite.checkpoint import load_model
    from mt5lite.evaluation import score
    from runtimes.generators import open_export
    from runtimes.options import DecodingOptions

    generator = open_export(export_dir, threads=threads)
    model = load_model(model_dir, allow_pickle=allow_pickle)
    suppressed = list(range(generator.tokenizer.piece_count, model.config.vocab_size))
    pairs = list(pairs)
    greedy = DecodingOptions(max_new_tokens=max_new_tokens)
    beam = DecodingOptions(max_new_tokens=max_new_tokens, num_beams=num_beams)
    beam_pairs = pairs[: beam_samples or len(pairs)]
    ref_greedy, cand_greedy, ref_beam, cand_beam = [], [], [], []
    found = Differences()
    for start in tqdm(range(0, len(pairs), batch_size), desc="parity", disable=not progress, unit="batch"):
        batch = [p.source for p in pairs[start : start + batch_size]]
        ids, mask = generator.encode_batch(batch)
        reference = torch_greedy(model, ids, mask, max_new_tokens, suppressed)
        ref_greedy += reference
        cand_greedy += generator.generate_ids(batch, greedy)
        found.merge(teacher_forced_diffs(model, generator.backend, ids, mask, reference, generator.static_shapes))
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
        "candidate_precision": generator.manifest.get("precision"),
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
