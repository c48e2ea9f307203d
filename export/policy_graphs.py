"""The Qwen3-VL policy as two exportable graphs: the vision encoder and the language model with a KV cache.

Both wrap the transformers modules (shared weights) and replace only what a static graph cannot hold:

- :class:`VisionEncoderGraph` runs ONE image per call. transformers packs several images into one
  sequence and splits attention per image with ``cu_seqlens.tolist()``, a data-dependent Python split
  that a graph would freeze at export. One image is one attention segment in Qwen3-VL, so a per-image
  graph needs no mask at all; the grid-dependent inputs (position-embedding interpolation taps and
  weights, rotary positions) are computed outside with transformers' own helpers
  (``videoseg_o3.runtime.policy_graphs.vision_inputs``).
- :class:`LanguageModelGraph` takes the 3-D M-RoPE ``position_ids (3, 1, L)`` as an input — they are
  computed on the whole dialogue by the agent (``DialogueContext``), which is what makes KV reuse across
  turns exact — and the past keys/values of every layer; it returns the present ones (past + chunk). One
  graph serves prefill (``L`` > 1, with or without images) and decode (``L`` = 1): the causal mask is
  built from the shapes (``key j`` visible to ``query i`` iff ``j <= past + i``), so nothing depends on
  transformers' mask heuristics. Image features enter where ``input_ids`` holds the image token, and the
  DeepStack features are added there after the first layers, as transformers does. The last-layer
  hidden states and their projection through the ``[SEG]`` projector are outputs, so a deployment reads
  the ``[SEG]`` prompt straight from the graph.
"""

from __future__ import annotations

import torch
from torch import nn


class VisionEncoderGraph(nn.Module):
    """Qwen3-VL vision tower on one image.

    Inputs:
        pixel_values ``(N, C*T*P*P)`` float32 patches of one image (``N = t*h*w``, merge-block order),
        interp_indices ``(N, 4)`` int64 and interp_weights ``(N, 4)`` float32 (bilinear resampling of the
        learned position table), rotary_pos_ids ``(N, 2)`` int64 (row, column of each patch).
    Outputs:
        image_embeds ``(N/4, H_text)`` merged tokens, deepstack_embeds ``(K, N/4, H_text)``.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.deepstack_indexes = list(visual.deepstack_visual_indexes)

    def forward(self, pixel_values: torch.Tensor, interp_indices: torch.Tensor, interp_weights: torch.Tensor,
                rotary_pos_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

        visual = self.visual
        hidden = visual.patch_embed(pixel_values)
        pos = (visual.pos_embed(interp_indices) * interp_weights[:, :, None]).sum(1)
        hidden = hidden + pos.to(hidden.dtype)
        cos, sin = visual.rotary_pos_emb(hidden, rotary_pos_ids)
        deepstack = []
        for index, block in enumerate(visual.blocks):
            attn = block.attn
            length = hidden.shape[0]
            qkv = attn.qkv(block.norm1(hidden)).reshape(length, 3, attn.num_heads, -1).permute(1, 0, 2, 3)
            q, k = apply_rotary_pos_emb_vision(qkv[0], qkv[1], cos, sin)
            q, k, v = (t.transpose(0, 1)[None] for t in (q, k, qkv[2]))
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=attn.scaling)
            hidden = hidden + attn.proj(out[0].transpose(0, 1).reshape(length, -1))
            hidden = hidden + block.mlp(block.norm2(hidden))
            if index in self.deepstack_indexes:
                deepstack.append(visual.deepstack_merger_list[self.deepstack_indexes.index(index)](hidden))
        return visual.merger(hidden), torch.stack(deepstack)


class _FlatCache:
    """The minimal cache interface transformers' attention layers call (``update``), backed by flat tensors.

    ``update`` concatenates the layer's past with the chunk's keys/values and records the result as the
    layer's present output.
    """

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.past = past
        self.present: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        past_key, past_value = self.past[layer_idx]
        key = torch.cat([past_key.to(key.dtype), key], dim=2)
        value = torch.cat([past_value.to(value.dtype), value], dim=2)
        self.present.append((key, value))
        return key, value


class LanguageModelGraph(nn.Module):
    """Qwen3-VL language model + LM head (last position) + ``[SEG]`` projector, with KV cache I/O.

    Inputs:
        input_ids ``(1, L)`` int64; position_ids ``(3, 1, L)`` int64 (M-RoPE, from the whole dialogue);
        image_embeds ``(M, H)`` and deepstack_embeds ``(K, M, H)`` for the ``M`` image tokens in
        ``input_ids`` (``M`` = 0 for text); then ``past_key_i``, ``past_value_i`` ``(1, kv_heads, P, d)``
        for every layer ``i`` (``P`` = 0 at the start of a dialogue).
    Outputs:
        logits ``(1, V)`` float32 after the last token; hidden_states ``(1, L, H)`` after the final norm;
        seg_embeddings ``(1, L, 256)`` = projector(hidden_states); ``present_key_i``, ``present_value_i``
        ``(1, kv_heads, P + L, d)``.
    """

    def __init__(self, model: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.text = model.model.language_model
        self.lm_head = model.lm_head
        self.projector = projector
        self.image_token_id = int(model.config.image_token_id)
        self.num_layers = len(self.text.layers)
        self.num_deepstack = len(getattr(model.config.vision_config, "deepstack_visual_indexes", []) or [])
        if self.text.config._attn_implementation != "eager":
            raise ValueError("Invalid model: switch its language model to eager attention first "
                             "(export.onnx._eager_attention); the graph relies on the explicit additive mask.")

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, image_embeds: torch.Tensor,
                deepstack_embeds: torch.Tensor, *past_flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        text = self.text
        embeds = text.embed_tokens(input_ids)
        # scatter along the sequence (ScatterElements in ONNX): an index_put of the image rows would export a
        # Reshape that fails on chunks without images (M = 0)
        image_rows = (input_ids[0] == self.image_token_id).nonzero()[:, 0]
        row_index = image_rows[:, None].expand(-1, embeds.shape[-1])
        embeds = embeds[0].scatter(0, row_index, image_embeds.to(embeds.dtype))[None]
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.num_layers)]
        past_len = past[0][0].shape[2]
        length = input_ids.shape[1]
        query_pos = torch.arange(length, device=input_ids.device) + past_len
        key_pos = torch.arange(past_len + length, device=input_ids.device)
        visible = key_pos[None, :] <= query_pos[:, None]
        mask = torch.where(visible, 0.0, torch.finfo(torch.float32).min).to(embeds.dtype)[None, None]
        cos_sin = text.rotary_emb(embeds, position_ids)
        cache = _FlatCache(past)
        hidden = embeds
        for index, layer in enumerate(text.layers):
            hidden = layer(hidden, position_embeddings=cos_sin, attention_mask=mask, cache=cache)
            if index < self.num_deepstack:
                hidden = hidden[0].scatter_add(0, row_index, deepstack_embeds[index].to(hidden.dtype))[None]
        hidden = text.norm(hidden)
        logits = self.lm_head(hidden[:, -1]).float()
        seg = self.projector(hidden.to(self.projector[0].weight.dtype))
        present = [t for pair in cache.present for t in pair]
        return (logits, hidden, seg, *present)
