"""``mt5lite``: the command line, a thin layer over the Python API.

Libraries raise typed errors; this module turns them into one-line messages and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from mt5lite import __version__
from mt5lite.errors import InputError, Mt5LiteError, QualityGateError, os_error_line
from mt5lite.paths import DEMO_MODEL, NATURAL_MODEL
from mt5lite.quiet import quiet_third_party_logs

EXIT_USAGE = 2
EXIT_GATE = 1  # the command ran, but its result misses the quality gate
#: ``generate`` warns when no piece covers at least this share of the input's characters
UNCOVERED_WARNING = 0.1
#: The extra that brings each optional top-level module (pyproject.toml); a command that needs a missing one says
#: which extra to install instead of failing with a traceback.
EXTRA_OF_MODULE = {
    "torch": "export", "transformers": "export", "safetensors": "export", "onnx": "export", "tensorflow": "export",
    "google": "export", "ai_edge_litert": "litert", "sacrebleu": "eval", "tqdm": "eval", "num2words": "train",
    "accelerate": "train", "executorch": "executorch", "torchao": "executorch", "tomli_w": "export",
    "babel": "train", "dataset_build": "train",
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEMO_MODEL,
                        help="a local Hugging Face T5, Flan-T5, mT5 or umT5 checkpoint directory "
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
    from mt5lite.runtimes.options import DecodingOptions

    return DecodingOptions(
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        early_stopping=args.early_stopping,
    )


def _read_inputs(args: argparse.Namespace) -> list[str]:
    """The texts to process: positional arguments, or lines of --input-file ('-' for stdin), as UTF-8."""
    from mt5lite.runtimes.tokenizer import validate_text

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


def uncovered_warning(missing: int, characters: int) -> str | None:
    """What ``generate`` warns when ``missing`` of the input's ``characters`` are in no piece of the vocabulary
    (``Tokenizer.uncovered``), or None below ``UNCOVERED_WARNING``."""
    if not characters or missing / characters < UNCOVERED_WARNING:
        return None
    return (f"{missing} of {characters} input characters ({missing / characters:.0%}) are in no piece of the "
            "vocabulary (byte fallback spells them in bytes, or they are unknown): the model saw little such text "
            "(was its vocabulary trimmed to other languages?), so expect weaker outputs")


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate text for each input: with ONNX Runtime when --model is an export directory (it has a
    manifest.json), with the PyTorch reference when it is a Hugging Face checkpoint."""
    from mt5lite.runtimes.generators import claim_process, open_generator
    from mt5lite.runtimes.tokenizer import Overflow

    texts = _read_inputs(args)
    options = _decoding_options(args)
    overflow = Overflow.TRUNCATE if args.truncate else Overflow.ERROR
    claim_process(args.model, args.threads)  # this command runs nothing but the model
    generator = open_generator(args.model, args.allow_pickle, args.threads, args.max_source_length)
    warning = uncovered_warning(*generator.tokenizer.uncovered(texts))
    if warning:
        warnings.warn(warning, stacklevel=1)
    for output in generator.generate(texts, options, overflow):
        print(output)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Export a checkpoint as encoder.onnx + decoder.onnx (decoder step over a fixed-size KV cache), with the
    tokenizer and manifest.json, validated against PyTorch before it is written."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    config = OnnxExportConfig(max_source_length=args.max_source_length, max_target_length=args.max_target_length,
                              static_shapes=args.static_shapes, opset=args.opset,
                              validate_samples=args.validate_samples, decoder_batches=tuple(args.decoder_batches),
                              source_buckets=None if args.source_buckets is None else tuple(args.source_buckets))
    result = export_onnx(args.model, args.output, config, force=args.force, allow_pickle=args.allow_pickle,
                         progress=True)
    for row in result.validation.rows:
        print(f"  {row['output']}: max |diff| {row['max_abs_diff']:.2e} (tolerance {row['tolerance']:.2e})")
    print(f"validated on {result.validation.samples} held-out inputs in {len(result.validation.languages)} languages")
    print(f"export written to {args.output}")
    return 0


