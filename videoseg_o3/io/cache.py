"""A bounded least-recently-used cache of decoded frames.

Why bounded: one reader stays open for a whole multi-turn episode (docs/architecture.md#video-io) and a long video at
1080p is ~6 MB per RGB frame, so "keep everything ever decoded" can exhaust host or GPU memory on a
long episode or a dataset pass that reuses readers. Why LRU: the multi-turn protocol revisits recent
frames (a keyframe shown at low and then at high resolution, overlapping intervals), so the most
recently used frames are the likeliest to be asked again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any



@dataclass
class FrameCacheConfig:
    """Budget of a reader's frame cache. A frame is evicted (least recently used first) as soon as
    either limit would be exceeded; a limit of ``None`` means unlimited on that axis."""

    max_frames: int | None = field(
        default=None,
        metadata={"help": "Most frames kept (None: no frame-count limit; 0 disables caching)."},
    )
    max_bytes: int | None = field(
        default=1 << 30,
        metadata={"help": "Most bytes of frame data kept (default 1 GiB; None: no byte limit; 0 disables caching)."},
    )

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(
                    f"Invalid FrameCacheConfig.{name} ({value!r}). Use a non-negative int, or None for no limit."
                )


class FrameCache:
    """LRU map from a key, e.g. (frame index, pixel format), to a decoded frame, within a budget.

    Two tiers share the budget: requested frames, and low-priority frames that a decoder passed
    through on the way to a requested one (kept so that a later request for them decodes nothing).
    Low-priority entries are evicted first, so frames nobody asked for never push out requested ones.
    Not thread-safe on its own; readers guard it with their lock.
    """

    def __init__(self, config: FrameCacheConfig | None = None) -> None:
        self.config = config or FrameCacheConfig()
        self._frames: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._low: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._frames) + len(self._low)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._frames or key in self._low

    @property
    def nbytes(self) -> int:
        """Bytes of frame data currently held (both tiers)."""
        return self._nbytes

    @property
    def num_low_priority(self) -> int:
        """Entries in the low-priority (passed-through) tier."""
        return len(self._low)

    def get(self, key: Hashable) -> Any | None:
        """The cached frame for ``key`` (marked most recently used in its tier), or None."""
        for tier in (self._frames, self._low):
            entry = tier.get(key)
            if entry is not None:
                tier.move_to_end(key)
                return entry[0]
        return None

    def put(self, key: Hashable, frame: Any, nbytes: int | None = None, *, low_priority: bool = False) -> None:
        """Insert ``frame`` as most recently used in its tier, then evict until within budget.

        Args:
            nbytes: the frame's size; computed for tensors, required for other objects.
            low_priority: a frame nobody asked for (evicted before any requested frame).

        A frame larger than the whole byte budget is not kept at all (keeping it would evict everything
        else and still break the budget).
        """
        size = frame.numel() * frame.element_size() if nbytes is None else int(nbytes)
        max_frames, max_bytes = self.config.max_frames, self.config.max_bytes
        self.discard(key)
        if max_frames == 0 or (max_bytes is not None and size > max_bytes):
            return
        (self._low if low_priority else self._frames)[key] = (frame, size)
        self._nbytes += size
        while len(self) and (
            (max_frames is not None and len(self) > max_frames) or (max_bytes is not None and self._nbytes > max_bytes)
        ):
            _, (_, evicted) = (self._low if self._low else self._frames).popitem(last=False)
            self._nbytes -= evicted

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` from either tier if present."""
        for tier in (self._frames, self._low):
            entry = tier.pop(key, None)
            if entry is not None:
                self._nbytes -= entry[1]

    def clear(self) -> None:
        """Drop every frame."""
        self._frames.clear()
        self._low.clear()
        self._nbytes = 0
