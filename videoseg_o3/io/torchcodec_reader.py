"""CPU decoding with torchcodec, where it is installed and its FFmpeg libraries load.

torchcodec links against the system's FFmpeg shared libraries (not bundled like PyAV's), so it is
often importable yet unusable; :func:`torchcodec_usable` probes it by decoding a tiny clip once.
Its ``seek_mode="exact"`` does its own keyframe seeking and de-duplication; this reader adds the shared
cache and error handling, and checks its frame count against the packet index so that frame numbers
mean the same thing as with the other backends.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import torch

from videoseg_o3.io.base import VideoReader
from videoseg_o3.io.cache import FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError
from videoseg_o3.io.packet_index import PacketIndex, open_container


@functools.cache
def torchcodec_status() -> str | None:
    """None when torchcodec decodes here, else why not (import error, missing FFmpeg libraries, ...)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError or RuntimeError depending on what is missing
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        decoder = VideoDecoder(_probe_clip(), seek_mode="exact", dimension_order="NHWC")
        frames = decoder.get_frames_at([1]).data
        if tuple(frames.shape) != (1, 16, 16, 3):
            return f"probe decode returned shape {tuple(frames.shape)}"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def torchcodec_usable() -> bool:
    """True when torchcodec imports and decodes a probe clip."""
    return torchcodec_status() is None


def _probe_clip() -> bytes:
    from videoseg_o3.io.writer import write_video

    buffer = io.BytesIO()
    write_video(buffer, torch.zeros(2, 16, 16, 3, dtype=torch.uint8), fps=2, container_format="mp4")
    return buffer.getvalue()


class TorchCodecReader(VideoReader):
    """Reads a video file on the CPU with torchcodec (exact seek mode).

    ``num_decoded`` counts the frames torchcodec returned: it does not report the frames it passes
    through internally between a keyframe and a target.
    """

    backend = "torchcodec"

    def __init__(self, path: str | Path, *, cache: FrameCacheConfig | None = None) -> None:
        path = str(path)
        status = torchcodec_status()
        if status is not None:
            raise VideoDecodeError(path, f"backend 'torchcodec' is not usable here ({status})")
        container, stream = open_container(path)
        try:
            index = PacketIndex.build(container, stream, path)
        finally:
            container.close()
        from torchcodec.decoders import VideoDecoder

        try:
            self._decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC")
        except Exception as exc:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError from C++
            raise VideoDecodeError(path, f"torchcodec cannot open it ({exc})") from exc
        counted = self._decoder.metadata.num_frames
        if counted is not None and counted != index.num_frames:
            raise VideoDecodeError(
                path, f"torchcodec counts {counted} frames but the container has {index.num_frames}; use backend='pyav'"
            )
        super().__init__(path, num_frames=index.num_frames, fps=index.fps, height=index.height, width=index.width, cache=cache)
        self.index = index

    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        try:
            frames = self._decoder.get_frames_at(indices).data
        except Exception as exc:  # noqa: BLE001
            raise VideoDecodeError(self._source, f"truncated or corrupt stream while decoding ({exc})") from exc
        self._num_decoded += len(indices)
        return {index: frames[i].contiguous() for i, index in enumerate(indices)}

    def _release(self) -> None:
        self._decoder = None
