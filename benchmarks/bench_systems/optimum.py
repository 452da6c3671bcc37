"""optimum-onnx's ``ORTModelForSeq2SeqLM``: its own ONNX export, fp32 and dynamic int8 (its quantizer)."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.bench_systems import SYSTEMS, System, Unavailable, built
from benchmarks.bench_systems.pytorch import TorchRunner
from mt5lite.runtimes.tokenizer import Tokenizer

OPTIMUM_FILES = ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx")


def _optimum_fp32(checkpoint: Path, work: Path) -> Path:
    def make(out: Path) -> None:
        try:
            from optimum.onnxruntime import ORTModelForSeq2SeqLM
        except ImportError as exc:
            raise Unavailable(f"optimum-onnx is not installed ({exc})") from None
        ORTModelForSeq2SeqLM.from_pretrained(checkpoint, export=True).save_pretrained(out)
        shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")
    return built(work / "optimum-fp32", make, checkpoint)


def _optimum_dynamic_int8(checkpoint: Path, work: Path) -> Path:
    source = _optimum_fp32(checkpoint, work)

    def make(out: Path) -> None:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        config = AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
        shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.onnx"))
        for name in OPTIMUM_FILES:
            scratch = out / f".{name}.quantized"
            ORTQuantizer.from_pretrained(source, file_name=name).quantize(save_dir=scratch,
                                                                          quantization_config=config)
            quantized = next(scratch.glob("*.onnx"))
            quantized.rename(out / name)
            shutil.rmtree(scratch)
    return built(work / "optimum-dynamic-int8", make, checkpoint)


class OptimumRunner(TorchRunner):
    """optimum-onnx's ``ORTModelForSeq2SeqLM`` (ONNX Runtime sessions, ``generate`` from transformers)."""

    def __init__(self, artifact: Path, threads: int):
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSeq2SeqLM

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.model = ORTModelForSeq2SeqLM.from_pretrained(artifact, session_options=options,
                                                          provider="CPUExecutionProvider")


SYSTEMS.register("optimum-onnx-fp32", System("optimum-onnx", 4, _optimum_fp32, OptimumRunner))
SYSTEMS.register("optimum-onnx-dynamic-int8", System("optimum-onnx", 1, _optimum_dynamic_int8, OptimumRunner))
