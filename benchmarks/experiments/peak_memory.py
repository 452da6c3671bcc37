"""Run a command and measure its memory the two ways that matter: the peak of the whole process tree together
(what the machine must have; sampled from /proc) and ``/usr/bin/time -v``'s "Maximum resident set size" (the
largest single process of the tree).

    python -m benchmarks.experiments.peak_memory --output FILE.json -- COMMAND ARGS...

The JSON holds both peaks, each process's own peak (by command line), the wall time, the exit status and a
timeline of the tree's resident memory (one point per sample), so a phase that needs the memory can be found.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(root: int) -> dict[int, tuple[int, str]]:
    """Every live process under ``root`` (itself included): pid -> (resident bytes, command line)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        try:
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[pid] = (rss, command.strip()[:160])
        stack.extend(children.get(pid, []))
    return found


def measure(command: list[str], scratch: Path, interval_s: float = 0.2, env: dict | None = None) -> dict:
    """Run ``command`` under ``/usr/bin/time -v`` (when installed; its report goes to a file in ``scratch``) and
    sample its process tree's resident memory every ``interval_s``. Returns the peaks (bytes), per-process peaks,
    time -v's figures and a timeline."""
    timed = shutil.which("time", path="/usr/bin")
    report_file = Path(scratch).resolve() / f".peak-memory-{os.getpid()}.txt"
    argv = [timed, "-v", "-o", str(report_file), *command] if timed else command
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env)
    peak_tree, per_process, timeline = 0, {}, []
    while process.poll() is None:
        tree = _tree(process.pid)
        total = sum(rss for rss, _ in tree.values())
        peak_tree = max(peak_tree, total)
        for pid, (rss, name) in tree.items():
            if not name.startswith(timed or "\0"):
                key = f"{pid} {name}"
                per_process[key] = max(per_process.get(key, 0), rss)
        timeline.append([round(time.perf_counter() - started, 1), total])
        time.sleep(interval_s)
    result = {"command": command, "exit_status": process.returncode, "wall_s": round(time.perf_counter() - started, 1),
              "peak_tree_bytes": peak_tree, "peak_per_process_bytes": per_process,
              "timeline": timeline[:: max(1, len(timeline) // 600)]}
    if timed and report_file.is_file():
        text = report_file.read_text()
        report_file.unlink()
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        result["time_v_max_rss_bytes"] = int(found.group(1)) * 1024 if found else None
        result["time_v"] = text
    return result


def main() -> int:
    """Measure the command after ``--`` and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = measure(command, args.output.parent)
    args.output.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"peak of the process tree {result['peak_tree_bytes'] / 1e9:.2f} GB, largest process (time -v) "
          f"{(result.get('time_v_max_rss_bytes') or 0) / 1e9:.2f} GB, {result['wall_s']} s, "
          f"exit {result['exit_status']}")
    return result["exit_status"]


if __name__ == "__main__":
    raise SystemExit(main())
