"""The asymmetric (DAPO) ratio clip of the GRPO loss, on numbers worked out by hand.

Guards that ``clip_low`` bounds the ratio from below and ``clip_high`` from above (a swap of the two
inside :mod:`kernels.grpo_loss` changes both the loss and the gradient here), in the reference, the
chunked torch path and the Triton path.

The case. V = 2, H = 1, LM head ``W = [[1], [-1]]``, every hidden state 0 and every target token 0:
the logits are (0, 0), so every ``lp = log 1/2`` and ``d lp / d h = W[0] - (W[0] + W[1]) / 2 = 1``
(the hidden-state gradient *is* the gradient with respect to the log-prob). The behaviour
log-probs are ``old = log 1/2 - log r`` so the ratios are exactly ``r``. ``clip_low = 0.1``,
``clip_high = 0.3`` (ratio clipped into [0.9, 1.3]), ``beta = 0``, token-mean over 4 tokens:

===== ===== ===== ======================================== ============ ========================
token  r     A     -min(r A, clip(r, 0.9, 1.3) A)           dL/dlp       swapped: clip into [0.7, 1.1]
===== ===== ===== ======================================== ============ ========================
1     1.25  +1    -min(1.25, 1.25) = -1.25 (inside)         -1.25/4      -min(1.25, 1.1) = -1.1, grad 0
2     0.75  -1    -min(-0.75, -0.9) = +0.9 (clipped)        0            -min(-0.75, -0.75) = +0.75, grad +0.75/4
3     1.5   +2    -min(3.0, 2.6) = -2.6 (clipped)           0            -min(3.0, 2.2) = -2.2, grad 0
4     0.5   +1    -min(0.5, 0.9) = -0.5 (low side, A > 0)   -0.5/4       -min(0.5, 0.7) = -0.5, grad -0.5/4
===== ===== ===== ======================================== ============ ========================

loss = (-1.25 + 0.9 - 2.6 - 0.5) / 4 = -0.8625 (swapped: (-1.1 + 0.75 - 2.2 - 0.5) / 4 = -0.7625);
d loss / d h = (-0.3125, 0, 0, -0.125) (swapped: (0, 0.1875, 0, -0.125)).
"""

from __future__ import annotations

import math

import pytest
import torch

from kernels.grpo_loss import chunked_linear_grpo_loss, grpo_loss_ref, triton_linear_grpo_loss
from tests.tolerances import tol

RATIOS = [1.25, 0.75, 1.5, 0.5]
ADVANTAGES = [1.0, -1.0, 2.0, 1.0]
CLIP_LOW, CLIP_HIGH = 0.1, 0.3
EXPECTED_LOSS = -0.8625
EXPECTED_GRAD = [-0.3125, 0.0, 0.0, -0.125]
SWAPPED_LOSS = -0.7625

PATHS = [
    pytest.param(grpo_loss_ref, id="reference"),
    pytest.param(lambda *a, **k: chunked_linear_grpo_loss(*a, chunk_size=3, **k), id="chunked"),
    pytest.param(triton_linear_grpo_loss, id="triton", marks=pytest.mark.triton),
]


def _run(fn, clip_low: float, clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(RATIOS)
    hidden = torch.zeros(n, 1, requires_grad=True)
    weight = torch.tensor([[1.0], [-1.0]])
    targets = torch.zeros(n, dtype=torch.long)
    old = torch.tensor([math.log(0.5) - math.log(r) for r in RATIOS])
    loss = fn(hidden, weight, targets, torch.ones(n, dtype=torch.bool), torch.tensor(ADVANTAGES), old_logps=old,
              beta=0.0, clip_low=clip_low, clip_high=clip_high, loss_agg_mode="token-mean")[0]
    loss.backward()
    return loss.detach(), hidden.grad[:, 0]


def test_hand_worked_numbers_are_consistent() -> None:
    """The docstring's table, recomputed from its rows (catches an arithmetic slip in the hand-worked case)."""
    def per_token(r: float, a: float, lo: float, hi: float) -> float:
        return -min(r * a, min(max(r, 1 - lo), 1 + hi) * a)

    assert sum(per_token(r, a, CLIP_LOW, CLIP_HIGH) for r, a in zip(RATIOS, ADVANTAGES)) / 4 == pytest.approx(EXPECTED_LOSS)
    assert sum(per_token(r, a, CLIP_HIGH, CLIP_LOW) for r, a in zip(RATIOS, ADVANTAGES)) / 4 == pytest.approx(SWAPPED_LOSS)


@pytest.mark.parametrize("fn", PATHS)
def test_asymmetric_clip_hand_worked(fn) -> None:
    """Loss and hidden-state gradient equal the hand-worked values; swapping clip_low and clip_high gives the
    hand-worked swapped loss (so a kernel that mixes the two up fails)."""
    loss, grad = _run(fn, CLIP_LOW, CLIP_HIGH)
    torch.testing.assert_close(loss, torch.tensor(EXPECTED_LOSS), **tol("loss_math"))
    torch.testing.assert_close(grad, torch.tensor(EXPECTED_GRAD), **tol("loss_math"))
    swapped, swapped_grad = _run(fn, CLIP_HIGH, CLIP_LOW)
    torch.testing.assert_close(swapped, torch.tensor(SWAPPED_LOSS), **tol("loss_math"))
    torch.testing.assert_close(swapped_grad, torch.tensor([0.0, 0.1875, 0.0, -0.125]), **tol("loss_math"))
