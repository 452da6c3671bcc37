"""A TFLite model (``schema.ModelT``) written back to bytes, each identical numeric vector stored once.

Every signature of the one ``.tflite`` has its own tensors, and each quantized tensor its own quantization vectors.
The decoder signatures (``decoder``, ``decoder_b4``, the source-length buckets) quantize the same weights the same
way, so they hold the same per-channel scales and zero points: for mt5's lm_head, 250,112 float32 scales and as
many int64 zero points, 3 MB per signature. A FlatBuffer may point several tables at one vector, so ``pack`` writes
each distinct vector of numbers once and points every table that holds it there. Byte buffers (the weights) are
left as they are: TensorFlow's converter already stores each distinct one once.
"""

from __future__ import annotations

import hashlib


def pack(model, size_hint: int) -> bytes:
    """``model`` (a ``ModelT``) as a ``.tflite`` flatbuffer, every identical vector of numbers wider than a byte
    (scales, zero points, shapes, ...) stored once; ``size_hint`` is the expected size in bytes."""
    import flatbuffers

    class OnceBuilder(flatbuffers.Builder):
        """A builder that writes each distinct vector of numbers once (the generated ``Pack`` methods write numpy
        vectors through ``CreateNumpyVector``)."""

        __slots__ = ("written",)

        def __init__(self, size: int):
            super().__init__(size)
            self.written = {}

        def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
            if x.dtype.itemsize == 1:  # byte buffers: the weights, already stored once
                return super().CreateNumpyVector(x)
            key = (x.dtype.str, x.shape, hashlib.sha256(x.tobytes()).digest())
            if key not in self.written:
                self.written[key] = super().CreateNumpyVector(x)
            return self.written[key]

    builder = OnceBuilder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
