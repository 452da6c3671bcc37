"""Every registry: an unknown key lists the known ones, and every registered entry has a test case here or in the
module named beside its case map (the meta-tests fail when an entry is added without one)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from mt5lite.compression.passes import PASSES
from mt5lite.errors import InputError, ModelFileError, UnknownNameError
from mt5lite.exporters.quantize.groups import GROUPS, node_groups
from mt5lite.exporters.quantize.recipes import RECIPES, QuantizeConfig, quantize_export
from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS
from mt5lite.exporters.tflite.onnx_to_tf import OPS
from mt5lite.families import FAMILIES
from mt5lite.manifest import load_manifest
from mt5lite.registry import Registry
from mt5lite.runtimes.generators import ENGINES, open_export

#: recipe -> (precision in the manifest, an op its decoder graph must hold).
RECIPE_CASES = {
    "static-int8": ("int8", "QuantizeLinear"),
    "dynamic-int8": ("int8", "DynamicQuantizeLinear"),
    "weight-int8": ("int8", "MatMulNBits"),
    "fp16": ("fp16", "Cast"),
}
#: group -> its node count in each graph of a T5 export with L encoder and L decoder layers (the demo model: 3).
GROUP_COUNTS = {
    "embeddings": {"encoder": lambda n: 1, "decoder": lambda n: 1},
    "lm_head": {"encoder": lambda n: 0, "decoder": lambda n: 1},
    "attention_qkv": {"encoder": lambda n: 3 * n + 2 * n, "decoder": lambda n: 4 * n},  # + the cross K/V
    "attention_out": {"encoder": lambda n: n, "decoder": lambda n: 2 * n},
    "ffn_in": {"encoder": lambda n: 2 * n, "decoder": lambda n: 2 * n},  # gated GELU: wi_0 and wi_1
    "ffn_out": {"encoder": lambda n: n, "decoder": lambda n: n},
    # the decoder's self-attention: scores over the cache, the step's own score, the cache's values; + cross: 2
    "attention_matmul": {"encoder": lambda n: 2 * n, "decoder": lambda n: 5 * n},
    "softmax": {"encoder": lambda n: n, "decoder": lambda n: 2 * n},
    "layer_norm": {"encoder": lambda n: 2 * n + 1, "decoder": lambda n: 3 * n + 1},
}
#: engine -> the fixture of an export that runs on it, and the generator class it must open as.
ENGINE_CASES = {"onnxruntime": ("demo_export", "OnnxGenerator"), "litert": ("tflite_fp32", "LiteRTGenerator"),
                "executorch": ("executorch_fp32", "ExecutorchGenerator")}
#: The engines as test parameters: ExecuTorch's needs its extra (the fixture is reached through getfixturevalue).
ENGINE_PARAMS = [pytest.param(e, marks=pytest.mark.needs(e)) if e == "executorch" else e for e in ENGINE_CASES]


#: Each registry's kind -> where its cases are, as (test module, name of its case collection). Every Registry the
#: package defines must be here, and each case collection must cover its registry's entries.
CASE_MAPS = {
    "quantization recipe": ("tests.test_registries", "RECIPE_CASES"),
    "quantization group": ("tests.test_registries", "GROUP_COUNTS"),
    "engine": ("tests.test_registries", "ENGINE_CASES"),
    "TFLite precision": ("tests.test_tflite", "PRECISION_CASES"),
    "float part": ("tests.test_tflite", "FLOAT_PART_CASES"),
    "ExecuTorch precision": ("tests.test_executorch", "PRECISION_CASES"),
    "compression pass": ("tests.test_compression", "PASS_CASES"),
    "compression recipe": ("tests.test_training", "RECIPE_CASES"),
    "model family": ("tests.conftest", "TINY_FAMILIES"),
    "smoothing fold": ("tests.test_outliers", "FOLD_CASES"),
    "activation scheme": ("tests.test_outliers", "ACTIVATION_CASES"),
    "weight scheme": ("tests.test_outliers", "WEIGHT_CASES"),
    "pipeline stage": ("tests.test_workflow", "STAGE_CASES"),
}


def _package_registries() -> dict[str, Registry]:
    """Every ``Registry`` bound at the top level of an ``mt5lite`` module, by kind."""
    import importlib

    from tests.test_layers import package_sources

    found = {}
    for name in package_sources():
        if not name.endswith("__main__"):
            found.update({value.kind: value for value in vars(importlib.import_module(name)).values()
                          if isinstance(value, Registry)})
    return found


def test_every_registry_has_cases_that_cover_it():
    import importlib

    registries = _package_registries()
    assert set(registries) == set(CASE_MAPS), f"give these registries a case map: {set(registries) - set(CASE_MAPS)}"
    for kind, (module, name) in CASE_MAPS.items():
        cases = getattr(importlib.import_module(module), name)
        assert set(cases) == set(registries[kind]), f"{kind}: add a test case for {set(registries[kind]) - set(cases)}"


def test_every_onnx_to_tf_op_has_a_case():
    from tests.test_onnx_to_tf_ops import covered_ops

    assert set(OPS) <= covered_ops()


@pytest.mark.parametrize("registry", [RECIPES, GROUPS, ENGINES, TFLITE_PRECISIONS, PASSES, FAMILIES],
                         ids=lambda r: r.kind.replace(" ", "-"))
def test_unknown_key_lists_the_known_ones(registry):
    with pytest.raises(UnknownNameError) as caught:
        registry["no-such-key"]
    message = str(caught.value)
    assert f"unknown {registry.kind} 'no-such-key'" in message
    assert all(key in message for key in registry)
    assert isinstance(caught.value, InputError) and "no-such-key" not in registry


def test_a_key_is_registered_once():
    registry = Registry("thing", {"a": 1})
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)
    assert registry.register("b", 2) == 2 and list(registry) == ["a", "b"]


@pytest.mark.parametrize("recipe", RECIPE_CASES)
def test_every_recipe_quantizes_and_keeps_the_contract(demo_export, tmp_path, recipe):
    precision, op = RECIPE_CASES[recipe]
    config = QuantizeConfig(recipe=recipe, samples=100, max_decoder_steps=64)
    result = quantize_export(demo_export, tmp_path / recipe, config, gate=False)
    manifest = result.manifest
    assert manifest.precision == precision and manifest.quantization.recipe == recipe
    decoder = onnx.load(str(tmp_path / recipe / "decoder.onnx"))
    assert op in {node.op_type for node in decoder.graph.node}
    # calibrated ranges, or an int8 recipe's outlier diagnosis, draw calibration data
    measured = RECIPES[recipe].calibrated or RECIPES[recipe].outlier_step is not None
    assert (manifest.quantization.calibration is not None) == measured
    assert "weights.bin" in manifest.files and manifest.weights["tensors"] > 0  # weights stored once here too
    assert all(spec.external_data == ("weights.bin",) for spec in manifest.graphs.values())
    assert open_export(tmp_path / recipe).generate(["words fr: 1234"]) == ["mille deux cent trente-quatre"]


@pytest.mark.parametrize("group", GROUP_COUNTS)
def test_every_group_finds_its_nodes_in_every_layer(demo_export, group):
    layers = load_manifest(demo_export).model.num_layers
    for role, count in GROUP_COUNTS[group].items():
        found = node_groups(onnx.load(str(demo_export / f"{role}.onnx")))[group]
        assert len(found) == count(layers), (role, found)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_every_engine_opens_its_exports(request, engine):
    fixture, generator = ENGINE_CASES[engine]
    export = request.getfixturevalue(fixture)
    opened = open_export(export)
    assert type(opened).__name__ == generator and opened.manifest.engine == engine
    assert opened.generate(["words fr: 1234"]) == ["mille deux cent trente-quatre"]


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_every_engine_names_its_file_when_a_run_fails(request, engine):
    opened = open_export(request.getfixturevalue(ENGINE_CASES[engine][0]))
    spec = opened.manifest.graphs["encoder"]
    feeds = {t.name: np.zeros((1, 1, 3), dtype=t.dtype) for t in spec.inputs}  # one rank too many: the run fails
    with pytest.raises(ModelFileError, match=rf"^\S*{spec.file}: .* failed running"):
        opened.backend.encode(feeds)


def test_an_unknown_engine_is_refused_not_run_on_onnx(demo_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(demo_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["engine"] = "tensorrt"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError,
                       match="engine 'tensorrt' is unknown; known engines: onnxruntime, litert, executorch"):
        open_export(copy)
