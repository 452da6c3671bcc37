"""The files `make bench` writes: ``bench.json``, ``bench.md`` (one table per model) and two PNG plots (size against
ms/token with quality on each point; ms/token per system as bars with the floor marked)."""

from __future__ import annotations

import json
from pathlib import Path

from mt5lite.reports import markdown_table


def _number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    """The run as Markdown: the set-up, then one table per model."""
    bandwidth = ", ".join(f"{b / 1e9:.1f} GB/s on {t} thread(s)"
                          for t, b in result["read_bandwidth_bytes_per_second"].items())
    parts = [f"# make bench ({result['date']})",
             f"{result['machine']['processor']}, {result['machine']['cpus']} CPUs, {result['threads']} threads; "
             f"batch 1: {result['source_tokens']} source tokens, {result['new_tokens']} forced new tokens, median "
             f"over {result['inputs']} inputs, every system taking turns in its own process; read bandwidth "
             f"{bandwidth}. The floor is the bytes of weights one decoded token reads over that bandwidth. "
             f"{result['beams']} beams: ms per generated token (per step of the decoding loop, encoder included) on "
             "the same inputs, and its multiple of greedy. First token: the encoder and one step, by source "
             "length; a static export runs the shortest source-length bucket that holds the input."]
    models = dict.fromkeys(r["model"] for r in result["records"])
    for model in models:
        rows = [r for r in result["records"] if r["model"] == model]
        batch8 = {r["system"]: r for r in rows if r["batch"] != 1}
        table = []
        for r in (r for r in rows if r["batch"] == 1):
            if "unavailable" in r:
                table.append([r["system"], f"unavailable: {r['unavailable']}"] + [""] * 11)
                continue
            first = r["first_token_ms"]
            beam = f"beam{result['beams']}"
            beams = r.get("beam_search") or f"{r[beam + '_ms_per_token']:.2f} ({r[beam + '_over_greedy']:.2f}x)"
            table.append([
                r["system"], f"{r['ms_per_token']:.2f} / {r['ms_per_token_alone']:.2f}",
                f"{r['floor_ms_per_token']:.2f}", f"{r['floor_multiple']:.1f}x", beams,
                " / ".join(f"{v:.1f}" for v in first.values()), f"{r['first_token_16_over_128']:.0%}",
                _number(batch8.get(r["system"], {}).get("tokens_per_second"), 0),
                f"{r['peak_rss_bytes'] / 1e6:.0f}", f"{r['bytes'] / 1e6:.1f}",
                _number(r.get("greedy_agreement"), 3), _number(r.get("exact_match"), 3)])
        lengths = " / ".join(next((r["first_token_ms"] for r in rows if "first_token_ms" in r), {}))
        header = ["system", "ms/token (rotation / alone)", "floor ms/token", "x floor",
                  f"{result['beams']} beams ms/token (x greedy)", f"first token ms ({lengths})",
                  "first token 16 / 128", "tokens/s batch 8", "peak RSS MB", "MB on disk",
                  "agreement with PyTorch fp32", "exact match"]
        parts += [f"## {model}", markdown_table(header, table)]
    return "\n\n".join(parts) + "\n"


def plots(result: dict, output: Path) -> list[Path]:
    """``size_vs_speed.png`` and ``ms_per_token.png``, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in result["records"]))
    rows = {m: [r for r in result["records"] if r["model"] == m and r["batch"] == 1 and "ms_per_token" in r]
            for m in models}
    families = sorted({r["family"] for r in result["records"]})
    colours = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(families)}
    written = []

    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 5), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        for r in rows[model]:
            axis.scatter(r["bytes"] / 1e6, r["ms_per_token"], color=colours[r["family"]])
            quality = f" EM {r['exact_match']:.2f}" if "exact_match" in r else ""
            axis.annotate(r["system"] + quality, (r["bytes"] / 1e6, r["ms_per_token"]), fontsize=6)
        axis.set(title=model, xlabel="MB on disk", ylabel="ms per token (batch 1)", xscale="log", yscale="log")
    figure.tight_layout()
    written.append(output / "size_vs_speed.png")
    figure.savefig(written[-1], dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 5), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        names = [r["system"] for r in rows[model]]
        axis.barh(names, [r["ms_per_token"] for r in rows[model]], color=[colours[r["family"]] for r in rows[model]])
        axis.scatter([r["floor_ms_per_token"] for r in rows[model]], names, marker="|", s=200, color="black",
                     label="bandwidth floor", zorder=3)
        axis.set(title=model, xlabel="ms per token (batch 1)")
        axis.tick_params(axis="y", labelsize=7)
        axis.legend(fontsize=7)
    figure.tight_layout()
    written.append(output / "ms_per_token.png")
    figure.savefig(written[-1], dpi=120)
    plt.close(figure)
    return written


def write_report(result: dict, output: Path) -> None:
    """``bench.json``, ``bench.md`` and the plots under ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    (output / "bench.md").write_text(text, encoding="utf-8")
    written = plots(result, output)
    print(text)
    print("written: " + ", ".join(str(p) for p in [output / "bench.json", output / "bench.md", *written]))
