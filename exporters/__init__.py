"""Exporters: the deployment contract's graphs, ONNX export and its validation."""
