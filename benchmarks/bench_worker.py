"""One benchmarked system in its own process, driven by ``benchmarks.bench`` over a pipe, one JSON request per line.

    python -m benchmarks.bench_worker SYSTEM ARTIFACT THREADS

It loads the system (``bench_systems.SYSTEMS``), answers ``{"ready": ...}`` or ``{"error": "one line"}``, then
serves requests until its input closes. Library output goes to stderr: stdout carries only the answers. Each
system in its own process means no thread pool of one system (ONNX Runtime's spinning workers, OpenMP) runs while
another is timed, and the peak RSS is the system's own.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import numpy as np


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM``, which starts afresh at exec (``ru_maxrss`` keeps
    the parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def beams(runner, request: dict) -> dict:
    """Beam search of ``request``'s ids: ``{"seconds", "steps"}`` (the steps the decoding loop ran), or
    ``{"unsupported": reason}`` from a runner with no ``beams`` (its ``no_beam_search`` says why)."""
    if not hasattr(runner, "beams"):
        return {"unsupported": runner.no_beam_search}
    seconds, steps = runner.beams(np.asarray(request["ids"], dtype=np.int64), request["new_tokens"], request["beams"])
    return {"seconds": seconds, "steps": steps}


OPERATIONS = {
    "forced": lambda runner, r: {"seconds": runner.forced(np.asarray(r["ids"], dtype=np.int64), r["new_tokens"])},
    "beams": beams,
    "greedy": lambda runner, r: {"texts": [runner.greedy(text) for text in r["texts"]]},
    "rss": lambda runner, r: {"peak_rss": peak_rss()},
}


def main(argv: list[str]) -> int:
    """Load the system, then answer requests."""
    name, artifact, threads = argv
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print goes to stderr
    os.environ.setdefault("USE_TF", "0")
    from benchmarks.bench_systems import SYSTEMS, reason
    from mt5lite.runtimes.generators import claim_process

    try:
        claim_process(Path(artifact), int(threads))  # an mt5lite export: this process runs nothing else
        runner = SYSTEMS[name].load(Path(artifact), int(threads))
    except Exception as exc:  # any library's failure to load: one line back to the driver
        answers.write(json.dumps({"error": reason(exc)}) + "\n")
        return 1
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        answers.write(json.dumps(OPERATIONS[request["op"]](runner, request)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
