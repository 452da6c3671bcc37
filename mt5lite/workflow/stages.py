"""The pipeline's stages, in order: a registry of what each reads, writes and runs.

Each stage names its inputs (the files it reads, hashed by content, and the stages it builds on, by key), its
options and its outputs under the pipeline's output directory; ``mt5lite.workflow.runner`` decides from them
whether a stage is reused, and runs it through the same API function as its command (``export_onnx``,
``quantize_export``, ``export_tflite``, ...), gated the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mt5lite.errors import InputError
from mt5lite.registry import Registry
from mt5lite.workflow.config import PipelineConfig


class Layout:
    """Where a pipeline run writes each stage (the layout ``make export-tflite`` always had)."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.root = Path(config.output)
        self.compressed = self.root / "compressed"
        self.onnx = self.root / "onnx"
        self.onnx_int8 = self.root / "onnx-int8"
        self.tflite = self.root / "tflite"
        self.executorch = self.root / "executorch"
        self.reports = self.root / "reports"

    @property
    def compressing(self) -> bool:
        """Whether compression passes run first."""
        return bool(self.config.compress.chain())

    @property
    def source(self) -> Path:
        """The checkpoint every export is made from and every parity report compares with."""
        return self.compressed if self.compressing else Path(self.config.model)

    def source_input(self) -> dict[str, str]:
        """The source as a stage input: the compression stage, or the model folder."""
        return {"source": "stage:compress"} if self.compressing else {"source": f"file:{self.config.model}"}

    def gate_report(self, name: str) -> Path:
        """Where a gated stage's comparison report goes."""
        return self.reports / f"{name}.json"


@dataclass(frozen=True)
class Run:
    """What a stage's ``run`` gets: the configuration, the layout and the shared held-out pairs."""

    config: PipelineConfig
    layout: Layout
    progress: bool

    @functools.cached_property
    def pairs(self):
        """The held-out pairs of the gates and reports (read once per run)."""
        from mt5lite.data import read_task_pairs

        return read_task_pairs(self.config.held_out)

    def gate(self, report: Path):
        """The quality gate of an int8 stage: enforced unless the config says ``gate = false``."""
        from mt5lite.verification.comparison import Gate

        return Gate(self.pairs, report, self.config.threads, self.progress, enforce=self.config.gate)


@dataclass(frozen=True)
class Stage:
    """One stage: when it runs, what it reads (``"file:PATH"`` or ``"stage:NAME"``), its options, what it writes
    and how it runs (returning a summary: the figures the final table shows)."""

    enabled: Callable[[PipelineConfig], bool]
    inputs: Callable[[Layout], dict[str, str]]
    options: Callable[[PipelineConfig], dict]
    outputs: Callable[[Layout], list[Path]]
    run: Callable[[Run], dict]
    description: str
    headline: Callable[[dict], str]  # the summary in one line, for the final table


def _data(layout: Layout) -> dict[str, str]:
    return {"data": f"file:{layout.config.held_out}"}


def _calibration(layout: Layout) -> dict[str, str]:
    return {"calibration": f"file:{layout.config.calibration.file}"}


def _draw_fields(config: PipelineConfig) -> dict:
    draw = config.calibration
    return {"calibration": draw.file, "samples": draw.samples, "max_decoder_steps": draw.max_decoder_steps,
            "seed": draw.seed}


def _quantize_config(config: PipelineConfig):
    return replace(config.quantize, **_draw_fields(config))


def _tflite_gated(config: PipelineConfig) -> bool:
    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS

    return not TFLITE_PRECISIONS[config.tflite.quantize].exact


def _executorch_config(config: PipelineConfig):
    return replace(config.executorch, max_source_length=config.onnx.max_source_length,
                   max_target_length=config.onnx.max_target_length)


def _executorch_gated(config: PipelineConfig) -> bool:
    from mt5lite.exporters.executorch.export import PTE_PRECISIONS

    return not PTE_PRECISIONS[config.executorch.quantize].exact


def _gate_summary(report: dict | None) -> dict:
    if report is None:
        return {}
    return {"greedy_agreement": report["greedy_agreement"], "exact_match": report["exact_match"],
            "exact_match_reference": report["exact_match_reference"], "size_bytes": report["size_bytes"],
            "gate": "passed" if report["gate"]["passed"] else "FAILED: " + "; ".join(report["gate"]["failures"])}


def _gated_line(summary: dict) -> str:
    precision = f"{summary['precision']}: " if "precision" in summary else ""
    if "gate" not in summary:
        return f"{precision}held to fp32's tolerance"
    return (f"{precision}greedy agreement {summary['greedy_agreement']:.3f}, exact match {summary['exact_match']:.3f} "
            f"(fp32 {summary['exact_match_reference']:.3f}), {summary['size_bytes'] / 1e6:.2f} MB, gate "
            f"{summary['gate']}")


def _parity_line(summary: dict) -> str:
    return (f"max |logit diff| {summary['max_abs_logit_diff']:.2e}, greedy agreement "
            f"{summary['greedy_agreement']:.3f}, beam agreement {summary['beam_agreement']:.3f}")


