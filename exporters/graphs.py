"""The two graphs of the deployment contract, as torch modules over a Hugging Face T5/mT5 model's own weights.

``EncoderGraph``: ``input_ids [B,S]``, ``attention_mask [B,S]`` -> ``encoder_hidden_states [B,S,D]`` and the
cross-attention keys and values of every decoder layer, ``cross_k``/``cross_v [L,B,H,S,d_kv]``, computed once.

``DecoderStepGraph``: one token per sequence ``[B,1]``, its ``position [1]``, the encoder mask, the cross K/V and a
fixed-size self-attention cache ``[B,H,T_max,d_kv]``, one input per layer each -> ``logits [B,V]`` and the step's
``new_self_k``/``new_self_v [L,B,H,1,d_kv]``, which the host writes into the cache at ``position``. No growing
concat and no control flow: the step attends over the cache (masked from ``position`` on: ``arange(T_max) <
position``) and its own key side by side, so the step's K/V are never selected into a copy of the cache, and T5's
relative position bias is a constant ``[T_max, H, T_max]`` table gathered by position, exact at every position up
to ``T_max``: one table for the stack (T5, mT5), or one per layer where each layer has its own bias (umT5;
``mt5lite.families``).
"""

from __future__ import annotations

import torch
from torch import nn

from mt5lite.families import FAMILIES, family_of

#: Added to attention scores of masked keys. Finite, so no graph (fp16 included) ever sees inf - inf.
MASK_VALUE = -1e9


def _split_heads(x: torch.Tensor, heads: int, d_kv: int) -> torch.Tensor:
    """``[B,T,H*d_kv]`` -> ``[B,H,T,d_kv]``."""
    return x.reshape(x.shape[0], x.shape[1], heads, d_kv).transpose(1, 2)


def _step_heads(x: torch.Tensor, heads: int, d_kv: int) -> torch.Tensor:
    """One step's ``[B,1,H*d_kv]`` -> ``[B,H,1,d_kv]``: with one position, one reshape (no transpose), whose target
    shape is a constant in the graph (no shape arithmetic at run time)."""
    return x.reshape(-1, heads, 1, d_kv)


def _merge_step_heads(x: torch.Tensor, width: int) -> torch.Tensor:
    """One step's ``[B,H,1,d_kv]`` -> ``[B,1,H*d_kv]`` (``width``), the inverse of ``_step_heads``: one reshape to
    a constant shape."""
    return x.reshape(-1, 1, width)


