"""The trained demo model through each model family's path (``mt5lite.families``), quality measured per language.

    python -m benchmarks.experiments.families_demo [--steps 300] [--output FILE.json]

No trained umT5 or Flan-T5 small enough for this machine can be downloaded here, so the trained demo model (an mT5)
is re-expressed in the other families' terms:
- ``t5-v1.1`` (Flan-T5's architecture): the same weights under ``model_type`` ``t5``, loaded by
  ``T5ForConditionalGeneration``; it computes what the demo computes.
- ``umt5``: block 0's relative-position bias copied into every self-attention layer, loaded by
  ``UMT5ForConditionalGeneration``; it computes what the demo computes (its row equals the demo's), and is then
  fine-tuned ``--steps`` steps on the task's training pairs, after which every layer's bias table is its own.
The original ``t5`` family (ReLU, tied ``lm_head``) cannot be derived from a gated model and has no row.

Each checkpoint is exported like ``make export-tflite`` does (``lite_demo.exports``: static fp32 ONNX validated
against PyTorch, static int8 ONNX and full-int8 TFLite calibrated on the task's dev pairs). Then, on the 600
held-out pairs: fp32 ONNX parity against PyTorch (logits, greedy and 4-beam ids), and both int8 exports held to the
quantization gate against their own fp32 export. Writes JSON and Markdown.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.experiments.lite_demo import exports
from benchmarks.models import training_file
from mt5lite.data import HELDOUT_TASK, read_task_pairs
from mt5lite.paths import BUILD_DIR, DEMO_MODEL
from mt5lite.reports import markdown_table, write_report
from mt5lite.verification.comparison import directory_bytes

BIAS = "{stack}.block.{index}.layer.0.SelfAttention.relative_attention_bias.weight"


def as_family(source: Path, family: str, output: Path) -> Path:
    """``source`` (an mT5 checkpoint) rewritten as a checkpoint of ``family`` computing the same function: the same
    weights, and where every layer has its own relative-position bias (umT5), block 0's copied into each."""
    import transformers
    from transformers import AutoConfig

    from mt5lite.checkpoint import load_model, save_checkpoint
    from mt5lite.families import FAMILIES

    if (output / "model.safetensors").is_file():
        return output
    model = load_model(source)
    entry = FAMILIES[family]
    config = {key: value for key, value in model.config.to_dict().items()
              if key not in ("model_type", "architectures", "transformers_version")}
    converted = getattr(transformers, entry.model_class)(AutoConfig.for_model(entry.model_type, **config))
    state = model.state_dict()
    if entry.per_layer_bias:
        for stack, layers in (("encoder", config["num_layers"]), ("decoder", config["num_decoder_layers"])):
            for index in range(1, layers):
                state[BIAS.format(stack=stack, index=index)] = state[BIAS.format(stack=stack, index=0)].clone()
    converted.load_state_dict(state, strict=True)
    converted.eval()
    save_checkpoint(converted, (source / "spiece.model").read_bytes(), output)
    return output


def table_spread(checkpoint: Path) -> float:
    """The largest difference between the decoder's layer-0 bias table and any other layer's (0: all the same)."""
    from mt5lite.checkpoint import load_model

    state = load_model(checkpoint).state_dict()
    tables = [value for key, value in state.items() if key.startswith("decoder.") and "relative_attention_bias" in key]
    return max((float((table - tables[0]).abs().max()) for table in tables[1:]), default=0.0)


def checkpoints(work: Path, train: Path, steps: int, pairs) -> dict[str, Path]:
    """Each family's checkpoint (reused when already there)."""
    from mt5lite.compression.compress import compress
    from mt5lite.compression.training import FinetuneConfig

    paths = {"mt5": DEMO_MODEL, "t5-v1.1": as_family(DEMO_MODEL, "t5-v1.1", work / "t5-v1.1"),
             "umt5-converted": as_family(DEMO_MODEL, "umt5", work / "umt5-converted"),
             "umt5-finetuned": work / "umt5-finetuned"}
    if not (paths["umt5-finetuned"] / "compress_report.json").is_file():
        configs = {"finetune": FinetuneConfig(train_data=train, max_steps=steps, batch_size=32, learning_rate=2e-4,
                                              save_steps=steps)}
        compress(paths["umt5-converted"], paths["umt5-finetuned"], list(configs), configs, pairs=pairs,
                 force=True, progress=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Build every family's checkpoint and exports, measure, and write the table."""
    from mt5lite.checkpoint import inspect_checkpoint
    from mt5lite.verification.comparison import compare_and_gate
    from mt5lite.verification.parity import ParityOptions, parity_report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of the converted umT5")
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / "families-demo.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("USE_TF", "0")

    work = BUILD_DIR / "families"
    pairs = read_task_pairs(HELDOUT_TASK)
    paths = checkpoints(work, training_file(BUILD_DIR / "lite" / "train.tsv"), args.steps, pairs)
    rows = {}
    for name, path in paths.items():
        built = exports(path, work / f"{name}-export")
        parity = parity_report(path, built["onnx"], pairs, ParityOptions(beam_samples=60))
        gates = {kind: compare_and_gate(built["onnx"], built[kind], pairs,
                                        BUILD_DIR / "reports" / f"families-{name}-{kind}.json")[0]
                 for kind in ("onnx-int8", "tflite-int8")}
        rows[name] = {
            "family": inspect_checkpoint(path).family, "checkpoint": str(path), "bias_table_spread": table_spread(path),
            "bytes": {kind: directory_bytes(export) for kind, export in built.items()},
            "parity": {key: parity[key] for key in ("max_abs_logit_diff", "max_abs_logit", "greedy_agreement",
                                                    "beam_agreement", "n", "beam_n")},
            "exact_match_fp32": parity["exact_match"]["candidate"],
            "int8": {kind: {"greedy_agreement": gate["greedy_agreement"], "exact_match": gate["exact_match"],
                            "exact_match_fp32": gate["exact_match_reference"],
                            "worst_language_drop": max(row["exact_match_reference"] - row["exact_match"]
                                                       for row in gate["per_language"].values()),
                            "per_language": {lang: row["exact_match"] for lang, row in gate["per_language"].items()},
                            "gate_passed": gate["gate"]["passed"], "failures": gate["gate"]["failures"]}
                     for kind, gate in gates.items()},
        }
        print(name, rows[name]["parity"], {kind: row["gate_passed"] for kind, row in rows[name]["int8"].items()})
    table = [[name, r["family"], f"{r['bias_table_spread']:.3f}", f"{r['parity']['max_abs_logit_diff']:.1e}",
              f"{r['parity']['greedy_agreement']:.3f} / {r['parity']['beam_agreement']:.3f}",
              f"{r['exact_match_fp32']:.3f}"]
             + [f"{i['greedy_agreement']:.3f} / {i['exact_match']:.3f} / {i['worst_language_drop'] * 100:+.1f} / "
                f"{'pass' if i['gate_passed'] else 'FAIL'}" for i in r["int8"].values()]
             for name, r in rows.items()]
    markdown = "# The demo model through each family's path\n\n" + markdown_table(
        ["checkpoint", "family", "bias table spread", "fp32 max |dlogit|", "fp32 greedy / 4-beam agreement",
         "fp32 exact match", "int8 ONNX: agreement / EM / worst language drop (points) / gate",
         "int8 TFLite: same"], table)
    write_report({"steps": args.steps, "heldout": len(pairs), "rows": rows}, args.output, markdown)
    print(markdown)
    return 0 if all(i["gate_passed"] for r in rows.values() for i in r["int8"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