def cmd_export_tflite(args: argparse.Namespace) -> int:
    """Convert a static-shape fp32 ONNX export (mt5lite export onnx --static-shapes) into one model.tflite for
    LiteRT, an encoder and a decoder signature sharing their common weights: same tensor names and shapes, manifest
    with hashes and op lists, each signature run once in a child process, then validated against the ONNX export.
    Full int8 is calibrated on multilingual samples; every precision but fp32 is then compared with the ONNX export
    on a held-out set and held to the quality gate."""
    from mt5lite.exporters.quantize.calibration import CalibrationDraw
    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS, TfliteOptions, export_tflite

    gate = _gate(args)  # the held-out pairs read before any work, so a bad file fails fast
    calibration = CalibrationDraw(args.calibration, args.samples, args.max_decoder_steps)
    result = export_tflite(args.export, args.output, args.quantize, force=args.force, calibration=calibration,
                           gate=gate, progress=True,
                           options=TfliteOptions(allow_flex=args.allow_flex, float_parts=tuple(args.float_parts)))
    checked = ", checked" if result.validation.checked_against_tolerance else ", reported only"
    for row in result.validation.rows:
        print(f"  {row['output']} vs ONNX fp32: max |diff| {row['max_abs_diff']:.2e} (tolerance {row['tolerance']:.2e}"
              f"{checked})")
    manifest = result.manifest
    for role, ops in manifest.engine_ops.items():
        print(f"  {role} signature ops: {' '.join(ops)}")
    buffers, shared = manifest.shared_weights
    print(f"  {manifest.weights_file}: {manifest.weights_bytes / 1e6:.1f} MB of weights, "
          f"{shared / 1e6:.1f} MB of them ({buffers} buffers) stored once for both signatures")
    for role, mask in manifest.quantization.masking_constants.items():
        print(f"  {role} attention mask constant {mask['value']} (leak <= {mask['tolerance']} on "
              f"{mask['masked_rows']} calibration rows)")
    print(f"{args.quantize} TFLite export written to {args.output}")
    if TFLITE_PRECISIONS[args.quantize].exact:  # held to the fp32 tolerance during the export itself
        return 0
    return _print_gate(result.gate, args, "mt5lite export tflite")


def cmd_export_executorch(args: argparse.Namespace) -> int:
    """Export a checkpoint as one ExecuTorch program (model.pte) with an encoder and a decoder method sharing their
    common weights, lowered to the XNNPACK delegate: the contract's names, shapes and manifest. fp32 is validated
    against PyTorch; int8 (static, PT2E) is calibrated on the same multilingual draw as ONNX and TFLite int8, then
    compared with the fp32 program on a held-out set and held to the quality gate."""
    from mt5lite.exporters.executorch.export import PTE_PRECISIONS, ExecutorchExportConfig, export_executorch
    from mt5lite.exporters.quantize.calibration import CalibrationDraw

    gate = _gate(args)  # the held-out pairs read before any work, so a bad file fails fast
    config = ExecutorchExportConfig(max_source_length=args.max_source_length, max_target_length=args.max_target_length,
                                    quantize=args.quantize, validate_samples=args.validate_samples)
    result = export_executorch(args.model, args.output, config, force=args.force, allow_pickle=args.allow_pickle,
                               calibration=CalibrationDraw(args.calibration, args.samples, args.max_decoder_steps),
                               gate=gate, progress=True)
    for row in (result.validation.rows if result.validation else ()):
        print(f"  {row['output']}: max |diff| {row['max_abs_diff']:.2e} (tolerance {row['tolerance']:.2e})")
    manifest = result.manifest
    for role, method in manifest.engine_ops.items():
        print(f"  {role} method: {method['delegated_subgraphs']} XNNPACK subgraphs; portable ops: "
              f"{' '.join(method['portable_ops']) or 'none'}")
    print(f"  {manifest.weights_file}: {manifest.weights_bytes / 1e6:.1f} MB")
    print(f"{args.quantize} ExecuTorch export written to {args.output}")
    if PTE_PRECISIONS[args.quantize].exact:
        return 0
    return _print_gate(result.gate, args, "mt5lite export executorch")


def _pipeline_config(args: argparse.Namespace):
    """The pipeline's configuration: ``--config`` with the command line's options over it."""
    from mt5lite.compression.passes import PASSES
    from mt5lite.workflow import configure, load_config

    base = load_config(args.config)
    chain = args.compress.split(",") if args.compress is not None else base.compress.chain()
    passes = {name.strip(): _pass_options(args, PASSES[name.strip()].config) for name in chain if name.strip()}
    return configure(base, model=args.model, output=args.output, data=args.data, gate=args.gate,
                     threads=args.threads, allow_pickle=args.allow_pickle or None, compress=args.compress,
                     int8=args.int8, tflite=args.tflite, executorch=args.executorch, calibration=args.calibration,
                     pass_options={name: options for name, options in passes.items() if options})


def _announce(index: int, total: int, planned) -> None:
    state = "reused" if planned.reuse else f"running ({planned.why})"
    print(f"[{index}/{total}] {planned.name}: {state}", flush=True)


def cmd_pipeline(args: argparse.Namespace) -> int:
    """The main job in one command: compression (optional) -> ONNX export (validated) and its parity report ->
    int8 ONNX (the recipe, gated) -> TFLite at a precision (gated below fp32) and its parity report -> ExecuTorch
    (if asked) -> the pipeline report. Options come from --config (TOML; every stage's section holds its command's
    options) with the command line over them; the run is recorded as OUTPUT/pipeline.toml. A stage is reused when
    its inputs (by content), options and the code are unchanged, so a repeated or killed run picks up where it
    stopped. A failed quality gate stops the pipeline with exit 1 and keeps that export for inspection."""
    import tomli_w

    from mt5lite.workflow import check, plan, run_pipeline
    from mt5lite.workflow.config import as_table
    from mt5lite.workflow.stages import STAGES

    config = _pipeline_config(args)
    if args.print_config:
        print(tomli_w.dumps(as_table(config)), end="")
        return 0
    if args.dry_run:
        check(config)
        for index, planned in enumerate(plan(config, args.force), 1):
            state = "reuse" if planned.reuse else f"run ({planned.why})"
            print(f"[{index}] {planned.name}: {state} -> {', '.join(str(p) for p in planned.outputs)}")
        return 0
    result = run_pipeline(config, force=args.force, progress=True, announce=_announce)
    print(f"\npipeline finished in {config.output}:")
    for stage in result.stages:
        print(f"  {stage.name:>13}  {'reused (built in' if stage.reused else 'built in'} {stage.seconds:.0f} s"
              f"{')' if stage.reused else ''}  "
              f"{STAGES[stage.name].headline(stage.summary)}")
    if result.report is not None:
        print(f"pipeline report: {result.report} (Markdown and PNG beside it)")
    return 0