class EncoderGraph(nn.Module):
    """The encoder and the decoder's cross-attention K/V projections, run once per input."""

    def __init__(self, model, cross_scale: torch.Tensor | None = None, output_rotation: torch.Tensor | None = None):
        super().__init__()
        self.encoder = model.get_encoder()
        self.cross_attention = nn.ModuleList(block.layer[1].EncDecAttention for block in model.decoder.block)
        self.heads = model.config.num_heads
        self.d_kv = model.config.d_kv
        # Smoothing (int8): the cross K/V read the encoder's output divided per channel by what their weights took,
        # while encoder_hidden_states stays as it is (mt5lite.exporters.quantize.outliers.torch_smoothing).
        self.cross_scale = None if cross_scale is None else nn.Parameter(cross_scale, requires_grad=False)
        # A rotated residual stream (int8; outliers.torch_rotation): the cross K/V read the encoder's output
        # rotated, encoder_hidden_states turns back through this [D, D] matrix.
        self.output_rotation = None if output_rotation is None else nn.Parameter(output_rotation,
                                                                                 requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        cross = hidden if self.cross_scale is None else hidden * self.cross_scale
        keys = [_split_heads(attn.k(cross), self.heads, self.d_kv) for attn in self.cross_attention]
        values = [_split_heads(attn.v(cross), self.heads, self.d_kv) for attn in self.cross_attention]
        if self.output_rotation is not None:
            hidden = hidden @ self.output_rotation
        return hidden, torch.stack(keys), torch.stack(values)


class DecoderStepGraph(nn.Module):
    """One decoding step over a fixed-size self-attention cache."""

    def __init__(self, model, max_target_length: int):
        super().__init__()
        config = model.config
        self.embed = model.decoder.embed_tokens
        self.blocks = model.decoder.block
        self.final_layer_norm = model.decoder.final_layer_norm
        self.lm_head = model.lm_head
        self.heads = config.num_heads
        self.d_kv = config.d_kv
        self.t_max = max_target_length
        # T5 scales the decoder output before a tied lm_head; mT5 (untied) does not.
        self.output_scale = config.d_model**-0.5 if config.tie_word_embeddings else 1.0
        family = FAMILIES[family_of(config.to_dict())]
        attentions = family.bias_attentions(model.decoder)
        distinct = list(dict.fromkeys(attentions))  # block 0's alone, or every layer's own
        self.table_of_layer = [distinct.index(attention) for attention in attentions]
        self.tables = len(distinct)
        for index, attention in enumerate(distinct):
            with torch.no_grad():
                bias = attention.compute_bias(max_target_length, max_target_length)
            # [1,H,T_query,T_key] -> [T_query,H,T_key]: row p is the bias of a query at position p.
            self.register_buffer(f"position_bias_{index}", bias[0].permute(1, 0, 2).contiguous(), persistent=False)
        self.register_buffer("positions", torch.arange(max_target_length, dtype=torch.int64), persistent=False)

    def forward(self, decoder_input_ids, position, encoder_attention_mask, *layers):
        # layers: cross_k, cross_v, self_k_cache and self_v_cache one layer per input, [B,H,.,d_kv] each, in that
        # order (mt5lite.contract.graph_names): no graph slices a stacked input, which would copy it every step.
        count = len(self.blocks)
        cross_k, cross_v, self_k_cache, self_v_cache = (layers[i * count:(i + 1) * count] for i in range(4))
        hidden = self.embed(decoder_input_ids)  # [B,1,D]
        earlier = torch.lt(self.positions, position).reshape(1, 1, 1, self.t_max)  # causal: the cache's keys 0..p-1
        self_biases = []
        for index in range(self.tables):
            bias = torch.index_select(getattr(self, f"position_bias_{index}"), 0, position).unsqueeze(2)  # [1,H,1,T]
            own = torch.index_select(bias, 3, position)  # [1,H,1,1]: the step's own key, at distance 0
            self_biases.append(torch.cat([torch.where(earlier, bias, torch.full_like(bias, MASK_VALUE)), own], -1))
        cross_bias = (1.0 - encoder_attention_mask.to(hidden.dtype))[:, None, None, :] * MASK_VALUE  # [B,1,1,S]

        width = self.heads * self.d_kv
        new_keys, new_values = [], []
        for index, block in enumerate(self.blocks):
            self_layer, cross_layer, feed_forward = block.layer[0], block.layer[1], block.layer[-1]
            attn = self_layer.SelfAttention
            normed = self_layer.layer_norm(hidden)
            query = _step_heads(attn.q(normed), self.heads, self.d_kv)
            key = _step_heads(attn.k(normed), self.heads, self.d_kv)  # [B,H,1,d_kv]
            value = _step_heads(attn.v(normed), self.heads, self.d_kv)
            new_keys.append(key)
            new_values.append(value)
            self_bias = self_biases[self.table_of_layer[index]]
            attended = self._attend_step(query, key, value, self_k_cache[index], self_v_cache[index], self_bias)
            hidden = hidden + attn.o(_merge_step_heads(attended, width))

            attn = cross_layer.EncDecAttention
            query = _step_heads(attn.q(cross_layer.layer_norm(hidden)), self.heads, self.d_kv)
            hidden = hidden + attn.o(
                _merge_step_heads(self._attend(query, cross_k[index], cross_v[index], cross_bias), width))

            hidden = feed_forward(hidden)  # T5LayerFF: hidden + FFN(layer_norm(hidden))

        hidden = self.final_layer_norm(hidden) * self.output_scale
        logits = self.lm_head(hidden)[:, 0, :]  # [B,V]
        return logits, torch.stack(new_keys), torch.stack(new_values)

    def _attend_step(self, query, key, value, key_cache, value_cache, bias):
        """Self-attention of one step over the cache's keys and its own, apart: the scores over the cache and the
        step's own score side by side (``bias`` ``[.,H,1,T+1]`` masks the cache from ``position`` on), one
        softmax, then the cache's values and the step's own weighted and summed. Selecting the step's K/V into the
        cache instead (a ``Where``) would write a copy of the layer's whole cache at every step."""
        scores = torch.cat([torch.matmul(query, key_cache.transpose(-1, -2)),
                            torch.matmul(query, key.transpose(-1, -2))], -1) + bias  # [B,H,1,T+1]
        weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        return torch.matmul(weights[..., :self.t_max], value_cache) + weights[..., self.t_max:] * value

    @staticmethod
    def _attend(query, keys, values, bias):
        # T5 does not scale scores by 1/sqrt(d_kv): its initialisation folds that into the query projection.
        scores = torch.matmul(query, keys.transpose(-1, -2)) + bias
        return torch.matmul(torch.softmax(scores.float(), dim=-1).to(values.dtype), values)
