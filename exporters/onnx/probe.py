"""Read an export's ONNX graph with its weights, or run it with some of its intermediate tensors added as outputs
(calibration-time measurements).

A probed graph is loaded without its external data, which stays in the export's folder and is read from there by ONNX
Runtime: the weights are neither copied nor held twice.
"""

from __future__ import annotations

from pathlib import Path

from mt5lite.errors import ModelFileError
from mt5lite.manifest import inside


def probe_session(model, weights_dir: Path, names: list[str]):
    """An ONNX Runtime session of ``model`` (an ``onnx.ModelProto`` loaded without external data, changed in place)
    whose outputs include the float tensors ``names``; external weights are read from ``weights_dir``."""
    import onnx
    import onnxruntime as ort

    known = {output.name for output in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            known.add(name)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(weights_dir))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def load_with_weights(source: Path):
    """The graph at ``source`` with its external weights, each weight file's location checked first: one outside the
    export's folder (``..``, an absolute path, a symlink out) is refused before anything is read."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    model = onnx.load(str(source), load_external_data=False)
    for tensor in model.graph.initializer:
        location = ExternalDataInfo(tensor).location if uses_external_data(tensor) else None
        if location is None:
            continue
        try:
            inside(source.parent, location)
        except ModelFileError:
            raise ModelFileError(f"{source}: weight {tensor.name} is stored at {location!r}, outside the export's "
                                 "folder; refusing it") from None
    load_external_data_for_model(model, str(source.parent))
    return model
