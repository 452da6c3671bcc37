"""The mt5lite command line: subcommands, generation, evaluation, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import replace

import pytest

from mt5lite.cli import build_parser, main
from tests.conftest import run_cli


def assert_clean_error(result, *fragments: str) -> None:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _parsers(parser: argparse.ArgumentParser, command: tuple[str, ...] = ()):
    """``(command, parser)`` for ``parser`` and every subcommand registered under it, nested ones included."""
    yield command, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, command + (name,))


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each subcommand registered directly under ``parser`` -> its one-line help."""
    return {choice.dest: choice.help for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for choice in action._choices_actions}


def _shows_its_default(action: argparse.Action) -> bool:
    """Whether argparse's ArgumentDefaultsHelpFormatter prints this action's default (it needs a help text)."""
    return (bool(action.help) and action.help is not argparse.SUPPRESS and action.default is not argparse.SUPPRESS
            and bool(action.option_strings or action.nargs in ("?", "*")))


def _flat(text: str) -> str:
    return " ".join(text.split())


COMMANDS = [command for command, _ in _parsers(build_parser())]


def test_help_lists_the_subcommands(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per entry: no wrapping inside a help text
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr.decode()
    shown = result.stdout.decode()
    registered = _subcommands(build_parser())
    assert {"generate", "evaluate", "export", "train-demo"} <= set(registered)  # the walk finds the parser's tree
    for name, help_text in registered.items():
        assert re.search(rf"^\s+{re.escape(name)}\s+{re.escape(help_text)}$", shown, re.MULTILINE), name


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "mt5lite")
def test_every_help_exits_0_and_shows_its_options_and_defaults(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.setenv("USE_TF", "0")  # main() sets defaults for these two; monkeypatch restores them afterwards
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    shown = _flat(capsys.readouterr().out)
    parser = dict(_parsers(build_parser()))[command]
    problems = [f"{option} not listed" for action in parser._actions for option in action.option_strings
                if option not in shown]
    problems += [f"{action.option_strings or action.dest}: '(default: {action.default})' not shown"
                 for action in parser._actions if _shows_its_default(action)
                 and f"(default: {action.default})" not in shown]
    problems += [f"subcommand {name} not listed with its help" for name, help_text in _subcommands(parser).items()
                 if f"{name} {_flat(help_text)}" not in shown]
    assert not problems, problems


def test_every_default_is_shown_in_help():
    hidden = [f"{' '.join(command)} {'/'.join(action.option_strings)} (default {action.default})"
              for command, parser in _parsers(build_parser()) for action in parser._actions
              if action.option_strings and action.default not in (argparse.SUPPRESS, None, False)
              and not _shows_its_default(action)]
    assert not hidden, hidden


def test_generate_prints_what_the_python_api_returns():
    from mt5lite.data import HELDOUT_SENTENCES, read_sentences
    from mt5lite.paths import DEMO_MODEL
    from mt5lite.runtimes.generators import open_generator
    from mt5lite.runtimes.options import DecodingOptions

    # Out-of-task sentences, on which the demo model is unsure, and two task inputs (one with a long answer).
    sources = [s.text for s in read_sentences(HELDOUT_SENTENCES)[::20]] + ["words fr: 7777", "number ja: 三百"]
    options = DecodingOptions(max_new_tokens=8, num_beams=4, length_penalty=2.0, early_stopping=True)
    result = run_cli("generate", "--max-new-tokens", "8", "--num-beams", "4", "--length-penalty", "2.0",
                     "--early-stopping", *sources)
    assert result.returncode == 0, result.stderr.decode()
    generator = open_generator(DEMO_MODEL)
    expected = generator.generate(sources, options)
    assert result.stdout.decode("utf-8").splitlines() == expected
    # Every flag counts: with any one of them at its CLI default, some output would differ.
    defaults = build_parser().parse_args(["generate", "x"])
    for name in ("max_new_tokens", "num_beams", "length_penalty", "early_stopping"):
        assert generator.generate(sources, replace(options, **{name: getattr(defaults, name)})) != expected, name


def test_generate_with_the_default_model():
    result = run_cli("generate", "words es: 21", "number ja: 三百")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode("utf-8").splitlines() == ["veintiuno", "300"]
    assert not result.stderr.strip()
    # Text no piece covers (Georgian is in none of the demo's languages) falls back to bytes, and says how much
    result = run_cli("generate", "words ka: საქართველო")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1, result.stderr.decode()
    assert result.stderr.decode().splitlines() == [
        "mt5lite generate: warning: 10 of 18 input characters (56%) are in no piece of the vocabulary (byte "
        "fallback spells them in bytes, or they are unknown): the model saw little such text (was its vocabulary "
        "trimmed to other languages?), so expect weaker outputs"]


def test_evaluate_writes_json_and_markdown(tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("en\twords en: 7\tseven\nru\twords ru: 2\tдва\n", encoding="utf-8")
    report = tmp_path / "out" / "eval.json"
    result = run_cli("evaluate", "--data", str(data), "--report", str(report))
    assert result.returncode == 0, result.stderr.decode()
    loaded = json.loads(report.read_text())
    assert loaded["exact_match"] == 1.0 and set(loaded["per_language"]) == {"en", "ru"}
    assert (tmp_path / "out" / "eval.md").is_file()


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_or_whitespace_text(text):
    assert_clean_error(run_cli("generate", text), "empty or whitespace-only")


def test_invalid_utf8_argument():
    assert_clean_error(run_cli("generate", b"words en: \xff\xfe"), "invalid UTF-8")


def test_invalid_utf8_input_file(tmp_path):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"words en: 1\nwords en: \xc3\x28\n")
    assert_clean_error(run_cli("generate", "--input-file", str(bad)), "in.txt:2: invalid UTF-8")


def test_lone_surrogate_from_stdin_is_invalid_utf8():
    surrogate = "\ud800".encode("utf-8", "surrogatepass")
    assert_clean_error(run_cli("generate", "--input-file", "-", stdin=b"words en: " + surrogate), "invalid UTF-8")


def test_directory_that_is_not_a_checkpoint(tmp_path):
    assert_clean_error(run_cli("generate", "--model", str(tmp_path), "words en: 1"),
                       "not a usable T5-family checkpoint", "no config.json")


def test_pickle_only_checkpoint_without_the_flag(tmp_path, tiny_mt5):
    import torch

    target = tmp_path / "pickled"
    shutil.copytree(tiny_mt5, target)
    from safetensors.torch import load_file

    torch.save(load_file(target / "model.safetensors"), target / "pytorch_model.bin")
    (target / "model.safetensors").unlink()
    assert_clean_error(run_cli("generate", "--model", str(target), "words en: 1"), "--allow-pickle")
    allowed = run_cli("generate", "--model", str(target), "--allow-pickle", "words en: 1")
    assert allowed.returncode == 0, allowed.stderr.decode()


def test_bad_flag_value():
    assert_clean_error(run_cli("generate", "--max-new-tokens", "0", "words en: 1"), "max_new_tokens")


def test_unknown_flag_exits_2():
    result = run_cli("generate", "--no-such-flag")
    assert result.returncode == 2 and b"Traceback" not in result.stderr


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "onnx"
    result = run_cli("export", "onnx", "--output", str(out), "--max-source-length", "48", "--max-target-length", "32")
    assert result.returncode == 0, result.stderr.decode()
    assert b"export written to" in result.stdout
    return out


def test_generate_with_an_onnx_export(cli_export):
    result = run_cli("generate", "--model", str(cli_export), "--num-beams", "2", "words es: 21", "number ja: 三百")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode("utf-8").splitlines() == ["veintiuno", "300"]


def test_export_refuses_an_existing_output_without_force(cli_export):
    assert_clean_error(run_cli("export", "onnx", "--output", str(cli_export)), "already exists; use --force")


def test_parity_report(cli_export, tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("en\twords en: 7\tseven\nko\tnumber ko: 오십팔\t58\nth\twords th: 300\tสามร้อย\n", encoding="utf-8")
    report = tmp_path / "parity.json"
    result = run_cli("parity", "--export", str(cli_export), "--data", str(data), "--report", str(report))
    assert result.returncode == 0, result.stderr.decode()
    loaded = json.loads(report.read_text())
    for key in ("max_abs_logit_diff", "greedy_agreement", "token_agreement", "beam_agreement", "exact_match", "chrf"):
        assert key in loaded
    assert loaded["max_abs_logit_diff"] <= 1e-4
    assert loaded["greedy_agreement"] == loaded["beam_agreement"] == 1.0
    assert set(loaded["exact_match"]) == {"reference", "candidate"}
    assert (tmp_path / "parity.md").is_file()


def test_generate_refuses_a_tampered_export(cli_export, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(cli_export, copy)
    with open(copy / "decoder.onnx", "ab") as handle:
        handle.write(b"\0")
    assert_clean_error(run_cli("generate", "--model", str(copy), "words en: 1"), "decoder.onnx: sha256 does not match")


def test_killed_export_leaves_no_output_directory(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO_ROOT

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "mt5lite", "export", "onnx", "--output", str(out)],
                               cwd=REPO_ROOT, env=dict(os.environ, USE_TF="0"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".killed.tmp-*/*.onnx")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".killed.tmp-*")), "the export never started writing"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()


def test_evaluate_an_onnx_export(cli_export, tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("fr\twords fr: 80\tquatre-vingts\nhe\twords he: 2\tשתיים\n", encoding="utf-8")
    report = tmp_path / "eval.json"
    result = run_cli("evaluate", "--model", str(cli_export), "--data", str(data), "--report", str(report))
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(report.read_text())["exact_match"] == 1.0


class _WritesCanary:
    """Unpickling this runs ``exec``: it writes the canary file named at pickling time."""

    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return exec, (f"open({str(self.canary)!r}, 'w').write('ran')",)


def test_a_malicious_pickle_never_runs(tmp_path, tiny_mt5):
    """A pickle checkpoint whose ``__reduce__`` writes a canary: refused without --allow-pickle before anything is
    unpickled; with the flag, torch's weights-only loader refuses it, as a one-line error."""
    import torch

    target = tmp_path / "evil"
    shutil.copytree(tiny_mt5, target)
    (target / "model.safetensors").unlink()
    canary = tmp_path / "canary"
    torch.save({"shared.weight": _WritesCanary(canary)}, target / "pytorch_model.bin")
    assert_clean_error(run_cli("generate", "--model", str(target), "words en: 1"), "--allow-pickle")
    assert not canary.exists()
    assert_clean_error(run_cli("generate", "--model", str(target), "--allow-pickle", "words en: 1"),
                       "pytorch_model.bin")
    assert not canary.exists()
