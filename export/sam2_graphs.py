"""SAM2 as four exportable graphs with flat tensor inputs and outputs.

Each wrapper holds the sam2 submodules it needs (shared weights, nothing copied) and does in ``forward``
only what a static graph can hold: no Python lists of tensors, no optional arguments, no branches on
data. The names and shapes of every input and output are in :mod:`export.shapes`.

- :class:`ImageEncoderGraph`: frames -> the lowest-resolution embedding and the two high-resolution
  levels, the latter already through the mask decoder's ``conv_s0``/``conv_s1`` (frozen at deployment,
  so folding them here saves the decoder graph two convolutions per frame, as sam2's ``forward_image`` does).
- :class:`SegDecoderGraph`: the prompt encoder run with one padding point (label -1: its embedding does not
  depend on the coordinates, so the sparse prompt is a constant) + the ``[SEG]`` vector + the mask decoder.
  Every mask plane and every IoU prediction is an output; which plane to keep is chosen outside the graph,
  so constant folding can never bake a choice in.
- :class:`MemoryEncoderGraph`: pixel features + the (pre-scaled) mask -> memory features and positions.
- :class:`MemoryAttentionGraph`: memory attention with a fixed number of memory slots (``num_maskmem``
  spatial memories and ``max_obj_ptrs_in_encoder`` object pointers), padded and masked, with sam2's
  complex-number RoPE rewritten as real arithmetic (complex tensors have no ONNX type).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the runtime pads sam2's variable memory into this graph's slots with the same function
from videoseg_o3.runtime.sam2_graphs import pad_memory  # noqa: F401  (re-exported for callers of this module)

# Added to the attention scores of padded memory slots. Large enough that exp() underflows to exactly 0
# in fp32 and fp16, small enough to stay finite in fp16 (max 65504) so a TensorRT fp16 engine is safe.
MASK_BIAS = -1.0e4


class ImageEncoderGraph(nn.Module):
    """``image (B, 3, S, S) float32`` (ImageNet-normalised) -> three feature maps.

    Outputs:
        image_embed: ``(B, 256, S/16, S/16)``, the top FPN level (no ``no_mem_embed`` added).
        high_res_0: ``(B, 32, S/4, S/4)``, FPN level 0 after the mask decoder's ``conv_s0``.
        high_res_1: ``(B, 64, S/8, S/8)``, FPN level 1 after ``conv_s1``.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        if not sam.use_high_res_features_in_sam:
            raise ValueError("Invalid SAM2 config: export expects use_high_res_features_in_sam=True "
                             "(every sam2 1.x Hiera config sets it).")
        self.image_encoder = sam.image_encoder
        self.conv_s0 = sam.sam_mask_decoder.conv_s0
        self.conv_s1 = sam.sam_mask_decoder.conv_s1
        self.num_levels = sam.num_feature_levels

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.image_encoder(image)["backbone_fpn"][-self.num_levels:]
        return fpn[-1], self.conv_s0(fpn[0]), self.conv_s1(fpn[1])


