"""Weights stored once: every graph of an export points into one external-data file, a shared weight at one offset.

The encoder and the decoder step both read the token embedding (mt5-small: 250,112 x 512, 512 MB in fp32); stored in
each graph, the export is larger than the checkpoint it came from. Here every initializer of at least ``MIN_BYTES``
is written once to ``weights.bin`` (identical dtype, shape and bytes = one copy, at a page-aligned offset, so ONNX
Runtime can map it) and each graph refers to it by offset. Graphs themselves hold only their structure and small
constants, so no graph nears protobuf's 2 GB limit either.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHTS_FILE = "weights.bin"
#: Initializers smaller than this stay inside their graph (scales, zero points, shapes).
MIN_BYTES = 1024
#: Offsets are multiples of this, so the file can be memory-mapped tensor by tensor.
ALIGNMENT = 4096


def _external_locations(path: Path) -> set[str]:
    """The external-data files the graph at ``path`` refers to now."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
            if entry.key == "location"}


def store_once(directory: Path, graph_files: list[str], weights_file: str = WEIGHTS_FILE) -> dict:
    """Rewrite the ONNX graphs ``graph_files`` in ``directory`` so that each weight of ``MIN_BYTES`` or more lives
    once in ``weights_file``, every graph using it pointing at the same offset; the graphs' previous external-data
    files are removed. Each graph is checked afterwards. Returns what was stored: tensors, unique tensors, bytes."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    directory = Path(directory)
    previous = set().union(*(_external_locations(directory / name) for name in graph_files)) - {weights_file}
    models = {name: onnx.load(str(directory / name), load_external_data=True) for name in graph_files}
    offsets: dict[tuple, tuple[int, int]] = {}
    references = 0
    staging = directory / f".{weights_file}.tmp"
    with open(staging, "wb") as out:
        for model in models.values():
            for tensor in model.graph.initializer:
                if not tensor.HasField("raw_data"):  # typed fields (float_data, ...): store as raw bytes
                    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
                data = tensor.raw_data
                if len(data) < MIN_BYTES:
                    continue
                key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(data).hexdigest())
                if key not in offsets:
                    out.write(b"\0" * (-out.tell() % ALIGNMENT))
                    offsets[key] = (out.tell(), len(data))
                    out.write(data)
                set_external_data(tensor, weights_file, *offsets[key])  # marks it EXTERNAL
                tensor.ClearField("raw_data")
                references += 1
    os.replace(staging, directory / weights_file)
    for name, model in models.items():
        onnx.save_model(model, str(directory / name))
    for name in previous:
        (directory / name).unlink(missing_ok=True)
    for name in graph_files:
        onnx.checker.check_model(str(directory / name), full_check=True)
    stored = sum(length for _, length in offsets.values())
    return {"file": weights_file, "tensors": references, "unique_tensors": len(offsets),
            "bytes": (directory / weights_file).stat().st_size, "tensor_bytes": stored}
