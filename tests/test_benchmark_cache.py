"""The benchmarks' build cache (``benchmarks.models.once``): a build is reused only when the same code made it from
the same inputs with the same options, so a retrained model or new code never measures an old build."""

from __future__ import annotations

from pathlib import Path

from benchmarks.models import once


def test_a_build_is_reused_only_while_its_inputs_and_options_are_the_same(tmp_path):
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
