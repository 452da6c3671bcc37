"""The documentation's result pages (``docs/results/``), generated from the reports the scripts write, so the
figures on the site are the ones the scripts printed and cannot drift from them.

``make results`` (``python -m benchmarks.results_pages``) copies each report's JSON from ``build/`` into
``docs/results/`` with when, where and by which target it was measured, and renders its page from it with the
script's own Markdown writer; ``tests/test_docs.py`` fails when a committed page is not its committed JSON rendered.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "docs" / "results"

#: page -> (the report it comes from, the target that writes it, "module:function" rendering it, its title).
PAGES = {
    "pipeline": ("build/reports/pipeline.json", "make export-tflite",
                 "mt5lite.verification.pipeline:pipeline_markdown", "The pipeline on the demo model"),
    "outliers-demo": ("build/reports/outliers-demo.json", "make outliers-demo",
                      "benchmarks.experiments.outliers_demo:markdown",
                      "Int8 recipes on activation-outlier checkpoints"),
    "outliers-mt5-small": ("build/reports/outliers-mt5-small.json", "make outliers-mt5-small",
                           "benchmarks.experiments.outliers_demo:shape_markdown",
                           "Int8 recipes on mt5-small's shape, plain and outliers"),
    "natural-demo": ("build/reports/natural-demo.json", "make natural-demo",
                     "benchmarks.experiments.natural_demo:markdown", "Every stage on the natural model"),
    "device-speed": ("build/reports/device-speed.json", "make device-speed",
                     "benchmarks.experiments.device_speed:markdown",
                     "Beams and short inputs on static exports, mt5-small's shape"),
    "device-speed-trimmed": ("build/reports/device-speed-trimmed.json", "make device-speed",
                             "benchmarks.experiments.device_speed:markdown",
                             "Beams and short inputs on static exports, mt5-small's shape trimmed"),
    "bench": ("build/bench/bench.json", "make bench", "benchmarks.bench_report:markdown",
              "Ours against the peers"),
}


def machine() -> str:
    """This machine in one line: processor, cores, memory."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.machine()}"


def render(name: str, report: dict) -> str:
    """The page of ``report`` (a snapshot with its ``measured`` facts): a title, when and where, then the report
    as the script that wrote it renders it."""
    _, target, writer, title = PAGES[name]
    module, function = writer.split(":")
    measured = report["measured"]
    body = getattr(importlib.import_module(module), function)({k: v for k, v in report.items() if k != "measured"})
    body = "\n".join(("#" + line) if line.startswith("#") else line for line in body.strip().splitlines())
    return (f"# {title}\n\nMeasured {measured['date']} on {measured['machine']}, by `{measured['by']}` "
            f"(`docs/results/{name}.json`; this page is generated from it by `make results`).\n\n{body}\n")


def snapshot(name: str) -> Path | None:
    """Copy ``name``'s report from ``build/`` into ``docs/results/`` with today's date and this machine, and
    render its page; None when the report has not been made."""
    source, target, _, _ = PAGES[name]
    path = REPO / source
    if not path.is_file():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    stamp = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
    report["measured"] = {"date": stamp, "machine": machine(), "by": target}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    page = RESULTS_DIR / f"{name}.md"
    page.write_text(render(name, report), encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    """Snapshot every report that exists in ``build/``."""
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    for name, (source, target, _, _) in PAGES.items():
        page = snapshot(name)
        print(f"{name}: {page}" if page else f"{name}: no {source} yet (run {target})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
