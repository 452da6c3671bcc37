"""The fault matrix's corrupted-files row: seeded mutations of every kind of model file, each opened and run by the
toolkit in a worker process, and what happened classified.

A case is drawn from its index alone (``case(seed, index)``): which file (an ONNX graph, the TFLite model, the
checkpoint's ``model.safetensors`` or ``config.json``, a ``spiece.model``, an export's ``manifest.json``), which
mutation (truncation at a random offset, random bit flips, zero length, a Git LFS pointer in its place, a valid file
of another kind, a manifest with edited shapes, names or dtypes) and, for an export's files, whether the manifest is
re-hashed to match (half of them: as a re-export or a tampered folder would; else the hash check alone would catch
everything and the parsers would never be reached).

Each case copies the pristine folder beside the run's output, mutates one file and runs the consumer a user would:
an export is opened and generates a few tokens (ONNX Runtime or LiteRT), a checkpoint is loaded and generates with
PyTorch. Outcomes:

- ``named``: a toolkit error (``Mt5LiteError``) whose message names the mutated file: what the CLI prints as one line;
- ``ran``: the file still parses and generation finished (a bit flip in weights with a matching hash, say);
- ``unnamed``: a toolkit error that does not name the file;
- ``raw``: any other exception: a raw traceback from the CLI;
- ``crash``: the worker process died (a signal, an abort).

Workers run the cases in order and write one JSON line per finished case; when one dies, the case it was running
is a ``crash`` and a new worker goes on from the next case.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

#: file kind -> (folder role, the file's name in that folder).
FILES = {
    "onnx-encoder": ("onnx", "encoder.onnx"),
    "onnx-decoder": ("onnx", "decoder.onnx"),
    "onnx-weights": ("onnx", "weights.bin"),
    "tflite": ("tflite", "model.tflite"),
    "safetensors": ("checkpoint", "model.safetensors"),
    "config": ("checkpoint", "config.json"),
    "spiece-export": ("onnx", "spiece.model"),
    "spiece-checkpoint": ("checkpoint", "spiece.model"),
    "manifest-onnx": ("onnx", "manifest.json"),
    "manifest-tflite": ("tflite", "manifest.json"),
}
MUTATIONS = ("truncate", "bit-flip", "empty", "lfs-pointer", "wrong-kind")
MANIFEST_MUTATIONS = ("truncate", "bit-flip", "empty", "lfs-pointer", "wrong-kind", "edit-shape", "edit-name",
                      "edit-dtype", "edit-length")
OUTCOMES = ("named", "ran", "unnamed", "raw", "crash")
DEFECTS = ("unnamed", "raw", "crash")


def case(seed: int, index: int) -> dict:
    """Case ``index`` of the matrix drawn with ``seed``: its file kind, mutation, re-hash flag and own seed."""
    rng = np.random.default_rng([seed, index])
    kind = list(FILES)[index % len(FILES)]  # every kind in turn: the kinds share the cases evenly
    role, _ = FILES[kind]
    mutations = MANIFEST_MUTATIONS if kind.startswith("manifest") else MUTATIONS
    return {"index": index, "kind": kind, "mutation": str(rng.choice(mutations)),
            "rehash": role != "checkpoint" and not kind.startswith("manifest") and bool(rng.integers(2)),
            "seed": int(rng.integers(2**31))}


def _lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def _edit_manifest(manifest: dict, mutation: str, rng: np.random.Generator) -> None:
    role = str(rng.choice(["encoder", "decoder"]))
    tensors = manifest["graphs"][role]["inputs"] + manifest["graphs"][role]["outputs"]
    tensor = tensors[int(rng.integers(len(tensors)))]
    if mutation == "edit-shape":
        axis = int(rng.integers(len(tensor["shape"])))
        old = tensor["shape"][axis]
        tensor["shape"][axis] = (old + int(rng.integers(1, 5))) if isinstance(old, int) else int(rng.integers(1, 9))
    elif mutation == "edit-name":
        other = tensors[int(rng.integers(len(tensors)))]  # a duplicate name, or a name the contract lacks
        tensor["name"] = other["name"] if other is not tensor else tensor["name"] + "_renamed"
    elif mutation == "edit-dtype":
        tensor["dtype"] = str(rng.choice([d for d in ("float16", "int32", "float32", "int64", "uint8", "object")
                                          if d != tensor["dtype"]]))
    else:  # edit-length: the lengths the host builds its feeds from
        key = str(rng.choice(["max_target_length", "vocab_size", "max_source_length"]))
        manifest[key] = int(manifest[key]) + int(rng.integers(1, 9))


def mutate(folder: Path, spec: dict) -> Path:
    """Apply case ``spec`` to its file in ``folder`` (a private copy); returns the mutated file."""
    role, name = FILES[spec["kind"]]
    path = folder / name
    rng = np.random.default_rng(spec["seed"])
    data = path.read_bytes()
    mutation = spec["mutation"]
    if mutation == "truncate":
        data = data[: int(rng.integers(len(data)))]
    elif mutation == "bit-flip":
        data = bytearray(data)
        for offset in rng.integers(len(data), size=int(rng.integers(1, 9))):
            data[int(offset)] ^= 1 << int(rng.integers(8))
        data = bytes(data)
    elif mutation == "empty":
        data = b""
    elif mutation == "lfs-pointer":
        data = _lfs_pointer(data)
    elif mutation == "wrong-kind":
        others = sorted(p for p in folder.iterdir() if p.is_file() and p.name != name)
        data = others[int(rng.integers(len(others)))].read_bytes()
    else:
        manifest = json.loads(data)
        _edit_manifest(manifest, mutation, rng)
        data = (json.dumps(manifest, indent=2) + "\n").encode()
    path.write_bytes(data)
    if spec["rehash"]:
        manifest_path = folder / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _consume(folder: Path, role: str) -> None:
    """What a user does with the folder: open it and generate a few tokens."""
    from mt5lite.runtimes.options import DecodingOptions

    options = DecodingOptions(max_new_tokens=3)
    if role == "checkpoint":
        from mt5lite.runtimes.torch_reference import TorchReference

        TorchReference(folder, threads=1).generate(["words fr: 12"], options)
    else:
        from mt5lite.runtimes.generators import open_export

        open_export(folder, threads=1).generate(["words fr: 12"], options)


def run_case(spec: dict, pristine: dict[str, Path], scratch: Path) -> dict:
    """Run one case in this process; returns it with its ``outcome`` and the error's first line."""
    from mt5lite.errors import Mt5LiteError

    role, name = FILES[spec["kind"]]
    folder = scratch / f"case-{spec['index']}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine[role], folder)
    try:
        mutate(folder, spec)
        _consume(folder, role)
        outcome, message = "ran", ""
    except Mt5LiteError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        outcome = "named" if name in str(exc) else "unnamed"
    except Exception as exc:  # noqa: BLE001 - what the matrix counts as a raw traceback
        outcome, message = "raw", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**spec, "outcome": outcome, "message": message[:300]}