def cmd_pipeline_report(args: argparse.Namespace) -> int:
    """One report over every stage of a pipeline run (PyTorch, compressed, ONNX fp32, int8 ONNX, TFLite): logit
    differences against PyTorch and against the stage each was made from, greedy and beam agreement, exact match
    and chrF per language, size and ms/token; JSON, Markdown and a PNG plot."""
    from mt5lite.data import read_task_pairs
    from mt5lite.verification.pipeline import ReportSamples, pipeline_report, write_pipeline_report

    exports = []
    for stage in args.stage:
        name, _, directory = stage.partition("=")
        if not name or not directory:
            raise InputError(f"--stage {stage!r}: give NAME=DIR, e.g. --stage onnx=build/onnx")
        exports.append((name, Path(directory)))
    report = pipeline_report(args.model, exports, read_task_pairs(args.data), original_dir=args.original,
                             samples=ReportSamples(beam=args.beam_samples), threads=args.threads,
                             allow_pickle=args.allow_pickle, progress=True)
    paths = write_pipeline_report(report, args.report)
    for name, stage in report["stages"].items():
        print(f"{name:>10}: exact match {stage['exact_match']:.3f}, {stage['bytes'] / 1e6:.2f} MB, "
              f"{stage['ms_per_token']:.2f} ms/token")
    print("report: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """Compare PyTorch with an export on a held-out set: logits, greedy and beam ids, exact match and chrF."""
    from mt5lite.data import read_task_pairs
    from mt5lite.verification.parity import ParityOptions, parity_report, write_parity_report

    options = ParityOptions(max_new_tokens=_decoding_options(args).max_new_tokens, num_beams=args.num_beams,
                            beam_samples=args.beam_samples)
    report = parity_report(args.model, args.export, read_task_pairs(args.data), options, threads=args.threads,
                           allow_pickle=args.allow_pickle, progress=True)
    json_path, md_path = write_parity_report(report, args.report)
    print(f"max |logit diff| {report['max_abs_logit_diff']:.2e}  greedy agreement {report['greedy_agreement']:.3f}  "
          f"token agreement {report['token_agreement']:.3f}  beam agreement {report['beam_agreement']:.3f}")
    print(f"exact match: reference {report['exact_match']['reference']:.3f}, "
          f"candidate {report['exact_match']['candidate']:.3f}")
    print(f"report: {json_path} and {md_path}")
    return 0


def _calibration_fields(args: argparse.Namespace) -> dict:
    """The calibration settings every quantizing command shares (``_add_quantize_args``)."""
    return {"method": args.method, "per_channel": args.per_channel, "format": args.format,
            "calibration": args.calibration, "samples": args.samples, "max_decoder_steps": args.max_decoder_steps}


def _quantize_config(args: argparse.Namespace):
    from mt5lite.exporters.quantize.recipes import QuantizeConfig

    return QuantizeConfig(recipe=args.recipe, groups=tuple(args.groups) if args.groups else None,
                          exclude=tuple(args.exclude), smooth=args.smooth, keep_wide=args.keep_wide,
                          **_calibration_fields(args))


def cmd_quantize(args: argparse.Namespace) -> int:
    """Quantize an fp32 ONNX export into a new export (same contract, manifest naming the recipe), then compare
    it with the fp32 export on a held-out set: agreement, exact match per language, size and decoding speed."""
    from mt5lite.exporters.quantize.recipes import quantize_export

    config = _quantize_config(args)
    gate = _gate(args)  # the held-out pairs read before any work, so a bad file fails fast
    result = quantize_export(args.export, args.output, config, force=args.force, progress=True, gate=gate)
    quantization = result.manifest.quantization
    counts = ", ".join(f"{role}: {n} quantized nodes" for role, n in quantization.quantized_nodes.items())
    print(f"{quantization.recipe} export written to {args.output} ({counts})")
    return _print_gate(result.gate, args, "mt5lite quantize")


def _gate(args: argparse.Namespace):
    """The quality gate of an export command: its ``--data`` pairs, ``--report`` and ``--threads``; judged, not
    enforced (``_print_gate`` sets the exit code by ``--gate``)."""
    from mt5lite.data import read_task_pairs
    from mt5lite.verification.comparison import Gate

    return Gate(read_task_pairs(args.data), args.report, args.threads, progress=True, enforce=False)


def _print_gate(report: dict, args: argparse.Namespace, command: str) -> int:
    """Print a gated export's comparison report (``Gate.judge``): where it was written and the verdict;
    ``EXIT_GATE`` when it fails and ``--gate`` is on."""
    print(f"report: {report['files'][0]} and {report['files'][1]}")
    failures = report["gate"]["failures"]
    print(f"greedy agreement {report['greedy_agreement']:.3f}  exact match {report['exact_match']:.3f} "
          f"(fp32 {report['exact_match_reference']:.3f})  size {report['size_bytes'] / 1e6:.2f} MB "
          f"({report['size_bytes'] / report['size_bytes_reference']:.1%} of fp32)  "
          f"speed {report['speed']['speedup']:.2f}x fp32")
    print("quality gate: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)))
    if failures and args.gate:
        from mt5lite.verification.comparison import gate_failure

        print(f"{command}: {gate_failure(report, args.output)}", file=sys.stderr)
        return EXIT_GATE
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Quantize one node group at a time (static int8) and measure each against the fp32 export: greedy
    agreement and teacher-forced logit error. The default static recipe is chosen from this table."""
    from mt5lite.data import read_tagged_texts
    from mt5lite.exporters.quantize.calibration import draw_samples
    from mt5lite.exporters.quantize.recipes import QuantizeConfig
    from mt5lite.exporters.quantize.sensitivity import sensitivity_analysis, write_sensitivity_report

    # static int8, every group on its own: nothing smoothed or kept wide behind its back (sensitivity_analysis)
    config = QuantizeConfig(recipe="static-int8", smooth=False, keep_wide=False, **_calibration_fields(args))
    texts = [s.text for s in draw_samples(read_tagged_texts(args.data), args.eval_samples, source=str(args.data))]
    report = sensitivity_analysis(args.export, texts, config, threads=args.threads, progress=True)
    json_path, md_path = write_sensitivity_report(report, args.report)
    for row in report["rows"]:
        if "error" in row:
            print(f"  {row['variant']:>16}: {row['error']}")
        else:
            print(f"  {row['variant']:>16}: greedy agreement {row['greedy_agreement']:.3f}  mean relative logit "
                  f"error {row['mean_relative_logit_error']:.4f}")
    print(f"report: {json_path} and {md_path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a checkpoint or an export on a held-out set with references and write the report."""
    from mt5lite.data import read_task_pairs
    from mt5lite.runtimes.generators import claim_process
    from mt5lite.verification.evaluation import evaluate_model, write_evaluation_report

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = _decoding_options(args)
    pairs = read_task_pairs(args.data)
    claim_process(args.model, args.threads)  # this command runs nothing but the model
    report = evaluate_model(args.model, pairs, options, allow_pickle=args.allow_pickle, threads=args.threads,
                            batch_size=args.batch_size, progress=True)
    report["data"] = str(args.data)
    json_path, md_path = write_evaluation_report(report, args.report)
    print(f"exact_match {report['exact_match']:.3f}  chrF {report['chrf']:.1f}  (n={report['n']})")
    for lang, row in report["per_language"].items():
        print(f"  {lang:>4}  exact_match {row['exact_match']:.3f}  chrF {row['chrf']:5.1f}  n={row['n']}")
    print(f"report: {json_path} and {md_path}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    """Run compression passes on a checkpoint and write an ordinary Hugging Face checkpoint (safetensors, config,
    spiece.model, tokenizer files) with compress_report.json + .md beside it: parameters, bytes, vocabulary and
    held-out quality (exact match, chrF, per language) before and after each pass."""
    from mt5lite.compression.compress import compress
    from mt5lite.compression.passes import PASSES, RECIPES
    from mt5lite.compression.training import is_main_process
    from mt5lite.data import read_task_pairs

    if args.recipe:
        names = list(RECIPES[args.recipe].passes)
    else:
        names = [name.strip() for name in args.passes.split(",") if name.strip()]
    if "distill" in names and args.teacher is None:
        args.teacher = args.model  # the student comes from the teacher: by default the checkpoint being compressed
    configs = {name: PASSES[name].config(**_pass_options(args, PASSES[name].config)) for name in names}
    pairs = None if args.no_quality else read_task_pairs(args.data)  # read first, so a bad file fails fast
    report = compress(args.model, args.output, names, configs, pairs=pairs, force=args.force,
                      allow_pickle=args.allow_pickle, progress=True)
    if not is_main_process():  # data-parallel training: rank 0 reports and writes
        return 0
    for row in report["passes"]:
        print(f"  {row['name']}: {row['summary']}; parameters {row['parameters'][0]:,} -> {row['parameters'][1]:,}")
        if row["quality_after"] is not None:
            print(f"  {row['name']}: exact match {row['quality_after']['exact_match']:.3f}  "
                  f"chrF {row['quality_after']['chrf']:.1f}")
    print(f"compressed checkpoint written to {args.output} (report: compress_report.json + .md)")
    return 0


def cmd_android_assets(args: argparse.Namespace) -> int:
    """Copy a TFLite export into the Android demo app's assets, guided by its manifest (every copy's sha256
    checked), with sample inputs per task and language and the Python LiteRT runtime's outputs for the app's
    instrumented test."""
    from mt5lite.data import read_task_pairs
    from mt5lite.exporters.apps.android_assets import bundle_for_android

    written = bundle_for_android(args.export, args.app, read_task_pairs(args.data))
    print(f"{written['files']} files ({written['bytes'] / 1e6:.1f} MB, export {written['export_id'][:12]}) and "
          f"{written['golden_cases']} golden outputs written to {written['assets']}")
    return 0


def _pass_options(args: argparse.Namespace, config: type) -> dict:
    """The options given on the command line for one pass's config fields (the rest keep their defaults)."""
    from dataclasses import fields

    values = {f.name: getattr(args, f.name, None) for f in fields(config)}
    return {name: tuple(value) if isinstance(value, list) else value
            for name, value in values.items() if value is not None}


def _add_pass_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of every registered pass's config (declared once, whatever the pass)."""
    from dataclasses import MISSING, fields

    from mt5lite.compression.passes import PASSES

    seen = set()
    for name, entry in PASSES.items():
        for f in fields(entry.config):
            if f.name in seen:
                continue
            seen.add(f.name)
            default = f.default if f.default is not MISSING else f.default_factory()
            many = isinstance(default, tuple)
            shown = " ".join(str(v) for v in default) if many else default
            # A None default is an optional file unless the field names its type
            kind = f.metadata.get("type") or (Path if many or default is None else type(default))
            if kind is bool:  # a switch: given is True, absent keeps the config's default
                parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, action="store_true",
                                    help=f"{name}: {f.metadata.get('help', '')}")
                continue
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                nargs="+" if many else None, type=kind,
                                help=f"{name}: {f.metadata.get('help', '')} (default: {shown})")


