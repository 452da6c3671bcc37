"""ONNX: the contract's two graphs exported from PyTorch, with the graph passes every ONNX export gets."""
