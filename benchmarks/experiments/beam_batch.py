"""Beam search on static exports, the beams in one step call (``decoder_b4``) against row by row, side by side.

    python -m benchmarks.experiments.beam_batch [--model mt5-small|demo] [--exports static-int8 tflite-int8]
        [--threads 2] [--inputs 8] [--new-tokens 32] [--output FILE.json]

Per export, taking turns input by input so that load on a shared machine hits all alike:

- greedy ms per generated token (batch 1);
- 4-beam ms per generated token with the batch-4 step, and row by row (the batch-1 step run once per beam);
- whether the beam ids of the two are identical (they must be: the step at batch 4 is the same graph).

"Per generated token" is per step of the decoding loop (a beam step generates one token for each input). The
models: ``mt5-small`` is random weights of google/mt5-small's shape (``benchmarks.models.mt5_small``): outputs are
noise, only speed and identity mean anything; ``demo`` is the trained demo model. Exports are cached under
``build/beam-batch/<model>/``. Writes JSON; never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.models import mt5_small, once
from benchmarks.timing import speed_arguments
from mt5lite.paths import BUILD_DIR, DEMO_MODEL

#: name -> (the checkpoint, what the report calls it)
MODELS = {"mt5-small": (mt5_small, "random weights of google/mt5-small's shape, 250,100-piece tokenizer"),
          "demo": (lambda: DEMO_MODEL, "the demo model")}
BEAMS = 4


def build(model: Path, work: Path, exports: list[str]) -> dict[str, Path]:
    """The static fp32 ONNX export of ``model`` and each of ``exports`` made from it (``static-int8``: ONNX's
    static int8 recipe; ``tflite-int8``: full-int8 TFLite), reused when already there."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
    from mt5lite.exporters.tflite.export import export_tflite

    fp32 = once(work / "onnx-fp32", lambda p: export_onnx(model, p, OnnxExportConfig(static_shapes=True),
                                                         force=True, progress=True))
    made_from_fp32 = {
        "static-int8": lambda p: quantize_export(fp32, p, QuantizeConfig(), force=True, progress=True, gate=False),
        "tflite-int8": lambda p: export_tflite(fp32, p, "int8", force=True, gate=False, progress=True),
    }
    return {name: once(work / name, made_from_fp32[name]) if name in made_from_fp32 else fp32 for name in exports}


def _decode(generator, steps: list, text: str, beams: int, new_tokens: int) -> tuple[float, list[int], int]:
    """(seconds, ids, steps) of decoding ``text`` with ``beams`` beams, at most ``new_tokens`` tokens; ``steps``
    is the list the generator's step hook appends to."""
    from mt5lite.runtimes.options import DecodingOptions

    steps.clear()
    started = time.perf_counter()
    ids = generator.generate_ids([text], DecodingOptions(num_beams=beams, max_new_tokens=new_tokens))[0]
    return time.perf_counter() - started, ids, len(steps)


def measure(path: Path, texts: list[str], threads: int, new_tokens: int) -> dict:
    """Greedy, 4 beams batched and 4 beams row by row on the export at ``path``, input by input in turn."""
    from mt5lite.runtimes.generators import open_export

    variants = {"greedy": (1, False), "beams_batched": (BEAMS, False), "beams_row_by_row": (BEAMS, True)}
    generators = {name: open_export(path, threads=threads, row_by_row=row_by_row)
                  for name, (_, row_by_row) in variants.items()}
    steps = {name: [] for name in variants}
    for name, generator in generators.items():
        generator.add_step_hook(lambda feeds, outputs, counted=steps[name]: counted.append(1))
    for name, (beams, _) in variants.items():  # warm-up
        _decode(generators[name], steps[name], texts[0], beams, 4)
    per_token = {name: [] for name in variants}
    ids = {name: [] for name in variants}
    for text in texts:
        for name, (beams, _) in variants.items():
            seconds, found, count = _decode(generators[name], steps[name], text, beams, new_tokens)
            per_token[name].append(1000 * seconds / count)
            ids[name].append(found)
    ms = {name: round(statistics.median(values), 3) for name, values in per_token.items()}
    identical = sum(a == b for a, b in zip(ids["beams_batched"], ids["beams_row_by_row"], strict=True))
    return {"ms_per_token": ms,
            "beams_batched_over_greedy": round(ms["beams_batched"] / ms["greedy"], 3),
            "beams_row_by_row_over_greedy": round(ms["beams_row_by_row"] / ms["greedy"], 3),
            "beam_ids_identical": f"{identical} of {len(texts)}",
            "decoder_batches": sorted(generators["beams_batched"].decoder_batches)}


def markdown(report: dict) -> str:
    """The report as a Markdown page: per export, greedy and 4-beam ms per generated token, side by side."""
    lines = [f"Model: {report['model']}; {report['threads']} threads; {report['inputs']} held-out sentences, at "
             f"most {report['max_new_tokens']} new tokens; {report['beams']} beams. Each variant decodes every "
             "input in turn (side by side); ms per generated token is the median over the inputs of the decoding "
             "time (encoder included) over the steps the loop ran.", "",
             "| export | greedy ms/token | 4 beams, one call per step | 4 beams, row by row | beam ids identical |",
             "|---|---|---|---|---|"]
    for name, row in report["exports"].items():
        ms = row["ms_per_token"]
        lines.append(f"| {name} | {ms['greedy']:.2f} | {ms['beams_batched']:.2f} "
                     f"({row['beams_batched_over_greedy']:.2f}x greedy) | {ms['beams_row_by_row']:.2f} "
                     f"({row['beams_row_by_row_over_greedy']:.2f}x) | {row['beam_ids_identical']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build what is missing, measure, write the JSON report."""
    from mt5lite.data import HELDOUT_SENTENCES, read_sentences

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="mt5-small")
    parser.add_argument("--exports", nargs="+", default=["static-int8"],
                        choices=["onnx-fp32", "static-int8", "tflite-int8"])
    speed_arguments(parser, inputs=8, new_tokens=32, output="beam-batch.json")
    args = parser.parse_args()
    os.environ.setdefault("USE_TF", "0")
    work = BUILD_DIR / "beam-batch" / args.model
    checkpoint, described = MODELS[args.model]
    paths = build(checkpoint(), work, args.exports)
    texts = [s.text for s in read_sentences(HELDOUT_SENTENCES)][: args.inputs]
    report = {"model": described, "threads": args.threads, "inputs": len(texts), "max_new_tokens": args.new_tokens,
              "beams": BEAMS, "machine": platform.processor() or platform.machine(),
              "exports": {name: measure(path, texts, args.threads, args.new_tokens) for name, path in paths.items()}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["exports"], indent=2))


if __name__ == "__main__":
    main()