def cmd_train_demo(args: argparse.Namespace) -> int:
    """Train the bundled demo model (about 20 minutes on 2 cores)."""
    from mt5lite.demo.train import train_and_write

    train_and_write(args.output, args.steps, args.force)
    return 0


def cmd_train_natural(args: argparse.Namespace) -> int:
    """Train the natural model (span corruption, then CLDR names in 64 languages; about 110 minutes on 2 cores)."""
    from mt5lite.natural.train import train_and_write

    train_and_write(args.output, args.pretrain_steps, args.finetune_steps, args.force)
    return 0


def _add_calibration_args(parser: argparse.ArgumentParser) -> None:
    from mt5lite.exporters.quantize.calibration import MIN_SAMPLES, CalibrationDraw

    parser.add_argument("--calibration", type=Path, default=CalibrationDraw.file,
                        help="calibration inputs: lang<TAB>text sentences or lang<TAB>source<TAB>target pairs")
    parser.add_argument("--samples", type=int, default=CalibrationDraw.samples,
                        help=f"calibration samples drawn, balanced across languages (at least {MIN_SAMPLES})")
    parser.add_argument("--max-decoder-steps", type=int, default=CalibrationDraw.max_decoder_steps,
                        help="decoder-step inputs kept from decoding the samples")


def _add_quantize_args(parser: argparse.ArgumentParser) -> None:
    from mt5lite.exporters.quantize.recipes import Format, Method

    _add_calibration_args(parser)
    parser.add_argument("--method", choices=[m.value for m in Method], default=Method.MINMAX.value,
                        help="static calibration of activation ranges")
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="one weight scale per output channel")
    parser.add_argument("--format", choices=[f.value for f in Format], default=Format.QDQ.value,
                        help="qdq: Q/DQ pairs (ONNX Runtime fuses them); qoperator: QLinear* ops")


