"""The README's and the documentation's snippets cannot rot: every ``sh`` and ``python`` block runs, every ``toml``
block is a pipeline configuration ``mt5lite pipeline`` accepts.

``make test`` checks each snippet cheaply (every ``mt5lite`` command line parses, every ``make`` target exists, every
Python block compiles, every TOML block loads). ``make test-docs`` (``-m docs``) runs them all for real, page by page
in the site's order, in one scratch working directory, as a reader following the pages would. A few commands are
only checked, never run, each for the reason in ``CHECKED_ONLY``; ``make`` targets are checked with ``make -n``
(they build, benchmark or run this very suite)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mt5lite.cli import build_parser
from mt5lite.workflow import load_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
#: Commands (by their first words) a test only checks, and why.
CHECKED_ONLY = {
    ("mt5lite", "train-demo"): "retrains the demo model: about 20 minutes",
    ("mt5lite", "train-natural"): "retrains the natural model: about an hour",
    ("mt5lite", "sensitivity"): "quantizes each node group in turn: several minutes",
    ("mt5lite", "android-assets"): "writes into the Android app of a checkout",
    ("torchrun",): "two training processes",
    ("pip", "install"): "installs packages; the extra it names is checked against pyproject.toml",
}
#: ``mt5lite compress`` with training passes: checked only (minutes of training on data the reader brings).
TRAINING = ("--recipe", "finetune", "distill")


def pages() -> list[Path]:
    """The README, then the documentation's pages in the site's order (mkdocs.yml's nav)."""
    nav = re.findall(r":\s*(\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    return [REPO / "README.md"] + [REPO / "docs" / name for name in nav if name != "index.md"]


def snippets(page: Path) -> list[tuple[str, str]]:
    """The ``(language, text)`` of each ``sh``/``bash``/``python``/``toml`` block of ``page``."""
    return [(lang, body) for lang, body in FENCE.findall(page.read_text(encoding="utf-8"))
            if lang in ("sh", "bash", "python", "toml")]


def command_lines(body: str) -> list[str]:
    """The commands of a shell block, one per line, comments removed."""
    return [line for line in body.splitlines() if shlex.split(line, comments=True)]


def checked_only(words: list[str]) -> str | None:
    """Why a command is only checked (None: it runs)."""
    for prefix, reason in CHECKED_ONLY.items():
        if tuple(words[: len(prefix)]) == prefix:
            return reason
    if words[:2] == ["mt5lite", "compress"] and any(word in TRAINING for word in " ".join(words).split()):
        return "trains: minutes, on data the reader brings"
    return None


def check_command(line: str) -> None:
    """Check one command without running it: its arguments parse, its make target exists, its extra exists."""
    words = shlex.split(line, comments=True)
    words = words[: next((i for i, w in enumerate(words) if w in (">", "|", "&&")), len(words))]
    if words[0] == "torchrun":
        words = ["mt5lite", *words[words.index("mt5lite") + 1:]]
    if words[0] == "mt5lite":
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            assert exc.code == 0, f"{line!r} does not parse"
    elif words[0] == "make":
        done = subprocess.run(["make", "-n", "-C", str(REPO), *words[1:]], capture_output=True, text=True)
        assert done.returncode == 0, f"{line!r}: {done.stderr.strip()}"
    elif words[:2] == ["pip", "install"]:
        from mt5lite.workflow.config import _read_toml

        extras = _read_toml(REPO / "pyproject.toml")["project"]["optional-dependencies"]
        for spec in words[2:]:
            for extra in re.findall(r"\[([^\]]+)\]", spec):
                assert set(extra.split(",")) <= set(extras), f"{line!r}: no such extra"


def check_snippet(lang: str, body: str, where: Path) -> None:
    """The cheap check of one snippet."""
    if lang == "python":
        compile(body, str(where), "exec")
    elif lang == "toml":
        path = where / "snippet.toml"
        path.write_text(body, encoding="utf-8")
        load_config(path)
    else:
        for line in command_lines(body):
            check_command(line)


CASES = [(page, index, lang, body) for page in pages() for index, (lang, body) in enumerate(snippets(page))]


@pytest.mark.parametrize("page, index, lang, body", CASES,
                         ids=[f"{page.stem}-{index}-{lang}" for page, index, lang, _ in CASES])
def test_every_snippet_checks(page, index, lang, body, tmp_path):
    check_snippet(lang, body, tmp_path)


def test_the_pages_have_snippets_and_the_site_lists_every_page():
    listed = {page.name for page in pages()}
    on_disk = {path.name for path in (REPO / "docs").glob("*.md")} - {"index.md"}
    assert on_disk <= listed, f"pages missing from mkdocs.yml's nav: {on_disk - listed}"
    languages = [lang for _, _, lang, _ in CASES]
    assert languages.count("sh") >= 10 and languages.count("python") >= 3, languages


RESULT_PAGES = ["pipeline", "outliers-demo", "outliers-mt5-small", "natural-demo", "device-speed",
                "device-speed-trimmed", "bench"]


@pytest.mark.parametrize("name", RESULT_PAGES)
def test_every_result_page_is_its_report_rendered(name):
    """The result pages cannot drift from the figures the scripts wrote: each is its committed JSON rendered by the
    script's own writer (``make results`` refreshes both from ``build/``)."""
    from benchmarks.results_pages import PAGES, RESULTS_DIR, render

    assert set(PAGES) == set(RESULT_PAGES)
    report = json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    assert report["measured"]["date"] and report["measured"]["machine"]
    assert (RESULTS_DIR / f"{name}.md").read_text(encoding="utf-8") == render(name, report), \
        f"docs/results/{name}.md is not its JSON rendered: run make results"


@pytest.mark.docs
def test_every_snippet_runs(tmp_path):
    """Every page's snippets in order, in one working directory: shell lines through bash with this environment's
    ``mt5lite`` first on PATH, Python blocks through this interpreter."""
    env = {**os.environ, "USE_TF": "0", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    ran, checked = 0, []
    for page in pages():
        for lang, body in snippets(page):
            if lang == "toml":
                check_snippet(lang, body, tmp_path)
                continue
            if lang == "python":
                runs = [[sys.executable, "-c", body]]
            else:
                runs = []
                for line in command_lines(body):
                    words = shlex.split(line, comments=True)
                    if words[0] == "make" or checked_only(words):
                        check_command(line)
                        checked.append(line)
                    else:
                        runs.append(["bash", "-c", line])
            for argv in runs:
                done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
                assert done.returncode == 0, f"{page.name}: {argv[-1]!r} exited {done.returncode}: " \
                                             f"{done.stderr.strip().splitlines()[-3:]}"
                ran += 1
    assert ran >= 30, ran
    print(f"ran {ran} snippets and commands; checked only: {checked}")
