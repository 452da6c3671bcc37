"""The one teacher-forced comparator: two step backends fed the same tokens, every output compared.

Export validation (PyTorch vs ONNX Runtime), TFLite validation (ONNX Runtime vs LiteRT), ``mt5lite parity``
(PyTorch vs any export) and the quantization sensitivity analysis (fp32 vs a quantized export) all run this one
loop. Both backends encode the same input; every encoder output they both produce is compared on real source
positions; then both decode the same target tokens (each step is fed token ``p - 1`` of the target, so neither
side's own choices leak in), each with its own cache, and the logits are compared at every real step.
"""

from __future__ import annotations

import numpy as np

from mt5lite.contract import BATCH_AXIS, ENCODER_OUTPUTS, SOURCE_AXIS, encoder_feeds
from mt5lite.errors import ParityError
from mt5lite.runtimes.decoding import StepBackend, StepState, run_step


class Differences:
    """Running max |candidate - reference| and max |reference| per output, the relative logit error of every
    compared step ``||candidate - reference|| / ||reference||``, and whether the two pick the same token there (with
    the reference's margin for its own pick over the candidate's where they do not)."""

    def __init__(self):
        self.max_abs_diff: dict[str, float] = {}
        self.max_abs_reference: dict[str, float] = {}
        self.relative_logit_errors: list[float] = []
        self.same_top: list[bool] = []  # per compared step: the candidate's argmax is the reference's
        self.flip_margins: list[float] = []  # where not: reference logit of its pick minus that of the candidate's

    def add(self, name: str, candidate: np.ndarray, reference: np.ndarray) -> None:
        """Fold in one comparison (arrays of the same shape, already restricted to valid entries)."""
        candidate, reference = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
        diff = float(np.abs(candidate - reference).max()) if reference.size else 0.0
        scale = float(np.abs(reference).max()) if reference.size else 0.0
        self.max_abs_diff[name] = max(diff, self.max_abs_diff.get(name, 0.0))
        self.max_abs_reference[name] = max(scale, self.max_abs_reference.get(name, 0.0))

    def merge(self, other: Differences) -> None:
        """Fold in another set of differences."""
        for name, value in other.max_abs_diff.items():
            self.max_abs_diff[name] = max(value, self.max_abs_diff.get(name, 0.0))
            self.max_abs_reference[name] = max(other.max_abs_reference[name], self.max_abs_reference.get(name, 0.0))
        self.relative_logit_errors += other.relative_logit_errors
        self.same_top += other.same_top
        self.flip_margins += other.flip_margins

    def add_picks(self, candidate: np.ndarray, reference: np.ndarray) -> None:
        """Fold in one step's token picks: ``[rows, V]`` logits of both sides, real rows only."""
        picked, wanted = candidate.argmax(-1), reference.argmax(-1)
        self.same_top += list(picked == wanted)
        rows = np.flatnonzero(picked != wanted)
        self.flip_margins += list(reference[rows, wanted[rows]] - reference[rows, picked[rows]])

    @property
    def mean_relative_logit_error(self) -> float:
        """The mean over every compared step of ``||candidate - reference|| / ||reference||`` of the logits."""
        return float(np.mean(self.relative_logit_errors)) if self.relative_logit_errors else 0.0

    @property
    def top_agreement(self) -> float:
        """The share of compared steps where the candidate picks the reference's token (1.0 when none)."""
        return float(np.mean(self.same_top)) if self.same_top else 1.0


def _valid_positions(name: str, value: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The entries of encoder output ``name`` at real (unpadded) source positions: batch and source axes first."""
    moved = np.moveaxis(value, (BATCH_AXIS[name], SOURCE_AXIS[name]), (0, 1))
    return moved[valid]


def teacher_forced(reference: StepBackend, candidate: StepBackend, input_ids: np.ndarray,
                   attention_mask: np.ndarray, targets: list[list[int]], start_id: int) -> Differences:
    """Differences of encoder outputs and of every step's logits between ``reference`` and ``candidate``, both
    fed ``targets`` (one token list per row, usually the reference's greedy output). Only real positions count:
    not padding, not past a row's end. Batch-1 backends must come wrapped to take the whole batch
    (``ExportGenerator.stepper``)."""
    found = Differences()
    valid = attention_mask.astype(bool)
    feeds = encoder_feeds(input_ids, attention_mask)
    encoded = {"reference": reference.encode(feeds), "candidate": candidate.encode(feeds)}
    for name in ENCODER_OUTPUTS:
        if name in encoded["reference"] and name in encoded["candidate"]:
            found.add(name, _valid_positions(name, encoded["candidate"][name], valid),
                      _valid_positions(name, encoded["reference"][name], valid))

    batch, length = len(targets), max(len(t) for t in targets)
    tokens = np.zeros((batch, length), dtype=np.int64)
    tokens[:, 0] = start_id
    for row, target in enumerate(targets):
        tokens[row, 1 : len(target)] = target[:-1]  # the step at position p is fed token p - 1 of the target
    sides = {}
    for name, backend in (("reference", reference), ("candidate", candidate)):
        cross_k, cross_v = encoded[name]["cross_k"], encoded[name]["cross_v"]
        sides[name] = (backend, StepState.start(attention_mask, cross_k, cross_v, backend.max_target_length))
    for position in range(length):
        logits = {name: run_step(backend, tokens[:, position], position, state)
                  for name, (backend, state) in sides.items()}
        live = [row for row, target in enumerate(targets) if position < len(target)]
        reference_logits = logits["reference"][live].astype(np.float64)
        diff = logits["candidate"][live].astype(np.float64) - reference_logits
        found.add("logits", logits["candidate"][live], logits["reference"][live])
        found.add_picks(logits["candidate"][live].astype(np.float64), reference_logits)
        found.relative_logit_errors += list(np.linalg.norm(diff, axis=-1) / np.linalg.norm(reference_logits, axis=-1))
    return found


def diff_rows(found: Differences, atol: float, rtol: float, shapes: dict[str, list]) -> list[dict]:
    """Rows of (output, shape, max |diff|, max |reference|, tolerance), the tolerance being
    ``atol + rtol * max |reference|``."""
    return [{"output": name, "shape": shapes.get(name), "max_abs_diff": value,
             "max_abs_reference": found.max_abs_reference[name],
             "tolerance": atol + rtol * found.max_abs_reference[name]}
            for name, value in found.max_abs_diff.items()]


def check_diffs(stage: str, found: Differences, atol: float, rtol: float, shapes: dict[str, list],
                reference: str = "PyTorch") -> list[dict]:
    """``diff_rows``, or ``ParityError`` listing all of them if any output is over its tolerance (NaN is over);
    ``reference`` names what the outputs were compared with."""
    rows = diff_rows(found, atol, rtol, shapes)
    if any(not (row["max_abs_diff"] <= row["tolerance"]) for row in rows):
        raise ParityError(stage, rows, reference)
    return rows
