"""Run the pipeline: plan every stage (reuse or run, and why), then run what must run, in order.

A stage is reused when its stamp holds the key its inputs and options give now (``mt5lite.workflow.stamps``).
Before a stage runs its stamp is removed, and it is written again only once the stage is complete, so a run that
is killed or fails picks up at that stage next time. Each stage writes through its API function, which stages its
output and renames it into place, so nothing half-written is ever left where a stage's output belongs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mt5lite.errors import InputError, QualityGateError
from mt5lite.reports import atomic_write
from mt5lite.workflow import stamps
from mt5lite.workflow.config import PipelineConfig, as_table
from mt5lite.workflow.stages import STAGES, Layout, Run, pass_configs

#: Where a run records the configuration it ran with (TOML, readable by ``--config``).
CONFIG_RECORD = "pipeline.toml"


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the plan: its key and whether it is reused (``why`` it runs otherwise)."""

    name: str
    key: str
    reuse: bool
    why: str
    outputs: list[Path]
    upstream: tuple[str, ...]  # the stages it builds on


@dataclass
class StageResult:
    """What one stage did: reused or built, in how many seconds, with its summary figures."""

    name: str
    reused: bool
    seconds: float
    summary: dict
    outputs: list[Path]


@dataclass
class PipelineResult:
    """A finished pipeline: every stage's result and the pipeline report's path (None without the report)."""

    output: Path
    stages: list[StageResult] = field(default_factory=list)

    @property
    def report(self) -> Path | None:
        """The pipeline report (JSON; its Markdown and PNG twins beside it)."""
        for stage in self.stages:
            if stage.name == "report":
                return Path(stage.summary["report"])
        return None


def check(config: PipelineConfig) -> None:
    """Every option and input checked before anything is written: ``InputError`` (one line) otherwise."""
    from mt5lite.checkpoint import inspect_checkpoint
    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS

    pass_configs(config)  # every config checked itself when it was made; what is left are files and names
    for path, what in ((config.held_out, "held-out pairs"), (config.calibration.file, "calibration data")):
        if not Path(path).is_file():
            raise InputError(f"{path}: no such file of {what}")
    if config.tflite is not None:
        TFLITE_PRECISIONS[config.tflite.quantize]  # noqa: B018  (an unknown precision lists the known ones)
    inspect_checkpoint(config.model, allow_pickle=config.allow_pickle)


def record_config(config: PipelineConfig) -> Path:
    """Write the configuration of a run to ``<output>/pipeline.toml`` (rerun it with ``--config``)."""
    import tomli_w

    path = Path(config.output) / CONFIG_RECORD
    absolute = replace(config, model=Path(config.model).resolve(), output=Path(config.output).resolve(),
                       data=None if config.data is None else Path(config.data).resolve(),
                       calibration=replace(config.calibration, file=Path(config.calibration.file).resolve()))
    atomic_write(path, tomli_w.dumps(as_table(absolute)))  # absolute paths: it reruns from any directory
    return path


def plan(config: PipelineConfig, force: bool = False) -> list[PlannedStage]:
    """The stages that run for ``config``, in order, each with its key and whether its output can be reused
    (``force``: none is)."""
    layout = Layout(config)
    keys: dict[str, str] = {}
    planned = []
    rebuilt: set[str] = set()
    for name, stage in STAGES.items():
        if not stage.enabled(config):
            continue
        refs = {label: ref.partition(":") for label, ref in stage.inputs(layout).items()}
        inputs = {label: keys[target] if kind == "stage" else stamps.content_hash(target)
                  for label, (kind, _, target) in refs.items()}
        key = keys[name] = stamps.stage_key(name, stage.options(config), inputs)
        outputs = stage.outputs(layout)
        stamp = stamps.read_stamp(layout.root, name)
        builds_on = tuple(target for kind, _, target in refs.values() if kind == "stage")
        upstream = sorted(set(builds_on) & rebuilt)
        if force:
            why = "--force"
        elif upstream:
            why = f"{', '.join(upstream)} will be rebuilt"
        elif stamp is None:
            why = "not built yet"
        elif stamp.get("key") != key:
            why = "its inputs, options or the code changed"
        elif not all(Path(p).exists() for p in outputs):
            why = "an output is missing"
        else:
            why = ""
        if why:
            rebuilt.add(name)
        planned.append(PlannedStage(name, key, not why, why, outputs, builds_on))
    return planned


def _depending_on(steps: list[PlannedStage], name: str) -> list[str]:
    """``name`` and every planned stage that builds on it, directly or not: what a rebuild of ``name`` makes stale
    (their stamps go before it runs, so a run killed part-way cannot reuse what was built from the old output)."""
    stale = [name]
    for step in steps:
        if step.name not in stale and set(step.upstream) & set(stale):
            stale.append(step.name)
    return stale


def run_pipeline(config: PipelineConfig, force: bool = False, progress: bool = False,
                 announce=None) -> PipelineResult:
    """Run every enabled stage of ``config`` that cannot be reused, in order; returns each stage's result.
    ``announce(index, total, planned)`` is called before each stage. A failed quality gate raises
    ``QualityGateError`` naming the stage (its export is kept for inspection); bad options raise ``InputError``
    before anything is written. The configuration is recorded as ``<output>/pipeline.toml`` first."""
    check(config)
    record_config(config)
    layout = Layout(config)
    run = Run(config, layout, progress)
    steps = plan(config, force)
    result = PipelineResult(layout.root)
    for index, planned in enumerate(steps, 1):
        if announce is not None:
            announce(index, len(steps), planned)
        stamp = stamps.read_stamp(layout.root, planned.name) if planned.reuse else None
        if stamp is not None:
            result.stages.append(StageResult(planned.name, True, stamp["seconds"], stamp["summary"], planned.outputs))
            continue
        for stale in _depending_on(steps, planned.name):  # a kill from here on must not leave them reusable
            stamps.forget(layout.root, stale)
        started = time.perf_counter()
        try:
            summary = STAGES[planned.name].run(run)
        except QualityGateError as exc:
            raise QualityGateError(f"stage {planned.name}: {exc}", exc.report) from None
        seconds = time.perf_counter() - started
        stamps.write_stamp(layout.root, planned.name, {"key": planned.key, "seconds": seconds, "summary": summary,
                                                       "outputs": [str(p) for p in planned.outputs]})
        result.stages.append(StageResult(planned.name, False, seconds, summary, planned.outputs))
    return result
