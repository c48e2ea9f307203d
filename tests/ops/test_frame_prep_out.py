"""``prepare_frames(..., out=buffer)``: every tier writes into the caller's buffer, and bad buffers are refused."""

from __future__ import annotations

import pytest
import torch
from frame_prep_cases import IMAGENET_MEAN, IMAGENET_STD, random_rgb
from tolerances import tol

from videoseg_o3 import _ext
from videoseg_o3.ops.frame_prep import prepare_frames

TIERS = ["torch"] + (["c"] if _ext.HAS_C else [])


@pytest.mark.parametrize("impl", TIERS)
def test_out_buffer_is_filled_and_returned(impl: str) -> None:
    frames = random_rgb(3, 21, 34)
    boxes = torch.tensor([[0.0, 0.0, 34.0, 21.0], [2.0, 3.0, 30.0, 20.0], [5.0, 1.0, 6.0, 2.0]])
    expected = prepare_frames(frames, boxes, (9, 11), IMAGENET_MEAN, IMAGENET_STD, impl="torch")
    out = torch.full((3, 3, 9, 11), float("nan"))
    result = prepare_frames(frames, boxes, (9, 11), IMAGENET_MEAN, IMAGENET_STD, out=out, impl=impl)
    assert result is out
    torch.testing.assert_close(out, expected, **tol("prepare_frames_c"))
    # reused for a second batch: every element is overwritten
    again = prepare_frames(frames.flip(0), boxes, (9, 11), IMAGENET_MEAN, IMAGENET_STD, out=out, impl=impl)
    assert again is out and not torch.isnan(out).any()


@pytest.mark.parametrize(
    "out, kwargs, message",
    [
        (torch.empty(2, 3, 4, 5), {}, "shape"),
        (torch.empty(1, 3, 4, 5, dtype=torch.float64), {}, "dtype"),
        (torch.empty(1, 3, 4, 5), {"out_dtype": torch.float16}, "out_dtype"),
        (torch.empty(1, 3, 5, 4).transpose(2, 3), {}, "contiguous"),
        ([0.0], {}, "torch.Tensor"),
    ],
    ids=["shape", "dtype", "out_dtype", "strided", "not-a-tensor"],
)
@pytest.mark.parametrize("impl", TIERS)
def test_bad_out_buffers_are_refused(impl: str, out, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare_frames(random_rgb(1, 8, 8), None, (4, 5), IMAGENET_MEAN, IMAGENET_STD, out=out, impl=impl, **kwargs)


@pytest.mark.gpu
def test_cuda_out_buffer_matches_c() -> None:
    from videoseg_o3.device import default_device

    device = default_device()
    frames = random_rgb(2, 30, 40)
    out = torch.empty((2, 3, 16, 12), device=device)
    result = prepare_frames(frames.to(device), None, (16, 12), IMAGENET_MEAN, IMAGENET_STD, out=out, impl="cuda")
    assert result is out
    expected = prepare_frames(frames, None, (16, 12), IMAGENET_MEAN, IMAGENET_STD, impl="torch")
    torch.testing.assert_close(out.cpu(), expected, **tol("prepare_frames_cuda"))
