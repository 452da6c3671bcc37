"""What a device user feels on static exports, side by side: beam search with the beams in one step call
(``decoder_b4``) against row by row, and time to first token with source-length buckets against padding every input
to ``max_source_length``.

    python -m benchmarks.experiments.device_speed [--model mt5-small|mt5-small-trimmed|demo]
        [--exports static-int8 weight-int8 tflite-int8]
        [--threads 2] [--inputs 8] [--new-tokens 32] [--output FILE.json]

Per export, taking turns input by input so that load on a shared machine hits all alike:

- greedy ms per generated token (batch 1);
- 4-beam ms per generated token with the batch-4 step, and row by row (the batch-1 step run once per beam);
- whether the beam ids of the two are identical (the step at batch 4 is the same graph; weight-int8's run-time
  rounding of activations may still turn a near tie: ``docs/onnx-export.md``);
- time to first token (the encoder and the first decoder step) for inputs of 8, 16, 32 and 128 tokens, running
  the shortest source-length bucket that holds them and padded to ``max_source_length``; whether the greedy ids of
  the held-out inputs are identical both ways;
- the decoder step alone (exactly ``--new-tokens`` greedy steps, the encoder left out) over its floor: the bytes of
  weights one step reads (``benchmarks.bench.weights_per_token``, at the bytes per weight ``make bench`` counts for
  the export) over this machine's read bandwidth, measured before and after the exports' turns (the faster of the
  two: the stricter floor).

"Per generated token" is per step of the decoding loop (a beam step generates one token for each input). The
models: ``mt5-small`` is random weights of google/mt5-small's shape (``benchmarks.models.mt5_small``): outputs are
noise, only speed and identity mean anything; ``mt5-small-trimmed`` is that model trimmed to the project's data,
the size a phone app ships, where the floor is low and fixed costs per step show; ``demo`` is the trained demo
model. Exports are cached under ``build/device-speed/<model>/``. Writes JSON; never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.bench import read_bandwidth
from benchmarks.models import mt5_small, once, trimmed_mt5_small
from benchmarks.timing import speed_arguments
from mt5lite.paths import BUILD_DIR, DEMO_MODEL

#: name -> (the checkpoint, what the report calls it)
MODELS = {"mt5-small": (mt5_small, "random weights of google/mt5-small's shape, 250,100-piece tokenizer"),
          "mt5-small-trimmed": (lambda: trimmed_mt5_small(mt5_small(), BUILD_DIR / "trim-mt5-small"),
                                "random weights of google/mt5-small's shape, its vocabulary trimmed to the "
                                "project's multilingual data (`make bench`'s trimmed row)"),
          "demo": (lambda: DEMO_MODEL, "the demo model")}
BEAMS = 4
#: The ``make bench`` system each export is (its bytes per weight give the floor).
SYSTEM_OF = {"onnx-fp32": "ours-onnx-fp32", "static-int8": "ours-onnx-static-int8",
             "weight-int8": "ours-onnx-weight-int8", "tflite-int8": "ours-tflite-int8"}
#: Input lengths in tokens (eos included) whose time to first token is measured.
FIRST_TOKEN_LENGTHS = (8, 16, 32, 128)
#: Times each length is measured per variant (the median is reported); each time is the second of two runs in a
#: row, so that it is the steady state of an app answering one query after another (ONNX Runtime's thread pools of
#: the other variant's sessions have stopped spinning, its own have their work in cache).
FIRST_TOKEN_REPEATS = 7


def build(model: Path, work: Path, exports: list[str]) -> dict[str, Path]:
    """The static fp32 ONNX export of ``model`` and each of ``exports`` made from it (``static-int8`` and
    ``weight-int8``: ONNX's int8 recipes; ``tflite-int8``: full-int8 TFLite), reused when made by this code from
    the same files (``once``)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export
    from mt5lite.exporters.tflite.export import export_tflite

    fp32 = once(work / "onnx-fp32", lambda p: export_onnx(model, p, OnnxExportConfig(static_shapes=True),
                                                         force=True, progress=True), inputs=(model,))
    made_from_fp32 = {
        **{recipe: lambda p, recipe=recipe: quantize_export(fp32, p, QuantizeConfig(recipe=recipe), force=True,
                                                             progress=True, gate=False)
           for recipe in ("static-int8", "weight-int8")},
        "tflite-int8": lambda p: export_tflite(fp32, p, "int8", force=True, gate=False, progress=True),
    }
    return {name: once(work / name, made_from_fp32[name], inputs=(fp32,), options=name) if name in made_from_fp32
            else fp32 for name in exports}


def _decode(generator, steps: list, text: str, beams: int, new_tokens: int) -> tuple[float, list[int], int]:
    """(seconds, ids, steps) of decoding ``text`` with ``beams`` beams, at most ``new_tokens`` tokens; ``steps``
    is the list the generator's step hook appends to."""
    from mt5lite.runtimes.options import DecodingOptions

    steps.clear()
    started = time.perf_counter()
    ids = generator.generate_ids([text], DecodingOptions(num_beams=beams, max_new_tokens=new_tokens))[0]
    return time.perf_counter() - started, ids, len(steps)


def _options(beams: int, new_tokens: int):
    from mt5lite.runtimes.options import DecodingOptions

    return DecodingOptions(num_beams=beams, max_new_tokens=new_tokens)


def first_token(generators: dict, texts: list[str]) -> dict:
    """Median ms from input ids to the first token's logits (encoder and one decoder step) per input length of
    ``FIRST_TOKEN_LENGTHS`` and generator, taking turns (``FIRST_TOKEN_REPEATS``); the inputs are the first
    tokens of ``texts`` joined, eos last, each padded as its generator pads (``source_lengths``)."""
    import numpy as np

    from benchmarks.timing import forced_decode
    from mt5lite.contract import bucket_length

    some = next(iter(generators.values()))
    tokenizer = some.tokenizer
    pieces = [piece for text in texts for piece in tokenizer.encode(text, None)[:-1]]
    eos = some.manifest.special_tokens.eos
    times: dict[str, dict[int, list[float]]] = {name: {n: [] for n in FIRST_TOKEN_LENGTHS} for name in generators}
    lengths = [n for n in FIRST_TOKEN_LENGTHS if n <= some.max_source_length and n - 1 <= len(pieces)]
    for repeat in range(FIRST_TOKEN_REPEATS + 1):  # the first round warms up (sessions load on first use)
        for n in lengths:
            for name, generator in generators.items():
                width = bucket_length(n, generator.source_lengths)
                ids = np.zeros((1, width), np.int64)
                ids[0, :n] = [*pieces[: n - 1], eos]
                mask = (np.arange(width) < n).astype(np.int64)[None]
                for _ in range(2):  # the second of two in a row
                    seconds, _ = forced_decode(generator.stepper, ids, mask, generator.decoder.decoder_start_id, 1)
                if repeat:
                    times[name][n].append(1000 * seconds)
    ms = {name: {str(n): round(statistics.median(times[name][n]), 3) for n in lengths} for name in generators}
    short, longest = "16", str(max(lengths))
    return {"ms": ms, "lengths": lengths,
            "short_over_longest": {name: round(ms[name][short] / ms[name][longest], 3) for name in generators
                                   if short in ms[name] and longest != short}}


def measure(path: Path, texts: list[str], threads: int, new_tokens: int, corpus: list[str]) -> dict:
    """Greedy, 4 beams batched and 4 beams row by row on the export at ``path``, input by input in turn; then time
    to first token with and without source-length buckets."""
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
    step = statistics.median(steps_alone(generators["greedy"], texts, new_tokens))
    identical = sum(a == b for a, b in zip(ids["beams_batched"], ids["beams_row_by_row"], strict=True))
    full = open_export(path, threads=threads, full_length=True)
    greedy = sum(generators["greedy"].generate_ids([text], _options(1, new_tokens)) ==
                 full.generate_ids([text], _options(1, new_tokens)) for text in texts)
    return {"first_token": first_token({"buckets": generators["greedy"], "full_length": full}, corpus),
            "bucket_ids_identical": f"{greedy} of {len(texts)}",
            "source_lengths": generators["greedy"].source_lengths,
            "ms_per_token": ms,
            "step_ms": round(step, 3),
            "beams_batched_over_greedy": round(ms["beams_batched"] / ms["greedy"], 3),
            "beams_row_by_row_over_greedy": round(ms["beams_row_by_row"] / ms["greedy"], 3),
            "beam_ids_identical": f"{identical} of {len(texts)}",
            "decoder_batches": sorted(generators["beams_batched"].decoder_batches),
            "bytes": sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".onnx", ".bin", ".tflite"))}


