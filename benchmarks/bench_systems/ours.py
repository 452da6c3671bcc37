"""Our exports: ONNX fp32, static, dynamic and weight-only int8 on ONNX Runtime; TFLite fp32, fp16 and int8 on
LiteRT; ExecuTorch fp32 and int8 (XNNPACK); all through the project's own decoding loop."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.bench_systems import MAX_NEW_TOKENS, SYSTEMS, System, built
from mt5lite.contract import bucket_length, to_source_length


def _onnx_fp32(checkpoint: Path, work: Path, static: bool = False) -> Path:
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    name = "ours-onnx-static" if static else "ours-onnx-fp32"
    return built(work / name, lambda out: export_onnx(checkpoint, out, OnnxExportConfig(static_shapes=static),
                                                      force=True), checkpoint)


def _onnx_quantized(recipe: str):
    def build(checkpoint: Path, work: Path) -> Path:
        from mt5lite.exporters.quantize.recipes import QuantizeConfig, quantize_export

        source = _onnx_fp32(checkpoint, work)
        return built(work / f"ours-onnx-{recipe}",
                     lambda out: quantize_export(source, out, QuantizeConfig(recipe=recipe), force=True,
                                                 gate=False), checkpoint)
    return build


def _tflite(precision: str):
    def build(checkpoint: Path, work: Path) -> Path:
        from mt5lite.exporters.tflite.export import export_tflite

        source = _onnx_fp32(checkpoint, work, static=True)
        return built(work / f"ours-tflite-{precision}", lambda out: export_tflite(source, out, precision, force=True,
                                                                     gate=False), checkpoint)
    return build


def _executorch(precision: str):
    def build(checkpoint: Path, work: Path) -> Path:
        from mt5lite.exporters.executorch.export import ExecutorchExportConfig, export_executorch

        return built(work / f"ours-executorch-{precision}",
                     lambda out: export_executorch(checkpoint, out, ExecutorchExportConfig(quantize=precision),
                                                   force=True, gate=False), checkpoint)
    return build


class ExportRunner:
    """One of our exports on its engine (ONNX Runtime, LiteRT or ExecuTorch), through the project's decoding loop."""

    def __init__(self, artifact: Path, threads: int):
        from mt5lite.runtimes.generators import open_export

        self.generator = open_export(artifact, threads=threads)
        self.steps: list[int] = []  # one entry per decoder step run (the step hook)
        self.generator.add_step_hook(lambda feeds, outputs: self.steps.append(1))

    def _feeds(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones_like(ids, dtype=np.int64)}
        if self.generator.static_shapes:  # graphs of fixed source lengths: pad to the shortest that holds the input
            feeds = to_source_length(feeds, bucket_length(ids.shape[1], self.generator.source_lengths))
        return feeds["input_ids"], feeds["attention_mask"]

    def forced(self, ids: np.ndarray, new_tokens: int) -> float:
        """Seconds for the encoder and ``new_tokens`` greedy steps of the batch."""
        from benchmarks.timing import forced_decode

        ids, mask = self._feeds(ids)
        return forced_decode(self.generator.stepper, ids, mask, self.generator.decoder.decoder_start_id,
                             new_tokens)[0]

    def beams(self, ids: np.ndarray, new_tokens: int, beams: int) -> tuple[float, int]:
        """(seconds, steps) of the decoding loop's beam search over at most ``new_tokens`` steps (it stops when no
        beam can improve: the steps are counted); a static export runs its batched step for the beams."""
        from mt5lite.runtimes.options import DecodingOptions

        ids, mask = self._feeds(ids)
        self.steps.clear()
        started = time.perf_counter()
        self.generator.decoder.generate(ids, mask, DecodingOptions(num_beams=beams, max_new_tokens=new_tokens))
        return time.perf_counter() - started, len(self.steps)

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        from mt5lite.runtimes.options import DecodingOptions

        return self.generator.generate([text], DecodingOptions(max_new_tokens=MAX_NEW_TOKENS))[0]


for _name, _build, _bytes, _batched in (
    ("ours-onnx-fp32", _onnx_fp32, 4, True),
    ("ours-onnx-static-int8", _onnx_quantized("static-int8"), 1, True),
    ("ours-onnx-dynamic-int8", _onnx_quantized("dynamic-int8"), 1, True),
    ("ours-onnx-weight-int8", _onnx_quantized("weight-int8"), 1 + 4 / 128, True),  # an fp32 scale per 128 weights
    ("ours-tflite-fp32", _tflite("fp32"), 4, False),
    ("ours-tflite-fp16", _tflite("fp16"), 2, False),
    ("ours-tflite-int8", _tflite("int8"), 1, False),
    ("ours-executorch-fp32", _executorch("fp32"), 4, False),
    ("ours-executorch-int8", _executorch("int8"), 1, False),  # the embedding stays fp32: a row per step
):
    SYSTEMS.register(_name, System("ours", _bytes, _build, ExportRunner, _batched))
