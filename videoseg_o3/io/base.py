"""The reader interface shared by every backend, and the request logic they all reuse.

A reader answers ``get_frames(indices)`` for one video. The base class owns what must behave the
same everywhere: index validation (with an error naming the bad index and the valid range), sorting and
de-duplicating the request (so a backend decodes forward once instead of seeking back and forth),
the bounded frame cache (so a multi-turn episode that asks for more frames decodes only new ones),
and restoring the caller's order (duplicates included). Backends implement ``_decode_frames`` for
sorted, unique, uncached indices only.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from videoseg_o3.io.cache import FrameCache, FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError

PIXEL_FORMATS = ("rgb", "nv12")

FrameIndices = Sequence[int] | np.ndarray | torch.Tensor | range


def normalize_indices(indices: FrameIndices, num_frames: int, source: str) -> list[int]:
    """Check a frame request and turn it into a list of Python ints (order and duplicates kept).

    Raises:
        VideoDecodeError: a non-integer index, a non-1-D array, or an index outside [0, num_frames - 1].
    """
    if isinstance(indices, torch.Tensor):
        if indices.ndim != 1 or indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise VideoDecodeError(source, f"frame indices must be a 1-D integer tensor, got {tuple(indices.shape)} {indices.dtype}")
        values = indices.tolist()
    elif isinstance(indices, np.ndarray):
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise VideoDecodeError(source, f"frame indices must be a 1-D integer array, got shape {indices.shape} {indices.dtype}")
        values = indices.tolist()
    elif isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        raise VideoDecodeError(source, f"frame indices must be a sequence of ints; got the single int {indices} (wrap it in a list)")
    else:
        values = list(indices)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise VideoDecodeError(source, f"frame indices must be ints, got {value!r} ({type(value).__name__})")
        values = [int(v) for v in values]
    for value in values:
        if not 0 <= value < num_frames:
            raise VideoDecodeError(
                source, f"frame index {value} is out of range: valid indices are 0..{num_frames - 1} ({num_frames} frames)"
            )
    return values


class VideoReader(abc.ABC):
    """Frame-exact random access to one video, with a bounded cache of decoded frames.

    Use :func:`videoseg_o3.io.open_video` to get one. A reader is meant to stay open across the turns
    of an episode and is closed with :meth:`close` or a ``with`` block. Calls are serialised by a lock
    (the underlying decoders are not thread-safe).

    Attributes:
        backend: the backend name ("pyav", "torchcodec", "nvdec", "frames", "array").
        supported_pixel_formats: the ``pixel_format`` values :meth:`get_frames` accepts.
    """

    backend: ClassVar[str] = ""
    supported_pixel_formats: ClassVar[tuple[str, ...]] = ("rgb",)

    def __init__(self, source: str, *, num_frames: int, fps: float, height: int, width: int,
                 cache: FrameCacheConfig | None = None) -> None:
        self._source = source
        self._num_frames = num_frames
        self._fps = fps
        self._height = height
        self._width = width
        self._cache = FrameCache(cache)
        # frames the backend produced so far (decoder output, image files decoded): the honest cost
        # measure that the decode-count goal and bench/decode.py are stated in.
        self._num_decoded = 0
        self._lock = threading.Lock()
        self._closed = False

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The path (or a description of an in-memory source) this reader reads."""
        return self._source

    @property
    def num_frames(self) -> int:
        """Exact number of frames (counted, not estimated from duration x fps)."""
        return self._num_frames

    @property
    def fps(self) -> float:
        """Average frame rate in frames per second (nominal for image folders and arrays)."""
        return self._fps

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self._height

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self._width

    @property
    def num_decoded(self) -> int:
        """Frames the backend has decoded so far: the cost measure of the decode-count goal.

        "pyav": every frame its decoder decoded, including frames passed through on the way from a
        keyframe to a requested one; not the non-reference frames it was allowed to drop. A frame
        still in the decoder's reorder buffer when a request returns is counted once its fate is
        known (when the decoder continues, seeks or drains). "frames": image files decoded.
        "torchcodec", "nvdec": frames the library returned (they do not report their internal
        pass-through frames). "array": always 0. Cache hits decode nothing.
        """
        return self._num_decoded

    @property
    def cache(self) -> FrameCache:
        """The reader's frame cache (inspect ``len(reader.cache)``, ``reader.cache.nbytes``)."""
        return self._cache

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return self._num_frames

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self._source!r}, backend={self.backend!r}, num_frames={self._num_frames}, "
            f"fps={self._fps:.3f}, height={self._height}, width={self._width}, num_decoded={self._num_decoded})"
        )

    # -- frames -----------------------------------------------------------------------------------
    def get_frames(self, indices: FrameIndices, *, pixel_format: str = "rgb") -> torch.Tensor:
        """Frames at ``indices``, in the order asked (duplicates allowed).

        Args:
            indices: frame numbers in [0, num_frames - 1] (list, range, 1-D int array or tensor).
            pixel_format: "rgb" (all backends) or "nv12" (video backends: "pyav", "nvdec").

        Returns:
            "rgb": uint8 tensor (n, H, W, 3). "nv12": uint8 tensor (n, H * 3 // 2, W): H rows of Y,
            then H / 2 rows of interleaved U, V (what NVDEC produces; the frame prep consumes it).
            On the CPU, except for "nvdec" (the GPU) and "array" (the array's device).

        Raises:
            VideoDecodeError: bad index, unsupported pixel format, closed reader, or a frame that
                cannot be decoded.
        """
        if pixel_format not in self.supported_pixel_formats:
            raise VideoDecodeError(
                self._source,
                f"invalid pixel_format ({pixel_format!r}) for backend {self.backend!r}. "
                f"Supported values are {', '.join(self.supported_pixel_formats)}.",
            )
        if pixel_format == "nv12" and (self._height % 2 or self._width % 2):
            raise VideoDecodeError(self._source, f"pixel_format 'nv12' needs even frame sizes, got {self._height}x{self._width}")
        wanted = normalize_indices(indices, self._num_frames, self._source)
        with self._lock:
            if self._closed:
                raise VideoDecodeError(self._source, "the reader is closed")
            found: dict[int, torch.Tensor] = {}
            missing = []
            for index in sorted(set(wanted)):
                frame = self._cache.get((index, pixel_format))
                if frame is None:
                    missing.append(index)
                else:
                    found[index] = frame
            if missing:
                decoded = self._decode_frames(missing, pixel_format)
                for index in missing:
                    if index not in decoded:
                        raise VideoDecodeError(self._source, f"frame {index} was not produced by the {self.backend} decoder")
                    self._cache.put((index, pixel_format), decoded[index])
                found.update(decoded)
            if not wanted:
                return self._empty(pixel_format)
            return torch.stack([found[index] for index in wanted])

    def _empty(self, pixel_format: str) -> torch.Tensor:
        shape = (0, self._height, self._width, 3) if pixel_format == "rgb" else (0, self._height * 3 // 2, self._width)
        return torch.empty(shape, dtype=torch.uint8, device=self._output_device())

    def _output_device(self) -> torch.device:
        return torch.device("cpu")

    @abc.abstractmethod
    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        """Decode ``indices`` (sorted, unique, not cached) and return {index: frame}; add to ``_num_decoded``."""

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the decoder and the cached frames. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._cache.clear()
                self._release()

    def _release(self) -> None:
        """Free backend resources (override where there are any)."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down modules already
            pass