def _report_line(summary: dict) -> str:
    return "; ".join(f"{name} EM {row['exact_match']:.3f} {row['bytes'] / 1e6:.1f} MB {row['ms_per_token']:.2f} "
                     "ms/token" for name, row in summary["stages"].items())


def pass_configs(config: PipelineConfig) -> dict:
    """Each compression pass's config: its defaults, the file's ``[compress.PASS]`` options and the command line's
    (``InputError`` for a bad one); distillation's teacher is by default the checkpoint being compressed."""
    from mt5lite.compression.passes import PASSES

    configs = {}
    for name in config.compress.chain():
        options = dict(config.pass_options.get(name, {}))
        if name == "distill":
            options.setdefault("teacher", Path(config.model))
        try:
            configs[name] = PASSES[name].config(**options)
        except TypeError as exc:
            raise InputError(f"[compress.{name}]: {exc}") from None
    return configs


def _pass_files(layout: Layout) -> dict[str, str]:
    """Every file or folder the passes' configs name (corpora, training data, a teacher), hashed by content."""
    files = {}
    for name, pass_config in pass_configs(layout.config).items():
        for key, value in asdict(pass_config).items():
            for i, path in enumerate(value if isinstance(value, tuple) else (value,)):
                if isinstance(path, Path) and path.exists():
                    files[f"{name}.{key}.{i}"] = f"file:{path}"
    return files


def _run_compress(run: Run) -> dict:
    from mt5lite.compression.compress import compress

    config = run.config
    configs = pass_configs(config)
    names = list(configs)
    report = compress(config.model, run.layout.compressed, names, configs,
                      pairs=run.pairs if config.compress.quality else None, force=True,
                      allow_pickle=config.allow_pickle, progress=run.progress)
    return {"passes": ", ".join(names), "parameters": [report["passes"][0]["parameters"][0],
                                                       report["passes"][-1]["parameters"][1]]}


def _run_onnx(run: Run) -> dict:
    from mt5lite.exporters.onnx.export import export_onnx

    result = export_onnx(run.layout.source, run.layout.onnx, replace(run.config.onnx, static_shapes=True),
                         force=True, allow_pickle=run.config.allow_pickle, progress=run.progress)
    return {"max_abs_diff": result.validation.max_abs_diff}


def _parity_stage(stage: str, export: Callable[[Layout], Path], report: Callable[[Layout], Path],
                  enabled: Callable[[PipelineConfig], bool], description: str) -> Stage:
    """A parity report stage: PyTorch (the source checkpoint) against the export of ``stage``."""
    def run_parity(run: Run) -> dict:
        from mt5lite.verification.parity import parity_report, write_parity_report

        result = parity_report(run.layout.source, export(run.layout), run.pairs, threads=run.config.threads,
                               allow_pickle=run.config.allow_pickle, progress=run.progress)
        write_parity_report(result, report(run.layout))
        return {key: result[key] for key in ("max_abs_logit_diff", "greedy_agreement", "beam_agreement")}

    return Stage(enabled=enabled, inputs=lambda lay: {**lay.source_input(), "export": f"stage:{stage}", **_data(lay)},
                 options=lambda c: {}, outputs=lambda lay: [report(lay)], run=run_parity, description=description,
                 headline=_parity_line)


def _run_quantize(run: Run) -> dict:
    from mt5lite.exporters.quantize.recipes import quantize_export

    config = _quantize_config(run.config)
    result = quantize_export(run.layout.onnx, run.layout.onnx_int8, config, force=True, progress=run.progress,
                             gate=run.gate(run.layout.gate_report(f"quantize-{config.recipe}")))
    return _gate_summary(result.gate)


def _run_tflite(run: Run) -> dict:
    from mt5lite.exporters.tflite.export import export_tflite

    stage = run.config.tflite
    gate = run.gate(run.layout.gate_report(f"tflite-{stage.quantize}")) if _tflite_gated(run.config) else False
    result = export_tflite(run.layout.onnx, run.layout.tflite, stage.quantize, force=True,
                           calibration=run.config.calibration, gate=gate, progress=run.progress, options=stage)
    return {"precision": stage.quantize, **_gate_summary(result.gate)}


def _run_executorch(run: Run) -> dict:
    from mt5lite.exporters.executorch.export import export_executorch

    config = _executorch_config(run.config)
    gate = run.gate(run.layout.gate_report(f"executorch-{config.quantize}")) if _executorch_gated(run.config) \
        else False
    result = export_executorch(run.layout.source, run.layout.executorch, config, force=True,
                               allow_pickle=run.config.allow_pickle, calibration=run.config.calibration, gate=gate,
                               progress=run.progress)
    return {"precision": config.quantize, **_gate_summary(result.gate)}


#: The exports the pipeline report measures, by stage name (in pipeline order).
REPORTED_EXPORTS = {"onnx": "onnx", "onnx-int8": "onnx_int8", "tflite": "tflite", "executorch": "executorch"}


