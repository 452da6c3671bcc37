"""The ExecuTorch export (``mt5lite export executorch``) and its runtime: the contract kept, parity with PyTorch,
weights stored once, static int8, and refusals of bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mt5lite.data import read_task_pairs
from mt5lite.errors import InputError, ModelFileError
from mt5lite.exporters.executorch.export import PTE_FILE, ExecutorchExportConfig, export_executorch
from mt5lite.exporters.executorch.mixed import DYNAMIC_GAIN
from mt5lite.exporters.quantize.calibration import CalibrationDraw
from mt5lite.manifest import MANIFEST_NAME, load_manifest, sha256_file
from mt5lite.runtimes.generators import open_export
from mt5lite.verification.comparison import Gate
from tests.conftest import run_cli

pytestmark = pytest.mark.needs("executorch")

SOURCE, TARGET = 32, 12


@pytest.fixture(scope="session")
def tiny_pte(tiny_mt5, tmp_path_factory) -> Path:
    """The tiny mT5's fp32 ExecuTorch export (S=32, T_max=12)."""
    out = tmp_path_factory.mktemp("executorch") / "fp32"
    export_executorch(tiny_mt5, out, ExecutorchExportConfig(max_source_length=SOURCE, max_target_length=TARGET))
    return out


#: Each ExecuTorch precision and the test that builds and checks it (the registry meta-test checks they cover all).
PRECISION_CASES = {"fp32": "test_fp32_matches_pytorch_greedy_and_beam",
                   "int8": "test_demo_static_int8_is_calibrated_smaller_and_passes_the_gate"}


def test_the_export_keeps_the_contract_in_one_program(tiny_mt5, tiny_pte):
    from mt5lite import contract
    from mt5lite.checkpoint import load_model

    manifest = load_manifest(tiny_pte)
    assert manifest.engine == "executorch" and manifest.precision == "fp32" and manifest.static_shapes
    assert {PTE_FILE, "spiece.model"} <= set(manifest.files)
    c = load_model(tiny_mt5).config
    dims = contract.ContractDims(layers=c.num_decoder_layers, heads=c.num_heads, d_kv=c.d_kv, d_model=c.d_model,
                                 vocab_size=c.vocab_size, max_source_length=SOURCE, max_target_length=TARGET,
                                 static_shapes=True)
    specs = contract.graph_specs(dims, {"encoder": PTE_FILE, "decoder": PTE_FILE})
    for role in ("encoder", "decoder"):  # the contract's names, shapes and dtypes, one method per graph
        graph = manifest.graphs[role]
        assert graph.file == PTE_FILE and graph.method == role
        assert (graph.inputs, graph.outputs) == (specs[role].inputs, specs[role].outputs)
        assert manifest.engine_info["methods"][role]["delegated_subgraphs"] >= 1  # XNNPACK runs the products


def test_fp32_matches_pytorch_greedy_and_beam(tiny_mt5, tiny_pte):
    from mt5lite.verification.parity import ParityOptions, parity_report

    report = parity_report(tiny_mt5, tiny_pte, read_task_pairs()[::40], ParityOptions(max_new_tokens=TARGET))
    config = ExecutorchExportConfig()
    assert report["max_abs_logit_diff"] <= config.atol + config.rtol * report["max_abs_logit"]
    assert report["greedy_agreement"] == 1.0 and report["beam_agreement"] == 1.0


def test_demo_fp32_matches_pytorch_on_held_out_pairs(demo_model, executorch_fp32):
    from mt5lite.verification.parity import ParityOptions, parity_report

    report = parity_report(demo_model, executorch_fp32, read_task_pairs()[::5], ParityOptions(beam_samples=30))
    config = ExecutorchExportConfig()
    assert report["max_abs_logit_diff"] <= config.atol + config.rtol * report["max_abs_logit"]
    assert report["greedy_agreement"] == 1.0 and report["beam_agreement"] == 1.0
    assert report["exact_match"]["candidate"] == report["exact_match"]["reference"]


def test_the_embedding_both_methods_read_is_stored_once(tiny_mt5, tiny_pte):
    from mt5lite.checkpoint import load_model

    model = load_model(tiny_mt5)
    weights = sum(p.numel() for p in model.parameters()) * 4  # every parameter once (shared is one tensor)
    embedding = model.shared.weight.numel() * 4
    size = (tiny_pte / PTE_FILE).stat().st_size
    assert weights <= size < weights + embedding // 2, (size, weights, embedding)


