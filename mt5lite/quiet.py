"""Notices that third-party imports log on every run, kept off the terminal (errors still get through).

With ``mt5lite[executorch]`` installed, importing transformers' model loading or ExecuTorch imports torchao, which
warns that its CUDA kernels cannot load on a CPU-only machine, and torch then logs a deprecation notice about
torchao's enum registrations: five lines of stderr before any of ours, on every command.
"""

from __future__ import annotations

import logging

#: Loggers whose warnings are import-time notices, not about the user's input.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_third_party_logs() -> None:
    """Raise the noisy loggers' level to ERROR (idempotent; call before importing torch-based libraries)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
