"""A trimmed model against the model it was trimmed from: the same computation, at the pieces it kept.

A trimmed checkpoint (``mt5lite compress --passes trim-vocab``) numbers its pieces anew. ``kept_ids`` recovers,
by piece string, which original id each new id is; ``InOriginalIds`` runs the original model on trimmed ids and
reports its logits at the kept ids only, so the one teacher-forced comparator can hold the two models side by side:
encoder outputs and cross K/V must be equal, and so must the logits at every kept id.
"""

from __future__ import annotations

import os

import numpy as np

from mt5lite.spiece import pieces
from mt5lite.verification.teacher_forced import Differences, teacher_forced


def id_map(original: list[str], trimmed: list[str], what: str = "the trimmed tokenizer") -> np.ndarray:
    """For each piece of ``trimmed``, its id in ``original`` (both lists of piece strings, in id order)."""
    index = {piece: i for i, piece in enumerate(original)}
    missing = [piece for piece in trimmed if piece not in index]
    if missing:
        raise ValueError(f"{what}: {len(missing)} pieces are not in the original tokenizer (first: {missing[0]!r}); "
                         "it was not trimmed from that model")
    return np.array([index[piece] for piece in trimmed], dtype=np.int64)


def kept_ids(original_dir: str | os.PathLike, trimmed_dir: str | os.PathLike) -> np.ndarray:
    """For each id of the trimmed tokenizer, the original tokenizer's id of the same piece."""
    return id_map(pieces(original_dir), pieces(trimmed_dir), f"{trimmed_dir}")


class InOriginalIds:
    """The original model's ``StepBackend``, fed trimmed ids (mapped back) and giving logits at the kept ids."""

    def __init__(self, backend, keep: np.ndarray):
        self.backend, self.keep = backend, keep
        self.max_target_length, self.vocab_size = backend.max_target_length, len(keep)

    def encode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The original encoder on the trimmed ids' original pieces."""
        return self.backend.encode({**feeds, "input_ids": self.keep[feeds["input_ids"]]})

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One original decoder step; logits only at the kept ids, in the trimmed order."""
        outputs = dict(self.backend.step({**feeds, "decoder_input_ids": self.keep[feeds["decoder_input_ids"]]}))
        outputs["logits"] = outputs["logits"][:, self.keep]
        return outputs


def compare_trimmed(original_dir: str | os.PathLike, trimmed_dir: str | os.PathLike, texts: list[str],
                    max_new_tokens: int = 16) -> Differences:
    """Teacher-forced differences, in PyTorch, between the trimmed model and the original at the kept ids, on the
    trimmed model's own greedy outputs for ``texts``. Raises ``ValueError`` if a text tokenizes differently (up to
    the id map) or the masks differ."""
    from mt5lite.runtimes.torch_reference import TorchReference

    keep = kept_ids(original_dir, trimmed_dir)
    original, trimmed = TorchReference(original_dir), TorchReference(trimmed_dir)
    ids, mask = original.tokenizer.encode_batch(texts)
    new_ids, new_mask = trimmed.tokenizer.encode_batch(texts)
    if not (np.array_equal(keep[new_ids], ids) and np.array_equal(new_mask, mask)):
        raise ValueError(f"{trimmed_dir}: the texts tokenize differently than with {original_dir}")
    return at_kept_ids(original, trimmed, keep, texts, max_new_tokens)


def at_kept_ids(original, trimmed, keep: np.ndarray, texts: list[str], max_new_tokens: int = 16) -> Differences:
    """Teacher-forced differences between two ``TorchReference`` models, ``trimmed`` (any checkpoint whose pieces
    are a subset of ``original``'s; ``keep`` from ``kept_ids``) and ``original`` at the kept ids, on ``trimmed``'s
    own greedy outputs for ``texts`` as its tokenizer reads them."""
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.runtimes.torch_backend import TorchBackend

    ids, mask = trimmed.tokenizer.encode_batch(texts)
    targets = trimmed.generate_ids(texts, DecodingOptions(max_new_tokens=max_new_tokens))
    steps = max_new_tokens + 1
    return teacher_forced(InOriginalIds(TorchBackend(original.model, steps), keep), TorchBackend(trimmed.model, steps),
                          ids, mask, targets, start_id=trimmed.model.config.decoder_start_token_id)
