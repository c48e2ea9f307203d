"""Choosing a backend for a source, and the list of backends usable on this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from videoseg_o3.io.base import VideoReader
from videoseg_o3.io.cache import FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
BACKENDS = ("auto", "pyav", "torchcodec", "nvdec", "frames", "array")
_FILE_BACKENDS = ("pyav", "torchcodec", "nvdec")


def available_backends() -> list[str]:
    """Backends that work on this machine, in order of preference for their kind of source.

    "pyav", "frames" and "array" are always listed; "torchcodec" when it imports and decodes (it needs
    the system FFmpeg libraries); "nvdec" when a CUDA device is visible and PyNvVideoCodec imports.
    """
    from videoseg_o3.io.nvdec_reader import nvdec_usable
    from videoseg_o3.io.torchcodec_reader import torchcodec_usable

    backends = ["pyav"]
    if torchcodec_usable():
        backends.append("torchcodec")
    if nvdec_usable():
        backends.append("nvdec")
    return backends + ["frames", "array"]


def open_video(
    source: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray | torch.Tensor,
    backend: str = "auto",
    *,
    cache: FrameCacheConfig | None = None,
    fps: float | None = None,
    device: str | torch.device | None = None,
) -> VideoReader:
    """Open a video for frame-exact random access.

    Args:
        source: a video file (.mp4, .mkv, .webm, .avi, .mov); a folder of JPEG/PNG frames (sorted by
            name, numbers numerically, e.g. ``JPEGImages/<video>/``); a list of image paths (frame order
            = list order); or a uint8 (T, H, W, 3) numpy array or tensor.
        backend: "auto" (files: "pyav"; folders and lists: "frames"; arrays: "array"), or one of
            "pyav", "torchcodec", "nvdec", "frames", "array". NVDEC is never picked automatically:
            it returns CUDA tensors, which callers must ask for.
        cache: the frame cache budget (default: 1 GiB, LRU).
        fps: nominal frame rate of image folders, lists and arrays (default 30); video files carry
            their own and reject this argument.
        device: CUDA device for "nvdec" (default: the current one).

    Returns:
        A :class:`VideoReader`; close it (or use ``with``) to release the decoder.

    Raises:
        VideoDecodeError: unknown backend, missing path, unsupported extension, unusable backend,
            a source the backend cannot read, or a file that is not a readable video.
    """
    if backend not in BACKENDS:
        raise VideoDecodeError(_describe(source), f"invalid backend ({backend!r}). Supported values are {', '.join(BACKENDS)}.")

    if isinstance(source, (np.ndarray, torch.Tensor)):
        _check_backend(backend, "array", source, "in-memory frames")
        from videoseg_o3.io.array_reader import ArrayReader

        return ArrayReader(source, fps=fps)

    if isinstance(source, (list, tuple)):
        _check_backend(backend, "frames", source, "a list of image paths")
        from videoseg_o3.io.image_reader import ImageFramesReader

        return ImageFramesReader([Path(p) for p in source], fps=fps, cache=cache)

    if not isinstance(source, (str, os.PathLike)):
        raise VideoDecodeError(
            repr(source)[:80],
            f"unsupported source type {type(source).__name__}: use a path, a list of image paths, or a uint8 (T, H, W, 3) array/tensor",
        )
    path = Path(source)
    if not path.exists():
        raise VideoDecodeError(path, "no such file or folder")
    if path.is_dir():
        _check_backend(backend, "frames", path, "a folder")
        from videoseg_o3.io.image_reader import ImageFramesReader

        return ImageFramesReader(path, fps=fps, cache=cache)

    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoDecodeError(
            path,
            f"unsupported format '{path.suffix or '(no extension)'}'. Supported video files: {', '.join(VIDEO_EXTENSIONS)}; "
            "or pass a folder or list of .jpg/.jpeg/.png frames",
        )
    if fps is not None:
        raise VideoDecodeError(path, "fps applies to image folders, lists and arrays only; a video file has its own frame rate")
    if backend == "auto":
        backend = "pyav"
    if backend not in _FILE_BACKENDS:
        raise VideoDecodeError(path, f"backend {backend!r} cannot read a video file. Use one of {', '.join(_FILE_BACKENDS)}.")
    if backend == "pyav":
        from videoseg_o3.io.pyav_reader import PyAVReader

        return PyAVReader(path, cache=cache)
    if backend == "torchcodec":
        from videoseg_o3.io.torchcodec_reader import TorchCodecReader

        return TorchCodecReader(path, cache=cache)
    from videoseg_o3.io.nvdec_reader import NvdecReader

    return NvdecReader(path, cache=cache, device=device)


def _check_backend(backend: str, wanted: str, source: object, kind: str) -> None:
    if backend not in ("auto", wanted):
        raise VideoDecodeError(_describe(source), f"backend {backend!r} cannot read {kind}. Use backend='{wanted}' or 'auto'.")


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"<array {tuple(source.shape)}>"
    if isinstance(source, (list, tuple)):
        return f"[{len(source)} image paths]"
    return type(source).__name__
