"""Runtimes: the tokenizer, the manifest, the decoding loop and its backends (ONNX Runtime, PyTorch reference)."""
