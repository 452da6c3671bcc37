"""Where a decoder step's time goes on ONNX Runtime: its nodes by op type, from ONNX Runtime's own profiler.

    python -m benchmarks.experiments.step_profile EXPORT [EXPORT ...] [--role decoder|decoder_b4]
        [--threads 2] [--steps 64] [--output FILE.json]

Each static export's step graph (``--role``: the batch-1 step, or the batch-4 step) runs ``--steps`` times on
the same random feeds (``exporters.onnx.variants.random_feeds``: the cache half full), first without the profiler
(the step's median ms) and then with it. Per op type the report gives the nodes of the optimized graph, the ms a
step spends in them and their share of the profiled step; ``lm_head`` is the product that writes the logits, apart.
The profiler adds a cost to every node run, so small ops look larger than they are: compare shares within a run, and
the unprofiled median with the profiled sum. Writes JSON; never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

from mt5lite.paths import BUILD_DIR

#: Profiled steps left out at the start (the first runs allocate and pack).
WARMUP = 4


def _session(path: Path, threads: int, profile_prefix: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _lm_head(path: Path) -> str | None:
    """The name of the node that writes the logits (followed through shape-only ops), None if not found."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}
    node = producer.get("logits")
    while node is not None and node.op_type in {"Squeeze", "Reshape", "Gather", "Slice", "Identity", "Cast"}:
        node = producer.get(node.input[0])
    return node.name if node is not None else None


def profile_step(export: Path, role: str, threads: int, steps: int) -> dict:
    """The step graph ``role`` of ``export``: its median ms unprofiled, and per op type its nodes, ms per step and
    share of the profiled step."""
    from mt5lite.contract import graph_feeds
    from mt5lite.exporters.onnx.variants import random_feeds
    from mt5lite.manifest import inside, load_manifest

    manifest = load_manifest(export)
    spec = manifest.graphs[role]
    path = inside(export, spec.file)
    feeds = graph_feeds([t.name for t in spec.inputs], random_feeds(spec))
    names = [t.name for t in spec.outputs]
    plain = _session(path, threads)
    for _ in range(WARMUP):
        plain.run(names, feeds)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        plain.run(names, feeds)
        times.append(1000 * (time.perf_counter() - started))
    del plain
    profiled = _session(path, threads, export.parent / f".profile-{export.name}-{role}")
    for _ in range(WARMUP + steps):
        profiled.run(names, feeds)
    trace = Path(profiled.end_profiling())
    try:
        events = json.loads(trace.read_text(encoding="utf-8"))
    finally:
        trace.unlink()
    return {"export": str(export), "role": role, "threads": threads, "steps": steps,
            "step_ms_median": round(statistics.median(times), 3), **_by_op(events, _lm_head(path), steps)}


def _by_op(events: list[dict], lm_head: str | None, steps: int) -> dict:
    """Per op type, from the profiler's node events of the last ``steps`` runs: nodes, ms per step, share."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first = runs[-steps]["ts"] if len(runs) >= steps else 0
    total, nodes = defaultdict(float), defaultdict(set)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < first:
            continue
        node = event["name"][: -len("_kernel_time")]
        op = "lm_head " + event["args"]["op_name"] if node == lm_head else event["args"]["op_name"]
        total[op] += event["dur"] / 1000 / steps
        nodes[op].add(node)
    step = sum(total.values())
    ops = {op: {"nodes": len(nodes[op]), "ms_per_step": round(ms, 3), "share": round(ms / step, 3)}
           for op, ms in sorted(total.items(), key=lambda item: -item[1])}
    return {"profiled_step_ms": round(step, 3), "nodes": sum(len(n) for n in nodes.values()), "ops": ops}


def main() -> None:
    """Profile each export's step graph, print and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+", type=Path, help="ONNX export folders")
    parser.add_argument("--role", default="decoder", help="the step graph: decoder, or decoder_b4 (static exports)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "step-profile.json")
    args = parser.parse_args()
    os.environ.setdefault("USE_TF", "0")
    report = {"runs": [profile_step(export, args.role, args.threads, args.steps) for export in args.exports]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
