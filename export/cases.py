"""Realistic verification inputs: a rendered frame through the real encoder chain, a real chat prompt
through the real processor, a dialogue split into prefill chunks and a decode step.

Random inputs (``onnx.example_inputs``) test every op on generic values; these test the values the graphs
see in use — SAM2 features of an actual image, masks decoded from them, memories encoded from those
masks, image patches from Qwen's processor, and a KV cache carried from one chunk to the next.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from export import shapes


def rendered_frame(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """uint8 ``(H, W, 3)``: a smooth gradient with three filled shapes, a stand-in for a video frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                      np.full_like(xx, 96)], axis=-1).astype(np.uint8)
    for _ in range(3):
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        r = int(rng.integers(8, max(9, min(height, width) // 3)))
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3, dtype=np.uint8)
    return frame


@torch.no_grad()
def sam2_cases(segmenter: Any, graphs: dict[str, torch.nn.Module], seed: int = 0) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """``{component: {"frame": inputs}}`` for the four SAM2 graphs, chained: each graph's inputs are the
    PyTorch outputs of the one before it on a rendered frame."""
    gen = torch.Generator().manual_seed(seed)
    sam = segmenter.sam
    image = segmenter.prepare_frames(torch.from_numpy(rendered_frame(seed=seed))[None]).float()
    embed, high_res_0, high_res_1 = graphs["sam2_image_encoder"](image)
    conditioned = embed + sam.no_mem_embed.view(1, -1, 1, 1)
    seg = torch.randn(1, 256, generator=gen)
    masks, iou, _, _ = graphs["sam2_seg_decoder"](conditioned, high_res_0, high_res_1, seg)
    best = masks[:, int(iou[0].argmax())][:, None]
    high = F.interpolate(best, size=(segmenter.image_size,) * 2, mode="bilinear", align_corners=False)
    mask_for_mem = (high > 0).float() * sam.sigmoid_scale_for_mem_enc + sam.sigmoid_bias_for_mem_enc
    features, pos = graphs["sam2_memory_encoder"](embed, mask_for_mem)
    from videoseg_o3.runtime.sam2_graphs import memory_slots, pad_memory

    hw, num_spatial, max_ptr = memory_slots(sam, segmenter.image_size)
    curr = embed.flatten(2).permute(2, 0, 1)
    curr_pos = sam.image_encoder.neck.position_encoding(embed).flatten(2).permute(2, 0, 1)
    spatial = features.flatten(2).permute(2, 0, 1).repeat(3, 1, 1)
    spatial_pos = pos.flatten(2).permute(2, 0, 1).repeat(3, 1, 1)
    pointers = torch.randn(8, 1, features.shape[1], generator=gen)
    memory = torch.cat([spatial, pointers])
    memory_pos = torch.cat([spatial_pos, torch.zeros_like(pointers)])
    memory, memory_pos, mask = pad_memory(memory, memory_pos, 8, hw, num_spatial, max_ptr)
    return {
        "sam2_image_encoder": {"frame": {"image": image}},
        "sam2_seg_decoder": {"frame": {"image_embed": conditioned, "high_res_0": high_res_0, "high_res_1": high_res_1,
                                       "seg_embedding": seg}},
        "sam2_memory_encoder": {"frame": {"pix_feat": embed, "mask_for_mem": mask_for_mem}},
        "sam2_memory_attention": {"frame": {"curr": curr, "curr_pos": curr_pos, "memory": memory,
                                            "memory_pos": memory_pos, "memory_mask": mask}},
    }


@torch.no_grad()
def policy_cases(policy: Any, graphs: dict[str, torch.nn.Module], dims: dict[str, int]) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """Vision: each image of a real two-image prompt. Language model: that prompt split in two prefill
    chunks (the first from an empty cache, the second on the first's cache, images in both) and one decode
    token on the whole cache, positions from ``get_rope_index`` on the full dialogue as the agent computes them."""
    from PIL import Image

    from videoseg_o3.runtime.policy_graphs import vision_inputs

    processor = policy.processor
    images = [Image.fromarray(rendered_frame(64, 96, seed=1)), Image.fromarray(rendered_frame(48, 48, seed=2))]
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "Frame 0."}, {"type": "image"},
        {"type": "text", "text": "Which shape moves? Answer with [SEG]."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=images, return_tensors="pt", return_mm_token_type_ids=True)
    ids, types, grids = enc["input_ids"], enc["mm_token_type_ids"], enc["image_grid_thw"]
    pixels = enc["pixel_values"].float()
    vision_cases, embeds, stacks = {}, [], []
    start = 0
    for index, grid in enumerate(grids):
        count = int(grid.prod())
        inputs = {"pixel_values": pixels[start:start + count], **vision_inputs(policy.model.model.visual, grid)}
        start += count
        vision_cases[f"image_{index}"] = inputs
        image, stack = graphs["vision_encoder"](**inputs)
        embeds.append(image)
        stacks.append(stack)
    image_embeds, deepstack = torch.cat(embeds), torch.cat(stacks, dim=1)
    positions, deltas = policy.model.model.get_rope_index(ids, mm_token_type_ids=types, image_grid_thw=grids)
    image_id = int(policy.model.config.image_token_id)
    second_image = int((ids[0] == image_id).nonzero()[-1]) - int(embeds[1].shape[0]) + 1
    cut = second_image - 2  # the second chunk opens with text, then the second image
    lm_cases: dict[str, dict[str, torch.Tensor]] = {}
    past = {f"past_{kind}_{i}": torch.zeros(1, dims["kv_heads"], 0, dims["head_dim"])
            for i in range(dims["num_layers"]) for kind in ("key", "value")}
    lm = graphs["language_model"]
    names = list(shapes.expand("language_model", dims, "inputs"))
    done = 0
    for case, (lo, hi) in {"prefill_empty_cache": (0, cut), "prefill_on_cache": (cut, ids.shape[1])}.items():
        chunk_ids = ids[:, lo:hi]
        rows = int((chunk_ids == image_id).sum())
        inputs = {"input_ids": chunk_ids, "position_ids": positions[:, :, lo:hi],
                  "image_embeds": image_embeds[done:done + rows], "deepstack_embeds": deepstack[:, done:done + rows], **past}
        done += rows
        lm_cases[case] = inputs
        outputs = lm(*(inputs[n] for n in names))
        present = outputs[3:]
        past = {f"past_{kind}_{i}": present[2 * i + (kind == "value")]
                for i in range(dims["num_layers"]) for kind in ("key", "value")}
    length = ids.shape[1]
    decode_pos = (torch.tensor([length]) + deltas.reshape(())).view(1, 1, 1).expand(3, 1, 1)
    lm_cases["decode"] = {"input_ids": torch.tensor([[int(policy.seg_token_id)]]), "position_ids": decode_pos,
                          "image_embeds": torch.zeros(0, dims["text_hidden"]),
                          "deepstack_embeds": torch.zeros(dims["num_deepstack"], 0, dims["text_hidden"]), **past}
    return {"vision_encoder": vision_cases, "language_model": lm_cases}
