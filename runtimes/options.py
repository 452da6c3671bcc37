"""Decoding options shared by every backend (lean: no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass

from mt5lite.checked import Checked


@dataclass(frozen=True)
class DecodingOptions(Checked):
    """How to decode; the same options drive every backend."""

    max_new_tokens: int = 32  # tokens generated after the decoder start token, eos included
    num_beams: int = 1  # 1 = greedy search
    length_penalty: float = 1.0  # beam search: score / length ** length_penalty
    early_stopping: bool = False  # beam search: stop once num_beams hypotheses are finished

    def problems(self) -> list[str]:
        """Every option that is out of range."""
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            problems.append(f"num_beams must be at least 1, got {self.num_beams}")
        return problems
