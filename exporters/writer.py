"""The skeleton every exporter shares: refuse an existing output and read the gate's pairs before any work, stage
the export and its scratch beside the output, copy the tokenizer, seal the manifest, rename into place, then judge
the export by the quality gate. ONNX, quantize, TFLite and ExecuTorch supply only what they write and check."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mt5lite.exporters.result import ExportResult, Validation
from mt5lite.manifest import Manifest, copy_companions, seal_export
from mt5lite.staging import refuse_existing, scratch_directory, staged_directory
from mt5lite.verification.comparison import Gate, resolve_gate


class ExportWriter:
    """One export being written into ``output`` (replaced only with ``force``), with a scratch directory beside it
    for each of ``scratch``'s kinds. ``gate`` (``resolve_gate``: ``True`` is the default gate, ``False``/``None``
    none) judges the export after the rename, against ``reference`` (set before the block ends). Use as a context
    manager: inside it, write into ``staging``; after it, ``result()``. A failure inside the block leaves
    ``output`` as it was and removes the staging and scratch directories."""

    def __init__(self, output: str | os.PathLike, force: bool = False, gate: Gate | bool | None = None,
                 scratch: tuple[str, ...] = ("scratch",)):
        self.output = Path(output)
        self.force = force
        self.gate = resolve_gate(gate)  # its held-out pairs are read before any work: a bad file fails fast
        refuse_existing(self.output, force)
        self._kinds = scratch
        self.reference: Path | None = None  # what the gate compares the export with
        self.staging: Path | None = None  # inside the block: the directory the export is written into
        self.scratch: dict[str, Path] = {}
        self.manifest: Manifest | None = None
        self.validation: Validation | None = None
        self.judged: dict | None = None
        self._scratch_stack = ExitStack()
        self._staging_stack = ExitStack()

    def __enter__(self) -> ExportWriter:
        with ExitStack() as opened:
            opened.enter_context(self._scratch_stack)
            self.scratch = {kind: Path(self._scratch_stack.enter_context(scratch_directory(self.output, kind)))
                            for kind in self._kinds}
            self.staging = Path(self._staging_stack.enter_context(staged_directory(self.output, self.force)))
            opened.pop_all()
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        with self._scratch_stack:  # scratch outlives the rename: the gate may compare with an export kept there
            if self._staging_stack.__exit__(kind, error, traceback) or kind is not None:
                return False
            if self.gate is not None:
                if self.reference is None:
                    raise RuntimeError("ExportWriter: a gated export needs its reference set before the block ends")
                self.judged = self.gate.judge(self.reference, self.output)
        return False

    def seal(self, manifest: Manifest, companions_of: tuple[Path, Manifest] | None = None) -> Manifest:
        """Copy the tokenizer files of the export ``companions_of`` (its directory and manifest) when given, then
        hash every staged file into ``manifest`` and write it; the sealed manifest."""
        if companions_of is not None:
            copy_companions(*companions_of, self.staging)
        self.manifest = seal_export(self.staging, manifest)
        return self.manifest

    def result(self, details: dict[str, Any] | None = None) -> ExportResult:
        """The written export, its sealed manifest, its validation and the gate's verdict."""
        if self.manifest is None:
            raise RuntimeError("ExportWriter: result() before the manifest was sealed")
        return ExportResult(self.output, self.manifest, self.validation, self.judged, details or {})
