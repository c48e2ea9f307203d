"""The fused [SEG] calibration kernel against its torch reference, and the reference against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from kernels.seg_calibration import REFERENCE_CODE_THRESHOLD, seg_calibration, seg_calibration_ref, seg_calibration_triton
from tests.kernels.kernel_cases import KERNEL_DEVICE, assert_lowp, assert_match
from tests.tolerances import TOL

# (current h, w, rollout h', w'): SAM2's 256 x 256 low-res logits, odd sides, upsampling, 1 x 1, identity.
SHAPES = [(64, 48, 37, 90), (7, 5, 3, 40), (1, 1, 32, 32), (32, 32, 32, 32), (257, 100, 5, 5)]


def _inputs(h: int, w: int, h2: int, w2: int, n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, h, w, generator=g) * 3).to(KERNEL_DEVICE), (torch.randn(n, h2, w2, generator=g) * 2).to(KERNEL_DEVICE)


def _value_and_grad(fn, cur: torch.Tensor, roll: torch.Tensor, weights: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    x = cur.detach().clone().requires_grad_()
    m = fn(x, roll, **kw)
    (m * weights).sum().backward()
    return m.detach(), x.grad


@pytest.mark.triton
@pytest.mark.parametrize("compat_threshold", [None, REFERENCE_CODE_THRESHOLD], ids=["logit0", "compat0.5"])
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_triton_matches_reference(shape, compat_threshold) -> None:
    cur, roll = _inputs(*shape)
    weights = torch.tensor([1.0, -2.0, 0.5], device=KERNEL_DEVICE)
    m_ref, g_ref = _value_and_grad(seg_calibration_ref, cur, roll, weights, compat_threshold=compat_threshold)
    m_tri, g_tri = _value_and_grad(seg_calibration_triton, cur, roll, weights, compat_threshold=compat_threshold)
    ctx = f"shape={shape} threshold={compat_threshold}"
    assert_match("m", m_tri, m_ref, "triton_fp32", ctx)
    assert_match("grad_mask_logits", g_tri, g_ref, "triton_fp32_grad", ctx)


@pytest.mark.triton
def test_triton_other_grid_size_and_strided_input() -> None:
    cur, roll = _inputs(40, 30, 21, 21, n=2, seed=1)
    cur_t = cur.transpose(1, 2)  # non-contiguous view: strides are passed to the kernel
    weights = torch.tensor([1.0, 1.0], device=KERNEL_DEVICE)
    m_ref, g_ref = _value_and_grad(seg_calibration_ref, cur_t, roll, weights, size=13)
    m_tri, g_tri = _value_and_grad(seg_calibration_triton, cur_t, roll, weights, size=13)
    assert_match("m", m_tri, m_ref, "triton_fp32", "size 13, transposed")
    assert_match("grad_mask_logits", g_tri, g_ref, "triton_fp32_grad", "size 13, transposed")


@pytest.mark.triton
def test_triton_bf16_within_twice_plain_torch_error() -> None:
    cur, roll = _inputs(64, 64, 64, 64, seed=2)
    cur = cur.bfloat16()
    weights = torch.tensor([1.0, -1.0, 2.0], device=KERNEL_DEVICE)
    m32, g32 = _value_and_grad(seg_calibration_ref, cur.float(), roll, weights)
    m_plain, g_plain = _value_and_grad(lambda x, r, **k: -torch.nn.functional.binary_cross_entropy_with_logits(
        torch.nn.functional.interpolate(x[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0],
        (torch.nn.functional.interpolate(r[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0] > 0).to(x.dtype),
        reduction="none").mean((-2, -1)), cur, roll, weights)
    m_tri, g_tri = _value_and_grad(seg_calibration_triton, cur, roll, weights)
    assert g_tri.dtype == torch.bfloat16
    assert_lowp("m", m_tri, m_plain, m32, "bf16")
    assert_lowp("grad_mask_logits", g_tri, g_plain, g32, "bf16")


@pytest.mark.triton
def test_triton_no_masks() -> None:
    cur, roll = torch.zeros(0, 8, 8, device=KERNEL_DEVICE, requires_grad=True), torch.zeros(0, 9, 9, device=KERNEL_DEVICE)
    m = seg_calibration_triton(cur, roll)
    m.sum().backward()
    assert m.shape == (0,) and cur.grad.shape == (0, 8, 8)


def test_reference_by_hand_constant_logits() -> None:
    """All-foreground rollout and constant current logits c: m = log sigmoid(c); gradient spreads evenly."""
    c = 1.3
    cur = torch.full((1, 64, 64), c, requires_grad=True)
    roll = torch.full((1, 16, 16), 5.0)
    m = seg_calibration_ref(cur, roll)
    atol, rtol = TOL["loss_math"]
    torch.testing.assert_close(m, torch.tensor([math.log(1 / (1 + math.exp(-c)))]), atol=atol, rtol=rtol)
    m.sum().backward()
    # d m / d z = (1 - sigmoid(c)) / 1024 per grid cell, and each cell's four bilinear weights sum to 1,
    # so the input pixels' gradients sum to 1 - sigmoid(c).
    torch.testing.assert_close(cur.grad.sum(), torch.tensor(1 - 1 / (1 + math.exp(-c))), atol=atol, rtol=rtol)


def test_compat_threshold_changes_pixels_between_0_and_0_5() -> None:
    """The reference code's 0.5-on-logits threshold drops pixels whose logits lie in (0, 0.5]."""
    cur = torch.full((1, 32, 32), 2.0)
    roll = torch.full((1, 32, 32), 0.3)  # foreground at logit 0, background at the compat 0.5
    m_intended = seg_calibration_ref(cur, roll)
    m_compat = seg_calibration_ref(cur, roll, compat_threshold=REFERENCE_CODE_THRESHOLD)
    atol, rtol = TOL["loss_math"]
    torch.testing.assert_close(m_intended, torch.tensor([-math.log1p(math.exp(-2.0))]), atol=atol, rtol=rtol)
    torch.testing.assert_close(m_compat, torch.tensor([-math.log1p(math.exp(2.0))]), atol=atol, rtol=rtol)


def test_front_end_runs_anywhere() -> None:
    cur, roll = _inputs(20, 20, 10, 10, n=2)
    atol, rtol = TOL["triton_fp32"]
    torch.testing.assert_close(seg_calibration(cur, roll), seg_calibration_ref(cur, roll), atol=atol, rtol=rtol)


@pytest.mark.parametrize(
    "cur,roll,kw,message",
    [
        (torch.zeros(2, 8), torch.zeros(2, 8, 8), {}, "must be \\(n, h, w\\)"),
        (torch.zeros(2, 8, 8), torch.zeros(3, 8, 8), {}, "2 current masks but 3 rollout masks"),
        (torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), {"size": 0}, "Invalid size \\(0\\)"),
        (torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2, 8, 8), {}, "must be floating point"),
    ],
)
def test_bad_arguments_are_named(cur, roll, kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        seg_calibration_ref(cur, roll, **kw)
