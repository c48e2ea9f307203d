"""Importing `kernels` registers every tier with the library's dispatcher; VIDEOSEG_KERNEL_IMPL picks one."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import _triton_support
from kernels.grpo_loss import grpo_loss_ref, triton_linear_grpo_loss
from kernels.seg_calibration import seg_calibration_ref, seg_calibration_triton
from tests.kernels.kernel_cases import KERNEL_DEVICE, assert_match, make_grpo_problem
from videoseg_o3.ops import dispatch, registered, select_impl

OPS = {"grpo_loss": (grpo_loss_ref, triton_linear_grpo_loss), "seg_calibration": (seg_calibration_ref, seg_calibration_triton)}


@pytest.mark.parametrize("op", sorted(OPS))
def test_import_registers_torch_and_triton_tiers(op) -> None:
    tiers = registered(op)
    assert set(tiers) >= {"torch", "triton"}, tiers
    ref, fast = OPS[op]
    assert tiers["torch"].fn is ref and tiers["torch"].priority == 0
    assert tiers["triton"].fn is fast and tiers["triton"].priority == kernels.TRITON_PRIORITY
    assert tiers["triton"].unavailable_reason == _triton_support.unavailable_reason()


def test_torch_tier_by_environment(monkeypatch) -> None:
    problem = make_grpo_problem(n=7, num_seqs=2)
    args = (problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages)
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "torch")
    assert select_impl("grpo_loss", args, problem.kwargs)[0] == "torch"
    loss, _ = dispatch("grpo_loss", *args, **problem.kwargs)
    expected, _ = grpo_loss_ref(*args, **problem.kwargs)
    assert torch.equal(loss, expected)


def test_triton_tier_refuses_what_it_cannot_take(monkeypatch) -> None:
    """An explicit triton request for unusable inputs raises (never a silent fallback)."""
    problem = make_grpo_problem(n=4, num_seqs=1)
    args = (problem.hidden.double(), problem.weight.double(), problem.target_ids, problem.loss_mask, problem.advantages)
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "triton")
    with pytest.raises(RuntimeError, match="triton"):
        dispatch("grpo_loss", *args, **problem.kwargs)
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "auto")
    assert select_impl("grpo_loss", args, problem.kwargs)[0] == "torch"


@pytest.mark.triton
def test_triton_tier_by_environment(monkeypatch) -> None:
    problem = make_grpo_problem(n=9, num_seqs=2, seed=3)
    args = (problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages)
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "triton")
    assert select_impl("grpo_loss", args, problem.kwargs)[0] == "triton"
    loss, logps = dispatch("grpo_loss", *args, **problem.kwargs)
    loss_ref, logps_ref = grpo_loss_ref(*args, **problem.kwargs)
    assert_match("loss", loss, loss_ref, "triton_fp32", "dispatch triton")
    assert_match("logps", logps, logps_ref, "triton_fp32", "dispatch triton")
    cur, roll = torch.randn(2, 16, 16, device=KERNEL_DEVICE), torch.randn(2, 8, 8, device=KERNEL_DEVICE)
    assert select_impl("seg_calibration", (cur, roll), {})[0] == "triton"
    assert_match("m", dispatch("seg_calibration", cur, roll), seg_calibration_ref(cur, roll), "triton_fp32", "dispatch triton")


@pytest.mark.triton
def test_auto_prefers_the_fast_tier_only_when_compiled(monkeypatch) -> None:
    problem = make_grpo_problem(n=5, num_seqs=1)
    args = (problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages)
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "auto")
    expected = "torch" if _triton_support.INTERPRET else "triton"
    assert select_impl("grpo_loss", args, problem.kwargs)[0] == expected