def _add_gate_args(parser: argparse.ArgumentParser, threads: bool = True) -> None:
    """The quality gate's options (``threads``: with its own ``--threads``, for commands that have none)."""
    _add_pairs_arg(parser, "held-out pairs (lang<TAB>source<TAB>target) to compare fp32 and quantized on")
    parser.add_argument("--report", type=Path, default=None,
                        help="JSON report (default build/reports/quantize-<recipe>.json; Markdown twin beside it)")
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="CPU threads for the comparison")
    parser.add_argument("--gate", action=argparse.BooleanOptionalAction, default=True,
                        help="exit 1 when the export misses the quality gate (--no-gate: only report)")


def _add_output_args(parser: argparse.ArgumentParser, what: str, required: bool = True, default=None) -> None:
    """``--output`` (the directory a command creates) and ``--force`` (replace it), declared once for all."""
    parser.add_argument("--output", type=Path, required=required, default=default, help=f"{what} to create")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output directory")


def _add_length_args(parser: argparse.ArgumentParser) -> None:
    """An export's lengths and validation samples, with ``OnnxExportConfig``'s defaults (ExecuTorch shares them)."""
    from mt5lite.exporters.onnx.export import OnnxExportConfig as Defaults

    parser.add_argument("--max-source-length", type=int, default=Defaults.max_source_length,
                        help="longest input in tokens (eos included)")
    parser.add_argument("--max-target-length", type=int, default=Defaults.max_target_length,
                        help="positions in the decoder's KV cache")
    parser.add_argument("--validate-samples", type=int, default=Defaults.validate_samples,
                        help="held-out inputs compared with PyTorch")


