"""Which forward-pass masks the GRPO auxiliary mask loss compares with which ground truth (no model needed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from tests.tolerances import tol
from training.calibration import SegDecodes
from training.losses import _aux_mask_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_keyframe_term_uses_the_last_seg_of_each_turn_and_video_term_every_seg() -> None:
    """Guards the released pairing (projects/open_r1/trainer/sam_loss.py): the keyframe loss takes the *last*
    [SEG] of each turn (one value per turn, averaged over turns), the video loss every [SEG] on every
    spatial frame.

    One rollout, [SEG]s in turns (0, 0, 1) with constant logits (-5, +5, 0) on 2 x 2 keyframes and on two
    1 x 1-upsampled spatial frames; every GT pixel is on. BCE of a constant logit z against 1 is
    softplus(-z): keyframe BCE = (softplus(-5) + softplus(0)) / 2 = (0.006715 + 0.693147) / 2 = 0.349931
    (the first [SEG] of turn 0 would give (5.006715 + 0.693147) / 2 = 2.849931); video BCE = the mean over
    3 [SEG] x 2 frames = (softplus(5) + softplus(-5) + softplus(0)) / 3 = (5.006715 + 0.006715 + 0.693147) / 3
    = 1.902192.
    """
    values = torch.tensor([-5.0, 5.0, 0.0])
    keyframe_logits = values[:, None, None].expand(3, 2, 2).clone()
    spatial_logits = values[:, None, None, None].expand(3, 2, 1, 1).clone()
    decodes = [SegDecodes(keep=torch.arange(3), keyframe_logits=keyframe_logits, spatial_logits=spatial_logits)]
    gt = torch.ones(3, 2, 2, dtype=torch.bool)
    batch = SimpleNamespace(
        seg_turns=[torch.tensor([0, 0, 1])],
        gt_keyframes=lambda i: gt,
        gt_spatial=lambda i: gt[:2],
    )
    total, parts = _aux_mask_loss(batch, decodes)
    kf_bce = (_softplus(-5.0) + _softplus(0.0)) / 2
    vid_bce = (_softplus(5.0) + _softplus(-5.0) + _softplus(0.0)) / 3
    assert abs(kf_bce - 0.349931) < 1e-6 and abs(vid_bce - 1.902192) < 1e-6
    torch.testing.assert_close(torch.tensor(parts["mask_kf_bce"]), torch.tensor(kf_bce), **tol("loss_math"))
    torch.testing.assert_close(torch.tensor(parts["mask_vid_bce"]), torch.tensor(vid_bce), **tol("loss_math"))
    # Dice on 4 GT pixels, sigma = s everywhere: 1 - (2 * 4s + 1) / (4s + 4 + 1)
    dice = lambda z: 1 - (8 / (1 + math.exp(-z)) + 1) / (4 / (1 + math.exp(-z)) + 5)  # noqa: E731
    torch.testing.assert_close(torch.tensor(parts["mask_kf_dice"]), torch.tensor((dice(5.0) + dice(0.0)) / 2), **tol("loss_math"))
    expected_total = parts["mask_kf_bce"] + parts["mask_kf_dice"] + parts["mask_vid_bce"] + parts["mask_vid_dice"]
    torch.testing.assert_close(total, torch.tensor(expected_total), **tol("loss_math"))


def test_no_seg_gives_no_aux_loss() -> None:
    """Guards that a micro-batch without any [SEG] adds nothing (rather than a NaN mean over zero masks)."""
    batch = SimpleNamespace(seg_turns=[torch.zeros(0, dtype=torch.long)], gt_keyframes=None, gt_spatial=None)
    total, parts = _aux_mask_loss(batch, [SegDecodes(torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, 1), None)])
    assert total is None and parts == {}
