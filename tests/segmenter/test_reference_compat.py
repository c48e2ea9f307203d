"""The segmenter behaves as the released VideoSEG-O3 inference does (tiny Hiera, 256 px, random weights).

Each test names the released behaviour it guards and checks it against something independent of our
code: sam2's own video predictor, torch's interpolation, PIL, or a hand-set model state.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.segmenter.test_segmenter import H, TINY, W, embeddings, frames
from tests.tolerances import tol
from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig
from videoseg_o3.segmenter.model import IMAGENET_MEAN, IMAGENET_STD
from videoseg_o3.segmenter.predictor import SEG_PROMPTS_KEY


def tiny(seed: int, score_bias: float | None = None, **overrides) -> Sam2Segmenter:
    torch.manual_seed(seed)
    model = Sam2Segmenter.from_config(SegmenterConfig(**{**TINY, **overrides}), device="cpu")
    if score_bias is not None:
        with torch.no_grad():
            model.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(score_bias)
    return model


# -- object-score gating (released code removes sam2's torch.where(object_score_logits > 0, ...)) -----
@pytest.mark.slow
def test_masks_survive_an_object_score_head_forced_low():
    """Guards: no object-score gating in the single-frame path, the anchor and propagated frames.

    With the head's bias at -10 every frame's object score is negative; stock sam2 (and our code before
    the fix) then blanks every mask. The released model ignores the head, so masks must still appear.
    """
    model = tiny(seed=5, score_bias=-10.0, encode_chunk_size=3)
    video, emb = frames(3, 30), embeddings(1, 30)
    out = model.decode_frames(video[:1], emb)
    assert (out.object_score_logits < 0).all(), "the head must really say 'no object' for this test to mean anything"
    assert out.masks().any(), "single-frame masks must not be gated by the object score"
    assert not out.masks(gate_objects=True).any(), "stock sam2 gating (opt-in) blanks them"
    masks = model.propagate(video, emb[0], 1)
    assert all(masks[t].any() for t in range(3)), "anchor and propagated masks must not be gated"

    gated = tiny(seed=5, score_bias=-10.0, encode_chunk_size=3, gate_objects=True)
    assert not gated.propagate(video, emb[0], 1).any(), "gate_objects=True restores sam2's gating"


def test_object_pointer_logic_is_kept_when_masks_are_not_gated():
    """Guards: only the mask gating is removed; sam2's occlusion handling of the object pointer stays.

    With the object score forced low and ``fixed_no_obj_ptr`` (tiny and Hiera-L configs), sam2 makes the
    anchor's object pointer exactly the learned ``no_obj_ptr``; with it forced high, the pointer is the
    projection of the output token (not ``no_obj_ptr``).
    """
    for bias, expect_no_obj in ((-10.0, True), (10.0, False)):
        model = tiny(seed=6, score_bias=bias)
        sam = model.sam
        assert sam.fixed_no_obj_ptr and not sam.soft_no_obj_ptr
        state = model.new_video_state(frames(2, 31))
        state[SEG_PROMPTS_KEY][0] = embeddings(1, 31)
        sam.add_new_points_or_box(state, frame_idx=0, obj_id=0, points=[[0.0, 0.0]], labels=[-1])
        out = state["temp_output_dict_per_obj"][0]["cond_frame_outputs"][0]
        is_no_obj = torch.allclose(out["obj_ptr"], sam.no_obj_ptr.expand_as(out["obj_ptr"]))
        assert is_no_obj == expect_no_obj, f"bias {bias}: obj_ptr is no_obj_ptr -> {is_no_obj}"
        assert (out["pred_masks"] > -1024).any(), "the anchor's mask logits are not replaced by -1024"


# -- memory of the anchor: sigmoid of the logits, not a binarised mask --------------------------------
def test_anchor_memory_is_encoded_from_sigmoid_not_binarised_mask():
    """Guards: ``binarize_mask_from_pts_for_mem_enc`` is False as in the released model.

    The anchor's memory features must equal sam2's memory encoder run (by the test, directly) on the
    scaled sigmoid of the anchor's high-resolution logits, and differ from the binarised-mask memory.
    """
    model = tiny(seed=7, encode_chunk_size=1)
    sam = model.sam
    assert sam.binarize_mask_from_pts_for_mem_enc is False
    video = frames(1, 32)
    state = model.new_video_state(video)
    state[SEG_PROMPTS_KEY][0] = embeddings(1, 32)
    sam.add_new_points_or_box(state, frame_idx=0, obj_id=0, points=[[0.0, 0.0]], labels=[-1])
    sam.propagate_in_video_preflight(state)
    stored = state["output_dict_per_obj"][0]["cond_frame_outputs"][0]

    with torch.inference_mode():
        backbone = sam.forward_image(model.prepare_frames(video))
        _, vision_feats, _, feat_sizes = sam._prepare_backbone_features(backbone)
        high_res = F.interpolate(stored["pred_masks"].float(), size=(sam.image_size,) * 2, mode="bilinear",
                                 align_corners=False)
        pix_feat = vision_feats[-1].permute(1, 2, 0).view(1, -1, *feat_sizes[-1])

        def memory(mask_for_mem: torch.Tensor) -> torch.Tensor:
            mask_for_mem = mask_for_mem * sam.sigmoid_scale_for_mem_enc + sam.sigmoid_bias_for_mem_enc
            return sam.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)["vision_features"]

        soft, hard = memory(torch.sigmoid(high_res)), memory((high_res > 0).float())
    got = stored["maskmem_features"].float()
    torch.testing.assert_close(got, soft.to(got.dtype).float(), **tol("segmenter_bf16_memory"))
    assert not torch.allclose(got, hard.to(got.dtype).float(), **tol("segmenter_bf16_memory"))


# -- output upsampling: S/4 -> S -> H x W ---------------------------------------------------------------
def test_logits_are_upsampled_in_two_bilinear_steps():
    """Guards: the released two-step upsampling (256 -> image_size -> H x W, align_corners=False),
    recomputed here with torch; one direct step, or align_corners=True, gives other logits."""
    model = tiny(seed=8)
    out = model.decode_frames(frames(1, 33), embeddings(1, 33))
    low = out.low_res_logits[:, None]
    two_step = F.interpolate(F.interpolate(low, size=(256, 256), mode="bilinear", align_corners=False),
                             size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(out.logits(), two_step, **tol("segmenter_fp32"))
    one_step = F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    assert (out.logits() - one_step).abs().max() > 1e-2, "two steps must differ from one for this test to bite"


@pytest.mark.slow
def test_propagate_equals_sam2_propagate_in_video():
    """Guards: ``Sam2Segmenter.propagate`` (chunked frames, pruned state, our walk, our upsampling) gives
    the masks of sam2's own ``init_state`` + ``propagate_in_video`` on the same model and prompts.

    sam2 returns logits at its state's video size; as in the released code, that size is the square
    input size, and the test then resizes them to H x W with torch (the released second step).
    """
    model = tiny(seed=9, encode_chunk_size=1)
    sam = model.sam
    video, emb, anchor = frames(4, 34), embeddings(1, 34), 2
    ours = model.propagate(video, emb[0], anchor)

    with torch.inference_mode():
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            for t in range(video.shape[0]):  # sam2's init_state reads a folder of JPEGs; content is replaced below
                Image.fromarray(video[t].numpy()).save(f"{folder}/{t:05d}.jpg")
            state = sam.init_state(folder)
        state["images"] = model.prepare_frames(video)
        state["cached_features"] = {}
        state["video_height"] = state["video_width"] = sam.image_size
        state[SEG_PROMPTS_KEY] = {0: emb.reshape(1, 256)}
        sam.add_new_points_or_box(state, frame_idx=anchor, obj_id=0, points=[[0.0, 0.0]], labels=[-1])
        theirs = {}
        for reverse in (False, True):
            for t, _, square in sam.propagate_in_video(state, start_frame_idx=anchor, reverse=reverse):
                logits = F.interpolate(square.float(), size=(H, W), mode="bilinear", align_corners=False)
                theirs[t] = logits[0, 0] > 0
    assert sorted(theirs) == list(range(4))
    for t in range(4):
        assert torch.equal(ours[t], theirs[t]), f"frame {t}: {(ours[t] != theirs[t]).sum()} pixels differ"
    assert ours.any() and not ours.all()


# -- SAM2 input: PIL bicubic to S, bf16-rounded ImageNet statistics, bf16 ------------------------------
def test_reference_preprocessing_matches_pil_bicubic():
    """Guards: ``preprocessing="reference"`` reproduces the released frame preparation: PIL's default
    resize to S x S, /255, ImageNet statistics as bf16 tensors, and bf16 pixels under bf16 autocast."""
    model = tiny(seed=10, preprocessing="reference", autocast_bf16=True)
    video = frames(2, 35, h=37, w=53)
    got = model.prepare_frames(video)
    assert got.dtype == torch.bfloat16 and got.shape == (2, 3, 256, 256)
    expected = []
    for frame in video.numpy():
        pixels = np.asarray(Image.fromarray(frame).resize((256, 256), Image.Resampling.BICUBIC), dtype=np.float32)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.bfloat16).float().numpy()
        std = torch.tensor(IMAGENET_STD, dtype=torch.bfloat16).float().numpy()
        expected.append(((pixels / 255.0 - mean) / std).transpose(2, 0, 1))
    expected = torch.from_numpy(np.stack(expected)).to(torch.bfloat16)
    assert torch.equal(got, expected)
    fast = tiny(seed=10).prepare_frames(video)
    assert fast.dtype == torch.float32 and (fast - got.float()).abs().max() > 0.05, "the fast path differs"


def test_released_segmenter_config_records_reference_settings(tmp_path):
    """Guards: released checkpoints default to the reference preprocessing and bf16, and the choice is
    written into the checkpoint's segmenter config."""
    from videoseg_o3.checkpoint import read_checkpoint_config

    cfg = SegmenterConfig.released()
    assert (cfg.model_config, cfg.image_size, cfg.num_maskmem) == ("sam2_hiera_l", 1024, 7)
    assert cfg.preprocessing == "reference" and cfg.autocast_bf16 and not cfg.gate_objects
    released_dir = tmp_path / "released"
    released_dir.mkdir()
    (released_dir / "config.json").write_text(json.dumps({"architectures": ["Sa2VAChatModelQwenCOT"]}))
    assert read_checkpoint_config(released_dir).segmenter == cfg
    model = tiny(seed=11, preprocessing="reference")
    model.save_pretrained(tmp_path / "seg")
    record = json.loads((tmp_path / "seg" / "segmenter.json").read_text())
    assert record["preprocessing"] == "reference" and record["gate_objects"] is False
    assert dataclasses.asdict(Sam2Segmenter.from_pretrained(tmp_path / "seg").config) == dataclasses.asdict(model.config)
    with pytest.raises(ValueError, match=r"Invalid preprocessing \(pil\). Supported values are fast, reference"):
        SegmenterConfig(**TINY, preprocessing="pil")
