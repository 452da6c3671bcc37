"""The quantization sensitivity analysis on the trained demo model: one row per node group plus the default recipe
and every group together, measured numbers that tell the harmless groups from the one that breaks decoding, the
report's Markdown twin, and no scratch left beside the export."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from mt5lite.data import DEV_TASK, read_tagged_texts
from mt5lite.exporters.quantize.groups import GROUPS
from mt5lite.exporters.quantize.recipes import DEFAULT_STATIC_GROUPS, WEIGHT_GROUPS, QuantizeConfig
from mt5lite.exporters.quantize.sensitivity import sensitivity_analysis, write_sensitivity_report

TEXTS = 20  # inputs from the development set, every language (the README's table uses 200)


@pytest.fixture(scope="module")
def analysis(demo_export, tmp_path_factory):
    """The analysis of a private copy of the demo export, with every scratch directory it created."""
    root = tmp_path_factory.mktemp("sensitivity")
    export = root / "onnx"
    shutil.copytree(demo_export, export)
    texts = [s.text for s in read_tagged_texts(DEV_TASK)]
    texts = texts[:: len(texts) // TEXTS][:TEXTS]
    created: list[Path] = []
    make_directory = tempfile.mkdtemp

    def recording_mkdtemp(*args, **kwargs):
        created.append(Path(make_directory(*args, **kwargs)))
        return str(created[-1])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
        report = sensitivity_analysis(export, texts, QuantizeConfig(samples=100, max_decoder_steps=32))
    return {"report": report, "export": export, "created": created}


def _rows(report: dict) -> dict[str, dict]:
    return {row["variant"]: row for row in report["rows"]}


def test_one_row_per_group_then_the_default_recipe_and_every_group(analysis):
    report = analysis["report"]
    assert [row["variant"] for row in report["rows"]] == [*GROUPS, "default recipe", "every group"]
    rows = _rows(report)
    assert all(rows[group]["groups"] == [group] for group in GROUPS)
    assert rows["default recipe"]["groups"] == list(DEFAULT_STATIC_GROUPS) == report["default_groups"]
    assert rows["every group"]["groups"] == list(GROUPS)
    assert [row["variant"] for row in report["rows"] if "error" in row] == []
    assert report["n"] == TEXTS and report["calibration"] == {"file": str(QuantizeConfig().calibration),
                                                              "samples": 100, "decoder_steps": 32}


def test_every_variant_is_measured(analysis):
    rows = _rows(analysis["report"])
    for name, row in rows.items():
        assert row["quantized_nodes"] > 0, name
        assert 0.0 <= row["greedy_agreement"] <= 1.0 and 0.0 <= row["token_agreement"] <= 1.0, name
        assert row["max_abs_logit_diff"] > 0.0 and row["mean_relative_logit_error"] > 0.0, name  # int8 is lossy
    # The groups are disjoint: the combined variants quantize exactly the nodes of their groups.
    for combined in ("default recipe", "every group"):
        assert rows[combined]["quantized_nodes"] == sum(rows[g]["quantized_nodes"] for g in rows[combined]["groups"])


def test_weight_groups_shrink_the_export_and_activation_groups_do_not(analysis):
    rows = _rows(analysis["report"])
    for group in WEIGHT_GROUPS:
        assert rows[group]["size_ratio"] < 1.0, group
    for group in (g for g in GROUPS if not GROUPS[g].weights):  # Q/DQ pairs on activations only add bytes
        assert rows[group]["size_ratio"] >= 1.0, group
    # int8 weights are a quarter of fp32 ones (README: 27.4% for the default recipe).
    assert rows["default recipe"]["size_ratio"] < 0.35
    assert rows["default recipe"]["size_ratio"] < min(rows[group]["size_ratio"] for group in WEIGHT_GROUPS)


def test_softmax_breaks_decoding_and_the_weight_groups_do_not(analysis):
    # README (200 inputs): every weight group alone keeps greedy agreement 1.000; softmax alone drops it to 0.06,
    # with a mean relative logit error of 0.81 against 0.007 for the embeddings.
    rows = _rows(analysis["report"])
    for group in (*WEIGHT_GROUPS, "default recipe"):
        assert rows[group]["greedy_agreement"] >= 0.9, (group, rows[group])
    assert rows["softmax"]["greedy_agreement"] <= 0.5 and rows["every group"]["greedy_agreement"] <= 0.5
    embeddings, softmax = rows["embeddings"], rows["softmax"]
    assert softmax["mean_relative_logit_error"] > 10 * embeddings["mean_relative_logit_error"], (softmax, embeddings)


def test_report_and_its_markdown_twin(analysis, tmp_path):
    report = analysis["report"]
    json_path, md_path = write_sensitivity_report(report, tmp_path / "reports" / "sensitivity.json")
    assert json_path == tmp_path / "reports" / "sensitivity.json" and md_path == json_path.with_suffix(".md")
    assert json.loads(json_path.read_text(encoding="utf-8")) == report
    table = [line for line in md_path.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0].removeprefix("| ") for line in table[1:]] == [row["variant"]
                                                                                for row in report["rows"]]
    softmax = next(line for line in table if line.startswith("| softmax |"))
    assert f"| {_rows(report)['softmax']['greedy_agreement']:.3f} |" in softmax


def test_no_scratch_is_left_beside_the_export(analysis):
    export = analysis["export"]
    scratch = [path for path in analysis["created"] if path.name.startswith(f".{export.name}.sensitivity-")]
    assert [path.parent for path in scratch] == [export.parent]  # the analysis did write its scratch there ...
    assert sorted(path.name for path in export.parent.iterdir()) == [export.name]  # ... and removed it