def test_demo_static_int8_is_calibrated_smaller_and_passes_the_gate(demo_model, tmp_path):
    """One int8 export of the demo model (random weights make near-tied logits, so the gate is judged on a trained
    model): the default draw (256 samples, 512 decoder steps; with half of it German lost 3.3 points, measured),
    every linear measured for mixed precision, the gate passed against the fp32 program, nothing left beside it."""
    import torch

    from mt5lite.checkpoint import load_model

    out = tmp_path / "int8"
    result = export_executorch(demo_model, out, ExecutorchExportConfig(quantize="int8"),
                               gate=Gate(read_task_pairs(), tmp_path / "gate.json"))
    quantization = result.manifest.quantization
    assert result.manifest.precision == "int8" and quantization.recipe == "executorch-int8"
    draw = CalibrationDraw()
    assert quantization.calibration["samples"] == draw.samples and len(quantization.calibration["languages"]) >= 10
    mixed = quantization.outliers["mixed_precision"]  # every linear measured in the int8 program
    linears = sum(isinstance(m, torch.nn.Linear) for m in load_model(demo_model).modules())
    assert mixed["linears"] == linears  # each once: the cross K/V in the encoder, the rest where they run
    for path, errors in mixed["dynamic_activations"].items():
        assert errors["static_error"] >= DYNAMIC_GAIN * errors["dynamic_error"] * 0.8, path
    gate = result.gate
    assert gate["reference"].endswith("fp32") and gate["candidate"] == str(out)
    assert gate["n"] == 600 and gate["gate"]["passed"], gate["gate"]["failures"]
    assert gate["greedy_agreement"] >= 0.99 and gate["exact_match"] >= gate["exact_match_reference"] - 0.01
    assert gate["size_bytes"] < 0.4 * gate["size_bytes_reference"]
    assert not list(tmp_path.glob(".*")), "scratch files left beside the output"


def test_a_linear_static_int8_cannot_hold_gets_dynamic_activations():
    """Three linears: ``a`` reads an input whose range one run in eight sets (a token 300 times the rest, as a
    trained outlier does) and writes into a residual sum that ``b`` and ``c`` both read. The measure finds ``a``'s
    static error and gives it dynamic activations; the mixed program then measures what the measure predicted.
    ``b`` and ``c`` stay static: XNNPACK refuses dynamic activations two linears share."""
    import torch

    from mt5lite.exporters.executorch.export import _converted
    from mt5lite.exporters.executorch.mixed import MixedPrecision, linear_weights, measure_linears

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = (torch.nn.Linear(32, 32) for _ in range(3))

        def forward(self, x):
            h = x + self.a(x)
            return self.b(h) + self.c(h)

    torch.manual_seed(0)
    program = torch.export.export(Net().eval(), (torch.randn(1, 8, 32),), strict=False)
    feeds = [(torch.randn(1, 8, 32),) for _ in range(16)]
    for run in feeds[::8]:
        run[0][0, 3, 5] = 300.0
    weights = linear_weights(program.module())
    mixed = MixedPrecision(linears={"net": {name: (path, sole) for name, (_, _, path, sole) in weights.items()}})
    mixed.static["net"] = measure_linears(_converted(program, feeds), weights, feeds)
    paths = {path: name for name, (path, _) in mixed.linears["net"].items()}
    static, predicted = mixed.static["net"][paths["a"]]
    assert static > 0.05 and static > 3 * predicted and not mixed.linears["net"][paths["b"]][1]
    assert mixed.dynamic("net") == {paths["a"]}
    errors = measure_linears(_converted(program, feeds, ("a",)), weights, feeds)
    assert errors[paths["a"]][0] == pytest.approx(predicted, rel=0.02)  # as measured in the mixed program


def _write_json(folder: Path, manifest: dict) -> None:
    """Write the raw JSON object ``manifest`` as ``folder``'s manifest.json."""
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _rehashed_copy(export: Path, target: Path, edit) -> Path:
    """A copy of ``export`` with ``edit(copy)`` applied and the manifest's hashes made to match again."""
    shutil.copytree(export, target)
    edit(target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["files"] = {name: sha256_file(target / name) for name in manifest["files"]}
    _write_json(target, manifest)
    return target


def test_a_bad_program_is_refused_by_name(tiny_pte, tmp_path):
    def truncate(d):
        (d / PTE_FILE).write_bytes((d / PTE_FILE).read_bytes()[:4096])

    def garbage(d):
        (d / PTE_FILE).write_bytes(b"not a program" * 100)

    for name, edit in (("truncated", truncate), ("garbage", garbage)):
        with pytest.raises(ModelFileError, match=r"model\.pte: ExecuTorch cannot load its 'encoder' method \(") as e:
            open_export(_rehashed_copy(tiny_pte, tmp_path / name, edit))
        assert "\n" not in str(e.value), name

    shutil.copytree(tiny_pte, tmp_path / "flipped")  # not re-hashed: the manifest check refuses it first
    data = bytearray((tmp_path / "flipped" / PTE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped" / PTE_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="model.pte: sha256 does not match"):
        open_export(tmp_path / "flipped")


def test_a_manifest_that_misdescribes_a_method_is_refused(tiny_pte, tmp_path):
    def lengthen(d):
        manifest = json.loads((d / MANIFEST_NAME).read_text())
        manifest["graphs"]["decoder"]["method"] = "encoder"  # the other method: its tensors differ
        _write_json(d, manifest)

    # the decoder step's 3 inputs and its 4 stacked tensors one per layer, 2 layers
    with pytest.raises(ModelFileError, match="its 'encoder' method does not match .*manifest.json: it has 2 inputs, "
                                             "the manifest 11"):
        open_export(_rehashed_copy(tiny_pte, tmp_path / "swapped", lengthen))


def test_cli_refusals_are_one_line(tmp_path):
    done = run_cli("export", "executorch", "--model", str(tmp_path / "none"), "--output", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.decode().count("\n") == 1
    assert b"no such directory" in done.stderr and not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="unknown ExecuTorch precision 'int4'; known: fp32, int8"):
        ExecutorchExportConfig(quantize="int4")
