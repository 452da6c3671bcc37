"""PyTorch eager: transformers' ``generate``, fp32 and dynamically quantized int8."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.bench_systems import MAX_NEW_TOKENS, SYSTEMS, System
from mt5lite.runtimes.tokenizer import Tokenizer


class TorchRunner:
    """transformers' ``generate`` in PyTorch eager mode, fp32 or dynamically quantized to int8."""

    def __init__(self, artifact: Path, threads: int, dynamic_int8: bool = False):
        import torch

        from mt5lite.checkpoint import load_model

        torch.set_num_threads(threads)
        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.model = load_model(artifact)
        if dynamic_int8:
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)

    def _generate(self, ids: np.ndarray, num_beams: int = 1, **options):
        import torch

        with torch.inference_mode():
            return self.model.generate(input_ids=torch.from_numpy(ids.astype(np.int64)), do_sample=False,
                                       num_beams=num_beams, **options)

    def forced(self, ids: np.ndarray, new_tokens: int, num_beams: int = 1) -> float:
        """Seconds for ``generate`` of exactly ``new_tokens`` tokens."""
        started = time.perf_counter()
        self._generate(ids, num_beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        return time.perf_counter() - started

    def beams(self, ids: np.ndarray, new_tokens: int, beams: int) -> tuple[float, int]:
        """(seconds, steps) of ``generate``'s beam search held to exactly ``new_tokens`` steps."""
        return self.forced(ids, new_tokens, beams), new_tokens

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        out = self._generate(np.asarray([self.tokenizer.encode(text)]), max_new_tokens=MAX_NEW_TOKENS)
        return self.tokenizer.decode(out[0].tolist()[1:])  # without the decoder start token


SYSTEMS.register("pytorch-fp32", System("PyTorch", 4, lambda checkpoint, work: checkpoint, TorchRunner))
SYSTEMS.register("pytorch-dynamic-int8", System(
    "PyTorch", 1, lambda checkpoint, work: checkpoint,
    lambda artifact, threads: TorchRunner(artifact, threads, dynamic_int8=True)))
