"""The residual stream's rotation (``outliers.rotation``) for exports made straight from PyTorch
(ExecuTorch), folded into the model's own parameters.

``x`` becomes ``x Q``: the shared embedding's columns and every ``o``/``wo`` output take ``Q`` (``Q^T W`` in torch's
``[out, in]``), every linear that reads an RMS norm takes the norm's weight and ``Q`` (``W diag(g) Q``), and the
norms' weights become ones. The encoder's final norm feeds the cross K/V (rotated like any reader) and the
contract's ``encoder_hidden_states``, which ``EncoderGraph`` turns back with ``output_rotation = Q^T diag(g)``. A tied
``lm_head`` is the embedding itself, rotated on both sides: such a model is not rotated.
"""

from __future__ import annotations

import numpy as np


def rms_norms(model) -> dict[str, object]:
    """Every RMS norm of ``model`` by module name."""
    return {name: module for name, module in model.named_modules()
            if name.endswith("layer_norm") and hasattr(module, "variance_epsilon")}


def rotate_model(model, q: np.ndarray):
    """Rotate ``model``'s residual stream by the orthogonal ``q`` in place; returns what turns the encoder's output
    back (``EncoderGraph(output_rotation=...)``)."""
    import torch

    rotation = torch.from_numpy(q)  # float64 while folding
    modules = dict(model.named_modules())

    def read(linear, gain):  # W diag(g) Q
        linear.weight[:, :] = ((linear.weight.double() * gain.double()[None, :]) @ rotation).float()

    def write(linear):  # Q^T W
        linear.weight[:, :] = (rotation.T @ linear.weight.double()).float()

    with torch.no_grad():
        model.shared.weight[:, :] = (model.shared.weight.double() @ rotation).float()
        final = model.encoder.final_layer_norm.weight.detach().clone()
        back = (rotation.T * final.double()[None, :]).float()
        for name, norm in rms_norms(model).items():
            stem = name.rsplit(".", 1)[0]
            if name == "encoder.final_layer_norm":
                readers = [block.layer[1].EncDecAttention.k for block in model.decoder.block]
                readers += [block.layer[1].EncDecAttention.v for block in model.decoder.block]
            elif name == "decoder.final_layer_norm":
                readers = [model.lm_head]
            else:
                layer = modules[stem]
                part = (getattr(layer, "SelfAttention", None) or getattr(layer, "EncDecAttention", None)
                        or layer.DenseReluDense)
                names = ("q", "k", "v") if hasattr(layer, "SelfAttention") else (
                    ("q",) if hasattr(layer, "EncDecAttention") else ("wi", "wi_0", "wi_1"))
                readers = [getattr(part, n) for n in names if hasattr(part, n)]
                write(part.o if hasattr(part, "o") else part.wo)
            for linear in readers:
                read(linear, norm.weight)
            norm.weight[:] = 1.0
    return back
