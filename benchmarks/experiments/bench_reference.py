"""Per-token decoding speed of the PyTorch reference (fp32 eager, batch 1), the baseline later stages must beat.

    python -m benchmarks.experiments.bench_reference [--model DIR] [--mt5-small] [--threads 2] [--output FILE.json]

Greedy decoding of a fixed number of new tokens (eos suppressed, so every run decodes the same count) on held-out
inputs; writes the numbers to a JSON file. Timings on shared machines are noisy: compare only numbers taken side by
side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from mt5lite.data import read_task_pairs
from mt5lite.paths import BUILD_DIR, DEMO_MODEL


def time_reference(model_dir: Path, sources: list[str], new_tokens: int, threads: int, repeats: int) -> dict:
    """Milliseconds per generated token (median over inputs), batch 1, greedy, ``new_tokens`` tokens each."""
    import torch

    from mt5lite.runtimes.torch_reference import TorchReference

    reference = TorchReference(model_dir, threads=threads)
    per_token = []
    for source in sources:
        ids, mask = reference.encode_batch([source])
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            with torch.inference_mode():
                out = reference.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                               min_new_tokens=new_tokens, do_sample=False, num_beams=1)
            runs.append((time.perf_counter() - started) / (out.shape[1] - 1))
        per_token.append(min(runs))
    return {
        "model": str(model_dir),
        "parameters": sum(p.numel() for p in reference.model.parameters()),
        "ms_per_token_median": 1000 * statistics.median(per_token),
        "ms_per_token_p90": 1000 * sorted(per_token)[int(0.9 * (len(per_token) - 1))],
        "inputs": len(sources),
        "new_tokens": new_tokens,
    }


def main() -> int:
    """Run the benchmark and write its JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--mt5-small", action="store_true", help="also time a random model of google/mt5-small's shape")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "benchmarks" / "reference.json")
    args = parser.parse_args()
    os.environ.setdefault("USE_TF", "0")
    sources = [p.source for p in read_task_pairs()][:: max(1, 600 // args.inputs)][: args.inputs]
    results = [time_reference(args.model, sources, args.new_tokens, args.threads, args.repeats)]
    if args.mt5_small:
        from tests.fixtures import mt5_small_random

        results.append(time_reference(mt5_small_random(), sources, args.new_tokens, args.threads, args.repeats))
    report = {"backend": "pytorch-fp32-eager", "threads": args.threads, "batch": 1,
              "machine": platform.machine(), "processor": platform.processor(), "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for row in results:
        print(f"{row['model']}: {row['ms_per_token_median']:.2f} ms/token (median), {row['parameters']:,} parameters")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
