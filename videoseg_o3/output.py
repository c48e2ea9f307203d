"""Writing a segmentation result to disk: mask PNGs and an overlay video.

Kept apart from the pipeline so the CLI, the model evaluation and the benchmarks write the same files.
The overlay is streamed in chunks: a long 1080p video does not fit in memory as one array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

OVERLAY_COLOR = (255, 64, 32)
OVERLAY_ALPHA = 0.5
OVERLAY_CHUNK = 32


def frame_names(reader: Any) -> list[str]:
    """Per-frame file stems: the source image names for image readers, else ``00000``, ``00001``, ..."""
    paths = getattr(reader, "paths", None)
    if paths is not None and len(paths) == reader.num_frames:
        return [Path(p).stem for p in paths]
    return [f"{i:05d}" for i in range(int(reader.num_frames))]


def write_mask_folder(folder: str | Path, masks: torch.Tensor | np.ndarray, names: Sequence[str]) -> int:
    """Write ``masks`` ``(T, H, W)`` (bool, or nonzero = foreground) as ``folder/<name>.png`` (0/255),
    one per frame; returns the number of PNGs written."""
    from videoseg_o3.data.masks import write_mask_png

    array = masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if array.ndim != 3:
        raise ValueError(f"Invalid masks shape {array.shape}. Expected (T, H, W).")
    if len(names) != array.shape[0]:
        raise ValueError(f"Invalid names: {len(names)} names for {array.shape[0]} masks.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in zip(names, array):
        write_mask_png(folder / f"{name}.png", mask)
    return len(names)


def blend(frames: torch.Tensor, masks: torch.Tensor, *, color: tuple[int, int, int] = OVERLAY_COLOR,
          alpha: float = OVERLAY_ALPHA) -> torch.Tensor:
    """Frames ``(n, H, W, 3) uint8`` with ``color`` blended at ``alpha`` where ``masks`` ``(n, H, W) bool`` is set."""
    out = frames.float()
    tint = torch.tensor(color, dtype=torch.float32)
    out[masks] = (1 - alpha) * out[masks] + alpha * tint
    return out.round().clamp(0, 255).to(torch.uint8)


def overlay_size(reader: Any) -> tuple[int, int]:
    """``(H, W)`` of the overlay video :func:`write_overlay_video` writes for ``reader``: the video's size,
    rounded up to even sides (4:2:0 video, the format every player reads, needs them)."""
    height, width = int(reader.height), int(reader.width)
    return height + height % 2, width + width % 2


def write_overlay_video(path: str | Path, reader: Any, masks: torch.Tensor, *, fps: float | None = None) -> None:
    """Encode the video with its masks blended in, reading and blending ``OVERLAY_CHUNK`` frames at a time.

    Odd frame sizes are padded by one pixel, repeating the edge (4:2:0 video needs even sides; see
    :func:`overlay_size`): the overlay of a 53x37 video is 54x38. Masks are never padded.
    """
    from videoseg_o3.io import VideoWriter

    num_frames = int(reader.num_frames)
    if masks.shape[0] != num_frames:
        raise ValueError(f"Invalid masks: {masks.shape[0]} masks for a video of {num_frames} frames.")
    height, width = int(reader.height), int(reader.width)
    pad_h, pad_w = height % 2, width % 2
    with VideoWriter(path, fps=fps or float(reader.fps or 30.0)) as writer:
        for start in range(0, num_frames, OVERLAY_CHUNK):
            indices = list(range(start, min(start + OVERLAY_CHUNK, num_frames)))
            frames = blend(reader.get_frames(indices).cpu(), masks[start : indices[-1] + 1])
            if pad_h or pad_w:
                frames = torch.from_numpy(np.pad(frames.numpy(), ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge"))
            writer.write(frames)
