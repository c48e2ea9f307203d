"""Tiny policies shared by the policy tests (building one takes a few seconds: share them)."""

from __future__ import annotations

import functools

import pytest

from videoseg_o3.policy import SegPolicy


@functools.lru_cache(maxsize=None)
def shared_tiny_policy(family: str) -> SegPolicy:
    """One tiny policy per family for the whole test session (tests must not modify it)."""
    return SegPolicy.tiny(family, seed=0)


@pytest.fixture(scope="session", params=["qwen3_vl", "qwen2_5_vl"])
def tiny_policy(request: pytest.FixtureRequest) -> SegPolicy:
    return shared_tiny_policy(request.param)
