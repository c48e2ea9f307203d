"""qwen_resize_hw agrees with transformers' smart_resize (the rule Qwen-VL processors apply)."""

from __future__ import annotations

import itertools

import pytest
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from videoseg_o3.ops.frame_prep import qwen_resize_hw

# Budgets of docs/architecture.md#the-turn-protocol (low-res, high-res, keyframe) and the processors' own defaults.
BUDGETS = [
    (4 * 28 * 28, 32 * 28 * 28),
    (4 * 28 * 28, 128 * 28 * 28),
    (4 * 28 * 28, 256 * 28 * 28),
    (4 * 28 * 28, 512 * 28 * 28),
    (56 * 56, 28 * 28 * 1280),
    (64 * 32 * 32, 16384 * 32 * 32),
    (100_000, 100_000),
]
SIDES = [1, 2, 13, 27, 28, 29, 42, 56, 99, 135, 240, 360, 427, 480, 719, 720, 1080, 1279, 1920, 3840]


@pytest.mark.parametrize("factor", [28, 32, 14])
@pytest.mark.parametrize("budget", BUDGETS)
def test_matches_transformers_smart_resize(factor: int, budget: tuple[int, int]) -> None:
    min_pixels, max_pixels = budget
    checked = 0
    for h, w in itertools.product(SIDES, SIDES):
        if max(h, w) / min(h, w) > 200:
            continue
        ours = qwen_resize_hw(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        assert ours == tuple(smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)), (h, w)
        assert ours[0] % factor == 0 and ours[1] % factor == 0
        checked += 1
    assert checked > 300


def test_typical_video_frames() -> None:
    assert qwen_resize_hw(720, 1280, factor=28, min_pixels=4 * 784, max_pixels=256 * 784) == (336, 588)
    h, w = qwen_resize_hw(1080, 1920, factor=32, min_pixels=4 * 1024, max_pixels=128 * 1024)
    assert h * w <= 128 * 1024 and h % 32 == 0 and w % 32 == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(height=0, width=10), "Invalid height"),
        (dict(height=10, width=-1), "Invalid width"),
        (dict(height=10.5, width=10), "Invalid height"),
        (dict(height=10, width=10, factor=0), "Invalid factor"),
        (dict(height=10, width=10, min_pixels=10, max_pixels=5), "min_pixels"),
        (dict(height=1, width=201), "aspect ratio"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    full = {"factor": 28, "min_pixels": 100, "max_pixels": 10_000, **kwargs}
    with pytest.raises(ValueError, match=message):
        qwen_resize_hw(full.pop("height"), full.pop("width"), **full)
