"""The GOP floor: the fewest frames any exact decoder must decode to output a given set of frames.

A compressed stream cannot be entered anywhere: decoding starts at a keyframe, and a frame needs every
frame it references decoded first. From the packets alone (no decoding) we know, in decode order, each
frame's presentation index and whether it is a keyframe. With the classic I/P/B structure the
*anchors* (I and P frames, the ones a decoder outputs in the order it decodes them) are the reference
chain of their GOP, and a B-frame, presented before an anchor that was decoded earlier, references the
anchors around it and nothing references it. So to output frame ``f`` a decoder needs at least:
the keyframe that opens ``f``'s GOP (in decode order), every anchor decoded between that keyframe and
``f``, and ``f`` itself. The floor is the size of the union of those sets over the requested frames.

It is a lower bound for any exact decoder (seek + decode forward, NVDEC, a smarter skip policy): a
stream with referenced B-frames (x264's b-pyramid) or open GOPs needs more, never less. For image
sequences (JPEG folders) and arrays every frame stands alone: the floor is the number of distinct frames.

Why hand-written: FFmpeg exposes packet flags and timestamps (which PyAV gives us) but no "frames
needed for frame f" query; the computation is a few lines over that packet list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class StreamLayout:
    """Frame order and keyframes of one video stream.

    Attributes:
        presentation: ``(N,)`` int64, presentation index of the frame at each decode position.
        keyframe: ``(N,)`` bool, whether the frame at each decode position is a keyframe.
    """

    presentation: np.ndarray
    keyframe: np.ndarray

    def __post_init__(self) -> None:
        n = int(self.presentation.shape[0])
        if self.keyframe.shape != (n,):
            raise ValueError(f"Invalid layout: {n} presentation indices but {self.keyframe.shape[0]} keyframe flags.")
        if n and sorted(self.presentation.tolist()) != list(range(n)):
            raise ValueError("Invalid layout: presentation indices must be a permutation of 0..N-1.")

    @property
    def num_frames(self) -> int:
        return int(self.presentation.shape[0])

    @classmethod
    def intra_only(cls, num_frames: int) -> "StreamLayout":
        """Every frame a keyframe, decoded in presentation order (image folders, arrays, MJPEG)."""
        return cls(np.arange(num_frames, dtype=np.int64), np.ones(num_frames, dtype=bool))

    @classmethod
    def from_packets(cls, pts_in_decode_order: Iterable[int], keyframe_flags: Iterable[bool]) -> "StreamLayout":
        """From per-packet presentation timestamps and keyframe flags, in decode (demux) order."""
        pts = np.asarray(list(pts_in_decode_order), dtype=np.int64)
        flags = np.asarray(list(keyframe_flags), dtype=bool)
        presentation = np.empty(pts.shape[0], dtype=np.int64)
        presentation[np.argsort(pts, kind="stable")] = np.arange(pts.shape[0])
        return cls(presentation, flags)

    @classmethod
    def from_file(cls, path: str | Path) -> "StreamLayout":
        """Demux ``path`` (no decoding) with PyAV and read each packet's timestamp and keyframe flag."""
        import av

        pts: list[int] = []
        flags: list[bool] = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                pts.append(int(ts))
                flags.append(bool(packet.is_keyframe))
        return cls.from_packets(pts, flags)

    def anchors(self) -> np.ndarray:
        """``(N,)`` bool per decode position: an I/P frame, i.e. presented after everything decoded before it."""
        n = self.num_frames
        if n == 0:
            return np.zeros(0, dtype=bool)
        running_max = np.maximum.accumulate(self.presentation)
        earlier_max = np.concatenate([[-1], running_max[:-1]])
        return (self.presentation > earlier_max) | self.keyframe


def gop_floor(layout: StreamLayout, frames: Iterable[int]) -> int:
    """Fewest decodes any exact decoder needs to output ``frames`` (presentation indices; repeats ignored).

    Raises:
        ValueError: a frame index outside ``0..N-1``.
    """
    wanted = sorted({int(f) for f in frames})
    n = layout.num_frames
    if wanted and (wanted[0] < 0 or wanted[-1] >= n):
        raise ValueError(f"Invalid frames ({wanted[0]}..{wanted[-1]}): the stream has frames 0..{n - 1}.")
    decode_position = np.empty(n, dtype=np.int64)
    decode_position[layout.presentation] = np.arange(n)
    anchors = layout.anchors()
    needed = np.zeros(n, dtype=bool)
    keyframe_positions = np.flatnonzero(layout.keyframe)
    for frame in wanted:
        d = int(decode_position[frame])
        k = int(np.searchsorted(keyframe_positions, d, side="right")) - 1
        start = int(keyframe_positions[k]) if k >= 0 else 0  # no keyframe before it: from the stream start
        needed[start:d + 1] |= anchors[start:d + 1]
        needed[d] = True
    return int(needed.sum())
