"""SAM2's heavy modules on exported graphs, inside sam2's own video predictor.

:func:`attach_graphs` replaces the ``forward`` of four parts of a loaded :class:`Sam2Segmenter` on the
instance — the same move sam2 makes for its ``compile_image_encoder`` option — so the predictor's memory
bookkeeping (which frames and object pointers each frame attends to, temporal encodings, the object
pointer projection) runs unchanged and only the tensor work moves to the graphs:

- ``sam.forward_image``: the image-encoder graph (backbone + neck + the decoder's ``conv_s0``/``conv_s1``);
  the sine position encodings depend only on the feature-map size and are computed once per size;
- ``sam_mask_decoder.forward``: the ``[SEG]`` decoder graph, which recomputes the constant padding-point
  prompt itself and takes the ``[SEG]`` vector as its input; the plane selection of sam2's
  ``MaskDecoder.forward`` (multimask planes 1.., or the stability fallback) is applied to its outputs;
- ``memory_encoder.forward`` and ``memory_attention.forward``: their graphs, the latter with sam2's
  variable-length memory padded into the graph's fixed slots (:func:`pad_memory`).
"""

from __future__ import annotations

from typing import Any

import torch

# sam2's prompt for a [SEG]-only frame: one padding point (label -1) plus the prompt encoder's own pad
# token; the [SEG] vector follows them.
PADDING_PROMPT_TOKENS = 2


