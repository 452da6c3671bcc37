"""The token embedding of an ExecuTorch int8 export, stored column-scaled where one range per row cannot hold it.

ExecuTorch's int8 stores the token embedding with one range per row (torchao's embedding quantizer). Activation
outliers that enter the residual stream at the embedding (a few columns tens of times the others, as a trained
checkpoint's are) set every row's range, and the other columns keep a handful of levels. A rotated residual stream
(``mt5lite.exporters.torch_rotation``) spreads those columns over every column of the rotated table, which is no
better for one range per row. So the lookup is rebuilt in the unrotated basis ``E``: the table is stored as
``E / s`` (``s``: each column's largest magnitude) and the looked-up rows are multiplied back by ``s`` and turned by
the rotation ``Q``, both in float (a ``[D]`` product and a ``[D, D]`` one per looked-up row). It computes the same
rows (up to rounding; the fold check covers it) and is chosen only where it lowers ``lookup_error`` by
``MIN_GAIN``, measured column by column in the unrotated basis on a sample of rows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mt5lite.exporters.int8_error import uniform
from mt5lite.exporters.smoothing import MIN_GAIN

#: Rows the choice is measured on (a fixed sample of the table; every row of a smaller one).
SAMPLE_ROWS = 16384


def row_lookup_error(table: np.ndarray, scales: np.ndarray | None = None, q: np.ndarray | None = None,
                     reference: np.ndarray | None = None) -> float:
    """The mean over columns of each column's relative error when ``table`` (``[rows, D]``, divided by ``scales``
    first when given) is quantized to 256 levels per row and read back (times ``scales``, then ``@ q.T`` when
    given), against ``reference`` (``table`` itself by default)."""
    stored = table / scales if scales is not None else table
    read = uniform(stored, stored.min(axis=1, keepdims=True), stored.max(axis=1, keepdims=True))
    read = read * scales if scales is not None else read
    read = read @ q.T if q is not None else read
    reference = table if reference is None else reference
    error = np.linalg.norm(read - reference, axis=0)
    return float(np.mean(error / np.maximum(np.linalg.norm(reference, axis=0), 1e-30)))


def scale_lookup_columns(model, q: np.ndarray | None = None) -> dict:
    """Replace ``model``'s shared token embedding (rotated by ``q`` when given: its table is ``E q``) by a
    column-scaled lookup (``E / s``, times ``s``, then ``@ q``) where that lowers ``row_lookup_error`` by
    ``MIN_GAIN``; in place. Returns both errors and the choice."""
    table = model.shared.weight.detach().double().numpy()
    unrotated = table @ q.T if q is not None else table
    rows = np.random.default_rng(0).permutation(len(table))[:SAMPLE_ROWS]
    scales = np.maximum(np.abs(unrotated).max(axis=0), 1e-12)
    per_row = row_lookup_error(table[rows], q=q, reference=unrotated[rows])
    scaled = row_lookup_error(unrotated[rows], scales)
    chosen = scaled * MIN_GAIN <= per_row
    if chosen:
        lookup = ColumnScaledLookup(torch.from_numpy(unrotated / scales).float(), torch.from_numpy(scales).float(),
                                    None if q is None else torch.from_numpy(q).float())
        model.set_input_embeddings(lookup)
    return {"per_row_error": per_row, "column_scaled_error": scaled, "column_scaled": bool(chosen)}


class ColumnScaledLookup(nn.Module):
    """Rows of ``table`` (held as an ``nn.Embedding``, which int8 stores per row) times ``scales``, then
    ``@ rotation`` when given."""

    def __init__(self, table: torch.Tensor, scales: torch.Tensor, rotation: torch.Tensor | None = None):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(table, freeze=True)
        self.register_buffer("scales", scales)
        self.register_buffer("rotation", rotation)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The rows of ``ids``, as the original table holds them."""
        rows = self.embedding(ids) * self.scales
        return rows if self.rotation is None else torch.matmul(rows, self.rotation)
