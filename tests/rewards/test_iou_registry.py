"""IoU helpers and the reward registry.

Guards: the empty-union rule of the video IoU and of each keyframe-IoU mode, the bilinear upsampling of
low-resolution logits before thresholding, the [SEG] averaging, and compute_rewards' weighting.
"""

from __future__ import annotations

import pytest
import torch

from tests.tolerances import tol
from videoseg_o3.protocol import format_turn
from videoseg_o3.rewards import (
    DEFAULT_REWARD_WEIGHTS,
    TOTAL_KEY,
    RewardInput,
    compute_rewards,
    frame_ious,
    keyframe_iou,
    logits_to_masks,
    register_reward,
    registered_rewards,
    video_iou,
)


def _mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "#" for c in r] for r in rows])


def test_frame_ious_hand_worked():
    # P has 4 pixels, G has 2, 2 shared -> 2 / 4; both empty -> 1 (or 0 without the rule); disjoint -> 0
    p = _mask(["##..", "##.."])
    g = _mask(["#...", "#..."])
    empty = torch.zeros(2, 4, dtype=torch.bool)
    pred = torch.stack([p, empty, p])
    gt = torch.stack([g, empty, _mask(["..##", "..##"])])
    torch.testing.assert_close(frame_ious(pred, gt), torch.tensor([2 / (4 + 1e-6), 1.0, 0.0]), **tol("reward_tables"))
    torch.testing.assert_close(frame_ious(pred, gt, empty_is_one=False), torch.tensor([2 / (4 + 1e-6), 0.0, 0.0]),
                               **tol("reward_tables"))


def test_logits_are_upsampled_bilinearly_before_thresholding():
    # 2x2 logits [[3, -1], [3, -1]] -> 4x4 with align_corners=False: output column j samples source
    # x = (j + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1) -> values 3, 2, 0, -1
    # -> two left columns set (align_corners=True would sample 0, 1/3, 2/3, 1 -> 3, 1.67, 0.33, -1: three)
    logits = torch.tensor([[[3.0, -1.0], [3.0, -1.0]]])
    expected = _mask(["##..", "##..", "##..", "##.."])[None]
    assert torch.equal(logits_to_masks(logits, (4, 4)), expected)


def test_video_iou_averages_over_segs_and_zero_without_seg():
    gt = torch.stack([_mask(["##", ".."]), torch.zeros(2, 2, dtype=torch.bool)])  # frame 1 empty
    full = torch.full((2, 2), 5.0)       # predicts everything
    none = torch.full((2, 2), -5.0)      # predicts nothing
    logits = torch.stack([torch.stack([full, full]), torch.stack([none, none])])  # (k=2, S=2, 2, 2)
    # [SEG] 0: frame 0 -> 2/4, frame 1 -> 0/4; [SEG] 1: frame 0 -> 0/2, frame 1 -> empty union -> 1
    got = video_iou(logits, gt)
    assert got == pytest.approx([(2 / (4 + 1e-6) + 0.0) / 2, (0.0 + 1.0) / 2], abs=1e-6)
    assert video_iou(torch.zeros(0, 2, 2, 2), gt) == [0.0, 0.0]


def test_keyframe_iou_modes():
    empty_gt = torch.zeros(3, 3, dtype=torch.bool)
    nothing = torch.full((3, 3), -5.0)
    assert keyframe_iou(nothing, empty_gt, "intended") == 1.0   # both empty: right
    assert keyframe_iou(nothing, empty_gt, "compat") == 0.0     # released: 0 / (0 + 1e-6)
    gt = _mask(["#..", "...", "..."])
    assert keyframe_iou(torch.full((3, 3), 5.0), gt, "compat") == pytest.approx(1 / (9 + 1e-6), abs=1e-7)
    assert keyframe_iou(None, gt, "intended") == 0.0
    with pytest.raises(ValueError, match="Invalid reward mode"):
        keyframe_iou(nothing, gt, "exact")


def test_compute_rewards_weights_and_total():
    good = format_turn("answer", ("a", "b", "c"), "go", 2, 5, 3)
    eps = [RewardInput([good], [0, 0, 1, 1, 1, 1, 0, 0], iou_vid=[[1.0] * 5], iou_kf=[1.0]),
           RewardInput(["junk"], [0, 0, 1, 1, 1, 1, 0, 0], iou_vid=[[0.0] * 5], iou_kf=[0.0])]
    out = compute_rewards(eps, {"strict_format_cot": 2.0, "lr_vtg_keyframe": 0.5, "lr_maskiou_dense": 0.0})
    assert set(out) == {"strict_format_cot", "lr_vtg_keyframe", "lr_maskiou_dense", TOTAL_KEY}
    # episode 0: format +1, keyframe 3 visible +1, mask 1.5 (weight 0) -> 2 + 0.5 = 2.5
    # episode 1: format -1, unreadable -1, mask -1 -> -2 - 0.5 = -2.5
    torch.testing.assert_close(out[TOTAL_KEY], torch.tensor([2.5, -2.5]), **tol("reward_tables"))
    torch.testing.assert_close(out["lr_maskiou_dense"], torch.tensor([1.5, -1.0]), **tol("reward_tables"))
    assert out[TOTAL_KEY].dtype == torch.float32


def test_registry_errors():
    assert set(DEFAULT_REWARD_WEIGHTS) <= set(registered_rewards())
    with pytest.raises(ValueError, match=r"Invalid reward name \('nope'\)\. Supported values are"):
        compute_rewards([], {"nope": 1.0})
    with pytest.raises(ValueError, match="Invalid reward mode"):
        compute_rewards([], DEFAULT_REWARD_WEIGHTS, mode="exact")
    with pytest.raises(ValueError, match="already registered"):
        register_reward("strict_format_cot")(lambda ep, mode: 0.0)
    with pytest.raises(ValueError, match="Invalid reward name"):
        register_reward(TOTAL_KEY)
    with pytest.raises(ValueError, match="iou_vid: 1 turns of IoUs for 2 turns"):
        RewardInput(["a", "b"], [1], iou_vid=[[1.0]])
