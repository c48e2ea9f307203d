"""Tiny random models shared by every test directory: each is built once per test session."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def shared_tiny_policy(family: str):
    """One tiny :class:`videoseg_o3.policy.SegPolicy` per family for the whole session (tests must not modify it)."""
    from videoseg_o3.policy import SegPolicy

    return SegPolicy.tiny(family, seed=0)