def _add_pairs_arg(parser: argparse.ArgumentParser, help: str = "held-out pairs: lang<TAB>source<TAB>target",
                   default: Path | None = None) -> None:
    """``--data``: the task pairs a command measures on (default: the demo task's held-out set)."""
    from mt5lite.data import HELDOUT_TASK

    parser.add_argument("--data", type=Path, default=default or HELDOUT_TASK, help=help)


def _add_report_arg(parser: argparse.ArgumentParser, default: str, twins: str = "a Markdown twin beside it") -> None:
    """``--report``: the JSON report a command writes, with its twins."""
    parser.add_argument("--report", type=Path, default=Path(default), help=f"JSON report to write ({twins})")


def _command(sub, name: str, help: str, func) -> argparse.ArgumentParser:
    """A subcommand running ``func`` (its docstring is the command's description)."""
    parser = sub.add_parser(name, help=help, formatter_class=_Formatter, description=func.__doc__)
    parser.set_defaults(func=func)
    return parser


def _generate_parser(sub) -> None:
    gen = _command(sub, "generate", "generate text with a checkpoint (PyTorch) or an export (its engine)",
                   cmd_generate)
    gen.add_argument("text", nargs="*", help="input texts, e.g. 'words fr: 1234'")
    gen.add_argument("--input-file", type=Path, help="read one input per line from this UTF-8 file ('-': stdin)")
    _add_model_args(gen)
    _add_decoding_args(gen)
    gen.add_argument("--max-source-length", type=int, default=512, help="longest input, in tokens (eos included)")
    gen.add_argument("--truncate", action="store_true",
                     help="truncate longer inputs with a warning instead of failing")


def _evaluate_parser(sub) -> None:
    ev = _command(sub, "evaluate", "score a checkpoint on a held-out set (exact match, chrF, per language)",
                  cmd_evaluate)
    _add_model_args(ev)
    _add_decoding_args(ev)
    _add_pairs_arg(ev)
    _add_report_arg(ev, "build/eval_report.json")
    ev.add_argument("--batch-size", type=int, default=64, help="inputs decoded together")


def _export_parsers(sub) -> None:
    from mt5lite.exporters.executorch.export import PTE_PRECISIONS
    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS
    from mt5lite.exporters.tflite.float_parts import DEFAULT_FLOAT_PARTS, FLOAT_PARTS

    export = sub.add_parser("export", help="export a checkpoint (onnx, executorch), or convert an ONNX export (tflite)",
                            formatter_class=_Formatter)
    targets = export.add_subparsers(dest="target", metavar="TARGET", required=True)
    onnx = _command(targets, "onnx", "split encoder / decoder-step ONNX graphs + manifest", cmd_export_onnx)
    _add_model_args(onnx)
    _add_output_args(onnx, "export directory")
    _add_length_args(onnx)
    onnx.add_argument("--static-shapes", action="store_true",
                      help="fix batch 1 and the source length (for TFLite); default: dynamic, for ONNX Runtime")
    onnx.add_argument("--decoder-batches", type=int, nargs="*", default=[4], metavar="B",
                      help="with --static-shapes: further batch sizes of the decoder step, sharing its weights "
                           "(4: beam search's 4 beams in one call); none: batch 1 only")
    onnx.add_argument("--source-buckets", type=int, nargs="*", default=None, metavar="S",
                      help="with --static-shapes: shorter source lengths every graph is exported at too, sharing its "
                           "weights (a short input runs the shortest that fits); default: 16 32, those below "
                           "--max-source-length; none: --max-source-length only")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset of both graphs (11 to 21)")

    tflite = _command(targets, "tflite", "convert a static-shape ONNX export to TFLite (LiteRT)", cmd_export_tflite)
    tflite.add_argument("--export", type=Path, required=True, help="a static-shape fp32 mt5lite ONNX export")
    _add_output_args(tflite, "TFLite export directory")
    tflite.add_argument("--quantize", choices=list(TFLITE_PRECISIONS), default="fp32",
                        help="fp32; fp16 weights; dynamic-int8 (int8 weights); int8 (full integer: int8 weights and "
                        "activations, calibrated)")
    tflite.add_argument("--allow-flex", action="store_true",
                        help="allow Flex (SELECT_TF) ops; the Android app then needs the select-tf-ops library")
    tflite.add_argument("--float-parts", nargs="*", choices=list(FLOAT_PARTS), default=list(DEFAULT_FLOAT_PARTS),
                        metavar="PART", help="with --quantize int8: the parts that stay float (no PART: every op "
                        "int8, for accelerators that run nothing else)")
    _add_calibration_args(tflite)
    _add_gate_args(tflite)

    pte = _command(targets, "executorch", "the two graphs as one ExecuTorch program (.pte, XNNPACK)",
                   cmd_export_executorch)
    _add_model_args(pte)
    _add_output_args(pte, "ExecuTorch export directory")
    pte.add_argument("--quantize", choices=list(PTE_PRECISIONS), default="fp32",
                     help="fp32; int8 (static: int8 weights and activations at every linear layer, calibrated)")
    _add_length_args(pte)
    _add_calibration_args(pte)
    _add_gate_args(pte, threads=False)