def pad_memory(memory: torch.Tensor, memory_pos: torch.Tensor, num_ptr_tokens: int, hw: int,
               num_spatial_tokens: int, max_ptr_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sam2's variable-length memory ``(n_s*HW + n_p, B, C)`` -> fixed slots ``(K, B, C)`` and a mask ``(B, K) bool``.

    The slots are ``num_spatial_tokens`` spatial tokens (whole frames of ``hw`` tokens) followed by
    ``max_ptr_tokens`` object-pointer tokens; real tokens fill each block from its start, the mask is True
    on them.

    Raises:
        ValueError: more memories than slots, or a spatial part that is not whole frames.
    """
    total, batch, channels = memory.shape
    spatial = total - num_ptr_tokens
    if spatial < 0 or spatial % hw or spatial > num_spatial_tokens or num_ptr_tokens > max_ptr_tokens:
        raise ValueError(
            f"Invalid memory ({spatial} spatial tokens, {num_ptr_tokens} pointer tokens): the exported memory attention "
            f"holds {num_spatial_tokens} spatial tokens in frames of {hw} and {max_ptr_tokens} pointer tokens; "
            "export again with the SAM2 config the segmenter runs with."
        )
    size = num_spatial_tokens + max_ptr_tokens
    out = memory.new_zeros(size, batch, channels)
    out_pos = memory_pos.new_zeros(size, batch, channels)
    mask = torch.zeros(batch, size, dtype=torch.bool, device=memory.device)
    out[:spatial], out_pos[:spatial] = memory[:spatial], memory_pos[:spatial]
    mask[:, :spatial] = True
    pointers = slice(num_spatial_tokens, num_spatial_tokens + num_ptr_tokens)
    out[pointers], out_pos[pointers] = memory[spatial:], memory_pos[spatial:]
    mask[:, pointers] = True
    return out, out_pos, mask


def memory_slots(sam: Any, image_size: int) -> tuple[int, int, int]:
    """``(hw, num_spatial_tokens, max_ptr_tokens)`` of the fixed memory layout for ``sam`` at ``image_size``."""
    feat = image_size // 16
    tokens_per_ptr = max(1, sam.hidden_dim // sam.mem_dim)
    max_ptr = int(sam.max_obj_ptrs_in_encoder) * tokens_per_ptr if sam.use_obj_ptrs_in_encoder else 0
    return feat * feat, int(sam.num_maskmem) * feat * feat, max_ptr


def attach_graphs(segmenter: Any, graphs: dict[str, Any]) -> None:
    """Route ``segmenter``'s image encoding, ``[SEG]`` decoding and memory modules through ``graphs``
    (runners keyed by component name: ``sam2_image_encoder``, ``sam2_seg_decoder``, ``sam2_memory_encoder``,
    ``sam2_memory_attention``)."""
    sam = segmenter.sam
    hw, num_spatial, max_ptr = memory_slots(sam, segmenter.image_size)
    position_encoding = sam.image_encoder.neck.position_encoding
    pos_cache: dict[tuple[int, int], torch.Tensor] = {}

    def position(feature: torch.Tensor) -> torch.Tensor:
        key = tuple(feature.shape[-2:])
        if key not in pos_cache:
            probe = torch.zeros(1, 1, *key, device=feature.device, dtype=torch.float32)
            pos_cache[key] = position_encoding(probe)
        return pos_cache[key].to(feature.dtype).expand(feature.shape[0], -1, -1, -1)

    encoder = graphs["sam2_image_encoder"]

    def forward_image(img_batch: torch.Tensor) -> dict[str, Any]:
        image_embed, high_res_0, high_res_1 = encoder(image=img_batch)
        fpn = [high_res_0, high_res_1, image_embed]
        return {"vision_features": image_embed, "vision_pos_enc": [position(f) for f in fpn], "backbone_fpn": fpn}

    decoder_graph = graphs["sam2_seg_decoder"]
    decoder = sam.sam_mask_decoder

    def decoder_forward(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                        multimask_output, repeat_image, high_res_features=None):
        sparse = sparse_prompt_embeddings
        if sparse.shape[1] != PADDING_PROMPT_TOKENS + 1 or high_res_features is None or repeat_image:
            raise ValueError(
                f"Invalid prompt for the exported [SEG] decoder ({sparse.shape[1]} sparse tokens): it takes the padding "
                "point and one [SEG] embedding per frame (segmenter prompts with reinject_prompt=True); use "
                "backend='torch' for point or box prompts."
            )
        masks, iou, tokens, object_score = decoder_graph(
            image_embed=image_embeddings, high_res_0=high_res_features[0], high_res_1=high_res_features[1],
            seg_embedding=sparse[:, -1])
        # sam2's MaskDecoder.forward: which planes and which token the caller gets
        if multimask_output:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif decoder.dynamic_multimask_via_stability and not decoder.training:
            masks, iou = decoder._dynamic_multimask_via_stability(masks, iou)
        else:
            masks, iou = masks[:, 0:1], iou[:, 0:1]
        tokens = tokens[:, 1:] if multimask_output and decoder.use_multimask_token_for_obj_ptr else tokens[:, 0:1]
        dtype = image_embeddings.dtype
        return masks.to(dtype), iou.to(dtype), tokens.to(dtype), object_score.to(dtype)

    memory_encoder_graph = graphs["sam2_memory_encoder"]

    def memory_encoder_forward(pix_feat, masks, skip_mask_sigmoid=False):
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        features, pos = memory_encoder_graph(pix_feat=pix_feat, mask_for_mem=masks)
        return {"vision_features": features.to(pix_feat.dtype), "vision_pos_enc": [pos.to(pix_feat.dtype)]}

    attention_graph = graphs["sam2_memory_attention"]

    def memory_attention_forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        if isinstance(curr, (list, tuple)):
            curr, curr_pos = curr[0], curr_pos[0]
        dtype = curr.dtype
        memory, memory_pos, mask = pad_memory(memory.float(), memory_pos.float(), int(num_obj_ptr_tokens), hw,
                                              num_spatial, max_ptr)
        (out,) = attention_graph(curr=curr.float(), curr_pos=curr_pos.float(), memory=memory, memory_pos=memory_pos,
                                 memory_mask=mask)
        return out.to(dtype)

    sam.forward_image = forward_image
    decoder.forward = decoder_forward
    sam.memory_encoder.forward = memory_encoder_forward
    sam.memory_attention.forward = memory_attention_forward
    # the bf16 cast hook served the PyTorch memory attention; the graph takes float32 and casts itself
    hook = getattr(sam, "memory_dtype_hook", None)
    if hook is not None:
        hook.remove()
