"""Generated test videos whose frames carry their own index, so a decoded frame says which frame it is.

Each frame shows its index as 16 bits, one black or white 16x16 block per bit (two rows of eight along
the top), over a gradient that moves every frame (so the encoder has real motion to predict and
B-frames to build). Blocks this large survive lossy compression: the decoded index is exact.
``gray=True`` makes the gradient colourless, so RGB from two decoders can be compared pixel by pixel
without their different chroma upsampling filters mattering.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

BLOCK = 16
BITS = 16


def _triangle(values: np.ndarray) -> np.ndarray:
    """A continuous 0..255..0 wave (no wrap-around edges that would make compression noisy)."""
    return np.abs((values % 510) - 255)


def index_frames(num_frames: int, height: int = 96, width: int = 128, start: int = 0, gray: bool = False) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames; frame t carries the index ``start + t``."""
    assert height >= 2 * BLOCK + 8 and width >= 8 * BLOCK
    ys, xs = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        i = start + t
        frame = frames[t]
        frame[..., 0] = _triangle(xs * 2 + ys + 3 * i)
        frame[..., 1] = frame[..., 0] if gray else _triangle(ys * 2 + 5 * i)
        frame[..., 2] = frame[..., 0] if gray else _triangle(xs + ys * 3 + 7 * i)
        for bit in range(BITS):
            row, col = divmod(bit, 8)
            value = 255 if (i >> bit) & 1 else 0
            frame[row * BLOCK:(row + 1) * BLOCK, col * BLOCK:(col + 1) * BLOCK] = value
    return torch.from_numpy(frames)


def read_index(frame: torch.Tensor) -> int:
    """The index a decoded (H, W, 3) uint8 frame carries (CPU or CUDA)."""
    frame = frame.cpu().to(torch.float32)
    index = 0
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        centre = frame[row * BLOCK + 4:(row + 1) * BLOCK - 4, col * BLOCK + 4:(col + 1) * BLOCK - 4]
        if centre.mean() > 127.5:
            index |= 1 << bit
    return index


def read_indices(frames: torch.Tensor) -> list[int]:
    """Indices carried by each frame of a (n, H, W, 3) batch."""
    return [read_index(frame) for frame in frames]


def sequential_decode(path: Path, pixel_format: str = "rgb24") -> list[torch.Tensor]:
    """Every frame of ``path`` decoded front to back with plain PyAV: the ground truth for exactness."""
    with av.open(str(path)) as container:
        return [torch.from_numpy(frame.to_ndarray(format=pixel_format)) for frame in container.decode(video=0)]