def _parity_parser(sub) -> None:
    parity = _command(sub, "parity", "compare PyTorch with an export on a held-out set", cmd_parity)
    _add_model_args(parity)
    parity.add_argument("--export", type=Path, required=True, help="an mt5lite export directory (ONNX or TFLite)")
    _add_pairs_arg(parity)
    _add_report_arg(parity, "build/parity.json")
    parity.add_argument("--num-beams", type=int, default=4, help="beams for the beam-search comparison")
    parity.add_argument("--max-new-tokens", type=int, default=32, help="most tokens generated per input")
    parity.add_argument("--beam-samples", type=int, default=None, help="compare beam search on the first N inputs")
    parity.set_defaults(length_penalty=1.0, early_stopping=False)


def _pipeline_parser(sub) -> None:
    from mt5lite.compression.passes import PASSES
    from mt5lite.exporters.executorch.export import PTE_PRECISIONS
    from mt5lite.exporters.quantize.recipes import RECIPES
    from mt5lite.exporters.tflite.export import TFLITE_PRECISIONS

    run = _command(sub, "pipeline", "the main job: compress, export, int8, TFLite (ExecuTorch), report",
                   cmd_pipeline)
    run.add_argument("--config", type=Path, default=None, help="a pipeline TOML file (see --print-config)")
    run.add_argument("--model", type=Path, default=None, help="the checkpoint (default: the bundled demo model)")
    run.add_argument("--output", type=Path, default=None, help="the run's directory (default: build)")
    run.add_argument("--data", type=Path, default=None, help="held-out pairs for the gates and the reports "
                     "(lang<TAB>source<TAB>target; default: the demo task's)")
    run.add_argument("--compress", default=None, metavar="PASSES",
                     help=f"compression passes first, comma-separated: {', '.join(PASSES)}")
    run.add_argument("--int8", default=None, metavar="RECIPE",
                     help=f"the ONNX Runtime int8 recipe ({', '.join(RECIPES)}; none: skip; default static-int8)")
    run.add_argument("--tflite", default=None, metavar="PRECISION",
                     help=f"TFLite precision ({', '.join(TFLITE_PRECISIONS)}; none: skip; default int8)")
    run.add_argument("--executorch", default=None, metavar="PRECISION",
                     help=f"also an ExecuTorch program ({', '.join(PTE_PRECISIONS)}; default: none)")
    run.add_argument("--calibration", type=Path, default=None,
                     help="calibration inputs of every int8 stage (lang<TAB>text or task pairs; default: the bundled "
                     "multilingual sentences)")
    run.add_argument("--gate", action=argparse.BooleanOptionalAction, default=None,
                     help="stop with exit 1 when an int8 stage misses the quality gate (--no-gate: only report)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for the comparisons")
    run.add_argument("--allow-pickle", action="store_true",
                     help="allow loading pickle weights (pytorch_model.bin); only for checkpoints you trust")
    run.add_argument("--force", action="store_true", help="rebuild every stage, reusing nothing")
    run.add_argument("--dry-run", action="store_true", help="print the plan (what runs, what is reused) and stop")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved configuration as TOML (a starting point for --config) and stop")
    _add_pass_options(run)


def _pipeline_report_parser(sub) -> None:
    report = _command(sub, "pipeline-report", "one report over every stage of a pipeline run", cmd_pipeline_report)
    _add_model_args(report)
    report.add_argument("--original", type=Path, default=None,
                        help="the checkpoint --model was compressed from (a stage of its own)")
    report.add_argument("--stage", action="append", default=[], metavar="NAME=DIR",
                        help="an export of the run, in pipeline order (repeat: onnx=..., onnx-int8=..., tflite=...)")
    _add_pairs_arg(report)
    report.add_argument("--beam-samples", type=int, default=100, help="compare beam search on the first N inputs")
    _add_report_arg(report, "build/reports/pipeline.json", "Markdown and PNG twins beside it")


def _quantize_parser(sub) -> None:
    from mt5lite.exporters.quantize.groups import GROUPS
    from mt5lite.exporters.quantize.recipes import RECIPES

    quantize = _command(sub, "quantize", "quantize an fp32 ONNX export (static int8, dynamic int8, fp16)",
                        cmd_quantize)
    quantize.add_argument("--export", type=Path, required=True, help="the fp32 mt5lite ONNX export to quantize")
    _add_output_args(quantize, "export directory")
    _add_quantize_args(quantize)
    quantize.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                          help="the outlier step: int8 migrates activation outliers into the weights where that lowers "
                          "the measured error; fp16 scales the residual stream into its range")
    quantize.add_argument("--keep-wide", action=argparse.BooleanOptionalAction, default=True,
                          help="int8: keep products int8 cannot hold (measured on the calibration draw) in float")
    quantize.add_argument("--recipe", choices=list(RECIPES), default="static-int8",
                          help="static-int8: calibrated int8; dynamic-int8: int8 weights only; fp16: wo and layer "
                          "norms kept in fp32")
    quantize.add_argument("--groups", nargs="+", choices=list(GROUPS), default=None,
                          help="node groups to quantize (default: the recipe's, chosen by `mt5lite sensitivity`)")
    quantize.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                          help="glob patterns of node names to leave in float, e.g. '*DenseReluDense.wo*'")
    _add_gate_args(quantize)


