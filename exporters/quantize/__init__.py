"""Quantization recipes for an ONNX export: calibration, node groups, int8 and fp16 graph passes."""
