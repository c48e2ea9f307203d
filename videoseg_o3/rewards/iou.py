"""IoUs of rollout-time masks against ground truth: the inputs of the mask rewards.

Predictions are SAM2 low-resolution logits, upsampled bilinearly to the ground truth's resolution and
thresholded at 0 (the released rollouts' rule); the ground truth is a bool mask at video resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from videoseg_o3.rewards.inputs import check_mode

__all__ = ["IOU_EPS", "frame_ious", "keyframe_iou", "logits_to_masks", "video_iou"]

IOU_EPS = 1e-6
"""Added to every union, as the released code does (it keeps 0/0 finite; the empty rule decides that case)."""


def logits_to_masks(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(n, h, w)`` float logits -> ``(n, H, W)`` bool: bilinear upsampling (align_corners=False) then > 0."""
    if logits.ndim != 3:
        raise ValueError(f"Invalid logits shape {tuple(logits.shape)}. Expected (n, h, w).")
    up = F.interpolate(logits[:, None].float(), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return up[:, 0] > 0


def frame_ious(pred: torch.Tensor, gt: torch.Tensor, *, empty_is_one: bool = True) -> torch.Tensor:
    """Per-frame IoU of bool masks ``(n, H, W)``: ``|P & G| / (|P | G| + 1e-6)``.

    With ``empty_is_one`` a frame where both masks are empty (union < 1) scores 1.0 (the prediction is
    right: there is nothing to segment); without it, 0.0 (the released keyframe IoU).

    Returns:
        ``(n,) float32``.
    """
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"Invalid masks: prediction {tuple(pred.shape)} vs ground truth {tuple(gt.shape)}; "
                         "expected two (n, H, W) masks of the same shape.")
    pred, gt = pred.bool(), gt.bool()
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    iou = inter / (union + IOU_EPS)
    if empty_is_one:
        iou = torch.where(union < 1, torch.ones_like(iou), iou)
    return iou


def video_iou(seg_logits: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """IoU_vid of one turn: its ``[SEG]`` masks on the ``S`` turn-0 spatial frames vs ground truth.

    Args:
        seg_logits: ``(k, S, h, w)`` float, the low-resolution logits of the turn's ``k`` ``[SEG]`` on each
            spatial frame (``k`` may be 0).
        gt: ``(S, H, W)`` bool.
    Returns:
        ``S`` floats: per frame the IoU (empty union = 1.0) averaged over the ``k`` ``[SEG]``; ``[0.0] * S``
        when ``k = 0`` (a turn that segmented nothing), as the released rewards do.
    """
    num_frames = int(gt.shape[0])
    if seg_logits.shape[0] == 0:
        return [0.0] * num_frames
    if seg_logits.ndim != 4 or seg_logits.shape[1] != num_frames:
        raise ValueError(f"Invalid seg_logits shape {tuple(seg_logits.shape)}. Expected (k, {num_frames}, h, w).")
    size = (int(gt.shape[1]), int(gt.shape[2]))
    per_seg = [frame_ious(logits_to_masks(one, size), gt) for one in seg_logits]
    return torch.stack(per_seg).mean(0).tolist()


def keyframe_iou(seg_logits: torch.Tensor | None, gt: torch.Tensor, mode: str = "intended") -> float:
    """IoU_kf of one turn: its last ``[SEG]``'s mask on the keyframe visible at that turn.

    Args:
        seg_logits: ``(h, w)`` float logits of the turn's last ``[SEG]`` on the keyframe, or None when
            the turn has no ``[SEG]`` (IoU 0.0).
        gt: ``(H, W)`` bool ground truth on that keyframe.
        mode: ``"intended"``: both masks empty -> 1.0, like the video IoU; ``"compat"``: the released
            ``inter / (union + 1e-6)``, so an empty ground truth always scores 0.0.
    """
    check_mode(mode)
    if seg_logits is None:
        return 0.0
    if seg_logits.ndim != 2 or gt.ndim != 2:
        raise ValueError(f"Invalid keyframe masks: logits {tuple(seg_logits.shape)}, ground truth {tuple(gt.shape)}; "
                         "expected (h, w) and (H, W).")
    pred = logits_to_masks(seg_logits[None], (int(gt.shape[0]), int(gt.shape[1])))
    return float(frame_ious(pred, gt[None], empty_is_one=(mode == "intended"))[0])
