"""``mt5lite``: the command line, a thin layer over the Python API.

Libraries raise typed errors; this module turns them into one-line messages and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mt5lite import __version__
from mt5lite.errors import InputError, Mt5LiteError
from mt5lite.paths import DEMO_MODEL

EXIT_USAGE = 2


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEMO_MODEL,
                        help="a local Hugging Face T5/mT5 checkpoint directory "
                        "(generate and evaluate also take an mt5lite export)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickle weights (pytorch_model.bin); only for checkpoints you trust")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (None: the engine decides)")


def _add_decoding_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-beams", type=int, default=1, help="1 = greedy search")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="most tokens to generate per input")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam search length penalty")
    parser.add_argument("--early-stopping", action="store_true",
                        help="beam search: stop once num_beams hypotheses are finished")


def _decoding_options(args: argparse.Namespace):
    from runtimes.options import DecodingOptions

    return DecodingOptions(
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        early_stopping=args.early_stopping,
    ).validate()


def _read_inputs(args: argparse.Namespace) -> list[str]:
    """The texts to process: positional arguments, or lines of --input-file ('-' for stdin), as UTF-8."""
    from runtimes.tokenizer import validate_text

    if args.text and args.input_file:
        raise InputError("give either TEXT arguments or --input-file, not both")
    if args.input_file:
        raw = sys.stdin.buffer.read() if str(args.input_file) == "-" else _read_bytes(args.input_file)
        try:
            texts = raw.decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise InputError(f"{args.input_file}:{line}: invalid UTF-8 (byte {exc.start}); save it as UTF-8") from None
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise InputError(f"{args.input_file}: no non-empty lines to process")
    else:
        texts = list(args.text)
        if not texts:
            raise InputError("no input text; give TEXT arguments or --input-file")
    for index, text in enumerate(texts):
        validate_text(text, index if len(texts) > 1 else None)
    return texts


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate text for each input: with ONNX Runtime when --model is an export directory (it has a
    manifest.json), with the PyTorch reference when it is a Hugging Face checkpoint."""
    from runtimes.generators import open_generator
    from runtimes.tokenizer import Overflow

    texts = _read_inputs(args)
    options = _decoding_options(args)
    overflow = Overflow.TRUNCATE if args.truncate else Overflow.ERROR
    generator = open_generator(args.model, args.allow_pickle, args.threads, args.max_source_length)
    for output in generator.generate(texts, options, overflow):
        print(output)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Export a checkpoint as encoder.onnx + decoder.onnx (decoder step over a fixed-size KV cache), with the
    tokenizer and manifest.json, validated against PyTorch before it is written."""
    from exporters.onnx_export import OnnxExportConfig, export_onnx

    config = OnnxExportConfig(max_source_length=args.max_source_length, max_target_length=args.max_target_length,
                              static_shapes=args.static_shapes, opset=args.opset,
                              validate_samples=args.validate_samples)
    result = export_onnx(args.model, args.output, config, force=args.force, allow_pickle=args.allow_pickle,
                         progress=True)
    for row in result["validation"]["rows"]:
        print(f"  {row['output']}: max |diff| {row['max_abs_diff']:.2e} (tolerance {row['tolerance']:.2e})")
    print(f"validated on {result['validation']['samples']} held-out inputs in "
          f"{len(result['validation']['languages'])} languages")
    print(f"export written to {args.output}")
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """Compare PyTorch with an export on a held-out set: logits, greedy and beam ids, exact match and chrF."""
    from mt5lite.data import read_task_pairs
    from mt5lite.parity import parity_report, write_parity_report

    options = _decoding_options(args)
    report = parity_report(args.model, args.export, read_task_pairs(args.data), threads=args.threads,
                           max_new_tokens=options.max_new_tokens, num_beams=args.num_beams,
                           beam_samples=args.beam_samples, allow_pickle=args.allow_pickle, progress=True)
    json_path, md_path = write_parity_report(report, args.report)
    print(f"max |logit diff| {report['max_abs_logit_diff']:.2e}  greedy agreement {report['greedy_agreement']:.3f}  "
          f"token agreement {report['token_agreement']:.3f}  beam agreement {report['beam_agreement']:.3f}")
    print(f"exact match: reference {report['exact_match']['reference']:.3f}, "
          f"candidate {report['exact_match']['candidate']:.3f}")
    print(f"report: {json_path} and {md_path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a checkpoint or an export on a held-out set with references and write the report."""
    from mt5lite.data import read_task_pairs
    from mt5lite.evaluation import evaluate_model, write_evaluation_report

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = _decoding_options(args)
    pairs = read_task_pairs(args.data)
    report = evaluate_model(args.model, pairs, options, allow_pickle=args.allow_pickle, threads=args.threads,
                            batch_size=args.batch_size, progress=True)
    report["data"] = str(args.data)
    json_path, md_path = write_evaluation_report(report, args.report)
    print(f"exact_match {report['exact_match']:.3f}  chrF {report['chrf']:.1f}  (n={report['n']})")
    for lang, row in report["per_language"].items():
        print(f"  {lang:>4}  exact_match {row['exact_match']:.3f}  chrF {row['chrf']:5.1f}  n={row['n']}")
    print(f"report: {json_path} and {md_path}")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    """Train the bundled demo model (about 20 minutes on 2 cores)."""
    from mt5lite.demo_model import main as train_main

    argv = ["--output", str(args.output), "--steps", str(args.steps)] + (["--force"] if args.force else [])
    return train_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The ``mt5lite`` argument parser with all subcommands."""
    from mt5lite.data import HELDOUT_TASK
    from mt5lite.demo_config import DemoConfig

    parser = argparse.ArgumentParser(
        prog="mt5lite",
        description="Make multilingual T5 models small and fast, and prove each stage still computes the same.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"mt5lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser("generate", help="generate text with a checkpoint (PyTorch) or an export (ONNX Runtime)",
                         formatter_class=_Formatter, description=cmd_generate.__doc__)
    gen.add_argument("text", nargs="*", help="input texts, e.g. 'words fr: 1234'")
    gen.add_argument("--input-file", type=Path, help="read one input per line from this UTF-8 file ('-': stdin)")
    _add_model_args(gen)
    _add_decoding_args(gen)
    gen.add_argument("--max-source-length", type=int, default=512, help="longest input, in tokens (eos included)")
    gen.add_argument("--truncate", action="store_true",
                     help="truncate longer inputs with a warning instead of failing")
    gen.set_defaults(func=cmd_generate)

    ev = sub.add_parser("evaluate", help="score a checkpoint on a held-out set (exact match, chrF, per language)",
                        formatter_class=_Formatter, description=cmd_evaluate.__doc__)
    _add_model_args(ev)
    _add_decoding_args(ev)
    ev.add_argument("--data", type=Path, default=HELDOUT_TASK, help="held-out pairs: lang<TAB>source<TAB>target")
    ev.add_argument("--report", type=Path, default=Path("build/eval_report.json"),
                    help="JSON report to write (a Markdown twin is written beside it)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.set_defaults(func=cmd_evaluate)

    export = sub.add_parser("export", help="export a checkpoint (onnx)", formatter_class=_Formatter)
    targets = export.add_subparsers(dest="target", metavar="TARGET", required=True)
    onnx = targets.add_parser("onnx", help="split encoder / decoder-step ONNX graphs + manifest",
                              formatter_class=_Formatter, description=cmd_export_onnx.__doc__)
    _add_model_args(onnx)
    onnx.add_argument("--output", type=Path, required=True, help="export directory to create")
    onnx.add_argument("--max-source-length", type=int, default=128, help="longest input in tokens (eos included)")
    onnx.add_argument("--max-target-length", type=int, default=64, help="positions in the decoder's KV cache")
    onnx.add_argument("--static-shapes", action="store_true",
                      help="fix batch 1 and the source length (for TFLite); default: dynamic, for ONNX Runtime")
    onnx.add_argument("--opset", type=int, default=17)
    onnx.add_argument("--validate-samples", type=int, default=16, help="held-out inputs compared with PyTorch")
    onnx.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    onnx.set_defaults(func=cmd_export_onnx)

    parity = sub.add_parser("parity", help="compare PyTorch with an export on a held-out set",
                            formatter_class=_Formatter, description=cmd_parity.__doc__)
    _add_model_args(parity)
    parity.add_argument("--export", type=Path, required=True, help="an mt5lite export directory")
    parity.add_argument("--data", type=Path, default=HELDOUT_TASK, help="held-out pairs: lang<TAB>source<TAB>target")
    parity.add_argument("--report", type=Path, default=Path("build/parity.json"),
                        help="JSON report to write (a Markdown twin is written beside it)")
    parity.add_argument("--num-beams", type=int, default=4, help="beams for the beam-search comparison")
    parity.add_argument("--max-new-tokens", type=int, default=32)
    parity.add_argument("--beam-samples", type=int, default=None, help="compare beam search on the first N inputs")
    parity.set_defaults(func=cmd_parity, length_penalty=1.0, early_stopping=False)

    train = sub.add_parser("train-demo", help="train the bundled demo model from scratch (fixed seeds)",
                           formatter_class=_Formatter, description=cmd_train_demo.__doc__)
    train.add_argument("--output", type=Path, default=DEMO_MODEL)
    train.add_argument("--steps", type=int, default=DemoConfig.steps)
    train.add_argument("--force", action="store_true", help="replace an existing output directory")
    train.set_defaults(func=cmd_train_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 success, 2 bad input or usage, 130 interrupted)."""
    os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow (it can abort the process)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Mt5LiteError as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"mt5lite {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mt5lite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
