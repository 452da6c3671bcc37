"""Where a TFLite signature's time goes on LiteRT: its native functions by share of CPU samples, from Linux ``perf``.

    python -m benchmarks.experiments.litert_profile EXPORT [--role decoder|decoder_b4|encoder|...] [--calls 300]
        [--threads 2] [--top 15] [--output FILE.json]

LiteRT's Python interpreter has no op profiler (``libLiteRt.so`` exports a profiler for its ``CompiledModel`` API,
but it is switched on through runtime options whose setter it does not export). ``perf`` samples the process
instead: a child process runs the signature ``--calls`` times on random feeds (``exporters.onnx.variants.
random_feeds``: the cache half full) through the runtime's own ``_Signature``, under ``perf record -e cpu-clock``
(user space only, which ``perf_event_paranoid`` 2 allows), and ``perf report`` gives each native function's share of
the samples: XNNPACK's kernels (``xnn_qs8_qc8w_gemm_...``: int8 products; ``xnn_f32_qs8_vcvt``: float to int8),
LiteRT's reference kernels (``tflite::reference_ops::...``: what XNNPACK did not take) and the thread pool's
waiting (``thread_main``). Loading the model is sampled too; ``--calls`` makes it small. Writes JSON; never a
pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mt5lite.paths import BUILD_DIR


def run_signature(export: Path, role: str, calls: int, threads: int) -> float:
    """Run ``role`` of the TFLite export ``export`` ``calls`` times on random feeds; returns ms per call."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from mt5lite.contract import graph_feeds
    from mt5lite.exporters.onnx.variants import random_feeds
    from mt5lite.manifest import inside, load_manifest
    from mt5lite.runtimes.litert import _Signature

    spec = load_manifest(export).graphs[role]
    interpreter = Interpreter(model_path=str(inside(export, spec.file)), num_threads=threads)
    signature = _Signature(interpreter.get_signature_runner(spec.signature))
    feeds = graph_feeds([t.name for t in spec.inputs], random_feeds(spec))
    feeds = {t.name: np.asarray(feeds[t.name], dtype=t.dtype) for t in spec.inputs}
    for value in feeds.values():
        value.flags.writeable = False  # held in place, as the decoding loop holds its read-only inputs
    for _ in range(5):
        signature(feeds)
    started = time.perf_counter()
    for _ in range(calls):
        signature(feeds)
    return 1000 * (time.perf_counter() - started) / calls


def profile(export: Path, role: str, calls: int, threads: int, top: int, scratch: Path) -> dict:
    """``perf`` over a child process running ``run_signature``: the ``top`` functions by share of samples."""
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("litert_profile: no perf on this machine; install Linux perf (Debian: linux-perf)")
    data = scratch / f".perf-{export.name}-{role}.data"
    child = [sys.executable, "-m", "benchmarks.experiments.litert_profile", str(export), "--role", role,
             "--calls", str(calls), "--threads", str(threads), "--child"]
    try:
        done = subprocess.run([perf, "record", "-q", "-e", "cpu-clock", "-F", "2000", "-o", str(data), "--", *child],
                              capture_output=True, text=True, env={**os.environ, "USE_TF": "0"})
        if done.returncode != 0:
            raise SystemExit(f"litert_profile: perf record failed: {done.stderr.strip().splitlines()[-1:]}")
        ms = float(done.stdout.strip().splitlines()[-1])
        report = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "symbol", "--stdio",
                                 "--percent-limit", "0.5"], capture_output=True, text=True, check=True).stdout
    finally:
        data.unlink(missing_ok=True)
    functions = []
    for line in report.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("%") and parts[1].startswith("["):
            name = " ".join(parts[2:]).removesuffix(" - -").strip()  # perf's empty columns after the symbol
            functions.append({"function": name, "share": round(float(parts[0][:-1]) / 100, 4)})
    return {"export": str(export), "role": role, "threads": threads, "calls": calls, "ms_per_call": round(ms, 3),
            "functions": functions[:top]}


def main() -> None:
    """Profile each export's signature, print and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+", type=Path, help="TFLite export folders")
    parser.add_argument("--role", default="decoder", help="the signature: decoder, decoder_b4, encoder, ...")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "litert-profile.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the process perf samples: prints its ms per call last
        print(run_signature(args.exports[0], args.role, args.calls, args.threads))
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"runs": [profile(export, args.role, args.calls, args.threads, args.top, args.output.parent)
                       for export in args.exports]}
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
