"""Frames already in memory: a uint8 (T, H, W, 3) numpy array or tensor.

Why a reader at all: the episode loop, the segmenter and the tests take a ``VideoReader``; wrapping
arrays lets synthetic videos and pre-decoded clips go through the same code. Nothing is decoded, so
there is no cache (it would only duplicate the array) and ``num_decoded`` stays 0.
"""

from __future__ import annotations

import numpy as np
import torch

from videoseg_o3.io.base import VideoReader
from videoseg_o3.io.cache import FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError
from videoseg_o3.io.image_reader import DEFAULT_IMAGE_FPS


class ArrayReader(VideoReader):
    """Frames from a uint8 (T, H, W, 3) array or tensor; frames come back on the tensor's device."""

    backend = "array"

    def __init__(self, frames: np.ndarray | torch.Tensor, *, fps: float | None = None, name: str = "<array>") -> None:
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        if not isinstance(frames, torch.Tensor):
            raise VideoDecodeError(name, f"expected a numpy array or torch tensor, got {type(frames).__name__}")
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoDecodeError(name, f"expected uint8 frames of shape (T, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
        if frames.shape[0] == 0:
            raise VideoDecodeError(name, "the array has zero frames")
        if frames.shape[1] == 0 or frames.shape[2] == 0:
            raise VideoDecodeError(name, f"the frames are empty ({frames.shape[1]}x{frames.shape[2]})")
        if fps is not None and not fps > 0:
            raise VideoDecodeError(name, f"invalid fps ({fps}); use a positive number or None")
        # no cache: it would only duplicate the array
        super().__init__(name, num_frames=frames.shape[0], fps=float(fps or DEFAULT_IMAGE_FPS),
                         height=frames.shape[1], width=frames.shape[2], cache=FrameCacheConfig(max_frames=0))
        self._frames = frames

    def _output_device(self) -> torch.device:
        return self._frames.device

    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        return {i: self._frames[i] for i in indices}  # views; get_frames stacks them into a new tensor

    def _release(self) -> None:
        self._frames = None
