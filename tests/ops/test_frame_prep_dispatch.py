"""Which tier of prepare_frames runs, and how unavailable tiers fail."""

from __future__ import annotations

import pytest
import torch
from frame_prep_cases import IMAGENET_MEAN, IMAGENET_STD, random_rgb

from videoseg_o3 import _ext
from videoseg_o3.device import cuda_available
from videoseg_o3.ops import registered, select_impl
from videoseg_o3.ops.frame_prep import OP_NAME, prepare_frames, prepare_frames_c, prepare_frames_cuda, prepare_frames_ref

FRAMES = random_rgb(2, 6, 8)
ARGS = (FRAMES, None, (4, 4), IMAGENET_MEAN, IMAGENET_STD)
C_READY = _ext.HAS_C and hasattr(_ext.C, "prepare_frames")


def test_all_three_tiers_are_registered() -> None:
    tiers = registered(OP_NAME)
    assert tiers["torch"].fn is prepare_frames_ref
    assert tiers["c"].fn is prepare_frames_c
    assert tiers["cuda"].fn is prepare_frames_cuda
    assert tiers["cuda"].priority > tiers["c"].priority > tiers["torch"].priority


def test_auto_on_cpu_picks_the_compiled_tier_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIDEOSEG_KERNEL_IMPL", raising=False)
    name, _ = select_impl(OP_NAME, ARGS, {})
    assert name == ("c" if C_READY else "torch")


def test_env_var_selects_the_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "torch")
    assert select_impl(OP_NAME, ARGS, {})[0] == "torch"
    torch.testing.assert_close(prepare_frames(*ARGS), prepare_frames_ref(*ARGS), atol=0.0, rtol=0.0)
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "bogus")
    with pytest.raises(ValueError, match="Invalid VIDEOSEG_KERNEL_IMPL"):
        prepare_frames(*ARGS)


def test_explicit_argument_beats_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEG_KERNEL_IMPL", "cuda")
    assert select_impl(OP_NAME, ARGS, {}, impl="torch")[0] == "torch"


@pytest.mark.skipif(cuda_available(), reason="checks the refusal on a machine without CUDA; a GPU runner has CUDA")
def test_explicit_cuda_on_cpu_raises_with_the_reason() -> None:
    with pytest.raises(RuntimeError, match="cuda was requested for 'prepare_frames'.*(unavailable|cannot take)"):
        prepare_frames(*ARGS, impl="cuda")


def test_cuda_tier_refuses_cpu_tensors_directly() -> None:
    with pytest.raises((RuntimeError, ValueError), match="not available|CUDA tensors"):
        prepare_frames_cuda(*ARGS)


def test_triton_is_not_a_tier_of_this_op() -> None:
    with pytest.raises(RuntimeError, match="has only: c, cuda, torch"):
        prepare_frames(*ARGS, impl="triton")
