"""Tiny policies shared by the policy tests (building one takes a few seconds: share them)."""

from __future__ import annotations

import pytest

from tests.tiny_models import shared_tiny_policy
from videoseg_o3.policy import SegPolicy


@pytest.fixture(scope="session", params=["qwen3_vl", "qwen2_5_vl"])
def tiny_policy(request: pytest.FixtureRequest) -> SegPolicy:
    return shared_tiny_policy(request.param)
