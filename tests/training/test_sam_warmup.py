"""SAM2 warm-up: the point prompt lands inside the object, and training the whole tiny SAM2 lowers the mask loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.sam_warmup import SamWarmupConfig, object_points, warm_up, warmup_loss


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


@pytest.mark.slow
def test_warmup_loss_decreases_on_a_fixed_batch() -> None:
    """Guards that gradients reach the image encoder, prompt encoder and decoder and that optimising the warm-up
    loss on one fixed tiny batch lowers it within a few steps (fails if e.g. the features are detached and the
    randomly initialised decoder alone cannot fit, or if the prompt token is not used at all)."""
    from training.common import TINY_SEGMENTER
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    torch.manual_seed(0)
    segmenter = Sam2Segmenter.from_config(SegmenterConfig(**TINY_SEGMENTER), device="cpu")
    for p in segmenter.parameters():
        p.requires_grad_(True)
    config = SamWarmupConfig(steps=1)
    frames, masks = _disc_batch()
    optimizer = torch.optim.AdamW([p for p in segmenter.parameters() if p.requires_grad], lr=1e-3)
    segmenter.train()
    losses = []
    encoder_grad = 0.0
    for _ in range(6):
        loss, _parts = warmup_loss(segmenter, frames, masks, config)
        optimizer.zero_grad()
        loss.backward()
        encoder_grad = max([encoder_grad, *(float(p.grad.abs().max()) for p in segmenter.sam.image_encoder.parameters()
                                            if p.grad is not None)])
        optimizer.step()
        losses.append(float(loss.detach()))
    assert encoder_grad > 0.0, "no gradient reached the image encoder"
    assert losses[-1] < 0.8 * losses[0], f"warm-up loss did not decrease: {losses}"


@pytest.mark.slow
def test_warm_up_on_synthetic_split_leaves_the_usual_trainable_set(tmp_path) -> None:
    """Guards ``warm_up`` end to end on a generated split: it runs, reports finite losses, and hands back a SAM2
    whose image encoder is frozen again (SFT/RL rely on that) while the prompt encoder and decoder are trainable."""
    from training.common import TINY_SEGMENTER
    from videoseg_o3.data.synthetic import SynthConfig, generate_split
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    generate_split(tmp_path / "train", 2, seed=0, cfg=SynthConfig(frames=(4, 4), size=(40, 40)), records=False)
    torch.manual_seed(0)
    segmenter = Sam2Segmenter.from_config(SegmenterConfig(**TINY_SEGMENTER), device="cpu")
    summary = warm_up(segmenter, tmp_path / "train", SamWarmupConfig(steps=2, frames_per_step=2))
    assert summary["steps"] == 2 and np.isfinite(summary["last_loss"])
    assert not any(p.requires_grad for p in segmenter.sam.image_encoder.parameters())
    assert all(p.requires_grad for p in segmenter.sam.sam_mask_decoder.parameters())
    assert not segmenter.training
