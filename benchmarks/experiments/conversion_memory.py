"""Peak memory of the full-int8 TFLite conversion against the size of the checkpoint, on random models of
google/mt5-small's and google/mt5-base's exact shapes.

    python -m benchmarks.experiments.conversion_memory [--models google/mt5-small google/mt5-base] [--output FILE.json]

For each model: the random checkpoint (``tests.fixtures.random_real_model``), its static-shape fp32 ONNX export,
then ``mt5lite export tflite --quantize int8`` with the default calibration (256 samples, 512 decoder steps; no
quality gate, since the weights are random, and its report on 20 held-out pairs), run under
``benchmarks.experiments.peak_memory``: the peak of the whole process tree (sampled from /proc: what the machine
must hold) and ``/usr/bin/time -v``'s largest process, each as a multiple of the checkpoint's bytes. The ONNX
export's peak is reported too. Writes JSON and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.experiments.peak_memory import measure
from mt5lite.data import HELDOUT_TASK
from mt5lite.paths import BUILD_DIR

MLITE = [sys.executable, "-m", "mt5lite"]


def _one(name: str, work: Path) -> dict:
    """Build, export and convert ``name``'s random model, measuring the two commands."""
    from tests.fixtures import random_real_model

    checkpoint = random_real_model(name)
    short = checkpoint.name.removesuffix("-random")
    onnx_dir, tflite_dir = work / f"{short}-onnx-static", work / f"{short}-tflite-int8"
    env = dict(os.environ, USE_TF="0")
    row = {"model": name, "checkpoint_bytes": (checkpoint / "model.safetensors").stat().st_size}
    if not (onnx_dir / "manifest.json").is_file():
        row["onnx_export"] = measure([*MLITE, "export", "onnx", "--model", str(checkpoint), "--output",
                                      str(onnx_dir), "--static-shapes", "--validate-samples", "2", "--force"],
                                     work, env=env)
    heldout = work / "heldout-20.tsv"  # the report after the export: 20 pairs (random weights decode at length)
    lines = HELDOUT_TASK.read_text(encoding="utf-8").splitlines(keepends=True)
    heldout.write_text("".join(lines[1::30][:20]), encoding="utf-8")
    row["tflite_int8"] = measure([*MLITE, "export", "tflite", "--export", str(onnx_dir), "--output",
                                  str(tflite_dir), "--quantize", "int8", "--no-gate", "--data", str(heldout),
                                  "--force"], work, env=env)
    for step in ("onnx_export", "tflite_int8"):
        if step in row:
            result = row[step]
            result.pop("timeline", None)
            result["tree_x_checkpoint"] = round(result["peak_tree_bytes"] / row["checkpoint_bytes"], 2)
            if result.get("time_v_max_rss_bytes"):
                result["time_v_x_checkpoint"] = round(result["time_v_max_rss_bytes"] / row["checkpoint_bytes"], 2)
    if (tflite_dir / "model.tflite").is_file():
        row["tflite_bytes"] = (tflite_dir / "model.tflite").stat().st_size
    return row


def _markdown(rows: list[dict]) -> str:
    lines = ["| model | checkpoint | step | peak, whole tree | x checkpoint | largest process (time -v) | x checkpoint "
             "| wall | exit |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for step in ("onnx_export", "tflite_int8"):
            if step in row:
                r = row[step]
                lines.append(f"| {row['model']} | {row['checkpoint_bytes'] / 1e9:.2f} GB | {step} | "
                             f"{r['peak_tree_bytes'] / 1e9:.2f} GB | {r['tree_x_checkpoint']} | "
                             f"{(r.get('time_v_max_rss_bytes') or 0) / 1e9:.2f} GB | {r.get('time_v_x_checkpoint')} | "
                             f"{r['wall_s']:.0f} s | {r['exit_status']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Measure every model given and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["google/mt5-small", "google/mt5-base"])
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "conversion-memory.json")
    args = parser.parse_args()
    work = BUILD_DIR / "conversion-memory"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        rows.append(_one(name, work))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"rows": rows}, indent=2), encoding="utf-8")
        args.output.with_suffix(".md").write_text(_markdown(rows), encoding="utf-8")
        print(_markdown(rows[-1:]))
    return 0 if all(r["tflite_int8"]["exit_status"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