def _sensitivity_parser(sub) -> None:
    from mt5lite.data import DEV_TASK

    sens = _command(sub, "sensitivity", "quantize one node group at a time and measure each", cmd_sensitivity)
    sens.add_argument("--export", type=Path, required=True, help="the fp32 mt5lite ONNX export")
    _add_quantize_args(sens)
    _add_pairs_arg(sens, "inputs to measure on (lang<TAB>text or task pairs): use your model's own task; the default "
                   "is the demo task's development set, disjoint from its held-out set", DEV_TASK)
    sens.add_argument("--eval-samples", type=int, default=200, help="inputs drawn from --data, balanced by language")
    _add_report_arg(sens, "build/reports/sensitivity.json")
    sens.add_argument("--threads", type=int, default=None, help="CPU threads")


def _compress_parser(sub) -> None:
    from mt5lite.compression.passes import PASSES, RECIPES

    comp = _command(sub, "compress", "run compression passes (trim-vocab, ...) on a checkpoint", cmd_compress)
    _add_model_args(comp)
    _add_output_args(comp, "checkpoint directory")
    chain = comp.add_mutually_exclusive_group(required=True)
    chain.add_argument("--passes", help=f"comma-separated passes, in order: {', '.join(PASSES)}")
    chain.add_argument("--recipe", help="a named chain of passes: " + "; ".join(
        f"{name} = {','.join(recipe.passes)}" for name, recipe in RECIPES.items()))
    _add_pairs_arg(comp, "held-out pairs (lang<TAB>source<TAB>target) to measure quality on before and after each "
                   "pass")
    comp.add_argument("--no-quality", action="store_true", help="skip the quality measurement (faster)")
    _add_pass_options(comp)


def _android_assets_parser(sub) -> None:
    assets = _command(sub, "android-assets", "bundle a TFLite export into the Android demo app's assets",
                      cmd_android_assets)
    assets.add_argument("--export", type=Path, required=True, help="TFLite export directory (mt5lite export tflite)")
    assets.add_argument("--app", type=Path, default=Path("android_demo/app"), help="the app module")
    _add_pairs_arg(assets, "task pairs for the sample inputs and the golden outputs")


def _train_demo_parser(sub) -> None:
    from mt5lite.demo.config import DemoConfig

    train = _command(sub, "train-demo", "train the bundled demo model from scratch (fixed seeds)", cmd_train_demo)
    _add_output_args(train, "checkpoint directory", required=False, default=DEMO_MODEL)
    train.add_argument("--steps", type=int, default=DemoConfig.steps, help="optimizer steps")


def _train_natural_parser(sub) -> None:
    from mt5lite.natural.config import NaturalConfig

    train = _command(sub, "train-natural", "train the natural model (CLDR names in 64 languages) from scratch "
                     "(fixed seeds)", cmd_train_natural)
    _add_output_args(train, "checkpoint directory", required=False, default=NATURAL_MODEL)
    train.add_argument("--pretrain-steps", type=int, default=NaturalConfig.pretrain.steps,
                       help="span-corruption steps")
    train.add_argument("--finetune-steps", type=int, default=NaturalConfig.finetune.steps, help="fine-tuning steps")


#: Every subcommand's parser builder, in the order ``mt5lite --help`` lists them.
SUBCOMMANDS = (_generate_parser, _evaluate_parser, _export_parsers, _parity_parser, _pipeline_parser,
               _pipeline_report_parser, _quantize_parser, _sensitivity_parser, _compress_parser,
               _android_assets_parser, _train_demo_parser, _train_natural_parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``mt5lite`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="mt5lite",
        description="Make multilingual T5 models small and fast, and prove each stage still computes the same.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"mt5lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 success, 2 bad input or usage, 130 interrupted)."""
    os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow (it can abort the process)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_third_party_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = lambda message, *_, **__: print(f"mt5lite {args.command}: warning: {message}",
                                                           file=sys.stderr)
    # ONNX Runtime's quantizer advises shape-inference pre-processing on every call; mt5lite skips it on purpose
    # (its graph optimizations would fuse and rename the nodes the recipes select).
    logging.getLogger().addFilter(lambda record: "pre-processing" not in record.getMessage())
    try:
        return args.func(args)
    except QualityGateError as exc:
        print(f"mt5lite {args.command}: {exc}", file=sys.stderr)
        return EXIT_GATE
    except Mt5LiteError as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"mt5lite {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"mt5lite {args.command}: error: this command needs {exc.name}, which the lean install leaves out; "
              f"install it with: pip install 'mt5lite[{extra}]'", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the disk is full, the output read-only, ...: nothing was kept (outputs are staged)
        print(f"mt5lite {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mt5lite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
