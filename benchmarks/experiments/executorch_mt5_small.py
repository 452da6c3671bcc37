"""ExecuTorch on mt5-small's shape: fp32 and int8 ``.pte`` exports, their sizes and conversion peak memory, and
their speed side by side with our ONNX Runtime and LiteRT int8 exports of the same model.

    python -m benchmarks.experiments.executorch_mt5_small [--threads 2] [--inputs 8] [--new-tokens 32]
        [--output FILE.json]

The model is ``make bench``'s mt5-small row (``benchmarks.models.mt5_small``: random weights, a 250,100-piece
tokenizer). Each export runs in a child process under ``peak_memory.measure`` (the whole process tree's peak and
the largest process's). The int8 export is calibrated like every int8 of the project (256 samples, 512 decoder
steps); random weights make near-tied logits, so it is not gated here (the demo model's gate is in the tests).
The ONNX and TFLite exports compared are ``make bench``'s own builds (``--bench-dir``), made once there. Writes
JSON and Markdown; never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.experiments.peak_memory import measure
from benchmarks.models import mt5_small
from benchmarks.timing import side_by_side, speed_arguments
from mt5lite.data import HELDOUT_TASK, read_task_pairs
from mt5lite.paths import BUILD_DIR
from mt5lite.reports import markdown_table, write_report
from mt5lite.verification.comparison import directory_bytes

EXPORT = """
import sys
from mt5lite.exporters.executorch.export import ExecutorchExportConfig, export_executorch
export_executorch(sys.argv[1], sys.argv[2], ExecutorchExportConfig(quantize=sys.argv[3]), force=True,
                  gate=False)
"""
#: ``make bench``'s builds of the same model compared side by side (name -> directory under --bench-dir).
PEERS = {"onnx weight-int8": "ours-onnx-weight-int8", "onnx static-int8": "ours-onnx-static-int8",
         "tflite int8": "ours-tflite-int8"}


def main(argv: list[str] | None = None) -> int:
    """Export, measure and write the table."""
    from mt5lite.runtimes.generators import open_export

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    speed_arguments(parser, inputs=8, new_tokens=32, output="executorch-mt5-small.json")
    parser.add_argument("--bench-dir", type=Path, default=BUILD_DIR / "bench" / "mt5-small")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_TF", "0")

    checkpoint = mt5_small()
    work = BUILD_DIR / "executorch-mt5-small"
    work.mkdir(parents=True, exist_ok=True)
    exports, conversion = {}, {}
    for precision in ("fp32", "int8"):
        out = work / precision
        if not (out / "manifest.json").is_file():
            found = measure([sys.executable, "-c", EXPORT, str(checkpoint), str(out), precision], work)
            if found["exit_status"] != 0:
                raise SystemExit(f"the {precision} export failed (exit {found['exit_status']})")
            (work / f"{precision}-memory.json").write_text(json.dumps(found), encoding="utf-8")
        conversion[precision] = json.loads((work / f"{precision}-memory.json").read_text(encoding="utf-8"))
        exports[f"executorch {precision}"] = out
    exports.update({name: args.bench_dir / folder for name, folder in PEERS.items()
                    if (args.bench_dir / folder / "manifest.json").is_file()})

    generators = {name: open_export(path, threads=args.threads) for name, path in exports.items()}
    pairs = read_task_pairs(HELDOUT_TASK)
    texts = [p.source for p in pairs[:: max(1, len(pairs) // args.inputs)][: args.inputs]]
    speed = side_by_side(generators, texts, args.new_tokens)
    checkpoint_bytes = directory_bytes(checkpoint)
    rows = {name: {"ms_per_token": speed[name], "bytes": directory_bytes(path)} for name, path in exports.items()}
    for precision, found in conversion.items():
        rows[f"executorch {precision}"].update(
            conversion_peak_bytes=found["peak_tree_bytes"], conversion_seconds=found["wall_s"],
            conversion_peak_vs_checkpoint=found["peak_tree_bytes"] / checkpoint_bytes)
    result = {"checkpoint": str(checkpoint), "checkpoint_bytes": checkpoint_bytes, "threads": args.threads,
              "inputs": len(texts), "new_tokens": args.new_tokens, "rows": rows}
    table = [[name, f"{row['ms_per_token']:.2f}", f"{row['bytes'] / 1e6:.1f}",
              f"{row['conversion_peak_bytes'] / 1e9:.2f} GB ({row['conversion_peak_vs_checkpoint']:.1f}x), "
              f"{row['conversion_seconds']:.0f} s" if "conversion_peak_bytes" in row else "(make bench)"]
             for name, row in rows.items()]
    markdown = "# ExecuTorch on mt5-small's shape, side by side\n\n" + markdown_table(
        ["export", "ms/token", "MB", "conversion peak, time"], table)
    write_report(result, args.output, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
