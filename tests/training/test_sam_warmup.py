"""SAM2 warm-up: the point prompt lands inside the object, the tracked clip is inference's computation, and
training it lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.sam_warmup import SamWarmupConfig, object_points, warm_up


def test_object_points_hand_worked() -> None:
    """Guards the prompt point: the mask pixel nearest the centroid, as (x, y). An L-shaped mask's centroid lies
    off the mask, so the nearest mask pixel is returned instead (worked out by hand)."""
    square = np.zeros((1, 8, 10), dtype=bool)
    square[0, 2:5, 6:9] = True  # rows 2-4, columns 6-8: centre (x=7, y=3)
    ell = np.zeros((1, 5, 5), dtype=bool)
    ell[0, 0:5, 0] = True
    ell[0, 4, 0:5] = True  # centroid (x=1.11, y=2.89) is off the mask
    assert object_points(square).tolist() == [[7.0, 3.0]]
    ell_point = object_points(ell)[0].tolist()
    # the nearest mask pixel(s), found by brute force with numpy
    ys, xs = np.nonzero(ell[0])
    cy, cx = ys.mean(), xs.mean()
    d = (ys - cy) ** 2 + (xs - cx) ** 2
    best = {(float(xs[i]), float(ys[i])) for i in np.flatnonzero(np.isclose(d, d.min()))}
    assert tuple(ell_point) in best
    assert ell[0, int(ell_point[1]), int(ell_point[0])]
    with pytest.raises(ValueError, match="empty"):
        object_points(np.zeros((1, 4, 4), dtype=bool))


def _disc_batch() -> tuple[np.ndarray, np.ndarray]:
    """Two 64 x 64 frames, each a bright disc on a dark noisy background, and the discs' masks."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    masks = np.stack([(yy - 20) ** 2 + (xx - 24) ** 2 < 100, (yy - 44) ** 2 + (xx - 40) ** 2 < 144])
    frames = rng.integers(0, 40, size=(2, 64, 64, 3)).astype(np.uint8)
    frames[masks] = np.array([230, 60, 40], dtype=np.uint8)
    return frames, masks


