"""Encode uint8 RGB frames into a video file with PyAV (the ``segment`` command's overlay video, and the
test videos whose GOP structure the frame-exactness tests depend on)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch

# Codecs whose FFmpeg wrapper takes a constant-quality "crf" option.
_CRF_CODECS = ("libx264", "libx265", "libvpx", "libvpx-vp9", "libsvtav1")
# JPEG-based codecs want full-range YUV.
_FULL_RANGE_CODECS = ("mjpeg",)


def write_video(
    path: str | Path | BinaryIO,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int | None = None,
    crf: int | None = 18,
    pix_fmt: str | None = None,
    container_format: str | None = None,
    encoder_options: dict[str, str] | None = None,
) -> None:
    """Write ``frames`` to ``path``; the container follows the extension (or ``container_format``).

    Args:
        path: output file (.mp4, .mkv, .webm, .avi, .mov) or a binary file object (then give
            ``container_format``).
        frames: uint8 (T, H, W, 3) RGB, T >= 1, tensor (any device) or array. H and W must be even
            for the default 4:2:0 pixel formats.
        fps: frames per second (> 0).
        codec: FFmpeg encoder name, e.g. "libx264", "libvpx-vp9", "mpeg4", "mjpeg".
        gop: keyframe interval in frames. With x264/x265 it is made exact (scene-cut keyframes off),
            which tests rely on to know where keyframes are. None: the encoder's default.
        bframes: most consecutive B-frames (None: the encoder's default; 0: none).
        crf: constant-quality level for encoders that have one (lower is better; ignored by others;
            None: the encoder's default).
        pix_fmt: encoder pixel format (default "yuv420p", "yuvj420p" for mjpeg).
        container_format: FFmpeg muxer name when ``path`` is a file object or has no extension.
        encoder_options: extra FFmpeg encoder options (e.g. ``{"x264-params": "open-gop=1"}``); they
            override the ones derived from the arguments above.

    Raises:
        ValueError: bad frames, fps, gop, bframes or codec, naming the value and what is allowed.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"Invalid frames ({frames.shape} {frames.dtype}): expected uint8 of shape (T, H, W, 3) with T >= 1.")
    if not fps > 0:
        raise ValueError(f"Invalid fps ({fps}): use a positive frame rate.")
    for name, value, low in (("gop", gop, 1), ("bframes", bframes, 0), ("crf", crf, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"Invalid {name} ({value!r}): use an int >= {low}, or None for the encoder's default.")
    try:
        av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise ValueError(f"Invalid codec ({codec!r}): this FFmpeg has no such encoder ({exc}).") from exc
    height, width = frames.shape[1:3]
    pix_fmt = pix_fmt or ("yuvj420p" if codec in _FULL_RANGE_CODECS else "yuv420p")
    if pix_fmt.endswith("420p") and (height % 2 or width % 2):
        raise ValueError(f"Invalid frame size {width}x{height} for pix_fmt {pix_fmt}: 4:2:0 needs even width and height.")

    container = av.open(path if not isinstance(path, Path) else str(path), mode="w", format=container_format)
    try:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(100000))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        options: dict[str, str] = {}
        if crf is not None and codec in _CRF_CODECS:
            options["crf"] = str(crf)
            if codec.startswith("libvpx"):
                options["b"] = "0"  # constant-quality mode in libvpx needs the bitrate target off
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec in ("libx264", "libx265"):
                key = "x264-params" if codec == "libx264" else "x265-params"
                options[key] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        options.update(encoder_options or {})
        stream.codec_context.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    except BaseException:
        container.close()
        if isinstance(path, (str, Path)) and os.path.exists(path):
            os.remove(path)
        raise
    container.close()
