"""TFLite (LiteRT): an ONNX export translated op for op into TensorFlow and converted, down to full int8."""