def steps_alone(generator, texts: list[str], new_tokens: int) -> list[float]:
    """Ms per decoder step of exactly ``new_tokens`` greedy steps per text (the encoder left out), batch 1."""
    from benchmarks.timing import timed_decode

    return [1000 * timed_decode(generator, text, new_tokens)[1] / new_tokens for text in texts]


def with_floors(exports: dict, checkpoint: Path, bandwidth: float) -> dict:
    """``exports``' rows with the floor of their decoder step (ms) at ``bandwidth`` (bytes per second) and the
    step's multiple of it."""
    from benchmarks.bench import floor_ms
    from benchmarks.bench_systems import SYSTEMS

    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    rows = {}
    for name, row in exports.items():
        floor = floor_ms(config, SYSTEMS[SYSTEM_OF[name]].weight_bytes, bandwidth)
        rows[name] = {**row, "floor_ms": round(floor, 3), "step_over_floor": round(row["step_ms"] / floor, 3)}
    return rows


def markdown(report: dict) -> str:
    """The report as a Markdown page: per export, greedy and 4-beam ms per generated token, and time to first
    token with and without source-length buckets, side by side."""
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
    lines += ["", f"The decoder step alone (median ms of {report['max_new_tokens']} greedy steps, encoder left out) "
              "over its floor: the weights one step reads over this machine's read bandwidth, "
              f"{' and '.join(map(str, report['read_bandwidth_gb_s']))} GB/s before and after the turns (the floor "
              "takes the faster).", "",
              "| export | step ms | floor ms | step over floor |", "|---|---|---|---|"]
    for name, row in report["exports"].items():
        lines.append(f"| {name} | {row['step_ms']:.2f} | {row['floor_ms']:.2f} | {row['step_over_floor']:.2f}x |")
    if "weight-int8" in report["exports"]:
        lines += ["", "weight-int8's `MatMulNBits` rounds activations to int8 at run time, so near ties (random "
                  "weights give them everywhere) can turn batched beams from row-by-row ones (`docs/onnx-export.md`)."]
    lines += ["", "Time to first token (encoder and first decoder step, median of "
              f"{FIRST_TOKEN_REPEATS}), ms, by input length in tokens: with source-length buckets (the shortest "
              "graphs that hold the input) and padded to the export's full length, as before buckets.", ""]
    for name, row in report["exports"].items():
        found = row.get("first_token")
        if not found:
            continue
        lengths = found["lengths"]
        lines += [f"**{name}** (source lengths {', '.join(map(str, row['source_lengths']))}; greedy ids with "
                  f"buckets identical to full length: {row['bucket_ids_identical']}):", "",
                  "| | " + " | ".join(f"{n} tokens" for n in lengths) + f" | 16 over {lengths[-1]} |",
                  "|---|" + "---|" * (len(lengths) + 1)]
        for variant, label in (("buckets", "buckets"), ("full_length", "full length")):
            cells = " | ".join(f"{found['ms'][variant][str(n)]:.1f}" for n in lengths)
            ratio = found["short_over_longest"].get(variant)
            lines.append(f"| {label} | {cells} | {'' if ratio is None else f'{100 * ratio:.0f}%'} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build what is missing, measure, write the JSON report."""
    from mt5lite.data import HELDOUT_SENTENCES, read_sentences
    from mt5lite.runtimes.generators import claim_process

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="mt5-small")
    parser.add_argument("--exports", nargs="+", default=["static-int8"],
                        choices=list(SYSTEM_OF))
    speed_arguments(parser, inputs=8, new_tokens=32, output="device-speed.json")
    args = parser.parse_args()
    os.environ.setdefault("USE_TF", "0")
    work = BUILD_DIR / "device-speed" / args.model
    checkpoint, described = MODELS[args.model]
    model = checkpoint()
    paths = build(model, work, args.exports)
    for path in paths.values():  # from here on this process runs nothing but the exports
        claim_process(path, args.threads)
    corpus = [s.text for s in read_sentences(HELDOUT_SENTENCES)]  # time to first token: 128 tokens of it
    texts = corpus[: args.inputs]
    report = {"model": described, "threads": args.threads, "inputs": len(texts), "max_new_tokens": args.new_tokens,
              "beams": BEAMS, "machine": platform.processor() or platform.machine(),
              "read_bandwidth_gb_s": []}
    bandwidth = [read_bandwidth(args.threads)]
    exports = {name: measure(path, texts, args.threads, args.new_tokens, corpus) for name, path in paths.items()}
    bandwidth.append(read_bandwidth(args.threads))
    report["read_bandwidth_gb_s"] = [round(b / 1e9, 1) for b in bandwidth]
    report["exports"] = with_floors(exports, model, max(bandwidth))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["exports"], indent=2))


if __name__ == "__main__":
    main()
