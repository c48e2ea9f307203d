"""Sam2Segmenter on the tiny Hiera at 256 px with random weights.

Random SAM2 weights make the object-score head say "no object" and every mask empty, so comparisons
would pass trivially; the fixtures force objects on (a high bias on the head's last layer).
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from tests.tolerances import tol
from videoseg_o3.segmenter import SAM2_CONFIG_FILES, Sam2Segmenter, SegmenterConfig, TensorVideo
from videoseg_o3.segmenter.build import _compose, hydra_overrides
from videoseg_o3.segmenter.frames import ChunkedFrameFeatures
from videoseg_o3.segmenter.predictor import SEG_PROMPTS_KEY

TINY = dict(model_config="sam2_hiera_t", image_size=256)
H, W = 36, 52  # odd-ish, non-square video size: masks must come back at exactly this size


def force_objects_on(segmenter: Sam2Segmenter) -> Sam2Segmenter:
    with torch.no_grad():
        segmenter.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    return segmenter


def tiny(seed: int = 0, **overrides) -> Sam2Segmenter:
    torch.manual_seed(seed)
    return force_objects_on(Sam2Segmenter.from_config(SegmenterConfig(**{**TINY, **overrides}), device="cpu"))


def frames(n: int, seed: int, h: int = H, w: int = W) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth-ish content (a blob on noise) so frames differ but are not pure noise
    base = torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)
    base[:, h // 4: h // 2, w // 4: w // 2] = 200
    return base


def embeddings(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 256, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def seg() -> Sam2Segmenter:
    return tiny(encode_chunk_size=2)


class CountingVideo:
    """A reader that records every request, to check that propagation reads in bounded chunks."""

    def __init__(self, data: torch.Tensor) -> None:
        self._video = TensorVideo(data)
        self.requests: list[list[int]] = []

    num_frames = property(lambda self: self._video.num_frames)
    height = property(lambda self: self._video.height)
    width = property(lambda self: self._video.width)

    def get_frames(self, indices):
        self.requests.append(list(indices))
        return self._video.get_frames(indices).numpy()  # numpy, as the CPU readers may return


# -- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,needle", [
    ("model_config", "sam3_hiera_l", "Invalid model_config (sam3_hiera_l). Supported values are sam2_hiera_t"),
    ("image_size", 100, "Invalid image_size (100)"),
    ("num_maskmem", 0, "Invalid num_maskmem (0)"),
    ("encode_chunk_size", 0, "Invalid encode_chunk_size (0)"),
    ("checkpoint", "weights.bin", "Supported file types are .pt, .pth, .safetensors"),
    ("hydra_overrides", "++model.x=1", "Invalid hydra_overrides"),
])
def test_config_rejects_bad_values(field, value, needle):
    with pytest.raises(ValueError) as err:
        SegmenterConfig(**{field: value})
    assert needle in str(err.value)


def test_config_round_trips_through_dict():
    cfg = SegmenterConfig(**TINY, num_maskmem=5, hydra_overrides=["++model.memory_temporal_stride_for_eval=2"])
    assert SegmenterConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"Invalid segmenter config keys \(img_size\)"):
        SegmenterConfig.from_dict({"img_size": 256})


@pytest.mark.parametrize("name", sorted(SAM2_CONFIG_FILES))
def test_every_sam2_config_composes_with_our_predictor(name):
    composed = _compose(SAM2_CONFIG_FILES[name], hydra_overrides(SegmenterConfig(model_config=name, image_size=512)))
    assert composed.model._target_ == "videoseg_o3.segmenter.predictor.SegPromptVideoPredictor"
    assert composed.model.image_size == 512
    assert list(composed.model.memory_attention.layer.cross_attention.feat_sizes) == [32, 32]


def test_hiera_l_builds_at_1024():
    """The real-run default (the released model's SAM2): built from sam2's config, random weights."""
    model = Sam2Segmenter.from_config(SegmenterConfig(), device="cpu")
    assert model.sam.image_encoder.trunk.patch_embed.proj.out_channels == 144  # Hiera-L
    assert model.sam.image_size == 1024 and model.sam.num_maskmem == 7
    assert model.sam.sam_prompt_encoder.image_embedding_size == (64, 64)


# -- single-frame decode ---------------------------------------------------------------------------
def test_decode_shapes_and_dtypes(seg):
    out = seg.decode_frames(frames(2, 0), embeddings(2, 0))
    side = seg.image_size // 4
    assert out.low_res_logits.shape == (2, side, side) and out.low_res_logits.dtype == torch.float32
    assert out.iou.shape == (2,) and out.object_score_logits.shape == (2,)
    assert out.frame_size == (H, W)
    masks = out.masks()
    assert masks.shape == (2, H, W) and masks.dtype == torch.bool
    assert 0 < masks.float().mean() < 1, "forced-on objects should give non-trivial masks"
    assert out.logits((10, 12)).shape == (2, 10, 12)


def test_decode_keeps_the_best_iou_mask(seg):
    """Recompute the decoder's three masks by hand and check the kept one has the highest predicted IoU."""
    features = seg.encode_frames(frames(2, 1))
    emb = embeddings(2, 1)
    out = seg.decode_features(features, emb)
    sam = seg.sam
    with torch.no_grad():
        sparse, dense = sam.sam_prompt_encoder(
            points=(torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32)), boxes=None, masks=None)
        assert sparse.shape == (2, 2, 256), "one padding point plus sam2's own pad"
        multi, iou, _, _ = sam.sam_mask_decoder(
            image_embeddings=features.image_embed, image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=torch.cat([sparse, emb[:, None]], 1), dense_prompt_embeddings=dense,
            multimask_output=True, repeat_image=False,
            high_res_features=[sam.sam_mask_decoder.conv_s0(features.high_res[0]),
                               sam.sam_mask_decoder.conv_s1(features.high_res[1])])
    assert multi.shape[1] == 3
    best = iou.argmax(-1)
    torch.testing.assert_close(out.low_res_logits, multi[torch.arange(2), best], **tol("segmenter_fp32"))
    torch.testing.assert_close(out.iou, iou.max(-1).values, **tol("segmenter_fp32"))


