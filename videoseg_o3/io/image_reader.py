"""Frames stored as image files: a folder (the benchmarks' ``JPEGImages/<video>/`` layout) or an
explicit list of paths (what the dataset loaders pass).

Why Pillow: it is already a dependency, reads the headers without decoding pixels (so sizes are
checked for every frame at open time, cheaply), and decodes JPEG through libjpeg-turbo.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from videoseg_o3.io.base import VideoReader
from videoseg_o3.io.cache import FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_IMAGE_FPS = 30.0
_DECODE_THREADS = min(4, os.cpu_count() or 1)

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside names numerically: "9.jpg" < "10.jpg", "f2" < "f10"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name) if part != "")


def list_image_folder(folder: str | Path) -> list[Path]:
    """Image files (``IMAGE_EXTENSIONS``, any case) directly inside ``folder``, in natural name order.

    Raises:
        VideoDecodeError: the folder holds no image files.
    """
    folder = Path(folder)
    names = [entry.name for entry in os.scandir(folder) if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)]
    if not names:
        raise VideoDecodeError(folder, f"the folder has no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return [folder / name for name in sorted(names, key=natural_key)]


class ImageFramesReader(VideoReader):
    """Frames from image files, one file per frame, in the given order (folders: natural name order).

    Every file's header is read at open so that a missing file, a non-image or a frame of a different
    size is reported before any work is done; pixels are decoded only when a frame is requested.
    """

    backend = "frames"

    def __init__(self, source: str | Path | Sequence[str | Path], *, fps: float | None = None,
                 cache: FrameCacheConfig | None = None) -> None:
        if isinstance(source, (str, Path)):
            name = str(source)
            paths = list_image_folder(source)
        else:
            paths = [Path(p) for p in source]
            name = f"{paths[0].parent}/[{len(paths)} images]" if paths else "[empty image list]"
            if not paths:
                raise VideoDecodeError(name, "the image list is empty (zero frames)")
        for path in paths:
            if not path.suffix.lower() in IMAGE_EXTENSIONS:
                raise VideoDecodeError(path, f"unsupported image format '{path.suffix}'. Supported: {', '.join(IMAGE_EXTENSIONS)}")
            if not path.is_file():
                raise VideoDecodeError(path, "no such image file")
        size = None
        for path in paths:
            frame_size = _image_size(path)
            if size is None:
                size = frame_size
            elif frame_size != size:
                raise VideoDecodeError(
                    name, f"images of different sizes: '{paths[0].name}' is {size[1]}x{size[0]} (WxH) but '{path.name}' is {frame_size[1]}x{frame_size[0]}"
                )
        if fps is not None and not fps > 0:
            raise VideoDecodeError(name, f"invalid fps ({fps}); use a positive number or None")
        super().__init__(name, num_frames=len(paths), fps=float(fps or DEFAULT_IMAGE_FPS), height=size[0], width=size[1], cache=cache)
        self.paths = paths

    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        # Pillow releases the GIL while it decodes, so a few threads decode a multi-frame request in
        # parallel; frames are independent files, so nothing else is decoded.
        workers = min(len(indices), _DECODE_THREADS)
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                frames = list(pool.map(self._decode_one, indices))
        else:
            frames = [self._decode_one(index) for index in indices]
        self._num_decoded += len(indices)
        return dict(zip(indices, frames))

    def _decode_one(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                array = np.array(image.convert("RGB"))  # a writable copy, owned by the tensor
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoDecodeError(path, f"truncated or corrupt image ({exc})") from exc
        if array.shape[:2] != (self._height, self._width):
            raise VideoDecodeError(path, f"decoded size {array.shape[1]}x{array.shape[0]} differs from the header's")
        return torch.from_numpy(array)


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels."""
    try:
        with Image.open(path) as image:
            if image.format not in ("JPEG", "PNG", "MPO"):  # MPO: multi-picture JPEG from cameras
                raise VideoDecodeError(path, f"unsupported image format {image.format}. Supported: JPEG, PNG")
            width, height = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise VideoDecodeError(path, f"not an image, or a truncated or corrupt one ({exc})") from exc
    return height, width
