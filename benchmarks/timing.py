"""Decoding speed, measured alike everywhere: exactly ``new_tokens`` greedy steps per input (eos ignored, so every
variant does the same work), and variants decoded side by side, taking turns input by input, so that load on a
shared machine hits all alike. Used by `make bench`'s own exports (``bench_systems.ours``) and by the experiments."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from mt5lite.contract import encoder_feeds
from mt5lite.paths import BUILD_DIR
from mt5lite.runtimes.decoding import StepState, run_step


def forced_decode(backend, ids: np.ndarray, mask: np.ndarray, start_id: int, new_tokens: int) -> tuple[float, float]:
    """(seconds for the encoder and exactly ``new_tokens`` greedy steps of the batch, seconds for the steps alone)
    on a step backend; forced length: no eos check, every input decodes the same count."""
    started = time.perf_counter()
    encoded = backend.encode(encoder_feeds(ids, mask))
    cross_k, cross_v = encoded["cross_k"], encoded["cross_v"]
    encoded_at = time.perf_counter()
    state = StepState.start(mask, cross_k, cross_v, backend.max_target_length)
    token = np.full(len(ids), start_id, dtype=np.int64)
    for position in range(new_tokens):
        token = run_step(backend, token, position, state).argmax(axis=-1)
    finished = time.perf_counter()
    return finished - started, finished - encoded_at


def timed_decode(generator, text: str, new_tokens: int) -> tuple[float, float]:
    """``forced_decode`` of one text, batch 1, with an export generator (a static export's graphs in the shapes
    of the padded input)."""
    ids, mask = generator.encode_batch([text])
    return forced_decode(generator.stepper, ids, mask, generator.decoder.decoder_start_id, new_tokens)


def side_by_side(generators: dict, texts: list[str], new_tokens: int) -> dict[str, float]:
    """Median ms per token of each generator, all decoding every text in turn (warm-up first), so that load on a
    shared machine hits all alike."""
    for generator in generators.values():  # warm-up: first runs allocate and page in the weights
        timed_decode(generator, texts[0], 4)
    per_token: dict[str, list[float]] = {name: [] for name in generators}
    for text in texts:
        for name, generator in generators.items():
            total, _ = timed_decode(generator, text, new_tokens)
            per_token[name].append(1000 * total / new_tokens)
    return {name: statistics.median(values) for name, values in per_token.items()}


def speed_arguments(parser, inputs: int, new_tokens: int, output: str) -> None:
    """The options every side-by-side benchmark takes: ``--threads``, ``--inputs``, ``--new-tokens`` and
    ``--output`` (default ``build/reports/<output>``)."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=inputs, help="held-out inputs decoded by every variant")
    parser.add_argument("--new-tokens", type=int, default=new_tokens)
    parser.add_argument("--output", type=Path, default=BUILD_DIR / "reports" / output)
