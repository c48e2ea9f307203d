"""A bounded least-recently-used cache of decoded frames.

Why bounded: one reader stays open for a whole multi-turn episode (design.md §5) and a long video at
1080p is ~6 MB per RGB frame, so "keep everything ever decoded" can exhaust host or GPU memory on a
long episode or a dataset pass that reuses readers. Why LRU: the multi-turn protocol revisits recent
frames (a keyframe shown at low and then at high resolution, overlapping intervals), so the most
recently used frames are the likeliest to be asked again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch


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
    """LRU map from a key (frame index, pixel format) to a decoded frame tensor, within a budget.

    Not thread-safe on its own; readers guard it with their lock.
    """

    def __init__(self, config: FrameCacheConfig | None = None) -> None:
        self.config = config or FrameCacheConfig()
        self._frames: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._frames

    @property
    def nbytes(self) -> int:
        """Bytes of frame data currently held."""
        return self._nbytes

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The cached frame for ``key`` (marked most recently used), or None."""
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
        return frame

    def put(self, key: Hashable, frame: torch.Tensor) -> None:
        """Insert ``frame`` as most recently used, then evict until within budget.

        A frame larger than the whole byte budget is not kept at all (keeping it would evict everything
        else and still break the budget).
        """
        size = frame.numel() * frame.element_size()
        max_frames, max_bytes = self.config.max_frames, self.config.max_bytes
        if max_frames == 0 or (max_bytes is not None and size > max_bytes):
            return
        old = self._frames.pop(key, None)
        if old is not None:
            self._nbytes -= old.numel() * old.element_size()
        self._frames[key] = frame
        self._nbytes += size
        while self._frames and (
            (max_frames is not None and len(self._frames) > max_frames)
            or (max_bytes is not None and self._nbytes > max_bytes)
        ):
            _, evicted = self._frames.popitem(last=False)
            self._nbytes -= evicted.numel() * evicted.element_size()

    def clear(self) -> None:
        """Drop every frame."""
        self._frames.clear()
        self._nbytes = 0