def _moving_disc_clip(frames: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` 64 x 64 frames of a red disc moving right on a dark noisy background, and its masks."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    masks = np.stack([(yy - 30) ** 2 + (xx - 16 - 8 * t) ** 2 < 100 for t in range(frames)])
    video = rng.integers(0, 40, size=(frames, 64, 64, 3)).astype(np.uint8)
    video[masks] = np.array([230, 60, 40], dtype=np.uint8)
    return video, masks


def _tiny_segmenter() -> "object":
    from training.common import TINY_SEGMENTER
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    torch.manual_seed(0)
    return Sam2Segmenter.from_config(SegmenterConfig(**TINY_SEGMENTER), device="cpu")


@pytest.mark.slow
def test_track_clip_is_the_inference_computation() -> None:
    """Guards that the warm-up trains what inference runs: the clip's prompted frame equals
    ``Sam2Segmenter.decode_features`` (the single-frame path of SFT, GRPO and the rewards) on that frame with the
    same token, and every tracked frame's mask equals ``Sam2Segmenter.propagate``'s (sam2's video predictor with
    the prompt re-injected) on the same video. Fails if the warm-up skipped the decoder's high-resolution
    projections, the no-memory embedding, the re-injected prompt or the memory (tracked frames would differ)."""
    from training.sam_warmup import point_prompts, track_clip
    from videoseg_o3.segmenter.model import upsample_logits

    segmenter = _tiny_segmenter()
    video, masks = _moving_disc_clip(3)
    token = point_prompts(segmenter, torch.tensor([[16.0, 30.0]]), (64, 64)).detach()
    with torch.no_grad():
        outputs = track_clip(segmenter, video, token, [0, 1, 2], reverse=False, num_frames=3)
        single = segmenter.decode_features(segmenter.encode_frames(video[:1]), token)
    torch.testing.assert_close(outputs[0]["logits"], single.low_res_logits, rtol=1e-4, atol=1e-4)
    propagated = segmenter.propagate(video, token[0], anchor=0)
    for frame, out in enumerate(outputs):
        mine = upsample_logits(out["logits"], (64, 64), via=segmenter.image_size)[0] > 0
        inference = propagated[frame]
        assert 0.02 < float(inference.float().mean()) < 0.98, "degenerate masks would make the comparison vacuous"
        iou = float((mine & inference).sum()) / max(1, int((mine | inference).sum()))
        # sam2's predictor keeps memory features in bf16 (one rounding step): a few boundary pixels may flip
        assert iou >= 0.98, f"frame {frame}: warm-up tracking and inference propagation differ (IoU {iou:.3f})"


@pytest.mark.slow
def test_tracking_loss_trains_memory_and_not_the_trunk() -> None:
    """Guards the trained set and that the loss can be optimised: gradients reach memory attention, the memory
    encoder, the decoder and the image encoder's neck but not its trunk (``train_trunk`` off), and a few steps on
    one fixed clip lower the loss (fails if the tracked frames were detached from the memory modules)."""
    from training.sam_warmup import SamWarmupConfig, tracking_loss

    segmenter = _tiny_segmenter()
    sam = segmenter.sam
    for p in segmenter.parameters():
        p.requires_grad_(True)
    video, masks = _moving_disc_clip(3)
    config = SamWarmupConfig(steps=1)
    loss, parts = tracking_loss(segmenter, video, masks, [0, 1, 2], False, config)
    loss.backward()

    def touched(module: torch.nn.Module) -> bool:
        return any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in module.parameters())

    for name in ("memory_attention", "memory_encoder", "sam_mask_decoder", "sam_prompt_encoder"):
        assert touched(getattr(sam, name)), f"no gradient reached {name}"
    assert touched(sam.image_encoder.neck)
    assert not any(p.grad is not None for p in sam.image_encoder.trunk.parameters())
    assert set(parts) >= {"anchor_iou", "tracked_iou", "object_score_bce"}

    params = [p for p in segmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for _ in range(6):
        loss, _ = tracking_loss(segmenter, video, masks, [0, 1, 2], False, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], f"tracking loss did not decrease: {losses}"


def test_clip_frames_start_on_the_object_and_stay_in_the_video() -> None:
    """Guards the clip draw: it starts on a frame where the object is visible, runs one way in consecutive frames
    and stops at the video's ends (checked over many draws, both directions seen)."""
    from training.sam_warmup import clip_frames

    rng = np.random.default_rng(0)
    visible = np.array([1, 2, 7])
    seen = set()
    for _ in range(200):
        order, reverse = clip_frames(visible, 8, 4, rng)
        seen.add(reverse)
        assert order[0] in visible and all(0 <= f < 8 for f in order) and 1 <= len(order) <= 4
        step = -1 if reverse else 1
        assert order == list(range(order[0], order[0] + step * len(order), step))
        assert len(order) == 4 or order[-1] in (0, 7)
    assert seen == {False, True}


@pytest.mark.slow
def test_warm_up_on_synthetic_split_leaves_the_usual_trainable_set(tmp_path) -> None:
    """Guards ``warm_up`` end to end on a generated split: it runs, reports finite losses, and hands back a SAM2
    whose image encoder and memory are frozen again (SFT/RL rely on that) while the prompt encoder and decoder are
    trainable."""
    from training.common import TINY_SEGMENTER
    from videoseg_o3.data.synthetic import SynthConfig, generate_split
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    generate_split(tmp_path / "train", 2, seed=0, cfg=SynthConfig(frames=(4, 4), size=(40, 40)), records=False)
    torch.manual_seed(0)
    segmenter = Sam2Segmenter.from_config(SegmenterConfig(**TINY_SEGMENTER), device="cpu")
    summary = warm_up(segmenter, tmp_path / "train", SamWarmupConfig(image_steps=3, steps=2, frames_per_step=2))
    assert summary["image_steps"] == 3 and summary["steps"] == 2 and np.isfinite(summary["last_loss"])
    assert np.isfinite(summary["image_last_loss"])
    assert set(summary["prompt_following"]) == {"own_iou", "other_iou", "frames"}
    assert not any(p.requires_grad for p in segmenter.sam.image_encoder.parameters())
    assert not any(p.requires_grad for p in segmenter.sam.memory_attention.parameters())
    assert all(p.requires_grad for p in segmenter.sam.sam_mask_decoder.parameters())
    assert not segmenter.training


@pytest.mark.slow
def test_objects_tracked_as_a_batch_match_each_tracked_alone() -> None:
    """Guards the batched warm-up step: two objects prompted and tracked together give, per object, the logits and
    object scores of tracking that object alone (the single-object path is checked against inference above).
    Fails if the batch shared one object's memory, prompt or padding point with the other."""
    from training.sam_warmup import point_prompts, track_clip

    segmenter = _tiny_segmenter()
    video, _ = _moving_disc_clip(3)
    tokens = point_prompts(segmenter, torch.tensor([[16.0, 30.0], [50.0, 8.0]]), (64, 64)).detach()
    with torch.no_grad():
        together = track_clip(segmenter, video, tokens, [0, 1, 2], reverse=False, num_frames=3)
        alone = [track_clip(segmenter, video, tokens[i:i + 1], [0, 1, 2], reverse=False, num_frames=3)
                 for i in range(2)]
    assert not torch.allclose(alone[0][0]["logits"], alone[1][0]["logits"], atol=1e-3), "the two prompts must differ"
    for frame in range(3):
        for i in range(2):
            torch.testing.assert_close(together[frame]["logits"][i:i + 1], alone[i][frame]["logits"],
                                       rtol=1e-3, atol=1e-3)
            torch.testing.assert_close(together[frame]["object_score"][i:i + 1], alone[i][frame]["object_score"],
                                       rtol=1e-3, atol=1e-3)


def test_draw_objects_prompts_every_object_visible_on_the_first_frame() -> None:
    """Guards which objects a step prompts, on a hand-made video: object 0 is on frames 0-3, object 1 on frames 2-5
    and object 2 nowhere. A clip starting on frame 2 or 3 prompts objects 0 and 1, one starting on 0-1 object 0
    only, on 4-5 object 1 only; object 2 is never prompted; with ``prompt_all`` off exactly one visible object."""
    from training.sam_warmup import draw_objects

    masks = np.zeros((3, 6, 4, 4), dtype=bool)
    masks[0, 0:4, 1, 1] = True
    masks[1, 2:6, 2, 2] = True
    expected = {0: [0], 1: [0], 2: [0, 1], 3: [0, 1], 4: [1], 5: [1]}
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        objects, order, _ = draw_objects(masks, 3, True, rng)
        starts.add(order[0])
        assert objects == expected[order[0]]
        one, order, _ = draw_objects(masks, 3, False, rng)
        assert len(one) == 1 and one[0] in expected[order[0]]
    assert starts == set(range(6))


def test_video_objects_are_the_generated_objects(tmp_path) -> None:
    """Guards the warm-up's data: for each generated video, the objects read back from the ReVOS layout are
    exactly the masks the generator drew for the objects its expressions refer to (compared with a fresh render of
    the same videos, not with the reader)."""
    from training.sam_warmup import video_objects
    from videoseg_o3.data.synthetic import SynthConfig, generate_split, render_video, video_rng

    cfg = SynthConfig(frames=(6, 6), size=(40, 40))
    generate_split(tmp_path / "train", 3, seed=5, cfg=cfg, records=False)
    videos = {v.record.video_id: v.masks for v in video_objects(tmp_path / "train")}
    assert len(videos) == 3
    for index in range(3):
        video = render_video(video_rng(5, "train", index), cfg, f"train_{index:05d}")
        referred = sorted({t for q in video.queries for t in q.targets})
        expected = np.stack([video.object(t).visible for t in referred])
        read = videos[video.video_id]
        assert read.shape == expected.shape
        # the reader's order follows the expressions; compare as a set of masks
        assert sorted(m.tobytes() for m in read) == sorted(m.tobytes() for m in expected)


def test_prompt_following_scores_own_and_other_objects(monkeypatch) -> None:
    """Guards the prompt-following probe's bookkeeping with two stand-in decoders on a hand-made frame holding two
    disjoint squares: one that returns the prompted object's mask scores own IoU 1 and other IoU 0; one that
    returns the union whatever the prompt scores 0.5 on both (each square is half the union)."""
    import training.sam_warmup as warmup
    from training.sam_warmup import VideoObjects, prompt_following

    masks = np.zeros((2, 1, 8, 8), dtype=bool)
    masks[0, 0, 0:4, 0:4] = True
    masks[1, 0, 4:8, 4:8] = True

    class _Record:
        video_id = "v"

        def load_frames(self, indices):
            return np.zeros((len(indices), 8, 8, 3), dtype=np.uint8)

    class _Segmenter:
        device = torch.device("cpu")
        image_size = 8

    def logits_for(chosen):
        return [{"logits": torch.where(torch.as_tensor(np.stack(chosen)), 10.0, -10.0).float()}]

    monkeypatch.setattr(warmup, "point_prompts", lambda seg, points, size: points)  # the point stands for the object
    monkeypatch.setattr(warmup, "track_clip", lambda seg, frames, token, order, **kw: logits_for(
        [masks[0, 0] if float(p[0]) < 4 else masks[1, 0] for p in token]))
    follows = prompt_following(_Segmenter(), [VideoObjects(_Record(), masks)])
    assert follows == {"own_iou": 1.0, "other_iou": 0.0, "frames": 1}
    monkeypatch.setattr(warmup, "track_clip", lambda seg, frames, token, order, **kw: logits_for(
        [masks[0, 0] | masks[1, 0] for _ in token]))
    blind = prompt_following(_Segmenter(), [VideoObjects(_Record(), masks)])
    assert blind == {"own_iou": 0.5, "other_iou": 0.5, "frames": 1}