def _reported(layout: Layout) -> list[tuple[str, Path]]:
    return [(name, getattr(layout, attribute)) for name, attribute in REPORTED_EXPORTS.items()
            if STAGES[name].enabled(layout.config)]


def _run_report(run: Run) -> dict:
    from mt5lite.verification.pipeline import ReportSamples, pipeline_report, write_pipeline_report

    config, layout = run.config, run.layout
    report = pipeline_report(layout.source, _reported(layout), run.pairs,
                             original_dir=config.model if layout.compressing else None,
                             samples=ReportSamples(beam=config.report.beam_samples), threads=config.threads,
                             allow_pickle=config.allow_pickle, progress=run.progress)
    paths = write_pipeline_report(report, layout.reports / "pipeline.json")
    return {"report": str(paths[0]),
            "stages": {name: {"exact_match": stage["exact_match"], "bytes": stage["bytes"],
                              "ms_per_token": stage["ms_per_token"]} for name, stage in report["stages"].items()}}


def _asdict(value) -> dict:
    return {key: getattr(v, "value", v) for key, v in asdict(value).items()}


def _report_inputs(layout: Layout) -> dict[str, str]:
    inputs = {**layout.source_input(), **_data(layout)}
    if layout.compressing:
        inputs["original"] = f"file:{layout.config.model}"
    return {**inputs, **{name: f"stage:{name}" for name, _ in _reported(layout)}}


#: Every stage, in the order it runs.
STAGES: Registry[Stage] = Registry("pipeline stage", {
    "compress": Stage(
        enabled=lambda c: bool(c.compress.chain()),
        inputs=lambda lay: {"model": f"file:{lay.config.model}", **_pass_files(lay),
                            **(_data(lay) if lay.config.compress.quality else {})},
        options=lambda c: {"passes": c.compress.chain(), "pass_options": c.pass_options,
                           "quality": c.compress.quality},
        outputs=lambda lay: [lay.compressed],
        run=_run_compress, description="compression passes",
        headline=lambda s: f"{s['passes']}: parameters {s['parameters'][0]:,} -> {s['parameters'][1]:,}"),
    "onnx": Stage(
        enabled=lambda c: True,
        inputs=lambda lay: lay.source_input(),
        options=lambda c: _asdict(replace(c.onnx, static_shapes=True)),
        outputs=lambda lay: [lay.onnx],
        run=_run_onnx, description="ONNX export (static shapes), validated against PyTorch",
        headline=lambda s: f"validated: max |diff| {s['max_abs_diff']:.2e}"),
    "parity-onnx": _parity_stage("onnx", lambda lay: lay.onnx, lambda lay: lay.reports / "parity-onnx.json",
                                 lambda c: True, "parity report: PyTorch vs ONNX"),
    "onnx-int8": Stage(
        enabled=lambda c: c.quantize is not None,
        inputs=lambda lay: {"export": "stage:onnx", **_calibration(lay), **_data(lay)},
        options=lambda c: {**_asdict(_quantize_config(c)), "gate": c.gate, "threads": c.threads},
        outputs=lambda lay: [lay.onnx_int8, lay.gate_report(f"quantize-{lay.config.quantize.recipe}")],
        run=_run_quantize, description="int8 ONNX export (ONNX Runtime), gated",
        headline=_gated_line),
    "tflite": Stage(
        enabled=lambda c: c.tflite is not None,
        inputs=lambda lay: {"export": "stage:onnx", **_calibration(lay), **_data(lay)},
        options=lambda c: {**_asdict(c.tflite), "calibration": _draw_fields(c), "gate": c.gate,
                           "threads": c.threads},
        outputs=lambda lay: [lay.tflite] + ([lay.gate_report(f"tflite-{lay.config.tflite.quantize}")]
                                           if _tflite_gated(lay.config) else []),
        run=_run_tflite, description="TFLite (LiteRT) conversion, gated below fp32",
        headline=_gated_line),
    "parity-tflite": _parity_stage("tflite", lambda lay: lay.tflite, lambda lay: lay.tflite / "parity.json",
                                   lambda c: c.tflite is not None, "parity report: PyTorch vs TFLite"),
    "executorch": Stage(
        enabled=lambda c: c.executorch is not None,
        inputs=lambda lay: {**lay.source_input(), **_calibration(lay), **_data(lay)},
        options=lambda c: {**_asdict(_executorch_config(c)), "calibration": _draw_fields(c), "gate": c.gate,
                           "threads": c.threads},
        outputs=lambda lay: [lay.executorch] + ([lay.gate_report(f"executorch-{lay.config.executorch.quantize}")]
                                                if _executorch_gated(lay.config) else []),
        run=_run_executorch, description="ExecuTorch program (XNNPACK), gated below fp32",
        headline=_gated_line),
    "report": Stage(
        enabled=lambda c: c.report is not None,
        inputs=_report_inputs,
        options=lambda c: {**_asdict(c.report), "threads": c.threads},
        outputs=lambda lay: [lay.reports / f"pipeline.{suffix}" for suffix in ("json", "md", "png")],
        run=_run_report, description="the pipeline report: every stage in one table", headline=_report_line),
})
