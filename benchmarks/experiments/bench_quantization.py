"""Decoding speed and size of quantized exports against the fp32 export and PyTorch, side by side in one run.

    python -m benchmarks.experiments.bench_quantization [--model DIR] [--no-torch] [--threads 2] [--output FILE.json]

By default it benchmarks a random-init model of google/mt5-small's exact shape (built and cached on first use):
exports it (fp32, dynamic shapes), quantizes it with each recipe, then decodes the same held-out inputs with every
variant, batch 1, taking turns input by input so that load on a shared machine hits all alike. Every variant
decodes exactly ``--new-tokens`` steps per input (eos ignored), so per-token numbers compare like with like.
Writes the numbers to a JSON file; never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.timing import timed_decode
from mt5lite.data import HELDOUT_SENTENCES, read_sentences
from mt5lite.paths import BUILD_DIR


def torch_decode(reference, text: str, new_tokens: int) -> float:
    """Seconds for PyTorch eager ``generate`` of exactly ``new_tokens`` greedy tokens, batch 1."""
    import torch

    ids, mask = reference.encode_batch([text])
    started = time.perf_counter()
    with torch.inference_mode():
        reference.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, num_beams=1)
    return time.perf_counter() - started


def prepare(model_dir: Path, work: Path, recipes: list[str], threads: int) -> dict[str, Path]:
    """The fp32 export and one quantized export per recipe under ``work`` (reused when already there)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export

    exports = {"fp32": work / "fp32"}
    if not (exports["fp32"] / "manifest.json").is_file():
        export_onnx(model_dir, exports["fp32"], OnnxExportConfig(), force=True, progress=True)
    for recipe in recipes:
        exports[recipe] = work / recipe
        if not (exports[recipe] / "manifest.json").is_file():
            started = time.perf_counter()
            quantize_export(exports["fp32"], exports[recipe], QuantizeConfig(recipe=recipe), force=True,
                            progress=True, gate=False)
            print(f"{recipe}: quantized in {time.perf_counter() - started:.0f} s")
    return exports


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: random mt5-small shape)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=16, help="held-out sentences decoded by every variant")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--recipes", nargs="+", default=["static-int8", "dynamic-int8"])
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager baseline")
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "bench-quantization.json")
    return parser.parse_args(argv)


def measure(generators: dict, texts: list[str], new_tokens: int, reference) -> tuple[dict, dict, list[float]]:
    """Seconds per token of every variant on every text, taking turns input by input (warm-up first): the
    totals (encoder included) and the steps alone by variant, and PyTorch eager's totals (none without
    ``reference``)."""
    for generator in generators.values():  # warm-up: first runs allocate and page in the weights
        timed_decode(generator, texts[0], 4)
    totals = {name: [] for name in generators}
    steps = {name: [] for name in generators}
    torch_totals = []
    for text in texts:
        for name, generator in generators.items():
            total, step_only = timed_decode(generator, text, new_tokens)
            totals[name].append(total / new_tokens)
            steps[name].append(step_only / new_tokens)
        if reference is not None:
            torch_totals.append(torch_decode(reference, text, new_tokens) / new_tokens)
    return totals, steps, torch_totals


def variant_rows(exports: dict[str, Path], generators: dict, totals: dict, steps: dict) -> dict[str, dict]:
    """Each variant's size and median ms per token and per step, and both as ratios to the fp32 export's."""
    from mt5lite.verification.comparison import graph_bytes

    variants = {}
    for name, path in exports.items():
        variants[name] = {
            "size_bytes": graph_bytes(path, generators[name].manifest),
            "ms_per_token_median": 1000 * statistics.median(totals[name]),
            "ms_per_step_median": 1000 * statistics.median(steps[name]),
        }
    fp32 = variants["fp32"]
    for row in variants.values():
        row["size_vs_fp32"] = row["size_bytes"] / fp32["size_bytes"]
        row["speedup_vs_fp32"] = fp32["ms_per_token_median"] / row["ms_per_token_median"]
    return variants


def with_pytorch(variants: dict[str, dict], torch_totals: list[float]) -> dict:
    """PyTorch eager's median ms per token, and each variant's speed-up over it (empty without PyTorch)."""
    if not torch_totals:
        return {}
    torch_ms = 1000 * statistics.median(torch_totals)
    for row in variants.values():
        row["speedup_vs_pytorch"] = torch_ms / row["ms_per_token_median"]
    return {"pytorch_eager_fp32_ms_per_token_median": torch_ms}


def print_summary(variants: dict[str, dict], output: Path) -> None:
    """One line per variant: speed, speed-ups and size."""
    for name, row in variants.items():
        print(f"{name:>13}: {row['ms_per_token_median']:7.2f} ms/token  {row['speedup_vs_fp32']:.2f}x fp32  "
              f"{row.get('speedup_vs_pytorch', float('nan')):.2f}x PyTorch  size {row['size_bytes'] / 1e6:7.1f} MB "
              f"({row['size_vs_fp32']:.1%})")
    print(f"written to {output}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON report."""
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator
    from mt5lite.runtimes.torch_reference import TorchReference
    from tests.fixtures import mt5_small_random

    args = parse_arguments(argv)
    os.environ.setdefault("USE_TF", "0")
    model_dir = args.model or mt5_small_random()
    work = BUILD_DIR / "bench" / model_dir.name
    exports = prepare(model_dir, work, args.recipes, args.threads)
    generators = {name: OnnxGenerator(path, threads=args.threads) for name, path in exports.items()}
    texts = [s.text for s in read_sentences(HELDOUT_SENTENCES)[: args.inputs]]
    reference = None if args.no_torch else TorchReference(model_dir, threads=args.threads)

    totals, steps, torch_totals = measure(generators, texts, args.new_tokens, reference)
    variants = variant_rows(exports, generators, totals, steps)
    result = {
        "model": str(model_dir), "threads": args.threads, "inputs": len(texts), "new_tokens": args.new_tokens,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "variants": variants,
    }
    result.update(with_pytorch(variants, torch_totals))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_summary(variants, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
