"""Encode uint8 RGB frames into a video file with PyAV (the ``segment`` command's overlay video, and the
test videos whose GOP structure the frame-exactness tests depend on).

:class:`VideoWriter` streams: frames arrive in chunks, so an overlay of a long video never holds every
frame in memory. :func:`write_video` writes a whole clip in one call.
"""

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


def _check_int(name: str, value: int | None, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ValueError(f"Invalid {name} ({value!r}): use an int >= {low}, or None for the encoder's default.")



def _as_rgb_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """``frames`` as a host uint8 ``(n, H, W, 3)`` array (n may be 0), or a ValueError naming what is wrong."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Invalid frames ({frames.shape} {frames.dtype}): expected uint8 of shape (n, H, W, 3).")
    return frames

class VideoWriter:
    """Streaming encoder: ``with VideoWriter(path, fps) as w: w.write(chunk)`` for chunks of frames.

    The frame size is fixed by the first chunk. On an exception inside the ``with`` block the partial
    file is removed (a truncated video left behind would later fail to read).

    Args:
        path: output file (.mp4, .mkv, .webm, .avi, .mov) or a binary file object (then give
            ``container_format``).
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
        ValueError: bad fps, gop, bframes, crf, codec or frames, naming the value and what is allowed.
    """

    def __init__(
        self,
        path: str | Path | BinaryIO,
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
        if not fps > 0:
            raise ValueError(f"Invalid fps ({fps}): use a positive frame rate.")
        _check_int("gop", gop, 1)
        _check_int("bframes", bframes, 0)
        _check_int("crf", crf, 0)
        try:
            av.codec.Codec(codec, "w")
        except (av.FFmpegError, ValueError) as exc:
            raise ValueError(f"Invalid codec ({codec!r}): this FFmpeg has no such encoder ({exc}).") from exc
        self.path = path
        self.fps = fps
        self.codec = codec
        self.pix_fmt = pix_fmt or ("yuvj420p" if codec in _FULL_RANGE_CODECS else "yuv420p")
        self.num_frames = 0
        self._gop, self._bframes, self._crf = gop, bframes, crf
        self._encoder_options = dict(encoder_options or {})
        self._container = av.open(str(path) if isinstance(path, Path) else path, mode="w", format=container_format)
        self._stream = None

    def _open_stream(self, height: int, width: int) -> None:
        if self.pix_fmt.endswith("420p") and (height % 2 or width % 2):
            raise ValueError(f"Invalid frame size {width}x{height} for pix_fmt {self.pix_fmt}: 4:2:0 needs even width and height.")
        stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(100000))
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        options: dict[str, str] = {}
        if self._crf is not None and self.codec in _CRF_CODECS:
            options["crf"] = str(self._crf)
            if self.codec.startswith("libvpx"):
                options["b"] = "0"  # constant-quality mode in libvpx needs the bitrate target off
        if self._gop is not None:
            stream.codec_context.gop_size = self._gop
            if self.codec in ("libx264", "libx265"):
                key = "x264-params" if self.codec == "libx264" else "x265-params"
                options[key] = f"keyint={self._gop}:min-keyint={self._gop}:scenecut=0"
        if self._bframes is not None:
            stream.codec_context.max_b_frames = self._bframes
        options.update(self._encoder_options)
        stream.codec_context.options = options
        self._stream = stream

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append uint8 (n, H, W, 3) RGB frames (tensor on any device, or array); n may be 0."""
        frames = _as_rgb_frames(frames)
        if self._stream is None:
            if frames.shape[0] == 0:
                return
            self._open_stream(*frames.shape[1:3])
        elif frames.shape[1:3] != (self._stream.height, self._stream.width):
            raise ValueError(
                f"Invalid frame size {frames.shape[2]}x{frames.shape[1]}: this video is {self._stream.width}x{self._stream.height}."
            )
        for frame in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
        self.num_frames += frames.shape[0]

    def close(self) -> None:
        """Flush the encoder and finish the file. Idempotent.

        Raises:
            ValueError: no frame was written (a video with zero frames is not a readable file).
        """
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            if self._stream is None:
                raise ValueError("Invalid video: no frames were written (write at least one frame before closing).")
            for packet in self._stream.encode():
                container.mux(packet)
        finally:
            container.close()

    def _abort(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if isinstance(self.path, (str, Path)) and os.path.exists(self.path):
            os.remove(self.path)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self.close()
        except BaseException:
            self._abort()
            raise


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
    """Write ``frames``, uint8 (T, H, W, 3) RGB with T >= 1, to ``path`` in one call.

    The container follows the extension (or ``container_format``); the other arguments are those of
    :class:`VideoWriter`. H and W must be even for the default 4:2:0 pixel formats.

    Raises:
        ValueError: bad frames, fps, gop, bframes, crf or codec, naming the value and what is allowed.
    """
    frames = _as_rgb_frames(frames)
    if frames.shape[0] == 0:
        raise ValueError(f"Invalid frames ({frames.shape} {frames.dtype}): expected uint8 of shape (T, H, W, 3) with T >= 1.")
    with VideoWriter(path, fps, codec=codec, gop=gop, bframes=bframes, crf=crf, pix_fmt=pix_fmt,
                     container_format=container_format, encoder_options=encoder_options) as writer:
        writer.write(frames)
