"""Generate with an mt5lite ONNX export on ONNX Runtime. Imports only numpy, onnxruntime and sentencepiece.

    generator = OnnxGenerator("build/onnx", threads=2)
    generator.generate(["words fr: 1234"])  # ['mille deux cent trente-quatre']

Every name, shape, length and special id comes from ``manifest.json``; file hashes are verified before any
session is created.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from mt5lite.contract import LENGTHS, engine_problems
from mt5lite.errors import ModelFileError, first_line
from mt5lite.manifest import MANIFEST_NAME, Manifest, inside, lfs_hint
from mt5lite.runtimes.cpu import arm64_features, missing_features
from mt5lite.runtimes.export_generator import ExportGenerator, GraphBackend
from mt5lite.runtimes.ort_threads import session_options

#: ONNX Runtime's type names -> the manifest's dtypes.
ONNX_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16",
              "tensor(int32)": "int32"}


#: ONNX Runtime's refusals of a graph newer than it reads: (pattern, what the graph has, what ONNX Runtime reads).
NEWER_GRAPH = (
    (re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)"), "IR version"),
    (re.compile(r"Opset (\d+) is under development.*support for domain \S+ is till opset (\d+)", re.S), "opset"),
)


def _load_error(exc: Exception) -> str:
    """ONNX Runtime's load error in one line: for a graph newer than the installed ONNX Runtime, both versions and
    the fix; else its first line."""
    import onnxruntime as ort

    for pattern, what in NEWER_GRAPH:
        if found := pattern.search(str(exc)):
            return (f"the graph has {what} {found[1]}, the installed ONNX Runtime {ort.__version__} reads up to "
                    f"{found[2]}: upgrade onnxruntime, or export with the toolkit that runs here")
    return first_line(exc)


def slow_kernel_warning(manifest: Manifest, features: set[str] | None) -> str | None:
    """The one line that says an export's int8 kernels are missing on a CPU with ``features`` (``arm64_features``):
    its recipe's ``arm64_needs`` that the CPU lacks, and what to use instead; None when nothing is missing."""
    quantization = manifest.quantization
    missing = missing_features(list(quantization.details.get("arm64_needs", ())) if quantization else [], features)
    if not missing:
        return None
    return (f"this CPU lacks {', '.join(missing)} (arm64 dot-product instructions; a Cortex-A72 or A53, e.g. Raspberry "
            f"Pi 4 or 3), which the {quantization.recipe} export's int8 kernels need: ONNX Runtime then dequantizes "
            "every weight at every step, many times slower; on this CPU use a static-int8 export (mt5lite quantize "
            "--recipe static-int8) or full-int8 TFLite")


def _stamp_problems(session, manifest: Manifest) -> list[str]:
    """How the lengths the exporter stamped into the graph's metadata differ from the manifest's (a dynamic graph's
    shapes do not show them)."""
    stamped = session.get_modelmeta().custom_metadata_map
    lengths = {key: getattr(manifest, key) for key in LENGTHS}
    return [f"it was exported with {key} {stamped[f'mt5lite.{key}']}, the manifest says {value}"
            for key, value in lengths.items() if stamped.get(f"mt5lite.{key}", str(value)) != str(value)]


class OnnxBackend(GraphBackend):
    """The graphs of an export as ONNX Runtime sessions (the ``StepBackend`` of ``mt5lite.runtimes.decoding``).

    The encoder and the decoder step load at once, so a bad file fails here; a static export's further graphs
    (batched steps, source-length buckets) load when first run, since each session packs the weights it reads for
    itself."""

    def __init__(self, export_dir: str | os.PathLike, manifest: Manifest, threads: int | None = None):
        self.root, self.manifest, self.specs = Path(export_dir), manifest, manifest.graphs
        self.options = session_options(threads)
        if warning := slow_kernel_warning(manifest, arm64_features()):
            warnings.warn(warning, stacklevel=2)
        self.sessions, self.paths = {}, {}
        self.outputs = {role: [t.name for t in graph.outputs] for role, graph in manifest.graphs.items()}
        self.max_target_length = manifest.max_target_length
        self.vocab_size = manifest.vocab_size
        for role in ("encoder", "decoder"):
            self.session(role)

    def session(self, role: str):
        """The ONNX Runtime session of graph ``role``, loaded and checked against the manifest on first use."""
        if role in self.sessions:
            return self.sessions[role]
        import onnxruntime as ort

        graph = self.manifest.graphs[role]
        path = self.paths[role] = inside(self.root, graph.file)
        weights = "".join(f" (with {name})" for name in graph.external_data)
        try:
            session = ort.InferenceSession(str(path), self.options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors; name the files and stop
            hint = next((h for n in graph.files if (h := lfs_hint(inside(self.root, n)))), "")
            raise ModelFileError(f"{path}{weights}: ONNX Runtime cannot load it ({_load_error(exc)}){hint}") from None
        found = {t.name: (ONNX_TYPES.get(t.type, t.type), list(t.shape))
                 for t in session.get_inputs() + session.get_outputs()}
        problems = engine_problems(graph, found) + _stamp_problems(session, self.manifest)
        if problems:
            raise ModelFileError(f"{path}: does not match {self.root / MANIFEST_NAME}: " + "; ".join(problems))
        self.sessions[role] = session
        return session

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.outputs[role]
        session = self.session(role)
        try:
            results = session.run(names, feeds)
        except Exception as exc:  # feeds follow the verified manifest: a failure is the graph file's
            raise ModelFileError(f"{self.paths[role]}: ONNX Runtime failed running it ({first_line(exc)})") from None
        return dict(zip(names, results, strict=True))


class OnnxGenerator(ExportGenerator):
    """Tokenize, decode (greedy or beam search) and detokenize with an ONNX export on ONNX Runtime."""

    def _backend(self, manifest: Manifest, threads: int | None) -> OnnxBackend:
        return OnnxBackend(self.root, manifest, threads)
