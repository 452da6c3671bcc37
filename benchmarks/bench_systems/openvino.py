"""OpenVINO through optimum-intel (fp32, and 8-bit weights), in its own environment."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.bench_systems import SYSTEMS, System, built
from benchmarks.bench_systems.pytorch import TorchRunner
from mt5lite.runtimes.tokenizer import Tokenizer

EXPORT_OPENVINO = """
import sys
from optimum.intel import OVModelForSeq2SeqLM, OVWeightQuantizationConfig
bits = int(sys.argv[3])
config = OVWeightQuantizationConfig(bits=8) if bits == 8 else None  # None and no 8-bit loading: fp32 weights
OVModelForSeq2SeqLM.from_pretrained(sys.argv[1], export=True, quantization_config=config,
                                    load_in_8bit=False).save_pretrained(sys.argv[2])
"""


def _openvino(bits: int):
    def build(checkpoint: Path, work: Path) -> Path:
        from benchmarks.peer_envs import python, run_command

        interpreter = python("openvino")

        def export(out: Path) -> None:
            run_command([interpreter, "-c", EXPORT_OPENVINO, checkpoint, out, bits], "optimum-intel's OpenVINO export")
            shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")
        return built(work / f"openvino-{'int8' if bits == 8 else 'fp32'}", export, checkpoint)
    return build


class OpenVinoRunner(TorchRunner):
    """optimum-intel's ``OVModelForSeq2SeqLM`` on OpenVINO's CPU plugin (``generate`` from transformers)."""

    def __init__(self, artifact: Path, threads: int):
        from optimum.intel import OVModelForSeq2SeqLM

        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.model = OVModelForSeq2SeqLM.from_pretrained(
            artifact, ov_config={"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"})


SYSTEMS.register("openvino-fp32", System("OpenVINO", 4, _openvino(32), OpenVinoRunner, environment="openvino"))
SYSTEMS.register("openvino-int8", System("OpenVINO", 1, _openvino(8), OpenVinoRunner, environment="openvino"))
