"""What unstructured magnitude pruning buys on the demo model: sparsity, file sizes, zipped sizes, speed, quality.

    python -m benchmarks.experiments.sparsity_demo [--sparsity 0.5] [--threads 2] [--output FILE.json]

The demo model is pruned with ``magnitude-prune`` and both models are exported to fp32 static ONNX; the two exports
decode the same held-out inputs side by side (taking turns input by input, forced length). Writes JSON; never a
pass/fail on timing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
from pathlib import Path

from benchmarks.timing import side_by_side, speed_arguments
from mt5lite.data import HELDOUT_TASK, read_task_pairs
from mt5lite.paths import BUILD_DIR, DEMO_MODEL
from mt5lite.verification.comparison import directory_bytes


def zipped(directory: Path) -> int:
    """Bytes of every file of ``directory`` in one zip (deflate)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.iterdir()):
            archive.write(path, path.name)
    return buffer.getbuffer().nbytes


def main(argv: list[str] | None = None) -> int:
    """Prune, export, measure, write JSON."""
    from mt5lite.compression.compress import compress
    from mt5lite.compression.sparsity import MagnitudePruneConfig
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx
    from mt5lite.runtimes.onnx_runtime import OnnxGenerator

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.5)
    speed_arguments(parser, inputs=40, new_tokens=16, output="sparsity-demo.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_TF", "0")

    work = BUILD_DIR / "sparsity"
    pairs = read_task_pairs(HELDOUT_TASK)
    report = compress(DEMO_MODEL, work / "sparse", ["magnitude-prune"],
                      {"magnitude-prune": MagnitudePruneConfig(args.sparsity)}, pairs=pairs, force=True)
    static = OnnxExportConfig(static_shapes=True)
    exports = {"dense": work / "dense-onnx", "sparse": work / "sparse-onnx"}
    export_onnx(DEMO_MODEL, exports["dense"], static, force=True)
    export_onnx(work / "sparse", exports["sparse"], static, force=True)

    generators = {name: OnnxGenerator(path, threads=args.threads) for name, path in exports.items()}
    texts = [p.source for p in pairs[:: max(1, len(pairs) // args.inputs)][: args.inputs]]
    speed = side_by_side(generators, texts, args.new_tokens)
    step = report["passes"][0]
    result = {
        "sparsity": step["details"]["sparsity"],
        "weights_zipped_bytes": step["details"]["zipped_bytes"],
        "export_bytes": {name: directory_bytes(path) for name, path in exports.items()},
        "export_zipped_bytes": {name: zipped(path) for name, path in exports.items()},
        "onnx_fp32_ms_per_token": speed,
        "exact_match": {"dense": report["quality"]["before"]["exact_match"],
                        "sparse": step["quality_after"]["exact_match"]},
        "threads": args.threads, "inputs": len(texts), "new_tokens": args.new_tokens,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
