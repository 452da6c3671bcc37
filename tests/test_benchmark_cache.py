"""The benchmarks' build cache (``benchmarks.models.once``): a build is reused only when the same code made it from
the same inputs with the same options, so a retrained model or new code never measures an old build."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.models import once


def test_a_build_is_reused_only_while_its_inputs_and_options_are_the_same(tmp_path):
    """Reused while nothing changes; built again for a changed input, other options or an unfinished build."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"first")
    made: list[str] = []

    def make(out: Path) -> None:  # a finished checkpoint: its compress_report.json
        out.mkdir(parents=True, exist_ok=True)
        (out / "compress_report.json").write_text((model / "weights.bin").read_text(), encoding="utf-8")
        made.append(out.name)

    out = tmp_path / "build" / "trimmed"
    assert once(out, make, inputs=(model,), options={"pieces": 10}) == out and made == ["trimmed"]
    once(out, make, inputs=(model,), options={"pieces": 10})
    assert made == ["trimmed"]  # reused

    (model / "weights.bin").write_bytes(b"second")  # the model retrained: built again from it
    once(out, make, inputs=(model,), options={"pieces": 10})
    assert made == ["trimmed"] * 2 and (out / "compress_report.json").read_text(encoding="utf-8") == "second"

    once(out, make, inputs=(model,), options={"pieces": 20})  # other options
    assert made == ["trimmed"] * 3

    (out / "compress_report.json").unlink()  # unfinished: built again whatever the stamp says
    once(out, make, inputs=(model,), options={"pieces": 20})
    assert made == ["trimmed"] * 4
    assert sorted(p.name for p in out.parent.iterdir()) == [".trimmed.made-by", "trimmed"]


def test_a_checkpoint_input_is_known_by_what_it_computes_and_a_missing_input_is_an_error(tmp_path):
    """A checkpoint's card or report is not what a build reads from it: rewriting them reuses the build; its
    weights are. A missing input never hashes to a constant."""
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    for name, text in (("config.json", "{}"), ("model.safetensors", "w1"), ("spiece.model", "sp"),
                       ("README.md", "card")):
        (checkpoint / name).write_text(text, encoding="utf-8")
    made: list[int] = []

    def make(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compress_report.json").write_text("{}", encoding="utf-8")
        made.append(1)

    out = tmp_path / "build" / "student"
    once(out, make, inputs=(checkpoint,))
    (checkpoint / "README.md").write_text("a new card", encoding="utf-8")
    once(out, make, inputs=(checkpoint,))
    assert len(made) == 1
    (checkpoint / "model.safetensors").write_text("w2", encoding="utf-8")
    once(out, make, inputs=(checkpoint,))
    assert len(made) == 2
    with pytest.raises(FileNotFoundError, match="missing"):
        once(out, make, inputs=(tmp_path / "nowhere",))
    assert len(made) == 2
