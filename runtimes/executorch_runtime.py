"""Generate with an mt5lite ExecuTorch export (``.pte``) on ExecuTorch's Python runtime (``executorch.runtime``).

    generator = ExecutorchGenerator("build/executorch", threads=2)
    generator.generate(["words fr: 1234"])  # ['mille deux cent trente-quatre']

The graphs are the contract's (static shapes, batch 1): one ``model.pte`` holds an ``encoder`` and a ``decoder``
method, which share their common weights; the manifest names each graph's file and method, and the tensors of a
method are its inputs and outputs in the manifest's order (an ExecuTorch method has no tensor names). Each method's
input and output shapes and dtypes are checked against the manifest when the file is loaded.

ExecuTorch's Python bindings link libtorch: this runtime needs torch installed (``mt5lite[executorch]``), unlike
the ONNX Runtime and LiteRT ones. A method is not thread-safe, so each thread loads its own.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mt5lite.contract import ROLES, GraphSpec, engine_problems
from mt5lite.errors import ModelFileError, first_line
from mt5lite.manifest import MANIFEST_NAME, Manifest, inside, lfs_hint
from mt5lite.quiet import quiet_third_party_logs
from mt5lite.runtimes.export_generator import ExportGenerator, GraphBackend
from mt5lite.runtimes.torch_arrays import shared_tensor

#: ExecuTorch's ScalarType codes -> the manifest's dtypes.
SCALAR_TYPES = {3: "int32", 4: "int64", 5: "float16", 6: "float32"}
_NATIVE_LOG = threading.Lock()


@contextmanager
def native_log():
    """Collect what ExecuTorch's C++ runtime writes to stderr (file descriptor 2) while the block runs, instead of
    letting it reach the terminal; yields a list that holds its non-empty lines afterwards."""
    lines: list[str] = []
    with _NATIVE_LOG:
        read, write = os.pipe()
        saved = os.dup(2)
        chunks: list[bytes] = []
        drain = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read, 65536), b"")), daemon=True)
        drain.start()
        os.dup2(write, 2)
        os.close(write)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)  # closes the pipe's last write end: the drain sees end of file
            os.close(saved)
            drain.join()
            os.close(read)
            lines += [line.strip() for line in b"".join(chunks).decode("utf-8", "replace").splitlines()
                      if line.strip()]


def _reason(exc: Exception, log: list[str]) -> str:
    """ExecuTorch's error in one line: its native log's last line (the cause) beside the Python message."""
    cause = next((line for line in reversed(log) if "cpuinfo" not in line), "")
    return f"{first_line(exc)}: {cause}" if cause else first_line(exc)


class ExecutorchBackend(GraphBackend):
    """The two methods of an ExecuTorch export (the ``StepBackend`` of ``mt5lite.runtimes.decoding``), one loaded
    program per thread."""

    def __init__(self, export_dir: str | os.PathLike, manifest: Manifest, threads: int | None = None):
        self.root = Path(export_dir)
        self.specs = manifest.graphs
        self.max_target_length = manifest.max_target_length
        self.vocab_size = manifest.vocab_size
        quiet_third_party_logs()
        if threads:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            with native_log():  # it logs the reset
                _unsafe_reset_threadpool(threads)  # XNNPACK's threadpool is one per process
        self._local = threading.local()
        self._methods()  # load once now, so a bad file fails here, not at the first step

    def _methods(self) -> dict:
        methods = getattr(self._local, "methods", None)
        if methods is None:
            import executorch.kernels.quantized  # noqa: F401  (int8 exports' embedding_byte lookups)
            from executorch.runtime import Runtime, Verification

            runtime, programs, methods = Runtime.get(), {}, {}
            for role in ROLES:
                spec = self.specs[role]
                path = inside(self.root, spec.file)
                if not spec.method:
                    raise ModelFileError(f"{self.root}: the manifest names no method for the {role} graph; "
                                         "re-export the model")
                with native_log() as log:
                    try:
                        if path not in programs:
                            programs[path] = runtime.load_program(path, verification=Verification.InternalConsistency)
                        methods[role] = programs[path].load_method(spec.method)
                    except (RuntimeError, ValueError) as exc:
                        failure = _reason(exc, log)
                    else:
                        failure = None
                if failure:
                    raise ModelFileError(f"{path}: ExecuTorch cannot load its {spec.method!r} method "
                                         f"({failure}){lfs_hint(path)}")
                meta = methods[role].metadata
                counts = {"inputs": meta.num_inputs(), "outputs": meta.num_outputs()}
                problems = [f"it has {count} {kind}, the manifest {len(getattr(spec, kind))}"
                            for kind, count in counts.items() if count != len(getattr(spec, kind))]
                problems = problems or engine_problems(spec, self._found(spec, meta))
                if problems:
                    raise ModelFileError(f"{path}: its {spec.method!r} method does not match "
                                         f"{self.root / MANIFEST_NAME}: " + "; ".join(problems))
            self._local.methods = methods
        return methods

    @staticmethod
    def _found(spec: GraphSpec, meta) -> dict[str, tuple[str, list]]:
        """The method's tensors by the manifest's names (in its order), as (dtype, shape)."""
        found = {}
        for kind, tensor_meta in (("inputs", meta.input_tensor_meta), ("outputs", meta.output_tensor_meta)):
            for index, name in enumerate(t.name for t in getattr(spec, kind)):
                tensor = tensor_meta(index)
                found[name] = (SCALAR_TYPES.get(tensor.dtype(), f"scalar type {tensor.dtype()}"), list(tensor.sizes()))
        return found

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.specs[role]
        inputs = [shared_tensor(np.ascontiguousarray(feeds[t.name], dtype=t.dtype)) for t in spec.inputs]
        try:  # not inside native_log: it would cost every step a pipe and a thread
            outputs = self._methods()[role].execute(inputs)
        except (RuntimeError, ValueError) as exc:  # feeds follow the verified manifest: a failure is the file's
            raise ModelFileError(f"{inside(self.root, spec.file)}: ExecuTorch failed running its "
                                 f"{spec.method!r} method ({first_line(exc)})") from None
        return {t.name: output.numpy() for t, output in zip(spec.outputs, outputs, strict=True)}



class ExecutorchGenerator(ExportGenerator):
    """Tokenize, decode (greedy or beam search) and detokenize with an ExecuTorch export."""

    def _backend(self, manifest: Manifest, threads: int | None) -> ExecutorchBackend:
        return ExecutorchBackend(self.root, manifest, threads)
