"""Frames for propagation, prepared and encoded one chunk at a time.

sam2's ``init_state`` resizes and normalises every frame of the video up front and keeps them all (at
1024 px that is 12 MiB per frame in float32: 12 GiB for a 1000-frame video), a known pain of SAM2 users.
Propagation visits frames in order (forward from the anchor, then backward from it), so we only ever need
the frames near the current one: :class:`ChunkedFrameFeatures` decodes, prepares and encodes
``chunk_size`` frames at once, in the direction of travel, and drops the previous chunk. Each frame is
decoded and encoded exactly once per forward-then-backward propagation, and the image encoder runs on
batches (faster on GPUs than frame by frame).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class VideoSource(Protocol):
    """What the segmenter needs from a video: ``videoseg_o3.io`` readers satisfy it."""

    @property
    def num_frames(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def width(self) -> int: ...

    def get_frames(self, indices: Sequence[int]) -> Any:
        """uint8 RGB frames ``(n, H, W, 3)`` (torch tensor or numpy array) in the requested order."""
        ...


class TensorVideo:
    """A decoded video held in memory, ``(T, H, W, 3)`` uint8, behind the :class:`VideoSource` interface."""

    def __init__(self, frames: torch.Tensor | np.ndarray) -> None:
        frames = check_uint8_frames(frames, "video")
        if frames.shape[0] == 0:
            raise ValueError("Invalid video (0 frames). A video needs at least one frame.")
        self._frames = frames

    @property
    def num_frames(self) -> int:
        return int(self._frames.shape[0])

    @property
    def height(self) -> int:
        return int(self._frames.shape[1])

    @property
    def width(self) -> int:
        return int(self._frames.shape[2])

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        return self._frames[torch.as_tensor(list(indices), dtype=torch.long)]


def check_uint8_frames(frames: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Validate ``(n, H, W, 3)`` uint8 RGB frames and return them as a torch tensor (no copy for numpy).

    Raises:
        ValueError: wrong type, dtype, rank or channel count; the message names what was found.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"Invalid {name} ({type(frames).__name__}). Expected a uint8 torch tensor or numpy array "
                         "of shape (n, H, W, 3).")
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Invalid {name} ({tuple(frames.shape)} {frames.dtype}). Expected uint8 RGB frames of "
                         "shape (n, H, W, 3).")
    return frames


def as_video_source(video: VideoSource | torch.Tensor | np.ndarray) -> VideoSource:
    """Accept a reader (anything with ``num_frames``, ``height``, ``width``, ``get_frames``) or a uint8
    ``(T, H, W, 3)`` array."""
    if isinstance(video, (torch.Tensor, np.ndarray)):
        return TensorVideo(video)
    if not isinstance(video, VideoSource):
        raise ValueError(
            f"Invalid video ({type(video).__name__}). Supported values are a videoseg_o3.io reader (num_frames, "
            "height, width, get_frames) or a uint8 tensor/array of shape (T, H, W, 3)."
        )
    if video.num_frames < 1:
        raise ValueError(f"Invalid video ({video.num_frames} frames). A video needs at least one frame.")
    return video


# (uint8 frames (n, H, W, 3) on any device) -> sam2 backbone_out of batch n
EncodeFn = Callable[[torch.Tensor], dict[str, list[torch.Tensor]]]


class ChunkedFrameFeatures:
    """Image-encoder outputs for the frames of one video, computed ``chunk_size`` frames at a time.

    Only the current chunk's features are held (its prepared pixels are dropped as soon as the encoder has
    run). ``direction`` says which way the caller is walking: +1 makes a miss at frame t load
    ``[t, t + chunk_size)``, -1 loads ``(t - chunk_size, t]``, so a walk in either direction encodes each
    frame once.

    Attributes:
        num_encoded: frames run through the image encoder so far (the cost measure).
        max_frames_held: the most frames whose pixels or features were alive at once (the memory bound,
            at most ``chunk_size``).
    """

    def __init__(self, video: VideoSource, encode: EncodeFn, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"Invalid chunk_size ({chunk_size}). Use an integer >= 1.")
        self.video = video
        self.num_frames = int(video.num_frames)
        self.chunk_size = chunk_size
        self.direction = 1
        self._encode = encode
        self._start = 0
        self._stop = 0  # the held chunk is [start, stop); empty at first
        self._features: dict[str, list[torch.Tensor]] | None = None
        self.num_encoded = 0
        self.max_frames_held = 0

    def _chunk_range(self, frame_idx: int) -> tuple[int, int]:
        if self.direction >= 0:
            return frame_idx, min(frame_idx + self.chunk_size, self.num_frames)
        return max(frame_idx - self.chunk_size + 1, 0), frame_idx + 1

    def backbone_out(self, frame_idx: int) -> dict[str, list[torch.Tensor]]:
        """sam2 ``backbone_out`` for one frame (batch 1): ``backbone_fpn`` and ``vision_pos_enc`` lists."""
        if not 0 <= frame_idx < self.num_frames:
            raise IndexError(f"frame index {frame_idx} is out of range: valid indices are 0..{self.num_frames - 1}")
        if not self._start <= frame_idx < self._stop:
            self._features = None  # release the previous chunk before the next one is built
            start, stop = self._chunk_range(frame_idx)
            frames = check_uint8_frames(self.video.get_frames(list(range(start, stop))), "decoded frames")
            self.max_frames_held = max(self.max_frames_held, stop - start)
            self._features = self._encode(frames)
            self._start, self._stop = start, stop
            self.num_encoded += stop - start
        i = frame_idx - self._start
        assert self._features is not None
        return {
            "backbone_fpn": [f[i:i + 1] for f in self._features["backbone_fpn"]],
            # one shared copy when the encoder kept a single position encoding for the whole chunk
            "vision_pos_enc": [p if p.shape[0] == 1 else p[i:i + 1] for p in self._features["vision_pos_enc"]],
        }

    def release(self) -> None:
        """Drop the held chunk (end of propagation)."""
        self._features = None
        self._start = self._stop = 0


def prepare_frames_reference(frames: torch.Tensor | np.ndarray, size: int, mean: Sequence[float],
                             std: Sequence[float]) -> torch.Tensor:
    """SAM2 input exactly as the released VideoSEG-O3 evaluation prepares it: uint8 ``(n, H, W, 3)`` ->
    float32 ``(n, 3, size, size)`` on the CPU.

    Each frame is resized to ``size x size`` by PIL's ``Image.resize`` with its default filter (bicubic,
    aspect ratio not kept), rounded back to uint8 by PIL, divided by 255, and normalised with ``mean`` and
    ``std`` *rounded to bfloat16*, because the released ``preprocess_image`` builds them as bf16 tensors.
    The caller casts the result to bf16 to reproduce the released precision. Slower than the fused
    frame preparation (a PIL round trip per frame on the host); used for released checkpoints so that
    their masks match the authors' evaluation.
    """
    from PIL import Image

    frames = check_uint8_frames(frames, "frames").cpu()
    resized = [np.asarray(Image.fromarray(frame.numpy()).resize((size, size))) for frame in frames]
    pixels = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
    mean_t = torch.tensor(mean, dtype=torch.bfloat16).float().view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.bfloat16).float().view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t
