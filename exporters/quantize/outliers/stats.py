"""Per-channel statistics of the activations the quantized products read, measured on the calibration feeds.

For each named tensor (a MatMul's activation input) over every calibration run of the fp32 graph: each channel's
minimum and maximum (what a static quantizer's range is made of), each run's per-channel range (a dynamic
quantizer's range is one run's), and a uniform sample of rows (what the error of a quantization recipe is measured
on). The last axis is the channel axis; every other axis is rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt5lite.contract import graph_feeds

#: Rows kept per tensor for error measurements (mt5-small's widest activation: 1,024 channels, 2 MB).
SAMPLE_ROWS = 512


@dataclass
class ChannelStats:
    """One activation tensor's statistics over the calibration runs."""

    low: np.ndarray  # [K] each channel's minimum over every run
    high: np.ndarray  # [K] each channel's maximum
    run_low: np.ndarray  # [runs, K] each run's per-channel minimum
    run_high: np.ndarray  # [runs, K] each run's per-channel maximum
    rows: np.ndarray  # [R, K] sampled rows
    row_run: np.ndarray  # [R] the run each sampled row comes from

    @property
    def absmax(self) -> np.ndarray:
        """Each channel's largest magnitude."""
        return np.maximum(np.abs(self.low), np.abs(self.high))

    def outlier_ratio(self) -> tuple[float, int]:
        """The largest channel's magnitude over the median channel's, and that channel."""
        peak = self.absmax
        channel = int(np.argmax(peak))
        return float(peak[channel] / max(float(np.median(peak)), 1e-12)), channel


class StatsAccumulator:
    """Builds ``ChannelStats`` run by run: ``add(name, value)`` for every measured tensor of each run, then
    ``finish()``."""

    def __init__(self, runs: int, rows: int = SAMPLE_ROWS, seed: int = 0):
        self.rows, self.rng = rows, np.random.default_rng(seed)
        self.per_run = max(1, -(-rows // max(runs, 1)))
        self.lows: dict[str, list] = {}
        self.highs: dict[str, list] = {}
        self.sampled: dict[str, list] = {}
        self.row_runs: dict[str, list] = {}

    def add(self, name: str, value: np.ndarray) -> None:
        """One run's value of tensor ``name`` (channels on the last axis); a tensor's runs count in the order they
        are added."""
        flat = np.asarray(value, dtype=np.float32).reshape(-1, value.shape[-1])
        self.lows.setdefault(name, []).append(flat.min(axis=0))
        self.highs.setdefault(name, []).append(flat.max(axis=0))
        take = self.rng.choice(len(flat), min(self.per_run, len(flat)), replace=False)
        self.sampled.setdefault(name, []).append(flat[take])
        self.row_runs.setdefault(name, []).extend([len(self.lows[name]) - 1] * len(take))  # this tensor's run

    def finish(self) -> dict[str, ChannelStats]:
        """Each tensor's statistics."""
        found = {}
        for name in self.lows:
            run_low, run_high = np.stack(self.lows[name]), np.stack(self.highs[name])
            rows, runs = np.concatenate(self.sampled[name]), np.asarray(self.row_runs[name])
            keep = self.rng.choice(len(rows), min(self.rows, len(rows)), replace=False)
            found[name] = ChannelStats(run_low.min(axis=0), run_high.max(axis=0), run_low, run_high, rows[keep],
                                       runs[keep])
        return found


def collect_stats(onnx_path: str | Path, names: list[str], feeds, transform=None, rows: int = SAMPLE_ROWS,
                  seed: int = 0) -> dict[str, ChannelStats]:
    """Run the fp32 graph at ``onnx_path`` on every feed dict of ``feeds`` (a sequence, e.g. a ``FeedStore``),
    each passed through ``transform`` when given, and return the ``ChannelStats`` of each tensor in ``names``."""
    import onnx

    from mt5lite.exporters.onnx.probe import probe_session

    onnx_path = Path(onnx_path)
    session = probe_session(onnx.load(str(onnx_path), load_external_data=False), onnx_path.parent, names)
    inputs = [i.name for i in session.get_inputs()]
    found = StatsAccumulator(len(feeds), rows, seed)
    for index in range(len(feeds)):
        feed = feeds[index] if transform is None else transform(feeds[index])
        values = session.run(names, graph_feeds(inputs, feed))
        for name, value in zip(names, values, strict=True):
            found.add(name, value)
    return found.finish()
