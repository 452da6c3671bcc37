"""`make bench`: our exports against what users would pick instead, on the same work, in one run.

    python -m benchmarks.bench [--models demo mt5-small ...] [--systems ...] [--threads 2] [--inputs 8]

For each model (``MODELS``) every system (``bench_systems.SYSTEMS``) is built from the same checkpoint (cached under
``build/bench/<model>/``) and loaded in its own worker process. Then, warm-up first, every system takes its turn
input by input:

- batch 1: 32 source tokens, exactly 32 greedy tokens (forced: the weights may be random) -> ms per token;
- beam search, 4 beams, on the same inputs (at most 32 steps) -> ms per generated token (per step of the decoding
  loop, encoder included), and its multiple of greedy; a system with no beam search keeps the reason instead;
- time to first token (encoder + one step) for 8, 16, 32 and 128 source tokens (a static export runs the shortest
  source-length bucket that holds the input), and the 16-token figure's share of the 128-token one;
- batch 8 (32 x 32) -> tokens per second;
- batch 1 again, each system alone (all its inputs in a row): its median alone and in the rotation must agree
  within the noise, or one system is slowing another;
- on trained models, greedy decoding of held-out pairs: agreement with PyTorch fp32's text and exact match.

The floor: this machine's read bandwidth (1 and 2 threads, measured in the run) and the bytes of weights one decoded
token reads (decoder layers and ``lm_head``, at the system's bytes per weight) give each system's floor in ms per
token, and each system is reported as a multiple of it. Writes ``build/bench/bench.json`` (one record per model,
system and batch), ``bench.md`` and two PNG plots. Never a pass/fail on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.bench_report import write_report
from benchmarks.bench_systems import SYSTEMS, Unavailable, reason
from benchmarks.models import lite_stages, mt5_small, training_file, trimmed_mt5_small
from benchmarks.peer_envs import python as peer_python
from mt5lite.data import HELDOUT_SENTENCES, HELDOUT_TASK, read_sentences, read_task_pairs
from mt5lite.paths import BUILD_DIR, DEMO_MODEL
from mt5lite.registry import Registry
from mt5lite.verification.comparison import directory_bytes

REPO = Path(__file__).resolve().parents[1]
SOURCE_TOKENS, NEW_TOKENS, BATCH, BEAMS = 32, 32, 8, 4
#: Input lengths in tokens (eos included) whose time to first token is measured.
FIRST_TOKEN_LENGTHS = (8, 16, 32, 128)
#: Seconds between two turns: thread pools that spin after a run (ONNX Runtime's, OpenMP's) go to sleep before the
#: next system starts, so no system is timed against another's spinning threads.
SETTLE = 0.05


def _student() -> Path:
    work = BUILD_DIR / "lite"
    return lite_stages(work, training_file(work / "train.tsv"), 2500, read_task_pairs(HELDOUT_TASK))["student"]


#: name -> (checkpoint maker, trained: whether quality is measured)
MODELS: Registry[tuple] = Registry("benchmark model", {
    "demo": (lambda: DEMO_MODEL, True),
    "mt5-small": (mt5_small, False),
    "mt5-small-trimmed": (lambda: trimmed_mt5_small(mt5_small(), BUILD_DIR / "trim-mt5-small"), False),
    "student": (_student, True),
})


# --- the floor ---------------------------------------------------------------------------------------------------


#: numpy reductions that read a buffer once, as (name, function of a 64-bit word array). The float32 sum alone
#: (the floor before 2026-12-05) is bound by its own arithmetic near 33-35 GB/s on 2 cores of this AMD EPYC: at a
#: quiet moment it read 33 where counting nonzero words read 52 and ONNX Runtime's float32 matrix-vector product 44,
#: so the floor was too slow and every "x floor" too flattering. At a busy moment all of them read about 35. One
#: thread: the sum 22-23 GB/s, the or of words 31. The floor takes the fastest reader.
READERS = (
    ("float32 sum", lambda words: np.add.reduce(words.view(np.float32))),
    ("nonzero 64-bit words", np.count_nonzero),
    ("or of 64-bit words", np.bitwise_or.reduce),
)


def read_bandwidth(threads: int, megabytes: int = 1024, repeats: int = 5) -> float:
    """Bytes per second this machine reads with ``threads`` threads: the fastest of ``READERS`` over a buffer far
    larger than the caches, split among the threads (numpy releases the GIL in each; best of ``repeats``)."""
    data = np.ones(megabytes * 2**20 // 4, dtype=np.float32).view(np.uint64)  # normal floats: no denormal stalls
    parts = np.array_split(data, threads)
    best = float("inf")
    for _, reader in READERS:
        for _ in range(repeats):
            workers = [threading.Thread(target=reader, args=(part,)) for part in parts]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            best = min(best, time.perf_counter() - started)
    return data.nbytes / best


def floor_ms(config: dict, weight_bytes: float, bandwidth: float) -> float:
    """The floor of one decoder step in ms: the bytes of the weights it reads (``weights_per_token`` at
    ``weight_bytes`` each) over ``bandwidth`` (bytes per second)."""
    return 1000 * weights_per_token(config) * weight_bytes / bandwidth


def weights_per_token(config: dict) -> int:
    """Weights one decoder step reads: each decoder layer's self-attention, cross-attention query and output
    (cross K/V are computed once per input), feed-forward, plus the ``lm_head``."""
    d, inner, d_ff = config["d_model"], config["num_heads"] * config["d_kv"], config["d_ff"]
    gated = config.get("feed_forward_proj", "relu").startswith("gated")
    layer = 6 * d * inner + (3 if gated else 2) * d * d_ff
    layers = config.get("num_decoder_layers") or config["num_layers"]
    return layers * layer + config["vocab_size"] * d


# --- inputs ------------------------------------------------------------------------------------------------------


def source_ids(tokenizer, tokens: int, count: int) -> list[list[int]]:
    """``count`` inputs of exactly ``tokens`` ids (held-out sentences run together, cut, eos last)."""
    stream = [i for s in read_sentences(HELDOUT_SENTENCES) for i in tokenizer.encode(s.text)[:-1]]
    step = max(1, (len(stream) - tokens) // count)
    return [stream[k * step : k * step + tokens - 1] + [tokenizer.eos_id] for k in range(count)]


# --- workers -----------------------------------------------------------------------------------------------------


class Worker:
    """A system loaded in its own process (``python -m benchmarks.bench_worker``, the checkout on its path)."""

    def __init__(self, name: str, artifact: Path, threads: int, log: Path, interpreter: str = sys.executable):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "USE_TF": "0",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.name, self.log = name, log
        self.process = subprocess.Popen([str(interpreter), "-m", "benchmarks.bench_worker", name,
                                         str(artifact), str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log.open("w"), text=True, env=env)
        answer = self._answer()
        if "error" in answer:
            raise Unavailable(answer["error"])

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait()
            last = [x for x in self.log.read_text(errors="replace").splitlines() if x.strip()][-1:] or ["no output"]
            raise Unavailable(f"the worker stopped (exit status {status}): {last[0][:200]} (log: {self.log})")
        return json.loads(line)

    def ask(self, op: str, **request) -> dict:
        """Send one request, wait for its answer."""
        self.process.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        """End the process."""
        self.process.stdin.close()
        self.process.wait()


def _turns(workers: dict, requests: list[dict], failures: dict, key: str | None = "seconds") -> dict[str, list]:
    """Every request, each worker in turn (input by input): each answer's ``key`` (``None``: the whole answer) by
    worker. A worker that fails leaves ``workers`` and its reason goes to ``failures``."""
    results = {name: [] for name in workers}
    for request in requests:
        for name, worker in list(workers.items()):
            time.sleep(SETTLE)
            try:
                answer = worker.ask(**request)
                results[name].append(answer if key is None else answer[key])
            except Unavailable as exc:
                del workers[name]
                failures[name] = f"failed while decoding: {exc}"
    return results


def _build(systems: list[str], checkpoint: Path, work: Path, records: dict) -> dict[str, Path]:
    """Every system's artifact (built once, cached under ``work``); a system that cannot be built keeps its record
    with the reason."""
    artifacts = {}
    for name in systems:
        started = time.perf_counter()
        try:
            artifacts[name] = SYSTEMS[name].build(checkpoint, work)
            records[name].update(build_seconds=time.perf_counter() - started, bytes=directory_bytes(artifacts[name]))
        except Exception as exc:  # a peer that cannot be built stays in the table with its reason
            records[name]["unavailable"] = reason(exc)
        print(f"{records[name]['model']}/{name}: {records[name].get('unavailable', 'built')}", flush=True)
    return artifacts


def _load(artifacts: dict[str, Path], threads: int, work: Path, records: dict) -> dict[str, Worker]:
    """A worker process per built system, started after every build (conversions run with no worker alive)."""
    workers = {}
    for name, artifact in artifacts.items():
        environment = SYSTEMS[name].environment
        try:
            interpreter = peer_python(environment) if environment else sys.executable
            workers[name] = Worker(name, artifact, threads, work / f"{name}.log", interpreter)
        except Exception as exc:  # a peer that cannot be loaded stays in the table with its reason
            records[name]["unavailable"] = reason(exc)
    return workers


def _measure(workers: dict[str, Worker], tokenizer, inputs: int, pairs) -> tuple[dict, dict]:
    """Every measurement, the systems taking turns; returns the samples by measure and system, and the failures."""
    short = source_ids(tokenizer, SOURCE_TOKENS, inputs)
    failures: dict[str, str] = {}
    _turns(workers, [{"op": "forced", "ids": [short[0]], "new_tokens": 4},  # warm-up
                     {"op": "beams", "ids": [short[0]], "new_tokens": 4, "beams": BEAMS}], failures, key=None)
    batch1 = [{"op": "forced", "ids": [ids], "new_tokens": NEW_TOKENS} for ids in short]
    samples = {
        "rotation": _turns(workers, batch1, failures),
        "beams": _turns(workers, [{"op": "beams", "ids": [ids], "new_tokens": NEW_TOKENS, "beams": BEAMS}
                                  for ids in short], failures, key=None),
        "first_token": {length: _turns(workers, [{"op": "forced", "ids": [ids], "new_tokens": 1}
                                                 for ids in source_ids(tokenizer, length, inputs)], failures)
                        for length in FIRST_TOKEN_LENGTHS},
        "batch8": _turns({name: w for name, w in workers.items() if SYSTEMS[name].batched},
                         [{"op": "forced", "ids": [short[(k + j) % inputs] for j in range(BATCH)],
                           "new_tokens": NEW_TOKENS} for k in range(max(2, inputs // BATCH))], failures),
        "alone": {name: _turns({name: worker}, batch1, failures)[name] for name, worker in dict(workers).items()},
        "quality": _turns(workers, [{"op": "greedy", "texts": [p.source for p in pairs]}], failures, key="texts")
        if pairs else {},
    }
    return samples, failures


def _beam_columns(answers: list[dict], greedy_ms: float) -> dict:
    """A system's beam-search columns from its ``beams`` answers: median ms per generated token (seconds over the
    steps the loop ran) and its multiple of greedy ``greedy_ms``; or why it has none."""
    if "unsupported" in answers[0]:
        return {"beam_search": answers[0]["unsupported"]}
    ms = statistics.median(1000 * a["seconds"] / a["steps"] for a in answers)
    return {f"beam{BEAMS}_ms_per_token": ms, f"beam{BEAMS}_over_greedy": ms / greedy_ms,
            f"beam{BEAMS}_steps": statistics.median(a["steps"] for a in answers)}


def _rows(record: dict, samples: dict, peak_rss: int, pairs) -> list[dict]:
    """The batch-1 record (and the batch-8 one) of a system that ran."""
    name = record["system"]
    ms = 1000 * statistics.median(samples["rotation"][name]) / NEW_TOKENS
    first = {str(length): 1000 * statistics.median(times[name]) for length, times in samples["first_token"].items()}
    row = {**record, "batch": 1, "ms_per_token": ms,
           "ms_per_token_alone": 1000 * statistics.median(samples["alone"][name]) / NEW_TOKENS,
           "first_token_ms": first, "first_token_16_over_128": first["16"] / first["128"],
           "floor_multiple": ms / record["floor_ms_per_token"], "peak_rss_bytes": peak_rss,
           **_beam_columns(samples["beams"][name], ms)}
    if pairs:
        texts, reference = samples["quality"][name][0], samples["quality"].get("pytorch-fp32", [None])[0]
        row["exact_match"] = sum(t == p.target for t, p in zip(texts, pairs, strict=True)) / len(pairs)
        if reference:
            row["greedy_agreement"] = sum(a == b for a, b in zip(texts, reference, strict=True)) / len(pairs)
    rows = [row]
    if name in samples["batch8"]:
        seconds = statistics.median(samples["batch8"][name])
        rows.append({**record, "batch": BATCH, "tokens_per_second": BATCH * NEW_TOKENS / seconds,
                     "ms_per_token": 1000 * seconds / NEW_TOKENS})
    return rows


def bench_model(model: str, systems: list[str], threads: int, inputs: int, quality_pairs: int,
                bandwidth: float) -> list[dict]:
    """Build, load and measure every system on one model; one record per (system, batch)."""
    from mt5lite.runtimes.tokenizer import Tokenizer

    make, trained = MODELS[model]
    checkpoint = make()
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    weights = weights_per_token(config)
    work = BUILD_DIR / "bench" / model
    work.mkdir(parents=True, exist_ok=True)
    records = {name: {"model": model, "system": name, "family": SYSTEMS[name].family,
                      "weight_bytes": SYSTEMS[name].weight_bytes, "weights_per_token": weights,
                      "floor_ms_per_token": floor_ms(config, SYSTEMS[name].weight_bytes, bandwidth)}
               for name in systems}
    workers = _load(_build(systems, checkpoint, work, records), threads, work, records)
    pairs = []
    if trained:
        pairs = read_task_pairs(HELDOUT_TASK)
        pairs = pairs[:: max(1, len(pairs) // quality_pairs)][:quality_pairs]
    samples, failures = _measure(workers, Tokenizer(checkpoint / "spiece.model"), inputs, pairs)
    for name, why in failures.items():
        records[name]["unavailable"] = why
        if name in workers:
            workers.pop(name).process.kill()
    out = []
    for name, record in records.items():
        if name in workers:
            out += _rows(record, samples, workers[name].ask("rss")["peak_rss"], pairs)
        else:
            out.append({**record, "batch": 1})
    for worker in workers.values():
        worker.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure every model and system, write JSON, Markdown and plots."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=8, help="inputs per measurement (batch 1)")
    parser.add_argument("--quality-pairs", type=int, default=200, help="held-out pairs decoded on trained models")
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "bench")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_TF", "0")

    bandwidth = {str(t): read_bandwidth(t) for t in sorted({1, args.threads})}
    print("read bandwidth: " + ", ".join(f"{t} thread(s) {b / 1e9:.1f} GB/s" for t, b in bandwidth.items()))
    records = []
    for model in args.models:
        records += bench_model(model, args.systems, args.threads, args.inputs, args.quality_pairs,
                               bandwidth[str(args.threads)])
    result = {"date": date.today().isoformat(), "threads": args.threads, "inputs": args.inputs,
              "source_tokens": SOURCE_TOKENS, "new_tokens": NEW_TOKENS, "beams": BEAMS,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count()},
              "read_bandwidth_bytes_per_second": bandwidth, "records": records}
    write_report(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
