"""The pipeline's configuration: one TOML file, read into the config dataclasses the commands themselves use.

A section per stage; its keys are the fields of that stage's dataclass (``[onnx]``: ``OnnxExportConfig``,
``[quantize]``: ``QuantizeConfig``, ``[tflite]``: ``TfliteStage``, ``[executorch]``: ``ExecutorchExportConfig``,
``[calibration]``: ``CalibrationDraw``, ``[compress]``: ``CompressStage`` and ``[compress.PASS]``: that pass's
config). An optional stage's section takes ``enabled`` too; a section that is there enables its stage. An
unknown section, key or value is one ``InputError`` line listing what is known. Precedence: the dataclasses'
defaults, then the file, then the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from mt5lite.errors import InputError, first_line
from mt5lite.paths import BUILD_DIR, DEMO_MODEL

#: The top-level keys of a pipeline file (the sections are SECTIONS).
TOP_LEVEL = ("model", "output", "data", "gate", "threads", "allow_pickle")


@dataclass(frozen=True)
class CompressStage:
    """Compression before export: ``passes`` in order, or a named ``recipe``; nothing when both are empty."""

    passes: tuple[str, ...] = ()
    recipe: str = ""
    quality: bool = True  # measure held-out quality before and after each pass

    def chain(self) -> tuple[str, ...]:
        """The pass names to run, in order (the recipe's when one is named)."""
        from mt5lite.compression.passes import PASSES, RECIPES

        if self.passes and self.recipe:
            raise InputError("[compress]: give passes or a recipe, not both")
        names = tuple(RECIPES[self.recipe].passes) if self.recipe else tuple(self.passes)
        for name in names:
            PASSES[name]  # noqa: B018  (an unknown pass is an error listing the known ones)
        return names


@dataclass(frozen=True)
class ReportStage:
    """The pipeline report over every stage (``mt5lite pipeline-report``)."""

    beam_samples: int = 100  # inputs beam search is compared on


@functools.cache
def _tflite_stage() -> type:
    """``TfliteStage``: the TFLite conversion's precision over ``TfliteOptions`` (made once, on first use: the
    exporter's module is imported lazily)."""
    from mt5lite.exporters.tflite.export import TfliteOptions

    @dataclass(frozen=True)
    class TfliteStage(TfliteOptions):
        """The TFLite conversion: its precision and ``TfliteOptions``."""

        quantize: str = "int8"  # a key of TFLITE_PRECISIONS

    TfliteStage.__qualname__ = "TfliteStage"
    return TfliteStage


@dataclass(frozen=True)
class PipelineConfig:
    """A whole pipeline run. ``None`` for an optional stage (``quantize``, ``tflite``, ``executorch``, ``report``)
    skips it."""

    model: Path = DEMO_MODEL
    output: Path = BUILD_DIR
    data: Path | None = None  # held-out pairs for the gates and reports (None: the bundled demo task's)
    gate: bool = True  # a failed gate stops the pipeline (False: measured and reported only)
    threads: int | None = None
    allow_pickle: bool = False
    compress: CompressStage = field(default_factory=CompressStage)
    pass_options: dict = field(default_factory=dict)  # pass name -> its config's fields given
    onnx: object = field(default_factory=lambda: _default("onnx"))  # OnnxExportConfig (exported static-shape)
    calibration: object = field(default_factory=lambda: _default("calibration"))  # CalibrationDraw
    quantize: object = field(default_factory=lambda: _default("quantize"))  # QuantizeConfig: ONNX Runtime int8
    tflite: object = field(default_factory=lambda: _default("tflite"))  # TfliteStage
    executorch: object = None  # ExecutorchExportConfig (off unless asked)
    report: ReportStage | None = field(default_factory=ReportStage)

    @property
    def held_out(self) -> Path:
        """The held-out pairs the gates and reports use."""
        from mt5lite.data import HELDOUT_TASK

        return Path(self.data) if self.data is not None else HELDOUT_TASK


@dataclass(frozen=True)
class Section:
    """One section of the file: the dataclass its keys fill, the fields it leaves out (set elsewhere), and
    whether the stage can be switched off (``enabled``)."""

    config: type
    excluded: tuple[str, ...] = ()
    optional: bool = False
    on_by_default: bool = True


def sections() -> dict[str, Section]:
    """The file's sections by name (imported lazily: the exporters' modules are heavy)."""
    from mt5lite.exporters.executorch.export import ExecutorchExportConfig
    from mt5lite.exporters.onnx.export import OnnxExportConfig
    from mt5lite.exporters.quantize.calibration import CalibrationDraw
    from mt5lite.exporters.quantize.recipes import QuantizeConfig

    draw = tuple(f.name for f in fields(CalibrationDraw))
    return {
        "compress": Section(CompressStage),
        "onnx": Section(OnnxExportConfig, excluded=("static_shapes",)),
        "calibration": Section(CalibrationDraw),
        "quantize": Section(QuantizeConfig, excluded=("calibration",) + draw, optional=True),
        "tflite": Section(_tflite_stage(), optional=True),
        "executorch": Section(ExecutorchExportConfig, excluded=("max_source_length", "max_target_length"),
                              optional=True, on_by_default=False),
        "report": Section(ReportStage, optional=True),
    }


def _default(name: str):
    """A section's dataclass with its defaults."""
    return sections()[name].config()


def _coerce(value, f: dataclasses.Field, where: str):
    """``value`` from TOML as field ``f`` holds it: lists as tuples, strings as paths, and a type check against
    the field's default (an Enum default takes its value's type; an int is a float too)."""
    annotation = str(f.type)
    if "tuple" in annotation:
        if not isinstance(value, list):
            raise InputError(f"{where}: expects a list, got {value!r}")
        return tuple(Path(v) if "Path" in annotation else v for v in value)
    if isinstance(value, list):
        raise InputError(f"{where}: expects one value, not a list")
    if "Path" in annotation:
        if not isinstance(value, str):
            raise InputError(f"{where}: expects a path, got {value!r}")
        return Path(value)
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None:  # an optional value: its annotation names the type
        default = next((kind() for name, kind in (("int", int), ("float", float), ("str", str), ("bool", bool))
                        if annotation.startswith(name)), None)
        if default is None:
            return value
    expected = type(getattr(default, "value", default))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise InputError(f"{where}: expects {expected.__name__}, got {value!r}")
    return value


def fill(config: type, table: dict, where: str, excluded: tuple[str, ...] = (), base=None):
    """``config`` (a dataclass) with ``table``'s keys over ``base``'s values (or the defaults); an unknown key is
    one ``InputError`` line listing the known ones."""
    known = {f.name: f for f in fields(config) if f.init and f.name not in excluded}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    values = {name: _coerce(value, known[name], f"{where} {name}") for name, value in table.items()}
    try:  # every config checks itself when made (mt5lite.checked)
        return replace(base, **values) if base is not None else config(**values)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such pipeline file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({first_line(exc)})") from None


def _pass_tables(table: dict, where: str) -> tuple[dict, dict]:
    """``[compress]``'s own keys and its ``[compress.PASS]`` tables (each checked against that pass's config)."""
    from mt5lite.compression.passes import PASSES

    own, passes = {}, {}
    for key, value in table.items():
        if isinstance(value, dict):
            entry = PASSES[key]
            known = {f.name for f in fields(entry.config)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise InputError(f"{where} [compress.{key}]: unknown key {unknown[0]!r}; known keys: "
                                 f"{', '.join(sorted(known))}")
            passes[key] = {k: _coerce(v, next(f for f in fields(entry.config) if f.name == k),
                                      f"{where} [compress.{key}] {k}") for k, v in value.items()}
        else:
            own[key] = value
    return own, passes


def load_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    """The pipeline configuration of the TOML file at ``path`` over the defaults (the defaults alone without one).
    Raises ``InputError`` (one line) for an unknown section, key or value."""
    table = _read_toml(Path(path)) if path is not None else {}
    where = str(path)
    known = sections()
    top = {key: value for key, value in table.items() if not isinstance(value, dict)}
    unknown = sorted(set(top) - set(TOP_LEVEL)) + sorted(k for k, v in table.items()
                                                         if isinstance(v, dict) and k not in known)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(TOP_LEVEL)} and the sections "
                         f"{', '.join('[' + name + ']' for name in known)}")
    top_fields = {f.name: f for f in fields(PipelineConfig)}
    values = {key: _coerce(value, top_fields[key], f"{where} {key}") for key, value in top.items()}
    for name, section in known.items():
        body = dict(table.get(name, {}))
        if name == "compress":
            body, values["pass_options"] = _pass_tables(body, where)
        # an optional stage runs when its section is there (unless ``enabled = false``), or by default
        enabled = body.pop("enabled", name in table or section.on_by_default) if section.optional else True
        if not isinstance(enabled, bool):
            raise InputError(f"{where} [{name}] enabled: expects true or false, got {enabled!r}")
        values[name] = fill(section.config, body, f"{where} [{name}]", section.excluded) if enabled else None
    return PipelineConfig(**values)


def as_table(config: PipelineConfig) -> dict:
    """``config`` as the TOML table ``load_config`` reads back (paths as strings; None values left out)."""
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return getattr(value, "value", value)  # an Enum: its value

    table = {key: plain(getattr(config, key)) for key in TOP_LEVEL if getattr(config, key) is not None}
    for name, section in sections().items():
        value = getattr(config, name)
        body = {} if value is None else {f.name: plain(getattr(value, f.name)) for f in fields(value)
                                         if f.init and f.name not in section.excluded
                                         and getattr(value, f.name) is not None}
        if section.optional:
            body["enabled"] = value is not None
        if name == "compress":
            body.update({pass_name: {k: plain(v) for k, v in options.items()}
                         for pass_name, options in config.pass_options.items()})
        table[name] = body
    return table
