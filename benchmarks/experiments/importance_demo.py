"""Does importance beat random? Each pruning pass on the demo model, by importance and by five random seeds.

    python -m benchmarks.experiments.importance_demo [--output FILE.json]

Importance is measured on 400 of the task's training pairs; exact match is measured right after pruning, before any
training, on the 400 dev pairs (so importance never sees the pairs it is judged on). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.models import training_file
from mt5lite.data import DEV_TASK, read_task_pairs
from mt5lite.paths import BUILD_DIR, DEMO_MODEL
from mt5lite.spiece import read_sentencepiece

SEEDS = (0, 1, 2, 3, 4)


def exact_match(model, tokenizer_path: Path, pairs) -> float:
    """Exact match of ``model``'s greedy decoding (PyTorch, the tokenizer at ``tokenizer_path``) on ``pairs``, as
    ``compress`` scores a pass."""
    from mt5lite.compression.compress import greedy_quality

    return greedy_quality(model, tokenizer_path, pairs)["exact_match"]


def main(argv: list[str] | None = None) -> int:
    """Prune each way, score each result, write JSON."""
    from mt5lite.checkpoint import load_model
    from mt5lite.compression.prune import (
        DropLayersConfig,
        PruneFfnConfig,
        PruneHeadsConfig,
        drop_layers,
        prune_ffn,
        prune_heads,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "importance-demo.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_TF", "0")

    dev = read_task_pairs(DEV_TASK)
    train = training_file(BUILD_DIR / "lite" / "train.tsv")
    tokenizer = read_sentencepiece(DEMO_MODEL / "spiece.model")
    cases = {
        "ffn 512 -> 128": (prune_ffn, lambda **k: PruneFfnConfig(ffn_keep=0.25, **k)),
        "ffn 512 -> 256": (prune_ffn, lambda **k: PruneFfnConfig(ffn_keep=0.5, **k)),
        "ffn 512 -> 384": (prune_ffn, lambda **k: PruneFfnConfig(ffn_keep=0.75, **k)),
        "heads 4 -> 2": (prune_heads, lambda **k: PruneHeadsConfig(heads_keep=0.5, **k)),
        "layers 3+3 -> 2+2": (drop_layers, lambda **k: DropLayersConfig(encoder_layers_keep=2, decoder_layers_keep=2,
                                                                        **k)),
    }
    ways = {"importance": {"importance": "measured", "importance_data": train, "importance_pairs": 400},
            **{f"random seed {s}": {"importance": "random", "seed": s} for s in SEEDS}}
    result = {}
    with tempfile.TemporaryDirectory(dir=BUILD_DIR, prefix=".importance-") as scratch:
        spiece = Path(scratch) / "spiece.model"
        spiece.write_bytes(tokenizer.SerializeToString())
        for name, (run, config) in cases.items():
            row = {way: exact_match(run(load_model(DEMO_MODEL), tokenizer, config(**options))[0], spiece, dev)
                   for way, options in ways.items()}
            row["random mean"] = sum(row[f"random seed {s}"] for s in SEEDS) / len(SEEDS)
            result[name] = row
            print(name, json.dumps(row), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
