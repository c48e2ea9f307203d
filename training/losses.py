"""Training losses: the mask loss (BCE + Dice) shared by SFT and GRPO, and the GRPO loss on a rollout batch.

Mask loss (both stages). For each predicted mask (low-resolution logits) and its ground truth:

    z    = bilinear upsample of the logits to the GT's resolution (align_corners=False)
    BCE  = pixel mean of BCE-with-logits(z, g)
    Dice = 1 - (2 sum(sigmoid(z) g) + 1) / (sum(sigmoid(z)) + sum(g) + 1)

each averaged over masks. This is the released VideoSEG-O3 RL auxiliary loss
(projects/open_r1/trainer/sam_loss.py) and mmdet's naive Dice with eps = 1; the released SFT code
scores 12,544 uncertainty-sampled points instead of every pixel, which the full-resolution pixel
mean replaces (no sampling noise, same expectation for a uniform sample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: SFT mask-loss weights (released cold-start configs: loss_mask 2.0, loss_dice 0.5).
SFT_BCE_WEIGHT = 2.0
SFT_DICE_WEIGHT = 0.5

MASK_REDUCTIONS = ("mean", "none")


def _check_mask_pair(pred_logits: torch.Tensor, gt_masks: torch.Tensor) -> None:
    if not isinstance(pred_logits, torch.Tensor) or pred_logits.dim() != 3 or not pred_logits.is_floating_point():
        shape = tuple(pred_logits.shape) if isinstance(pred_logits, torch.Tensor) else type(pred_logits).__name__
        raise ValueError(f"Invalid pred_logits ({shape}). Expected float mask logits of shape (n, h, w).")
    if not isinstance(gt_masks, torch.Tensor) or gt_masks.dim() != 3:
        shape = tuple(gt_masks.shape) if isinstance(gt_masks, torch.Tensor) else type(gt_masks).__name__
        raise ValueError(f"Invalid gt_masks ({shape}). Expected ground-truth masks of shape (n, H, W), bool or float in [0, 1].")
    if gt_masks.shape[0] != pred_logits.shape[0]:
        raise ValueError(
            f"Invalid gt_masks: {gt_masks.shape[0]} ground-truth masks for {pred_logits.shape[0]} predictions; pass one per prediction."
        )
    if min(gt_masks.shape[1:]) < 1 or min(pred_logits.shape[1:]) < 1:
        raise ValueError("Invalid masks: every side must be >= 1 pixel.")


def mask_bce_dice(
    pred_logits: torch.Tensor, gt_masks: torch.Tensor, *, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE-with-logits and Dice of predicted masks against ground truth, at the ground truth's resolution.

    Args:
        pred_logits: (n, h, w) float mask logits (e.g. SAM2's 256 x 256 low-resolution logits);
            differentiable.
        gt_masks: (n, H, W) bool, or float in [0, 1], on the same device. Predictions are upsampled
            bilinearly to (H, W) (never the other way: the GT keeps its thin structures).
        reduction: ``"mean"`` (average over the n masks) or ``"none"`` (one value per mask, for callers
            that weight masks, e.g. by [SEG]s per turn).
    Returns:
        bce, dice: () fp32 each (or (n,) with ``reduction="none"``). With n = 0 both are 0 and still
        attached to ``pred_logits``' graph (a sample without masks keeps every parameter in the
        backward, as distributed data parallel needs).
    """
    if reduction not in MASK_REDUCTIONS:
        raise ValueError(f"Invalid reduction ({reduction}). Supported values are {', '.join(MASK_REDUCTIONS)}.")
    _check_mask_pair(pred_logits, gt_masks)
    n = pred_logits.shape[0]
    if n == 0:
        zero = pred_logits.float().sum() * 0.0
        empty = pred_logits.float().new_zeros(0) + zero
        return (zero, zero) if reduction == "mean" else (empty, empty)
    size = tuple(gt_masks.shape[1:])
    z = pred_logits.float()
    if tuple(z.shape[1:]) != size:
        z = F.interpolate(z[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    g = gt_masks.to(device=z.device, dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(z, g, reduction="none").mean(dim=(1, 2))
    prob = z.sigmoid()
    dice = 1.0 - (2.0 * (prob * g).sum(dim=(1, 2)) + 1.0) / (prob.sum(dim=(1, 2)) + g.sum(dim=(1, 2)) + 1.0)
    if reduction == "mean":
        return bce.mean(), dice.mean()
    return bce, dice


def sft_mask_loss(
    pred_logits: torch.Tensor,
    gt_masks: torch.Tensor,
    *,
    bce_weight: float = SFT_BCE_WEIGHT,
    dice_weight: float = SFT_DICE_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The SFT mask term ``bce_weight * BCE + dice_weight * Dice`` (defaults 2.0 and 0.5, the released recipe).

    Args:
        pred_logits: (n, h, w) float [SEG] mask logits. gt_masks: (n, H, W) bool/float ground truth.
        bce_weight, dice_weight: the weights (>= 0).
    Returns:
        loss: () fp32, differentiable (0, attached to the graph, when n = 0).
        parts: ``{"mask_bce": float, "mask_dice": float}`` unweighted values, for logging.
    """
    if bce_weight < 0 or dice_weight < 0:
        raise ValueError(f"Invalid mask loss weights (bce_weight={bce_weight}, dice_weight={dice_weight}). Both must be >= 0.")
    bce, dice = mask_bce_dice(pred_logits, gt_masks)
    loss = bce_weight * bce + dice_weight * dice
    return loss, {"mask_bce": float(bce.detach()), "mask_dice": float(dice.detach())}
