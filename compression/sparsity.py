"""``magnitude-prune``: unstructured L1 pruning with ``torch.nn.utils.prune``, reported honestly.

The smallest weights of every linear layer (the embedding and ``lm_head`` are left alone) are set to zero, layer by
layer, and the pruning is made permanent. Zeros shrink neither an ONNX nor a TFLite file (both store dense
tensors) and dense CPU kernels do not skip them, so the report gives what does change: the sparsity reached and the
size of the weights once compressed with zip (deflate), before and after. The speed is whatever the dense kernels
give; measure it side by side (``make lite-demo`` style) rather than expecting a gain.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

from mt5lite.checked import Checked
from mt5lite.compression.passes import PASSES, CompressionPass, make_report, measure


@dataclass(frozen=True)
class MagnitudePruneConfig(Checked):
    """How many of each linear layer's weights become zero."""

    sparsity: float = field(default=0.5, metadata={"help": "fraction of each linear layer's weights set to zero"})

    def problems(self) -> list[str]:
        """A sparsity outside (0, 1)."""
        return [] if 0 < self.sparsity < 1 else [f"sparsity must be between 0 and 1 (exclusive), got {self.sparsity}"]


def _linears(model) -> list:
    from torch import nn

    head = model.get_output_embeddings()
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and module is not head]


def zipped_bytes(model) -> int:
    """The fp32 weights of ``model``'s linear layers compressed with zip (deflate, level 6)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, module in _linears(model):
            archive.writestr(name, module.weight.detach().numpy().tobytes())
    return buffer.getbuffer().nbytes


def magnitude_prune(model, tokenizer, config: MagnitudePruneConfig):
    """The ``magnitude-prune`` pass: L1 unstructured pruning of every linear layer (``torch.nn.utils.prune``)."""
    from torch.nn.utils import prune

    before = measure(model, tokenizer)
    zipped_before = zipped_bytes(model)
    layers = _linears(model)
    for _, module in layers:
        prune.l1_unstructured(module, name="weight", amount=config.sparsity)
        prune.remove(module, "weight")  # permanent: the zeros are the weights now
    total = sum(module.weight.numel() for _, module in layers)
    zeros = sum(int((module.weight == 0).sum()) for _, module in layers)
    zipped_after = zipped_bytes(model)
    after = measure(model, tokenizer)
    summary = (f"{zeros / total:.1%} of {len(layers)} linear layers' weights are zero; zipped "
               f"{zipped_before / 1e6:.2f} -> {zipped_after / 1e6:.2f} MB (dense files do not shrink)")
    return model, tokenizer, make_report("magnitude-prune", summary, before, after,
                                         {"sparsity": zeros / total, "zipped_bytes": [zipped_before, zipped_after],
                                          "linear_layers": len(layers)})


PASSES.register("magnitude-prune", CompressionPass(magnitude_prune, MagnitudePruneConfig,
                                                   "zero the smallest weights (torch.nn.utils.prune); sparse, not "
                                                   "smaller"))
