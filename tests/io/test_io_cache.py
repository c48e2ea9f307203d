"""FrameCache against a plain model of its rules, on random operation sequences."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from videoseg_o3.io import FrameCache, FrameCacheConfig

OPS = st.lists(
    st.tuples(st.sampled_from(["put", "put_low", "get"]), st.integers(0, 7), st.integers(1, 5)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, max_frames=st.one_of(st.none(), st.integers(0, 5)), max_bytes=st.one_of(st.none(), st.integers(0, 12)))
def test_cache_keeps_its_budget_and_evicts_low_priority_first(ops, max_frames, max_bytes):
    cache = FrameCache(FrameCacheConfig(max_frames=max_frames, max_bytes=max_bytes))
    for op, key, size in ops:
        if op == "get":
            value = cache.get(key)
            assert value is None or value.numel() == value[0].item()
            continue
        low = op == "put_low"
        requested_before = {k for k in range(8) if k in cache and k not in cache._low}
        cache.put(key, torch.full((size,), size, dtype=torch.uint8), low_priority=low)
        assert max_frames is None or len(cache) <= max_frames
        assert max_bytes is None or cache.nbytes <= max_bytes
        assert cache.nbytes == sum(size for _, size in list(cache._frames.values()) + list(cache._low.values()))
        fits = max_frames != 0 and (max_bytes is None or size <= max_bytes)
        if low:  # a low-priority frame never displaces a requested one: it stays only if both fit
            requested = list(cache._frames.values())
            fits = fits and (max_frames is None or len(requested) + 1 <= max_frames) and (
                max_bytes is None or sum(n for _, n in requested) + size <= max_bytes
            )
        assert (key in cache) == fits
        if cache.num_low_priority and not low:
            # a requested frame was evicted only if no low-priority frame was left to evict instead
            assert requested_before - {key} <= {k for k in range(8) if k in cache}
