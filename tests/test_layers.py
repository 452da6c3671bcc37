"""The package's layers only point down, and what runs on a device imports nothing heavy (an import-graph check).

Layers, bottom to top: 1 core, 2 runtimes, 3 verification, 4 exporters / compression / demo, 5 the CLI. Every
``mt5lite`` module is parsed (imports inside functions included); an import of a higher layer fails the test.
Inside the exporters the folders rank too: what every target shares (the contract's torch graphs, validation), the
ONNX export and its quantization passes, then the targets made from them (TFLite, ExecuTorch), then app packaging;
a target never imports a sibling target.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import extra_missing

#: (layer, module prefix): the first matching prefix decides a module's layer; a module that matches none fails.
LAYERS: tuple[tuple[int, str], ...] = (
    (5, "mt5lite.cli"), (5, "mt5lite.__main__"), (5, "mt5lite.workflow"),
    (4, "mt5lite.exporters"), (4, "mt5lite.compression"), (4, "mt5lite.demo"), (4, "mt5lite.natural"),
    (3, "mt5lite.verification"),
    (2, "mt5lite.runtimes"), (2, "mt5lite.model"),
    (1, "mt5lite.errors"), (1, "mt5lite.contract"), (1, "mt5lite.manifest"), (1, "mt5lite.data"),
    (1, "mt5lite.paths"), (1, "mt5lite.reports"), (1, "mt5lite.registry"), (1, "mt5lite.checkpoint"),
    (1, "mt5lite.families"), (1, "mt5lite.quiet"), (1, "mt5lite.staging"),
    (1, "mt5lite.hf_tokenizer"), (1, "mt5lite.spiece"), (1, "mt5lite.checked"),
    (1, "mt5lite.bundled_data"), (1, "mt5lite.bundled_models"),
)
#: What a device install lacks: no module of layers 1-2 may import these at module level.
HEAVY = ("torch", "transformers", "tensorflow", "onnx", "sacrebleu", "num2words", "tqdm", "safetensors")
#: (rank, exporters folder): the rank inside layer 4's exporters; equal ranks other than 0 may not import each other.
EXPORTER_RANKS: tuple[tuple[int, str], ...] = (
    (0, "mt5lite.exporters.onnx"), (0, "mt5lite.exporters.quantize"),
    (1, "mt5lite.exporters.tflite"), (1, "mt5lite.exporters.executorch"),
    (2, "mt5lite.exporters.apps"),
)
SUBPACKAGES = ("mt5lite", "mt5lite.verification", "mt5lite.demo", "mt5lite.runtimes", "mt5lite.exporters",
               "mt5lite.compression", "mt5lite.bundled_data", "mt5lite.bundled_models", "mt5lite.workflow",
               "mt5lite.natural")


def exporter_folder(module: str) -> tuple[int, str] | None:
    """``(rank, folder)`` of an exporters module (the shared top-level modules rank 0 in their own folder)."""
    for rank, folder in EXPORTER_RANKS:
        if module == folder or module.startswith(folder + "."):
            return rank, folder
    return (0, "mt5lite.exporters") if module.startswith("mt5lite.exporters.") else None


def layer_of(module: str) -> int | None:
    """The layer of ``module``, or None when no prefix matches (the package's own ``__init__`` is core)."""
    if module == "mt5lite":
        return 1
    for layer, prefix in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def package_sources() -> dict[str, str]:
    """Every module of the installed package, by dotted name, with its source (subpackages found wherever the
    build maps them, e.g. ``mt5lite.exporters`` in ``exporters/``)."""
    sources = {}
    for package in SUBPACKAGES:
        directory = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        for path in sorted(directory.rglob("*.py")):
            parts = path.relative_to(directory).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            name = ".".join((package, *parts))
            if package != "mt5lite" or len(parts) <= 1:  # mt5lite's own subpackages are listed on their own
                sources[name] = path.read_text(encoding="utf-8")
    return sources


def imports(module: str, source: str) -> list[tuple[str, bool]]:
    """``(imported module, at module level)`` for every import in ``source`` (relative ones resolved)."""
    found = []
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            found += [(f"{base}.{alias.name}", id(node) in top_level) for alias in node.names]
            found.append((base, id(node) in top_level))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """Every import that points up a layer, every module without a layer, every heavy module-level import in
    layers 1-2, and every import of a top-level package other than mt5lite's own names."""
    problems = []
    for module, source in sources.items():
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module}: no layer; add it to LAYERS")
            continue
        for name, top_level in imports(module, source):
            root = name.split(".")[0]
            if root in ("exporters", "runtimes", "compression"):
                problems.append(f"{module} imports {name}: use mt5lite.{name}")
            target = layer_of(name) if root == "mt5lite" else None
            if target is not None and target > layer:
                problems.append(f"{module} (layer {layer}) imports {name} (layer {target})")
            problems += _exporter_problems(module, name)
            if layer <= 2 and top_level and root in HEAVY:
                problems.append(f"{module} (layer {layer}) imports {name} at module level")
    return sorted(set(problems))


def _exporter_problems(module: str, name: str) -> list[str]:
    """An exporters module importing a higher-ranked exporters folder, or a sibling target."""
    source, target = exporter_folder(module), exporter_folder(name)
    if source is None or target is None or source[1] == target[1]:
        return []
    if target[0] > source[0] or target[0] == source[0] > 0:
        return [f"{module} ({source[1]}) imports {name} ({target[1]}): exporters folders point down"]
    return []


def test_layers_only_point_down():
    assert violations(package_sources()) == []


@pytest.mark.parametrize("module, source, expected", [
    ("mt5lite.runtimes.decoding", "from mt5lite.verification.parity import agreement", "(layer 2) imports"),
    ("mt5lite.errors", "def f():\n    from mt5lite.cli import main\n", "(layer 1) imports mt5lite.cli"),
    ("mt5lite.verification.parity", "from ..exporters import quantize", "(layer 3) imports mt5lite.exporters"),
    ("mt5lite.runtimes.tokenizer", "import torch", "imports torch at module level"),
    ("mt5lite.cli", "from exporters.quantize.recipes import RECIPES", "use mt5lite.exporters.quantize.recipes"),
    ("mt5lite.new_module", "import numpy", "no layer"),
    ("mt5lite.exporters.onnx.export", "from mt5lite.exporters.tflite.export import export_tflite",
     "exporters folders point down"),
    ("mt5lite.exporters.tflite.export", "from mt5lite.exporters.executorch.export import export_executorch",
     "exporters folders point down"),
])
def test_a_wrong_import_fails_the_check(module, source, expected):
    sources = package_sources()
    sources[module] = source
    found = violations(sources)
    assert any(expected in problem for problem in found), found


def test_every_subpackage_is_checked():
    sources = package_sources()
    assert {"mt5lite.cli", "mt5lite.runtimes.decoding", "mt5lite.verification.teacher_forced",
            "mt5lite.exporters.onnx.export", "mt5lite.exporters.quantize.outliers.step", "mt5lite.demo.train",
            "mt5lite.contract"} <= set(sources)
    assert len(sources) >= 45


def test_a_missing_extra_is_named_by_its_first_missing_module(monkeypatch):
    assert extra_missing("train") is None and extra_missing("executorch") is None  # this install has every extra
    monkeypatch.setitem(sys.modules, "accelerate", None)  # what find_spec reports for a module that is not there
    assert extra_missing("train") == "accelerate" and extra_missing("executorch") is None
