"""Beam search's selection on the host (numpy only): the top-k of long rows and the best continuations of each
input's beams equal what a full log-softmax and a stable sort of every value give, ties and suppressed ids
included."""

from __future__ import annotations

import numpy as np
import pytest

from mt5lite.runtimes.decoding import NEG, TOPK_BLOCK, _beam_candidates, _topk


def _reference_topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-values, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(values, order, axis=-1), order


def _rows(rng: np.random.Generator, shape: tuple[int, ...], ties: bool) -> np.ndarray:
    if ties:  # int8-like logits: few distinct values, many equal
        return (rng.integers(-40, 40, shape) * 0.25).astype(np.float32)
    return (rng.standard_normal(shape) * 3).astype(np.float32)


# sorted whole, bounded by a partition (a trimmed vocabulary: 4,608 rows), bounded by blocks' maxima
@pytest.mark.parametrize("width", [20, 300, 4608, 40 * TOPK_BLOCK, 40 * TOPK_BLOCK + 77])
@pytest.mark.parametrize("ties", [False, True])
def test_topk_equals_a_stable_sort(width, ties):
    rng = np.random.default_rng(width)
    for k in (1, 3, 8):
        values = _rows(rng, (3, width), ties)
        values[1, -3:] = 50.0  # the best values of a row in the tail after the last whole block
        values[2, : width - 5] = -np.inf  # suppressed ids: fewer finite values than some k
        found = _topk(values, k)
        expected = _reference_topk(values, k)
        assert np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("batch, beams, vocab", [(1, 4, 30 * TOPK_BLOCK), (3, 2, 1200), (2, 5, 40 * TOPK_BLOCK + 9)])
def test_beam_candidates_equal_the_whole_log_softmax(batch, beams, vocab, ties):
    rng = np.random.default_rng(batch * 100 + beams)
    keep, suppressed = 2 * beams, np.array([0, 2, 7], dtype=np.int64)
    for first_step in (True, False):
        logits = _rows(rng, (batch * beams, vocab), ties)
        scores = rng.standard_normal((batch, beams)).astype(np.float32)
        if first_step:  # only the first beam of each input is alive
            scores[:, 1:] = NEG
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        log_probs[:, suppressed] = -np.inf
        total = (log_probs.reshape(batch, beams, vocab) + scores[:, :, None]).reshape(batch, beams * vocab)
        expected = _reference_topk(total, keep)
        found = _beam_candidates(logits.copy(), scores, suppressed, keep)
        assert np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])
