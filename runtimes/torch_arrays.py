"""numpy arrays handed to torch without a copy (the PyTorch reference and ExecuTorch backends; torch is imported
when first used)."""

from __future__ import annotations

import warnings

import numpy as np


def shared_tensor(array: np.ndarray):
    """``torch.from_numpy(array)``, read-only arrays included (the decoding loop holds its mask and cross K/V
    read-only, ``mt5lite.runtimes.decoding.StepState``): the backends only read their inputs, so the tensor shares the
    array's memory, without torch's warning that it could write to it."""
    import torch

    if array.flags.writeable:  # the common case: nothing to silence
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)
