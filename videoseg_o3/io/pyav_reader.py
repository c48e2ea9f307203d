"""CPU decoding with PyAV (FFmpeg bundled in the wheel), frame-exact via the packet index.

Why PyAV and not a hand-written demux/decode loop in C++: PyAV already releases the GIL while FFmpeg
decodes, ships its own FFmpeg (no system libraries needed) and exposes packets, keyframe flags and
timestamps, which is all the exact seeking below needs.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from videoseg_o3.io.base import VideoReader
from videoseg_o3.io.cache import FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError
from videoseg_o3.io.packet_index import DecodeRun, PacketIndex, open_container

_AV_FORMATS = {"rgb": "rgb24", "nv12": "nv12"}
# FFmpeg decoders that read ``skip_frame`` for every frame they decode. Others (libdav1d for AV1, for
# one) read it once at open, so toggling it per packet would drop requested frames: they decode all.
_PER_PACKET_SKIP_CODECS = ("h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video")


class PyAVReader(VideoReader):
    """Reads a video file on the CPU, decoding only what a request needs.

    For each request the missing frames are grouped into runs (:meth:`PacketIndex.plan`); each run
    seeks to the keyframe before its first target, skips (demux only) any packets the seek landed on
    before that keyframe, and decodes forward, matching decoded frames to frame numbers by timestamp,
    until its last target is out. Frames passed through on the way are counted in
    ``num_decoded`` but not cached: caching them would let frames nobody asked for push requested ones
    out of the bounded cache.
    """

    backend = "pyav"
    supported_pixel_formats = ("rgb", "nv12")

    def __init__(self, path: str | Path, *, cache: FrameCacheConfig | None = None, skip_unrequested: bool = True) -> None:
        path = str(path)
        container, stream = open_container(path)
        try:
            index = PacketIndex.build(container, stream, path)
        except BaseException:
            container.close()
            raise
        super().__init__(path, num_frames=index.num_frames, fps=index.fps, height=index.height, width=index.width, cache=cache)
        self._container = container
        self._stream = stream
        self.index = index
        # skip_frame is read by the decoder per packet, which holds with slice threads but not with
        # frame threads (each thread keeps its own copy of the context): keep slice threading.
        stream.thread_type = "SLICE"
        self.skip_unrequested = skip_unrequested and index.codec in _PER_PACKET_SKIP_CODECS

    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for run in self.index.plan(indices):
            self._decode_run(run, pixel_format, out)
        return out

    def _decode_run(self, run: DecodeRun, pixel_format: str, out: dict[int, torch.Tensor]) -> None:
        pending = set(run.targets)
        keyframe_pts = int(self.index.pts[run.keyframe]) if run.keyframe >= 0 else None
        # The second attempt, from the file start, covers demuxers whose seek lands after the keyframe
        # asked for (decoding forward would then never meet it).
        status = self._decode_from(run.seek_timestamp, keyframe_pts, pending, pixel_format, out)
        if status == "overshot" and run.seek_timestamp is not None:
            status = self._decode_from(None, keyframe_pts, pending, pixel_format, out)
        if pending:
            raise VideoDecodeError(
                self._source,
                f"frames {sorted(pending)[:8]} could not be decoded: truncated or corrupt stream "
                "(the decoder produced no frame with their timestamps)",
            )

    def _decode_from(self, seek_timestamp: int | None, keyframe_pts: int | None, pending: set[int],
                     pixel_format: str, out: dict[int, torch.Tensor]) -> str:
        """Seek, skip to the keyframe, decode forward until every frame in ``pending`` is in ``out``.

        Three savings over "decode everything from the seek point", none of which changes a pixel:
        - Demuxers seek by their own notion of time (dts, pts, or dts shifted by an edit list), so a
          seek often lands a keyframe early; packets before the wanted keyframe are skipped unread by
          the decoder (demuxing is cheap, decoding is not).
        - Packets that are not requested are sent with ``skip_frame="NONREF"`` (codecs whose decoder
          honours it per frame): the decoder drops them if no other frame references them (most
          B-frames), since nobody will look at them.
        - Decoding stops at the last requested frame.

        ``num_decoded`` counts requested packets when sent and the others only if the decoder output
        them (a dropped non-reference frame is never output); the decoder is drained at the end of the
        run so that frames still in its reorder buffer are counted too.

        Returns "done", "overshot" (the seek landed after the keyframe) or "missing" (stream ended or
        moved past a requested frame without producing it).
        """
        ctx = self._stream.codec_context
        unconfirmed: set[int] = set()
        last = max(pending)

        def take(frames) -> int | None:
            position = None
            for frame in frames:
                position = self.index.position_of(frame.pts)
                if position in unconfirmed:
                    unconfirmed.discard(position)
                    self._num_decoded += 1
                if position in pending:
                    out[position] = _to_tensor(frame, pixel_format, self._source)
                    pending.discard(position)
            return position

        try:
            if seek_timestamp is None:
                self._container.seek(0, backward=True, any_frame=False)  # AV_TIME_BASE units: the file start
            else:
                self._container.seek(seek_timestamp, stream=self._stream, backward=True, any_frame=False)
            started = keyframe_pts is None
            for packet in self._container.demux(self._stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                if not started:
                    if ts is None or ts < keyframe_pts:
                        continue
                    if ts > keyframe_pts or not packet.is_keyframe:
                        return "overshot"
                    started = True
                if packet.size:
                    position = self.index.position_of(ts)
                    if position in pending or not self.skip_unrequested:
                        ctx.skip_frame = "DEFAULT"
                        self._num_decoded += 1
                    else:
                        ctx.skip_frame = "NONREF"
                        unconfirmed.add(position)
                newest = take(packet.decode())
                if not pending:
                    ctx.skip_frame = "DEFAULT"
                    if packet.size:  # after the end-of-stream packet the decoder is drained already
                        take(ctx.decode(None))  # drain: count what is still in the reorder buffer
                    return "done"
                if newest is not None and newest > last:
                    break  # output is in presentation order: a requested frame was skipped over
            return "missing"
        except av.FFmpegError as exc:
            raise VideoDecodeError(self._source, f"truncated or corrupt stream while decoding ({exc})") from exc
        finally:
            ctx.skip_frame = "DEFAULT"

    def _release(self) -> None:
        self._container.close()


def _to_tensor(frame: av.VideoFrame, pixel_format: str, source: str) -> torch.Tensor:
    """(H, W, 3) RGB or (H * 3 // 2, W) NV12 uint8, contiguous and owning its memory."""
    try:
        array = frame.to_ndarray(format=_AV_FORMATS[pixel_format])
    except (av.FFmpegError, ValueError) as exc:
        raise VideoDecodeError(source, f"cannot convert a decoded frame to {pixel_format} ({exc})") from exc
    return torch.from_numpy(np.ascontiguousarray(array))
