"""The main job as one call: compress -> ONNX export -> int8 -> TFLite (and ExecuTorch) -> the pipeline report,
each stage gated as its command is and reused when nothing it depends on changed (``mt5lite pipeline``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mt5lite.workflow.config import PipelineConfig, load_config
from mt5lite.workflow.runner import PipelineResult, PlannedStage, check, plan, run_pipeline

__all__ = ["PipelineConfig", "PipelineResult", "PlannedStage", "check", "configure", "load_config", "pipeline", "plan",
           "run_pipeline"]


def configure(config: str | os.PathLike | PipelineConfig | None = None, *, model=None, output=None, data=None,
              gate: bool | None = None, threads: int | None = None, allow_pickle: bool | None = None,
              compress: str | list[str] | None = None, int8: str | None = None, tflite: str | None = None,
              executorch: str | None = None, calibration=None, pass_options: dict | None = None
              ) -> PipelineConfig:
    """A ``PipelineConfig``: ``config`` (a TOML file, a config, or the defaults) with the options given here over
    it, as the command line gives them (``int8``/``tflite``/``executorch``: a recipe or precision, ``"none"`` to
    skip the stage; ``calibration``: the calibration file; ``compress``: pass names, comma-separated or a list;
    ``pass_options``: pass name -> its config's fields, over the file's)."""
    from mt5lite.exporters.executorch_export import ExecutorchExportConfig

    base = config if isinstance(config, PipelineConfig) else load_config(config)
    top = {key: value for key, value in (("model", model), ("output", output), ("data", data), ("gate", gate),
                                         ("threads", threads), ("allow_pickle", allow_pickle)) if value is not None}
    top = {key: Path(value) if key in ("model", "output", "data") else value for key, value in top.items()}
    if compress is not None:
        passes = compress.split(",") if isinstance(compress, str) else compress
        top["compress"] = replace(base.compress, passes=tuple(p.strip() for p in passes if p.strip()), recipe="")
    if calibration is not None:
        top["calibration"] = replace(base.calibration, file=Path(calibration))
    if pass_options:
        top["pass_options"] = {name: {**base.pass_options.get(name, {}), **values}
                               for name, values in {**base.pass_options, **pass_options}.items()}
    if int8 is not None:
        top["quantize"] = None if int8 == "none" else replace(base.quantize or load_config().quantize, recipe=int8)
    if tflite is not None:
        top["tflite"] = None if tflite == "none" else replace(base.tflite or load_config().tflite, quantize=tflite)
    if executorch is not None:
        top["executorch"] = None if executorch == "none" else replace(
            base.executorch or ExecutorchExportConfig(), quantize=executorch)
    return replace(base, **top)


def pipeline(config: str | os.PathLike | PipelineConfig | None = None, *, force: bool = False,
             progress: bool = False, announce=None, **options) -> PipelineResult:
    """Run the main job: ``configure(config, **options)``, checked before anything is written, recorded as
    ``<output>/pipeline.toml``, then every stage that cannot be reused (``force``: all of them). A failed quality
    gate raises ``QualityGateError`` naming the stage; ``gate=False`` only reports it."""
    return run_pipeline(configure(config, **options), force=force, progress=progress, announce=announce)
