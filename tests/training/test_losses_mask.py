"""The mask loss (BCE + Dice at the ground truth's resolution) against hand-worked values and torch's own BCE.

No ``__init__.py`` in this folder on purpose: a ``tests/training`` package would shadow the top-level
``training`` package on ``sys.path``.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.tolerances import tol
from training.losses import SFT_BCE_WEIGHT, SFT_DICE_WEIGHT, mask_bce_dice, sft_mask_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_constant_logit_hand_worked() -> None:
    """Guards the BCE pixel mean and the Dice formula (+1 smoothing on both sides).

    Logit 0 everywhere (one pixel, upsampled to 2 x 2) and a GT with one pixel on:
    BCE = log 2 at every pixel -> mean log 2 = 0.693147;
    Dice: sum(sigma g) = 0.5, sum(sigma) = 2, sum(g) = 1 -> 1 - (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5.
    """
    pred = torch.zeros(1, 1, 1)
    gt = torch.tensor([[[True, False], [False, False]]])
    bce, dice = mask_bce_dice(pred, gt)
    torch.testing.assert_close(bce, torch.tensor(math.log(2.0)), **tol("loss_math"))
    torch.testing.assert_close(dice, torch.tensor(0.5), **tol("loss_math"))


def test_bilinear_upsampling_hand_worked() -> None:
    """Guards that predictions are upsampled bilinearly (align_corners=False) to the GT's size before the loss.

    Logits [-2, 2] (1 x 2) to 1 x 4: source x = (dst + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped
    to [0, 1] -> z = [-2, -1, 1, 2]. GT = [0, 0, 1, 1]:
    BCE = (softplus(-2) + softplus(-1) + softplus(-1) + softplus(-2)) / 4 = (0.126928 + 0.313262) / 2 = 0.220095;
    sigma(z) = [0.119203, 0.268941, 0.731059, 0.880797], sum 2, sum(sigma g) = 1.611856
    -> Dice = 1 - (2 * 1.611856 + 1) / (2 + 2 + 1) = 0.155258.
    A nearest or align_corners=True resize gives other numbers.
    """
    pred = torch.tensor([[[-2.0, 2.0]]])
    gt = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    bce, dice = mask_bce_dice(pred, gt)
    expected_bce = (_softplus(-2.0) + _softplus(-1.0)) / 2.0
    inter = _sigmoid(1.0) + _sigmoid(2.0)
    expected_dice = 1.0 - (2.0 * inter + 1.0) / (2.0 + 2.0 + 1.0)
    assert abs(expected_bce - 0.220095) < 1e-6 and abs(expected_dice - 0.155258) < 1e-6  # the docstring's numbers
    torch.testing.assert_close(bce, torch.tensor(expected_bce, dtype=torch.float32), **tol("loss_math"))
    torch.testing.assert_close(dice, torch.tensor(expected_dice, dtype=torch.float32), **tol("loss_math"))


def test_matches_torch_bce_module_and_averages_per_mask() -> None:
    """Guards: BCE equals torch.nn.BCEWithLogitsLoss per mask; the mean is over masks (per-mask Dice averaged,
    not a Dice of the pooled pixels); ``reduction="none"`` gives the per-mask values."""
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 8, 8, generator=gen) * 3
    gt = torch.rand(3, 16, 16, generator=gen) > 0.6
    gt[2] = False  # an empty GT mask
    bce_each, dice_each = mask_bce_dice(pred, gt, reduction="none")
    up = torch.nn.functional.interpolate(pred[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    for i in range(3):
        expected = torch.nn.BCEWithLogitsLoss()(up[i], gt[i].float())
        torch.testing.assert_close(bce_each[i], expected, **tol("loss_math"))
        p = up[i].sigmoid()
        g = gt[i].float()
        torch.testing.assert_close(dice_each[i], 1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1), **tol("loss_math"))
    bce, dice = mask_bce_dice(pred, gt)
    torch.testing.assert_close(bce, bce_each.mean(), **tol("loss_math"))
    torch.testing.assert_close(dice, dice_each.mean(), **tol("loss_math"))


def test_sft_weights_hand_worked_and_gradient() -> None:
    """Guards the SFT weights 2.0 BCE + 0.5 Dice: on the logit-0 case, 2 log 2 + 0.5 * 0.5 = 1.636294;
    and the loss is differentiable in the predicted logits."""
    assert (SFT_BCE_WEIGHT, SFT_DICE_WEIGHT) == (2.0, 0.5)
    pred = torch.zeros(1, 1, 1, requires_grad=True)
    gt = torch.tensor([[[True, False], [False, False]]])
    loss, parts = sft_mask_loss(pred, gt)
    torch.testing.assert_close(loss, torch.tensor(2 * math.log(2.0) + 0.25), **tol("loss_math"))
    assert parts == pytest.approx({"mask_bce": math.log(2.0), "mask_dice": 0.5}, abs=1e-6)
    loss.backward()
    # d/dz of 2 * mean(softplus(z) - g z) + 0.5 * Dice at z = 0 (all four pixels share the one logit):
    # BCE: 2 * mean(sigma - g) = 2 * (0.5 - 0.25) = 0.5;
    # Dice = 1 - (2 S_pg + 1) / (S_p + 2) with dS/dz = sigma'(0) = 1/4 per pixel:
    # d(2 S_pg + 1) = 2 * 1/4 = 0.5, d(S_p + 2) = 4 * 1/4 = 1 -> -(0.5 * 4 - 2 * 1) / 16 = 0 -> 0.5 * 0.
    torch.testing.assert_close(pred.grad, torch.full((1, 1, 1), 0.5), **tol("loss_math"))


def test_no_masks_gives_attached_zero() -> None:
    """Guards the n = 0 case: zero loss that still reaches the graph (a DDP step needs every parameter used)."""
    pred = torch.zeros(0, 4, 4, requires_grad=True)
    loss, _ = sft_mask_loss(pred, torch.zeros(0, 8, 8, dtype=torch.bool))
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert pred.grad is not None


@pytest.mark.parametrize(
    "pred,gt,match",
    [
        (torch.zeros(2, 4), torch.zeros(2, 4, 4), "pred_logits"),
        (torch.zeros(2, 4, 4), torch.zeros(3, 4, 4), "2 predictions"),
        (torch.zeros(2, 4, 4), torch.zeros(2, 4), "gt_masks"),
    ],
)
def test_bad_shapes_raise_one_line_errors(pred, gt, match) -> None:
    """Guards the clear errors on mismatched inputs."""
    with pytest.raises(ValueError, match=match):
        mask_bce_dice(pred, gt)