class SegDecoderGraph(nn.Module):
    """Prompt encoder (one padding point, no mask) + ``[SEG]`` + mask decoder, all planes out.

    Inputs: ``image_embed (B, 256, h, w)`` (with ``no_mem_embed`` or memory already applied),
    ``high_res_0 (B, 32, 4h, 4w)``, ``high_res_1 (B, 64, 2h, 2w)``, ``seg_embedding (B, 256)``.
    Outputs: ``masks (B, M, 4h, 4w)`` low-resolution logits of all ``M`` mask tokens, ``iou (B, M)``,
    ``mask_tokens (B, M, 256)`` (sam2 takes its object pointer from one of them),
    ``object_score_logits (B, 1)``.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam.sam_prompt_encoder
        self.mask_decoder = sam.sam_mask_decoder

    def forward(self, image_embed: torch.Tensor, high_res_0: torch.Tensor, high_res_1: torch.Tensor,
                seg_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = seg_embedding.shape[0]
        coords = torch.zeros(batch, 1, 2, dtype=seg_embedding.dtype, device=seg_embedding.device)
        labels = -torch.ones(batch, 1, dtype=torch.int32, device=seg_embedding.device)
        sparse, dense = self.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        sparse = torch.cat([sparse, seg_embedding[:, None, :].to(sparse.dtype)], dim=1)
        masks, iou, mask_tokens, object_score = self.mask_decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_0, high_res_1],
        )
        return masks, iou, mask_tokens, object_score


class MemoryEncoderGraph(nn.Module):
    """``pix_feat (B, 256, h, w)``, ``mask_for_mem (B, 1, S, S)`` (already sigmoid/binarised, scaled and
    biased, as sam2's ``_encode_new_memory`` prepares it) -> ``maskmem_features (B, 64, h, w)``,
    ``maskmem_pos_enc (B, 64, h, w)``."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.memory_encoder = sam.memory_encoder

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        return out["vision_features"], out["vision_pos_enc"][0]


# ---------------------------------------------------------------------------------------------- RoPE
def axial_rope_angles(head_dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> torch.Tensor:
    """``(end_x * end_y, head_dim // 2)`` float32 rotation angles of sam2's axial RoPE.

    The arguments of ``sam2.modeling.position_encoding.compute_axial_cis``: the x frequencies for the first
    half of the pairs, the y frequencies for the second, positions in row-major order.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    return torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)


def apply_rope_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """sam2's ``apply_rotary_enc`` on real tensors.

    sam2 views consecutive pairs ``(x[2i], x[2i+1])`` as a complex number and multiplies it by
    ``exp(i * angle)``; written out, ``(a, b) -> (a cos - b sin, a sin + b cos)``.

    Args:
        x: ``(B, heads, N, head_dim)``.
        cos, sin: ``(N, head_dim // 2)`` (broadcast over batch and heads).
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


class MemoryAttentionGraph(nn.Module):
    """sam2's ``MemoryAttention`` with fixed memory slots, a padding mask and real-valued RoPE.

    sam2 concatenates a variable number of spatial memories (each ``h*w`` tokens of width 64) and object
    pointer tokens. Here the memory always has ``num_maskmem * h * w`` spatial tokens and
    ``max_ptr_tokens`` pointer tokens; ``memory_mask`` says which are real. Attention is permutation
    invariant over keys and every spatial slot gets the same RoPE positions (sam2 repeats the query grid's
    frequencies per memory frame), so a padded, masked memory gives exactly sam2's result.

    Inputs (sequence-first, as sam2 passes them):
        curr ``(HW, B, 256)``, curr_pos ``(HW, B, 256)``,
        memory ``(K, B, 64)``, memory_pos ``(K, B, 64)`` with ``K = num_maskmem*HW + max_ptr_tokens``,
        memory_mask ``(B, K)`` bool, True for a real memory token.
    Output: ``(HW, B, 256)`` memory-conditioned features.
    """

    def __init__(self, sam: nn.Module, feat_hw: tuple[int, int]) -> None:
        super().__init__()
        attention = sam.memory_attention
        if not attention.batch_first:
            raise ValueError("Invalid SAM2 config: memory attention export expects batch_first=True.")
        self.attention = attention
        self.num_maskmem = int(sam.num_maskmem)
        tokens_per_ptr = max(1, sam.hidden_dim // sam.mem_dim) if sam.use_obj_ptrs_in_encoder else 0
        self.max_ptr_tokens = int(sam.max_obj_ptrs_in_encoder) * tokens_per_ptr if sam.use_obj_ptrs_in_encoder else 0
        height, width = feat_hw
        self.num_spatial_tokens = self.num_maskmem * height * width
        layer = attention.layers[0]
        head_dim = layer.self_attn.internal_dim // layer.self_attn.num_heads
        theta = _rope_theta(layer.self_attn)
        angles = axial_rope_angles(head_dim, width, height, theta)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)

    @property
    def num_memory_tokens(self) -> int:
        return self.num_spatial_tokens + self.max_ptr_tokens

    def _attend(self, module: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                num_k_rope: int, bias: torch.Tensor | None) -> torch.Tensor:
        q = module._separate_heads(module.q_proj(q), module.num_heads)
        k = module._separate_heads(module.k_proj(k), module.num_heads)
        v = module._separate_heads(module.v_proj(v), module.num_heads)
        q = apply_rope_real(q, self.rope_cos, self.rope_sin)
        repeat = num_k_rope // self.rope_cos.shape[0]
        k_cos, k_sin = self.rope_cos.repeat(repeat, 1), self.rope_sin.repeat(repeat, 1)
        k_rope = apply_rope_real(k[:, :, :num_k_rope], k_cos, k_sin)
        k = torch.cat([k_rope, k[:, :, num_k_rope:]], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return module.out_proj(module._recombine_heads(out))

    def forward(self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                memory_mask: torch.Tensor) -> torch.Tensor:
        attention = self.attention
        output = curr
        if attention.pos_enc_at_input:
            output = output + 0.1 * curr_pos
        output, curr_pos = output.transpose(0, 1), curr_pos.transpose(0, 1)
        memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
        # (B, 1, 1, K): added to every head's and every query's scores
        bias = torch.where(memory_mask, 0.0, MASK_BIAS).to(output.dtype)[:, None, None, :]
        num_queries = output.shape[1]
        for layer in attention.layers:
            tgt2 = layer.norm1(output)
            q = k = tgt2 + curr_pos if layer.pos_enc_at_attn else tgt2
            output = output + self._attend(layer.self_attn, q, k, tgt2, num_queries, None)
            tgt2 = layer.norm2(output)
            q = tgt2 + curr_pos if layer.pos_enc_at_cross_attn_queries else tgt2
            k = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
            output = output + self._attend(layer.cross_attn_image, q, k, memory, self.num_spatial_tokens, bias)
            tgt2 = layer.norm3(output)
            output = output + layer.linear2(layer.activation(layer.linear1(tgt2)))
        return attention.norm(output).transpose(0, 1)


def _rope_theta(module: nn.Module) -> float:
    """The ``theta`` sam2 bound into ``RoPEAttention.compute_cis`` (a functools.partial)."""
    return float(module.compute_cis.keywords.get("theta", 10000.0))