def test_batch_equals_per_item(seg):
    data, emb = frames(2, 2), embeddings(2, 2)
    batched = seg.decode_frames(data, emb)
    for i in range(2):
        single = seg.decode_frames(data[i:i + 1], emb[i:i + 1])
        torch.testing.assert_close(batched.low_res_logits[i:i + 1], single.low_res_logits, **tol("segmenter_fp32"))
        torch.testing.assert_close(batched.iou[i:i + 1], single.iou, **tol("segmenter_fp32"))


def test_several_embeddings_on_one_encoded_frame(seg):
    features = seg.encode_frames(frames(2, 3))
    emb = embeddings(4, 3)
    index = torch.tensor([1, 0, 1, 1])
    many = seg.decode_features(features, emb, frame_index=index)
    assert many.low_res_logits.shape[0] == 4
    for j in range(4):
        one = seg.decode_features(features, emb[j:j + 1], frame_index=index[j:j + 1])
        torch.testing.assert_close(many.low_res_logits[j:j + 1], one.low_res_logits, **tol("segmenter_fp32"))
    # a different [SEG] on the same frame gives a different mask: the embedding is really used
    assert not torch.allclose(many.low_res_logits[0], many.low_res_logits[2])


def test_gradients_reach_prompt_side_only(seg):
    seg.zero_grad(set_to_none=True)
    seg.train()
    assert seg.sam.sam_mask_decoder.training and seg.sam.sam_prompt_encoder.training
    assert not seg.sam.image_encoder.training and not seg.sam.memory_attention.training
    emb = embeddings(2, 4).requires_grad_(True)
    out = seg.decode_frames(frames(2, 4), emb)
    (out.low_res_logits.sigmoid().mean() + out.iou.sum()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    sam = seg.sam
    decoder_grads = [p.grad for p in sam.sam_mask_decoder.parameters() if p.grad is not None]
    assert decoder_grads and sum(g.abs().sum() for g in decoder_grads) > 0
    assert sam.sam_mask_decoder.conv_s0.weight.grad.abs().sum() > 0, "high-res projections are trained"
    assert sam.sam_prompt_encoder.no_mask_embed.weight.grad.abs().sum() > 0
    assert sam.sam_prompt_encoder.not_a_point_embed.weight.grad.abs().sum() > 0
    for module in (sam.image_encoder, sam.memory_attention, sam.memory_encoder):
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None
    seg.zero_grad(set_to_none=True)
    seg.eval()


def test_decode_input_errors(seg):
    good = frames(1, 5)
    with pytest.raises(ValueError, match=r"Invalid frames \(\(1, 36, 52, 3\) torch.float32\)"):
        seg.decode_frames(good.float(), embeddings(1, 0))
    with pytest.raises(ValueError, match=r"Invalid seg_embeddings \(\(1, 128\)\)"):
        seg.decode_frames(good, torch.zeros(1, 128))
    with pytest.raises(ValueError, match=r"2 embeddings for 1 frames"):
        seg.decode_frames(good, embeddings(2, 0))
    features = seg.encode_frames(good)
    with pytest.raises(ValueError, match=r"Invalid frame_index \(\[1\]\). Expected 1 indices in 0..0"):
        seg.decode_features(features, embeddings(1, 0), frame_index=torch.tensor([1]))


# -- video propagation -----------------------------------------------------------------------------
@pytest.mark.parametrize("anchor", [0, 1, 2])
def test_propagate_shapes_and_anchor_equals_single_frame_decode(seg, anchor):
    # chunk 1: every frame is encoded alone, exactly as decode_frames encodes one frame, so the anchor's
    # mask must match bit for bit (batched encodes may differ in the last float bits)
    one_at_a_time = Sam2Segmenter(dataclasses.replace(seg.config, encode_chunk_size=1), seg.sam)
    video, emb = frames(3, 10), embeddings(1, 10)[0]
    calls = []
    masks = one_at_a_time.propagate(video, emb, anchor, progress=lambda done, total: calls.append((done, total)))
    assert masks.shape == (3, H, W) and masks.dtype == torch.bool and masks.device.type == "cpu"
    assert calls == [(i + 1, 3) for i in range(3)]
    single = one_at_a_time.decode_frames(video[anchor:anchor + 1], emb[None]).masks()[0]
    assert torch.equal(masks[anchor], single)
    assert masks.any() and not masks.all()


def test_single_frame_video(seg):
    video, emb = frames(1, 9), embeddings(1, 9)
    masks = seg.propagate(video, emb[0], 0)
    assert masks.shape == (1, H, W)
    assert torch.equal(masks[0], seg.decode_frames(video, emb).masks()[0])


def test_reinjection_changes_propagated_masks(seg):
    video, emb = frames(4, 11), embeddings(1, 11)[0]
    with_prompt = seg.propagate(video, emb, 1)
    memory_only = seg.propagate(video, emb, 1, reinject_prompt=False)
    assert torch.equal(with_prompt[1], memory_only[1]), "the anchor is prompted either way"
    changed = [t for t in (0, 2, 3) if not torch.equal(with_prompt[t], memory_only[t])]
    assert changed, "re-injecting [SEG] on propagated frames must change their masks"


def test_propagate_reads_each_frame_once_in_bounded_chunks(seg):
    data, emb = frames(5, 12), embeddings(1, 12)[0]
    reader = CountingVideo(data)
    masks = seg.propagate(reader, emb, 2)
    chunk = seg.config.encode_chunk_size
    assert max(len(r) for r in reader.requests) <= chunk
    assert sorted(i for r in reader.requests for i in r) == list(range(5)), "each frame decoded exactly once"
    assert torch.equal(masks, seg.propagate(data, emb, 2)), "a reader and a tensor give the same masks"


@pytest.mark.parametrize("num_frames,chunk,anchor", [(10, 3, 4), (5, 8, 0), (7, 1, 6)])
def test_chunked_features_walk_encodes_each_frame_once(num_frames, chunk, anchor):
    """The propagation walk (anchor, forward to the end, backward from anchor - 1) with a fake encoder."""
    encoded = []

    def fake_encode(batch):
        encoded.append(batch[:, 0, 0, 0].tolist())
        ids = batch[:, 0, 0, 0].float().view(-1, 1, 1, 1)
        return {"backbone_fpn": [ids.expand(-1, 2, 2, 2)], "vision_pos_enc": [torch.zeros(1, 2, 2, 2)]}

    video = torch.arange(num_frames, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 2, 2, 3).contiguous()
    features = ChunkedFrameFeatures(TensorVideo(video), fake_encode, chunk)
    walk = [anchor] + list(range(anchor + 1, num_frames)) + list(range(anchor - 1, -1, -1))
    for t in walk:
        features.direction = -1 if t < anchor else 1
        out = features.backbone_out(t)
        assert out["backbone_fpn"][0].shape == (1, 2, 2, 2) and int(out["backbone_fpn"][0].flatten()[0]) == t
    assert features.num_encoded == num_frames and sorted(sum(encoded, [])) == list(range(num_frames))
    assert features.max_frames_held <= chunk and all(len(batch) <= chunk for batch in encoded)
    with pytest.raises(IndexError, match=f"valid indices are 0..{num_frames - 1}"):
        features.backbone_out(num_frames)


def test_state_is_pruned_and_matches_sam2_propagate_in_video():
    """Our single-object loop (with pruning) against sam2's own propagate_in_video (keeps everything),
    on a model whose memory reach is short enough that pruning happens within 7 frames."""
    model = tiny(seed=1, encode_chunk_size=1, num_maskmem=3,
                 hydra_overrides=["++model.max_obj_ptrs_in_encoder=3"])
    sam = model.sam
    video, emb, anchor = frames(7, 13), embeddings(1, 13), 3
    reach = sam.memory_reach()
    assert reach == 3

    def anchored_state():
        state = model.new_video_state(video)
        state[SEG_PROMPTS_KEY][0] = emb
        sam.add_new_points_or_box(state, frame_idx=anchor, obj_id=0, points=[[0, 0]], labels=[-1])
        return state

    ours = {}
    state = anchored_state()
    for reverse, start in ((False, anchor), (True, anchor - 1)):
        for t, logits in sam.propagate_object(state, start, reverse=reverse, keep_near=None if reverse else anchor):
            ours[t] = logits.clone()
    assert sorted(ours) == list(range(7))
    # after the backward pass only frames within reach of frame 0 may remain (sam2 keeps all 6)
    held = sorted(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    assert held == [t for t in range(0, reach + 1) if t != anchor], held

    reference = {}
    state = anchored_state()
    for reverse in (False, True):
        for t, _, video_res in sam.propagate_in_video(state, reverse=reverse):
            reference[t] = state["output_dict_per_obj"][0][
                "cond_frame_outputs" if t == anchor else "non_cond_frame_outputs"][t]["pred_masks"]
    assert len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"]) == 6
    for t in range(7):
        assert torch.equal(ours[t], reference[t]), f"frame {t} differs from sam2's propagate_in_video"


def test_bf16_memory_with_two_objects_needs_the_dtype_hook():
    """sam2 keeps memory in bf16; a second object tracked before its own anchor has memory but no object
    pointers, and sam2 then feeds bf16 memory to fp32 layers. With our hook it runs; without, it fails."""
    model = tiny(seed=2, encode_chunk_size=3)  # the whole video in one chunk: encoded once per run
    sam = model.sam
    video = frames(3, 14)

    def two_objects():
        state = model.new_video_state(video)
        state[SEG_PROMPTS_KEY][0] = embeddings(1, 20)
        state[SEG_PROMPTS_KEY][1] = embeddings(1, 21)
        sam.add_new_points_or_box(state, frame_idx=0, obj_id=0, points=[[0, 0]], labels=[-1])
        sam.add_new_points_or_box(state, frame_idx=2, obj_id=1, points=[[0, 0]], labels=[-1])
        return [masks for _, _, masks in sam.propagate_in_video(state)]

    outputs = two_objects()
    assert len(outputs) == 3 and outputs[0].shape == (2, 1, H, W)
    sam.memory_dtype_hook.remove()
    with pytest.raises(RuntimeError, match="dtype"):
        two_objects()


def test_sam2_1_config_propagates():
    """sam2.1 adds a spatial no-object embedding and projected temporal pointer encodings."""
    model = tiny(seed=4, model_config="sam2.1_hiera_t")
    video, emb = frames(2, 22), embeddings(1, 22)
    masks = model.propagate(video, emb[0], 1)
    assert masks.shape == (2, H, W)
    assert torch.equal(masks[1], model.decode_frames(video[1:], emb).masks()[0])


def test_autocast_bf16_runs_both_paths():
    model = tiny(seed=3, encode_chunk_size=2, autocast_bf16=True)
    video, emb = frames(2, 15), embeddings(1, 15)
    out = model.decode_frames(video[:1], emb)
    assert out.low_res_logits.dtype == torch.float32
    masks = model.propagate(video, emb[0], 1)
    assert masks.shape == (2, H, W) and masks.dtype == torch.bool


def test_propagate_input_errors(seg):
    video = frames(3, 16)
    with pytest.raises(ValueError, match=r"Invalid anchor \(3\). Expected a frame index in 0..2"):
        seg.propagate(video, embeddings(1, 0)[0], 3)
    with pytest.raises(ValueError, match=r"Invalid seg_embedding \(\(255,\)\)"):
        seg.propagate(video, torch.zeros(255), 0)
    with pytest.raises(ValueError, match=r"Invalid video \(list\)"):
        seg.propagate([1, 2], embeddings(1, 0)[0], 0)


# -- checkpoints -----------------------------------------------------------------------------------
def test_save_load_round_trip(seg, tmp_path):
    seg.save_pretrained(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["model.safetensors", "segmenter.json"]
    record = json.loads((tmp_path / "ckpt" / "segmenter.json").read_text())
    assert record["format_version"] == 1 and record["model_config"] == "sam2_hiera_t" and record["image_size"] == 256
    loaded = Sam2Segmenter.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == seg.config
    for (k1, v1), (k2, v2) in zip(seg.sam.state_dict().items(), loaded.sam.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    # image-encoder weights are equal (above); decode on shared features checks the prompt/decoder path
    features, emb = seg.encode_frames(frames(1, 17)), embeddings(1, 17)
    assert torch.equal(seg.decode_features(features, emb).low_res_logits,
                       loaded.decode_features(features, emb).low_res_logits)


def test_loads_sam2_release_layout_and_safetensors(seg, tmp_path):
    pt = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": seg.sam.state_dict()}, pt)
    from_pt = Sam2Segmenter.from_config(dataclasses.replace(seg.config, checkpoint=str(pt)), device="cpu")
    seg.save_pretrained(tmp_path / "dir")
    from_st = Sam2Segmenter.from_config(
        dataclasses.replace(seg.config, checkpoint=str(tmp_path / "dir" / "model.safetensors")), device="cpu")
    for model in (from_pt, from_st):
        for k, v in seg.sam.state_dict().items():
            assert torch.equal(model.sam.state_dict()[k], v), k


def test_checkpoint_errors_are_clear(seg, tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="SAM2 checkpoint not found: .*nope.pt"):
        Sam2Segmenter.from_config(SegmenterConfig(**TINY, checkpoint=str(missing)))
    with pytest.raises(FileNotFoundError, match="Segmenter directory not found"):
        Sam2Segmenter.from_pretrained(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "segmenter.json").write_text(json.dumps(SegmenterConfig(**TINY).to_dict()))
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        Sam2Segmenter.from_pretrained(tmp_path / "half")

    wrong_keys = tmp_path / "wrong_keys.pt"
    state = seg.sam.state_dict()
    renamed = {("grounding_encoder." + k if k.startswith("sam_mask_decoder") else k): v for k, v in state.items()}
    torch.save({"model": renamed}, wrong_keys)
    with pytest.raises(ValueError) as err:
        Sam2Segmenter.from_config(SegmenterConfig(**TINY, checkpoint=str(wrong_keys)))
    message = str(err.value)
    assert "missing keys (sam_mask_decoder." in message
    assert "unexpected keys (grounding_encoder.sam_mask_decoder." in message
    assert "model_config (sam2_hiera_t)" in message

    seven_slots = tmp_path / "seven_slots.pt"
    torch.save({"model": state}, seven_slots)
    with pytest.raises(ValueError, match=r"wrong shape .*maskmem_tpos_enc \(7, 1, 1, 64\) vs \(3, 1, 1, 64\)"):
        Sam2Segmenter.from_config(SegmenterConfig(**TINY, num_maskmem=3, checkpoint=str(seven_slots)))

    not_weights = tmp_path / "not_weights.pt"
    torch.save({"model": {"a": 1}}, not_weights)
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        Sam2Segmenter.from_config(SegmenterConfig(**TINY, checkpoint=str(not_weights)))


# -- accelerator -----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_matches_cpu(seg):
    from videoseg_o3.device import default_device

    gpu = tiny(encode_chunk_size=2)
    gpu.sam.load_state_dict(seg.sam.state_dict())
    gpu = gpu.to(default_device())
    data, emb = frames(2, 18), embeddings(2, 18)
    # TF32 would make the GPU differ from fp32 by design; compare fp32 with fp32
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cpu_out, gpu_out = seg.decode_frames(data, emb), gpu.decode_frames(data, emb)
        video = frames(5, 19)
        cpu_masks, gpu_masks = seg.propagate(video, emb[0], 2), gpu.propagate(video, emb[0], 2)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert gpu_out.low_res_logits.device.type == default_device().type
    torch.testing.assert_close(gpu_out.low_res_logits.cpu(), cpu_out.low_res_logits, **tol("segmenter_gpu_vs_cpu"))
    assert gpu_masks.shape == cpu_masks.shape and gpu_masks.device.type == "cpu"
    disagreement = (gpu_masks != cpu_masks).float().mean().item()
    assert disagreement <= tol("segmenter_gpu_mask_disagreement")["atol"], disagreement