def run_matrix(pristine: dict[str, Path], scratch: Path, seed: int, count: int, start: int = 0) -> list[dict]:
    """Cases ``start .. start + count - 1`` in worker processes (one at a time, restarted after a crash);
    returns every case with its outcome, in order."""
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    todo = list(range(start, start + count))
    while todo:
        command = [sys.executable, "-m", "tests.fault_matrix", json.dumps({k: str(v) for k, v in pristine.items()}),
                   str(scratch), str(seed), *map(str, todo)]
        env = {**os.environ, "USE_TF": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1])
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                result = json.loads(line)
                results[result["index"]] = result
        remaining = [i for i in todo if i not in results]
        if remaining and remaining == todo and done.returncode == 0:
            raise RuntimeError(f"fault worker finished no case: {done.stderr[-2000:]}")
        if remaining:  # the worker died running the first unfinished case
            crashed = remaining[0]
            tail = (done.stderr.strip().splitlines() or [""])[-1]
            results[crashed] = {**case(seed, crashed), "outcome": "crash",
                                "message": f"exit {done.returncode}: {tail[:300]}"}
            remaining = remaining[1:]
        todo = remaining
    return [results[i] for i in range(start, start + count)]


def summary(results: list[dict]) -> dict:
    """Counts by outcome, overall and per file kind and per mutation."""
    return {"cases": len(results), "outcomes": dict(Counter(r["outcome"] for r in results)),
            "by_kind": {k: dict(Counter(r["outcome"] for r in results if r["kind"] == k)) for k in FILES},
            "by_mutation": {m: dict(Counter(r["outcome"] for r in results if r["mutation"] == m))
                            for m in MANIFEST_MUTATIONS},
            "rehashed": dict(Counter(r["outcome"] for r in results if r["rehash"]))}


def _worker(argv: list[str]) -> None:
    pristine = {k: Path(v) for k, v in json.loads(argv[0]).items()}
    scratch, seed = Path(argv[1]), int(argv[2])
    for index in map(int, argv[3:]):
        print(json.dumps(run_case(case(seed, index), pristine, scratch)), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1:])
