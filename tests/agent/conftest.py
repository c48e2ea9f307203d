"""Tiny policies and small videos shared by the agent tests."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_models import shared_tiny_policy
from videoseg_o3.policy import SegPolicy


@pytest.fixture(scope="session", params=["qwen3_vl", "qwen2_5_vl"])
def tiny_policy(request: pytest.FixtureRequest) -> SegPolicy:
    return shared_tiny_policy(request.param)


def random_video(num_frames: int = 30, height: int = 96, width: int = 128, seed: int = 0):
    from videoseg_o3.io.array_reader import ArrayReader

    g = torch.Generator().manual_seed(seed)
    return ArrayReader(torch.randint(0, 256, (num_frames, height, width, 3), generator=g, dtype=torch.uint8))
