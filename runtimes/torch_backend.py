"""The PyTorch reference as a step backend: the contract's two graphs computed by transformers' own modules.

``encode`` runs the model's encoder and each decoder layer's cross-attention K/V projection. ``step`` runs the
model's own decoder and ``lm_head`` for one token, with the host's fixed-size cache handed to transformers as its
``EncoderDecoderCache`` (self-attention keys and values of positions ``0 .. position - 1``, cross-attention K/V
marked as already computed), so the reference is transformers' computation, not a re-implementation of it. The one
teacher-forced comparator (``mt5lite.verification.teacher_forced``) runs it beside ONNX Runtime and LiteRT.
Imports torch and transformers (the ``export`` extra).
"""

from __future__ import annotations

import numpy as np

from mt5lite.runtimes.torch_arrays import shared_tensor


class TorchBackend:
    """A Hugging Face T5/mT5 model (eval mode, fp32) as a ``StepBackend`` with a cache of ``max_target_length``."""

    def __init__(self, model, max_target_length: int):
        self.model = model
        self.max_target_length = max_target_length
        self.vocab_size = int(model.config.vocab_size)
        self._heads, self._d_kv = model.config.num_heads, model.config.d_kv

    def _split(self, x):
        """``[B,T,H*d_kv]`` -> ``[B,H,T,d_kv]``."""
        return x.reshape(x.shape[0], x.shape[1], self._heads, self._d_kv).transpose(1, 2)

    def encode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The encoder's hidden states and every decoder layer's cross-attention K/V ``[L,B,H,S,d_kv]``."""
        import torch

        with torch.inference_mode():
            hidden = self.model.get_encoder()(input_ids=shared_tensor(feeds["input_ids"]),
                                              attention_mask=shared_tensor(feeds["attention_mask"]))[0]
            cross = [block.layer[1].EncDecAttention for block in self.model.decoder.block]
            keys = torch.stack([self._split(attention.k(hidden)) for attention in cross])
            values = torch.stack([self._split(attention.v(hidden)) for attention in cross])
        return {"encoder_hidden_states": hidden.numpy(), "cross_k": keys.numpy(), "cross_v": values.numpy()}

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One decoder step through ``model.forward`` with the host's cache; returns logits and the new K/V."""
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        position = int(feeds["position"][0])
        mask = shared_tensor(feeds["encoder_attention_mask"])
        self_cache, cross_cache = DynamicCache(), DynamicCache()
        for layer in range(feeds["cross_k"].shape[0]):
            self_cache.update(shared_tensor(np.ascontiguousarray(feeds["self_k_cache"][layer, :, :, :position])),
                              shared_tensor(np.ascontiguousarray(feeds["self_v_cache"][layer, :, :, :position])),
                              layer)
            cross_cache.update(shared_tensor(feeds["cross_k"][layer]), shared_tensor(feeds["cross_v"][layer]),
                               layer)
        cache = EncoderDecoderCache(self_cache, cross_cache)  # cross K/V present: transformers reuses them
        # The encoder's hidden states are only read to compute cross K/V, which the cache already holds; the
        # decoder still needs a tensor of their shape to know that it cross-attends.
        batch, source = mask.shape
        placeholder = torch.zeros(batch, source, self.model.config.d_model)
        with torch.inference_mode():
            out = self.model(encoder_outputs=(placeholder,), attention_mask=mask,
                             decoder_input_ids=shared_tensor(feeds["decoder_input_ids"]), past_key_values=cache,
                             use_cache=True, cache_position=torch.tensor([position]))
            layers = out.past_key_values.self_attention_cache.layers
            new_k = torch.stack([layer.keys[:, :, position : position + 1] for layer in layers])
            new_v = torch.stack([layer.values[:, :, position : position + 1] for layer in layers])
        return {"logits": out.logits[:, -1].float().numpy(), "new_self_k": new_k.numpy(),
                "new_self_v": new_v.numpy()}
