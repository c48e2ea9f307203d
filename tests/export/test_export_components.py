"""Every exported graph on ONNX Runtime against the model's OWN PyTorch path (not our wrappers).

Guards the ONNX files the command writes: the [SEG] decoder against ``Sam2Segmenter.decode_features``
(sam2's prompt encoder + mask decoder as the library calls them), the image encoder against sam2's
``forward_image``, the memory modules against sam2's, the vision encoder against transformers'
``get_image_features`` and the language model, chunk after chunk through its KV cache, against
transformers' full forward of the whole dialogue. All slow: they share one export of the tiny checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.cases import rendered_frame
from export.onnx import mask_iou, run_onnx
from tests.tolerances import MIN_BACKEND_MASK_IOU, tol

pytestmark = [pytest.mark.export, pytest.mark.slow]


def _frames() -> torch.Tensor:
    return torch.from_numpy(np.stack([rendered_frame(seed=s) for s in (3, 4)]))


def test_manifest_records_every_component(exported) -> None:
    out, manifest = exported
    assert set(manifest["components"]) == {"sam2_image_encoder", "sam2_seg_decoder", "sam2_memory_encoder",
                                           "sam2_memory_attention", "vision_encoder", "language_model"}
    for name, entry in manifest["components"].items():
        assert (out / entry["file"]).is_file()
        assert entry["input_names"] and entry["output_names"] and entry["opset"] == manifest["opset"]
        assert entry["precision"] == "fp32" and entry["verification"]["passed"], (name, entry["verification"])
    lm = manifest["components"]["language_model"]
    assert lm["dynamic_axes"]["past_key_0"] == {"2": "past"} or lm["dynamic_axes"]["past_key_0"] == {2: "past"}
    assert "position_ids" in lm["input_names"] and "seg_embeddings" in lm["output_names"]
    assert manifest["tool_versions"]["onnxruntime"] and manifest["tensorrt"]["status"] in ("built", "not built")
    if manifest["tensorrt"]["status"] == "not built":
        assert manifest["tensorrt"]["reason"]


def test_seg_decoder_matches_the_segmenters_decode(exported, loaded) -> None:
    out, _ = exported
    _, segmenter = loaded
    features = segmenter.encode_frames(_frames())
    seg = torch.randn(2, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = segmenter.decode_features(features, seg)
        conv = segmenter.sam.sam_mask_decoder
        high_res = [conv.conv_s0(features.high_res[0]), conv.conv_s1(features.high_res[1])]
    masks, iou, _, score = run_onnx(out / "sam2_seg_decoder.onnx", {
        "image_embed": features.image_embed, "high_res_0": high_res[0], "high_res_1": high_res[1], "seg_embedding": seg})
    best = iou[:, 1:].argmax(-1) + 1  # multimask output: sam2 picks among planes 1.. (plane 0 is the single-mask one)
    got = torch.from_numpy(masks[np.arange(2), best])
    torch.testing.assert_close(got, expected.low_res_logits, **tol("onnx_fp32"))
    torch.testing.assert_close(torch.from_numpy(score[:, 0]), expected.object_score_logits, **tol("onnx_fp32"))
    assert (got > 0).any() and mask_iou(got.numpy() > 0, expected.low_res_logits.numpy() > 0) >= MIN_BACKEND_MASK_IOU


def test_image_and_memory_encoders_match_sam2(exported, loaded) -> None:
    out, _ = exported
    _, segmenter = loaded
    sam = segmenter.sam
    image = segmenter.prepare_frames(_frames())
    with torch.no_grad():
        backbone = sam.forward_image(image)
    embed, hr0, hr1 = run_onnx(out / "sam2_image_encoder.onnx", {"image": image})
    for got, ref in zip((hr0, hr1, embed), backbone["backbone_fpn"]):
        torch.testing.assert_close(torch.from_numpy(got), ref, **tol("onnx_fp32"))
    mask = torch.randn(2, 1, 256, 256, generator=torch.Generator().manual_seed(1)) * 10
    with torch.no_grad():
        ref = sam.memory_encoder(backbone["vision_features"], mask, skip_mask_sigmoid=True)
    features, pos = run_onnx(out / "sam2_memory_encoder.onnx", {"pix_feat": backbone["vision_features"], "mask_for_mem": mask})
    torch.testing.assert_close(torch.from_numpy(features), ref["vision_features"], **tol("onnx_fp32"))
    torch.testing.assert_close(torch.from_numpy(pos), ref["vision_pos_enc"][0], **tol("onnx_fp32"))


def test_memory_attention_matches_sam2_on_a_short_memory(exported, loaded) -> None:
    from videoseg_o3.runtime.sam2_graphs import memory_slots, pad_memory

    out, _ = exported
    _, segmenter = loaded
    sam = segmenter.sam
    hw, num_spatial, max_ptr = memory_slots(sam, segmenter.image_size)
    gen = torch.Generator().manual_seed(2)
    curr, curr_pos = torch.randn(hw, 1, 256, generator=gen), torch.randn(hw, 1, 256, generator=gen)
    memory = torch.randn(2 * hw + 12, 1, 64, generator=gen)
    memory_pos = torch.randn_like(memory)
    with torch.no_grad():
        expected = sam.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory, memory_pos=memory_pos,
                                        num_obj_ptr_tokens=12)
    padded = dict(zip(("memory", "memory_pos", "memory_mask"), pad_memory(memory, memory_pos, 12, hw, num_spatial, max_ptr)))
    (got,) = run_onnx(out / "sam2_memory_attention.onnx", {"curr": curr, "curr_pos": curr_pos, **padded})
    torch.testing.assert_close(torch.from_numpy(got), expected, **tol("onnx_fp32"))


def test_policy_graphs_match_transformers_over_a_chunked_dialogue(exported, loaded) -> None:
    """Vision graph per image vs get_image_features; the LM graph over two prefill chunks and a decode step,
    each on the previous cache, vs transformers' single forward of the whole sequence."""
    from PIL import Image

    from videoseg_o3.runtime.policy_graphs import vision_inputs

    out, manifest = exported
    policy, _ = loaded
    processor, inner = policy.processor, policy.model.model
    images = [Image.fromarray(rendered_frame(64, 64, seed=5)), Image.fromarray(rendered_frame(32, 96, seed=6))]
    content = [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}, {"type": "text", "text": "[SEG]"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=images, return_tensors="pt", return_mm_token_type_ids=True)
    ids, types, grids, pixels = enc["input_ids"], enc["mm_token_type_ids"], enc["image_grid_thw"], enc["pixel_values"]
    ids = torch.cat([ids, torch.tensor([[policy.seg_token_id]])], dim=1)  # + one decoded token
    types = torch.cat([types, torch.zeros(1, 1, dtype=types.dtype)], dim=1)
    positions, _ = inner.get_rope_index(ids, mm_token_type_ids=types, image_grid_thw=grids)
    with torch.no_grad():
        reference = inner(input_ids=ids, position_ids=positions, pixel_values=pixels, image_grid_thw=grids,
                          mm_token_type_ids=types).last_hidden_state[0]
        features = inner.get_image_features(pixels, grids, return_dict=True)
    embeds, stacks, start = [], [], 0
    for index, grid in enumerate(grids):
        count = int(grid.prod())
        image, stack = run_onnx(out / "vision_encoder.onnx", {"pixel_values": pixels[start:start + count],
                                                               **vision_inputs(inner.visual, grid)})
        start += count
        torch.testing.assert_close(torch.from_numpy(image), features.pooler_output[index], **tol("onnx_fp32"))
        embeds.append(torch.from_numpy(image))
        stacks.append(torch.from_numpy(stack))
    image_embeds, deepstack = torch.cat(embeds), torch.cat(stacks, dim=1)
    dims = manifest["dims"]
    past = {f"past_{k}_{i}": torch.zeros(1, dims["kv_heads"], 0, dims["head_dim"])
            for i in range(dims["num_layers"]) for k in ("key", "value")}
    image_id = int(policy.model.config.image_token_id)
    length = ids.shape[1]
    hidden, done = [], 0
    for lo, hi in ((0, 9), (9, length - 1), (length - 1, length)):
        rows = int((ids[0, lo:hi] == image_id).sum())
        outputs = run_onnx(out / "language_model.onnx", {
            "input_ids": ids[:, lo:hi], "position_ids": positions[:, :, lo:hi], "image_embeds": image_embeds[done:done + rows],
            "deepstack_embeds": deepstack[:, done:done + rows], **past})
        done += rows
        hidden.append(torch.from_numpy(outputs[1][0]))
        past = {f"past_{k}_{i}": torch.from_numpy(outputs[3 + 2 * i + (k == "value")])
                for i in range(dims["num_layers"]) for k in ("key", "value")}
    torch.testing.assert_close(torch.cat(hidden), reference, **tol("onnx_fp32"))
    with torch.no_grad():
        seg = policy.projector(reference[-1:])
        logits = policy.model.lm_head(reference[-1:])
    torch.testing.assert_close(torch.from_numpy(outputs[2][0, -1:]), seg, **tol("onnx_fp32"))
    torch.testing.assert_close(torch.from_numpy(outputs[0]), logits, **tol("onnx_fp32"))
