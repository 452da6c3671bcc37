"""The one decoding loop: greedy and beam search over a step backend, with the fixed-size cache bookkeeping.

A backend (ONNX Runtime, LiteRT, PyTorch) only runs the two graphs of the contract (``mt5lite.contract``), by
tensor name:

- ``encode({"input_ids", "attention_mask"}) -> {"encoder_hidden_states", "cross_k", "cross_v"}``;
- ``step({"decoder_input_ids", "position", "encoder_attention_mask", "cross_k", "cross_v", "self_k_cache",
  "self_v_cache"}) -> {"logits", "new_self_k", "new_self_v"}``.

This module owns everything else: the cache (the host writes each step's K/V at its position), beam bookkeeping
and stopping. Beam search follows transformers' vectorised implementation step for step (top ``2 x beams``
candidates, length-normalised finished hypotheses, the same early-stopping heuristic), so that greedy and beam
outputs can be compared token for token with PyTorch ``generate``. Step hooks see every step's feeds and outputs
(calibration capture, non-finite checks) without replacing the backend. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mt5lite.contract import encoder_feeds, step_feeds, through_eos
from mt5lite.errors import InputError
from mt5lite.runtimes.options import DecodingOptions

NEG = np.float32(-1.0e9)

#: Called after every decoder step with its feeds and outputs (by name); must not change them.
StepHook = Callable[[dict, dict], None]


class StepBackend(Protocol):
    """What a runtime must provide: the two graphs, by tensor name, plus the shapes the loop needs."""

    max_target_length: int  # T_max: the cache holds positions 0 .. T_max - 1
    vocab_size: int  # logits width (embedding rows)

    def encode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass
class StepState:
    """What decoding carries from step to step, one row per hypothesis: the encoder mask, every decoder layer's
    cross K/V ``[L,rows,H,S,d_kv]`` and the self-attention cache ``[L,rows,H,T_max,d_kv]``."""

    mask: np.ndarray
    cross_k: np.ndarray
    cross_v: np.ndarray
    cache_k: np.ndarray
    cache_v: np.ndarray

    @classmethod
    def start(cls, mask: np.ndarray, cross_k: np.ndarray, cross_v: np.ndarray, max_target_length: int) -> StepState:
        """The state before the first step: an empty cache of ``max_target_length`` positions per row. The mask and
        cross K/V are held read-only, the same arrays every step, so that an engine may keep them in its input
        buffers instead of copying them in at each step (``mt5lite.runtimes.litert``); the mask is copied first,
        since it is the caller's array (cross K/V are the encoder's outputs)."""
        layers, rows, heads, _, d_kv = cross_k.shape
        shape = (layers, rows, heads, max_target_length, d_kv)
        return cls(_read_only(mask.copy()), _read_only(cross_k), _read_only(cross_v), np.zeros(shape, np.float32),
                   np.zeros(shape, np.float32))

    def keep_rows(self, rows: np.ndarray, filled: int) -> None:
        """Carry the cache of ``rows`` forward (beam search: each new beam continues the beam it came from). Only
        the first ``filled`` positions are moved: the later ones are still zero in every row."""
        for cache in (self.cache_k, self.cache_v):
            cache[:, :, :, :filled] = cache[:, rows, :, :filled]


def _read_only(array: np.ndarray) -> np.ndarray:
    """A view of ``array`` that cannot be written through."""
    view = array.view()
    view.flags.writeable = False
    return view


def run_step(backend: StepBackend, tokens: np.ndarray, position: int, state: StepState,
             hooks: Sequence[StepHook] = ()) -> np.ndarray:
    """Run one step, call ``hooks``, write the step's K/V into the cache at ``position`` (the host's half of the
    contract); returns the float32 logits."""
    feeds = step_feeds(tokens, position, state.mask, state.cross_k, state.cross_v, state.cache_k, state.cache_v)
    outputs = backend.step(feeds)
    for hook in hooks:
        hook(feeds, outputs)
    state.cache_k[:, :, :, position] = outputs["new_self_k"][:, :, :, 0]
    state.cache_v[:, :, :, position] = outputs["new_self_v"][:, :, :, 0]
    return np.asarray(outputs["logits"], dtype=np.float32)


@dataclass
class _Finished:
    """Beam search's finished hypotheses per input (``beams`` each, best first): ids, length-normalised scores,
    whether each slot holds one, and its length."""

    seqs: np.ndarray
    scores: np.ndarray
    is_finished: np.ndarray
    lengths: np.ndarray

    def merge(self, candidates: np.ndarray, scores: np.ndarray, finished: np.ndarray, length: int) -> None:
        """Keep the best ``beams`` of the held hypotheses and the ``candidates`` scored ``scores`` (``NEG`` where
        a candidate did not finish)."""
        merged = np.concatenate([self.scores, scores], axis=1)
        _, best = _topk(merged, self.scores.shape[1])
        self.seqs = _gather_beams(np.concatenate([self.seqs, candidates], axis=1), best)
        self.scores = _gather_beams(merged, best)
        self.is_finished = _gather_beams(np.concatenate([self.is_finished, finished], axis=1), best)
        lengths = np.concatenate([self.lengths, np.full(candidates.shape[:2], length)], axis=1)
        self.lengths = _gather_beams(lengths, best)


#: ``_topk`` bounds the k-th largest value of a row by the maxima of blocks of this many values.
TOPK_BLOCK = 256
#: Rows at most this wide are sorted whole by ``_topk`` (beam search's candidates: beams x 2 beams).
TOPK_SORTED = 64


def _topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` along the last axis, largest first (ties: lower index first), as a full stable sort orders them.
    Beam search picks 8 of each beam's logits (mT5: 250k; trimmed, a few thousand) at every step, so a row is not
    sorted: only the values at least as large as a bound on its k-th largest value, in index order, are. A long
    row's bound is the k-th largest of its blocks' maxima (k blocks hold a value that large), and only the blocks
    whose maximum reaches it (and the tail after the last whole block) are read again; a shorter row's bound is its
    k-th largest value itself (a partition, not a sort: a stable sort of 4 beams x 4.5k logits took 0.22 ms)."""
    width = values.shape[-1]
    if width <= TOPK_SORTED:  # short rows: sort them
        order = np.argsort(-values, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(values, order, axis=-1), order
    rows = values.reshape(-1, width)
    blocks = width // TOPK_BLOCK
    if blocks < 4 * k:
        bounds = np.partition(rows, width - k, axis=-1)[:, width - k]
        found = (np.flatnonzero(row >= bound) for row, bound in zip(rows, bounds, strict=True))
    else:
        maxima = rows[:, : blocks * TOPK_BLOCK].reshape(len(rows), blocks, TOPK_BLOCK).max(axis=-1)
        bounds = np.partition(maxima, blocks - k, axis=-1)[:, blocks - k]
        tail = np.arange(blocks * TOPK_BLOCK, width)  # the values after the last whole block
        found = (_reaching(row, bound, np.flatnonzero(row_maxima >= bound), tail)
                 for row, bound, row_maxima in zip(rows, bounds, maxima, strict=True))
    order = np.empty((len(rows), k), dtype=np.int64)
    for row, (row_values, candidates) in enumerate(zip(rows, found, strict=True)):
        # candidates in ascending index order, so that the stable sort keeps ties in index order
        order[row] = candidates[np.argsort(-row_values[candidates], kind="stable")[:k]]
    order = order.reshape(values.shape[:-1] + (k,))
    return np.take_along_axis(values, order, axis=-1), order


def _reaching(row: np.ndarray, bound, blocks: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """The indices of ``row``'s values at least ``bound``, in ascending order, read only in ``blocks`` (of
    ``TOPK_BLOCK`` values) and the ``tail`` after the last whole block."""
    candidates = np.concatenate([(blocks[:, None] * TOPK_BLOCK + np.arange(TOPK_BLOCK)).ravel(), tail])
    return candidates[row[candidates] >= bound]


def _beam_candidates(logits: np.ndarray, running_scores: np.ndarray, suppressed: np.ndarray, keep: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``keep`` continuations of each input's beams: their scores (the beam's score plus the token's
    log-probability, ``log_softmax`` in float32, the ``suppressed`` ids excluded) and flat indices
    ``beam * vocab + token``, largest first, ties to the lower index. ``logits`` is ``[batch * beams, vocab]`` and
    is overwritten. Only ``keep`` tokens per beam are scored: log-softmax shifts a beam's logits by one number, so
    its best logits are its best tokens, and no log-softmax of the whole row is written."""
    batch, beams = running_scores.shape
    vocab = logits.shape[-1]
    peak = logits.max(axis=-1, keepdims=True)
    exps = logits - peak
    np.exp(exps, out=exps)
    normaliser = np.log(exps.sum(axis=-1, keepdims=True))
    logits[:, suppressed] = -np.inf
    values, tokens = _topk(logits, keep)
    scores = ((values - peak) - normaliser) + running_scores.reshape(-1, 1)
    flat = (tokens + (np.arange(batch * beams) % beams)[:, None] * vocab).reshape(batch, beams * keep)
    in_index_order = np.argsort(flat, axis=-1)  # so that _topk's ties go to the lower index, as over the whole row
    flat = np.take_along_axis(flat, in_index_order, axis=-1)
    scores, best = _topk(np.take_along_axis(scores.reshape(batch, beams * keep), in_index_order, axis=-1), keep)
    return scores, np.take_along_axis(flat, best, axis=-1)


def _gather_beams(tensor: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``tensor[b, indices[b, j], ...]`` for every batch item ``b``."""
    expanded = indices.reshape(indices.shape + (1,) * (tensor.ndim - indices.ndim))
    return np.take_along_axis(tensor, expanded, axis=1)


class Decoder:
    """Greedy and beam search over a ``StepBackend``."""

    def __init__(self, backend: StepBackend, eos_id: int, decoder_start_id: int, suppressed_ids: list[int]):
        self.backend = backend
        self.eos_id = eos_id
        self.decoder_start_id = decoder_start_id
        self.suppressed = np.asarray(suppressed_ids, dtype=np.int64)
        self.hooks: list[StepHook] = []

    def add_step_hook(self, hook: StepHook) -> None:
        """Call ``hook(feeds, outputs)`` after every decoder step from now on."""
        self.hooks.append(hook)

    def _start(self, mask: np.ndarray, cross_k: np.ndarray, cross_v: np.ndarray) -> StepState:
        return StepState.start(mask, cross_k, cross_v, self.backend.max_target_length)

    def _step(self, tokens: np.ndarray, position: int, state: StepState) -> np.ndarray:
        """Run one step and write its K/V into the cache; returns float32 logits."""
        return run_step(self.backend, tokens, position, state, self.hooks)

    def _encode(self, input_ids: np.ndarray, attention_mask: np.ndarray, options: DecodingOptions):
        """Check ``options`` against the cache and run the encoder; returns the cross-attention K and V."""
        if options.max_new_tokens > self.backend.max_target_length:
            raise InputError(f"max_new_tokens is {options.max_new_tokens}, beyond this export's cache of "
                             f"{self.backend.max_target_length} positions (max_target_length); lower it or "
                             "re-export with a larger --max-target-length")
        encoded = self.backend.encode(encoder_feeds(input_ids, attention_mask))
        return encoded["cross_k"], encoded["cross_v"]

    def generate(self, input_ids: np.ndarray, attention_mask: np.ndarray, options: DecodingOptions
                 ) -> list[list[int]]:
        """Generated ids per input (without the decoder start token), each ending at eos if one was produced."""
        cross_k, cross_v = self._encode(input_ids, attention_mask, options)
        if options.num_beams == 1:
            return self._greedy(attention_mask, cross_k, cross_v, options)
        return self._beam(attention_mask, cross_k, cross_v, options)

    def stream(self, input_ids: np.ndarray, attention_mask: np.ndarray, options: DecodingOptions
               ) -> Iterator[int]:
        """Greedy decoding of one input (batch 1), each token yielded as soon as its step has run (eos last, when
        one is produced): what ``generate`` returns for it, token by token."""
        if len(input_ids) != 1 or options.num_beams != 1:
            raise InputError(f"streaming decodes one input greedily, got {len(input_ids)} inputs and "
                             f"{options.num_beams} beams")
        cross_k, cross_v = self._encode(input_ids, attention_mask, options)
        for tokens, _ in self._greedy_steps(attention_mask, cross_k, cross_v, options):
            yield int(tokens[0])

    def _greedy_steps(self, mask, cross_k, cross_v, options) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each step's greedy token per row and the rows still decoding (no eos before this step), until every row
        has produced eos or ``max_new_tokens`` steps ran."""
        batch = mask.shape[0]
        state = self._start(mask, cross_k, cross_v)
        tokens = np.full(batch, self.decoder_start_id, dtype=np.int64)
        finished = np.zeros(batch, dtype=bool)
        for position in range(options.max_new_tokens):
            logits = self._step(tokens, position, state)
            logits[:, self.suppressed] = -np.inf
            tokens = logits.argmax(axis=-1).astype(np.int64)
            yield tokens, ~finished
            finished |= tokens == self.eos_id
            if finished.all():
                break

    def _greedy(self, mask, cross_k, cross_v, options) -> list[list[int]]:
        outputs: list[list[int]] = [[] for _ in range(mask.shape[0])]
        for tokens, active in self._greedy_steps(mask, cross_k, cross_v, options):
            for row in np.flatnonzero(active):
                outputs[row].append(int(tokens[row]))
        return outputs

    def _beam(self, mask, cross_k, cross_v, options) -> list[list[int]]:
        beams, vocab = options.num_beams, self.backend.vocab_size
        batch = mask.shape[0]
        keep = 2 * beams  # candidates per step: enough to leave `beams` unfinished ones
        top_beam_mask = np.arange(keep) < beams
        max_length = 1 + options.max_new_tokens  # decoder start token + new tokens
        # Every beam of an input shares its encoder outputs: repeat them along the batch axis.
        state = self._start(np.repeat(mask, beams, axis=0), np.repeat(cross_k, beams, axis=1),
                            np.repeat(cross_v, beams, axis=1))

        running = np.full((batch, beams, max_length), self.eos_id, dtype=np.int64)
        running[:, :, 0] = self.decoder_start_id
        done = _Finished(running.copy(), np.full((batch, beams), NEG, np.float32),
                         np.zeros((batch, beams), dtype=bool), np.zeros((batch, beams), dtype=np.int64))
        running_scores = np.zeros((batch, beams), np.float32)
        running_scores[:, 1:] = NEG
        improvable = np.ones((batch, 1), dtype=bool)

        for cur_len in range(1, max_length):
            position = cur_len - 1
            logits = self._step(running[:, :, position].reshape(-1), position, state)
            top_scores, top_indices = _beam_candidates(logits, running_scores, self.suppressed, keep)
            source_beams, top_ids = top_indices // vocab, top_indices % vocab
            candidates = _gather_beams(running, source_beams)
            candidates[:, :, cur_len] = top_ids
            hits = (top_ids == self.eos_id) | (cur_len + 1 >= max_length)

            # Continue with the best candidates that did not stop.
            _, next_beams = _topk(top_scores + hits.astype(np.float32) * NEG, beams)
            running = _gather_beams(candidates, next_beams)
            running_scores = _gather_beams(top_scores + hits.astype(np.float32) * NEG, next_beams)
            flat_source = (_gather_beams(source_beams, next_beams) + np.arange(batch)[:, None] * beams).reshape(-1)
            state.keep_rows(flat_source, filled=cur_len)

            # Candidates among the top `beams` that stopped join the finished hypotheses, length-normalised.
            just_finished = hits & top_beam_mask[None, :]
            normalised = top_scores / np.float32((cur_len + 1 - 1) ** options.length_penalty)
            full = done.is_finished.all(axis=-1, keepdims=True) & (options.early_stopping is True)
            normalised = normalised + full.astype(np.float32) * NEG + (~improvable).astype(np.float32) * NEG
            done.merge(candidates, normalised + (~just_finished).astype(np.float32) * NEG, just_finished, cur_len)

            # transformers' heuristic: can a running beam still beat the worst finished one?
            best_possible = running_scores[:, :1] / np.float32((cur_len + 1 - 1) ** options.length_penalty)
            worst = np.where(done.is_finished, done.scores.min(axis=1, keepdims=True), NEG)
            improvable = improvable & np.any(best_possible > worst, axis=-1, keepdims=True)
            all_full = done.is_finished.all() and options.early_stopping is True
            if not improvable.any() or all_full or hits.all():
                break
        return [through_eos(done.seqs[row, 0, 1 : done.lengths[row, 0] + 1].tolist(), self.eos_id)
                for row in range(batch)]
