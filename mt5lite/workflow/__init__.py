"""The main job as one call: compress -> ONNX export -> int8 -> TFLite (and ExecuTorch) -> the pipeline report,
each stage gated as its command is and reused when nothing it depends on changed (``mt5lite pipeline``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mt5lite.errors import InputError
from mt5lite.workflow.config import TOP_LEVEL, PipelineConfig, load_config
from mt5lite.workflow.runner import PipelineResult, PlannedStage, check, plan, run_pipeline

__all__ = ["PipelineConfig", "PipelineResult", "PlannedStage", "check", "configure", "load_config", "pipeline", "plan",
           "run_pipeline"]


def configure(config: str | os.PathLike | PipelineConfig | None = None, *, compress: str | list[str] | None = None,
              int8: str | None = None, tflite: str | None = None, executorch: str | None = None,
              calibration: str | os.PathLike | None = None, pass_options: dict | None = None,
              **fields) -> PipelineConfig:
    """A ``PipelineConfig``: ``config`` (a TOML file, a config, or the defaults) with the options given here over
    it, as the command line gives them: ``int8``/``tflite``/``executorch`` a recipe or precision (``"none"`` skips
    the stage), ``compress`` pass names (comma-separated or a list), ``calibration`` the calibration file,
    ``pass_options`` pass name -> its config's fields (over the file's), and ``fields`` the top-level settings
    (``model``, ``output``, ``data``, ``gate``, ``threads``, ``allow_pickle``; None leaves one as it is)."""
    from mt5lite.exporters.executorch.export import ExecutorchExportConfig

    base = config if isinstance(config, PipelineConfig) else load_config(config)
    unknown = sorted(set(fields) - set(TOP_LEVEL))
    if unknown:
        raise InputError(f"unknown pipeline option {unknown[0]!r}; known: {', '.join(TOP_LEVEL)}")
    top = {key: Path(value) if key in ("model", "output", "data") else value
           for key, value in fields.items() if value is not None}
    if compress is not None:
        passes = compress.split(",") if isinstance(compress, str) else compress
        top["compress"] = replace(base.compress, passes=tuple(p.strip() for p in passes if p.strip()), recipe="")
    if calibration is not None:
        top["calibration"] = replace(base.calibration, file=Path(calibration))
    if pass_options:
        top["pass_options"] = {name: {**base.pass_options.get(name, {}), **values}
                               for name, values in {**base.pass_options, **pass_options}.items()}
    defaults = PipelineConfig()
    for value, section, key in ((int8, "quantize", "recipe"), (tflite, "tflite", "quantize"),
                                (executorch, "executorch", "quantize")):
        if value is not None:
            current = getattr(base, section) or getattr(defaults, section) or ExecutorchExportConfig()
            top[section] = None if value == "none" else replace(current, **{key: value})
    return replace(base, **top)


def pipeline(config: str | os.PathLike | PipelineConfig | None = None, *, force: bool = False,
             progress: bool = False, announce=None, **options) -> PipelineResult:
    """Run the main job: ``configure(config, **options)``, checked before anything is written, recorded as
    ``<output>/pipeline.toml``, then every stage that cannot be reused (``force``: all of them). A failed quality
    gate raises ``QualityGateError`` naming the stage; ``gate=False`` only reports it."""
    return run_pipeline(configure(config, **options), force=force, progress=progress, announce=announce)
