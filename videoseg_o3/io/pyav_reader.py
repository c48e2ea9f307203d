"""CPU decoding with PyAV (FFmpeg bundled in the wheel), frame-exact via the packet index.

Why PyAV and not a hand-written demux/decode loop in C++: PyAV already releases the GIL while FFmpeg
decodes, ships its own FFmpeg (no system libraries needed) and exposes packets, keyframe flags,
timestamps and the decoder's ``skip_frame`` switch, which is all the exact, minimal decoding below needs.
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


def _passed_key(index: int) -> tuple[int, str]:
    """Cache key of a frame the decoder produced without it being requested (kept in decoded form)."""
    return (index, "decoded")


class PyAVReader(VideoReader):
    """Reads a video file on the CPU, decoding each frame at most once while it stays cached.

    For each request, frames already cached are served first; the rest are grouped into runs
    (:meth:`PacketIndex.plan`). A run either continues the decoder from where the previous request
    left it (when that is already past the run's keyframe and before its first target), or seeks to
    the keyframe before its first target, skips (demux only) any packets the seek landed on before
    that keyframe, and decodes forward, matching decoded frames to frame numbers by timestamp, until
    its last target is out. Frames decoded on the way without being asked for are kept in the cache's
    low-priority tier in their decoded (YUV) form: a later turn that asks for them converts instead of
    decoding, and they are evicted before any requested frame.

    Args:
        path: the video file.
        cache: the frame cache budget.
        skip_unrequested: let the decoder drop unrequested non-reference frames (default; no pixel of
            a requested frame changes). False decodes every frame between keyframe and target.
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
        # Frame index of the last frame the decoder output while it can still continue forward
        # (None: it must seek first). Lets a later request continue instead of re-decoding the GOP.
        self._parked: int | None = None
        # Frames sent with skip_frame="NONREF": decoded only if the decoder ever outputs them.
        self._unconfirmed: set[int] = set()

    # -- request handling -------------------------------------------------------------------------
    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        remaining = []
        for index in indices:
            frame = self._cache.get(_passed_key(index))
            if frame is None:
                remaining.append(index)
            else:
                out[index] = _to_tensor(frame, pixel_format, self._source)
        try:
            for run in self.index.plan(remaining):
                self._decode_run(run, pixel_format, out)
        except BaseException:
            self._parked = None  # decoder state unknown: seek next time
            self._unconfirmed.clear()
            raise
        return out

    def _decode_run(self, run: DecodeRun, pixel_format: str, out: dict[int, torch.Tensor]) -> None:
        pending = set(run.targets)
        # Continue the parked decoder only if it is past the run's keyframe, before its first target,
        # and was not told it may drop a target: the decoder reads packets ahead of the frame it last
        # output, and a requested frame among those, sent with skip_frame="NONREF", may be gone.
        if self._parked is not None and run.keyframe <= self._parked < run.targets[0] and not pending & self._unconfirmed:
            status = self._decode_forward(pending, pixel_format, out)
        else:
            self._finish_pass()
            keyframe_pts = int(self.index.pts[run.keyframe]) if run.keyframe >= 0 else None
            status = self._decode_forward(pending, pixel_format, out, seek_timestamp=run.seek_timestamp, keyframe_pts=keyframe_pts, seek=True)
            if status == "overshot" and run.seek_timestamp is not None:
                # the demuxer's seek landed after the keyframe: start from the file start instead
                status = self._decode_forward(pending, pixel_format, out, seek_timestamp=None, keyframe_pts=keyframe_pts, seek=True)
        if pending:
            self._finish_pass()
            raise VideoDecodeError(
                self._source,
                f"frames {sorted(pending)[:8]} could not be decoded: truncated or corrupt stream "
                "(the decoder produced no frame with their timestamps)",
            )

    # -- decoding ---------------------------------------------------------------------------------
    def _decode_forward(self, pending: set[int], pixel_format: str, out: dict[int, torch.Tensor], *,
                        seek_timestamp: int | None = None, keyframe_pts: int | None = None, seek: bool = False) -> str:
        """Decode forward (after seeking when ``seek``) until every frame in ``pending`` is in ``out``.

        Savings over "decode everything from the seek point", none of which changes a pixel:
        - Demuxers seek by their own notion of time (dts, pts, or dts shifted by an edit list), so a
          seek often lands a keyframe early; packets before the wanted keyframe are skipped unread by
          the decoder (demuxing is cheap, decoding is not).
        - Packets that are not requested are sent with ``skip_frame="NONREF"`` (codecs whose decoder
          honours it per frame): the decoder drops them if no other frame references them (most
          B-frames), since nobody will look at them.
        - Decoding stops at the last requested frame, and the decoder is parked there for the next request.

        ``num_decoded`` counts requested packets when sent and the others when the decoder outputs them
        (a dropped non-reference frame is never output; see :meth:`_finish_pass` for the rest).

        Returns "done", "overshot" (the seek landed after the keyframe) or "missing" (the stream ended,
        or moved past a requested frame without producing it).
        """
        ctx = self._stream.codec_context
        last = max(pending)
        try:
            if seek:
                self._parked = None
                self._unconfirmed.clear()
                if seek_timestamp is None:
                    self._container.seek(0, backward=True, any_frame=False)  # AV_TIME_BASE units: the file start
                else:
                    self._container.seek(seek_timestamp, stream=self._stream, backward=True, any_frame=False)
            started = not seek or keyframe_pts is None
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
                        self._unconfirmed.add(position)
                newest = self._take(packet.decode(), pending, pixel_format, out)
                if packet.size == 0:  # end of stream: the decoder is drained and must seek next time
                    self._parked = None
                    self._unconfirmed.clear()
                if not pending:
                    return "done"
                if newest is not None and newest > last:
                    return "missing"  # output is in presentation order: a requested frame was passed over
            return "missing"
        except av.FFmpegError as exc:
            raise VideoDecodeError(self._source, f"truncated or corrupt stream while decoding ({exc})") from exc
        finally:
            ctx.skip_frame = "DEFAULT"

    def _take(self, frames, pending: set[int], pixel_format: str, out: dict[int, torch.Tensor]) -> int | None:
        """Route decoded frames: requested ones to ``out``, the rest to the low-priority cache."""
        position = None
        for frame in frames:
            position = self.index.position_of(frame.pts)
            if position is None:
                continue
            self._parked = position
            if position in self._unconfirmed:
                self._unconfirmed.discard(position)
                self._num_decoded += 1
            if position in pending:
                out[position] = _to_tensor(frame, pixel_format, self._source)
                pending.discard(position)
            else:
                nbytes = sum(plane.buffer_size for plane in frame.planes)
                self._cache.put(_passed_key(position), frame, nbytes, low_priority=True)
        return position

    def _finish_pass(self) -> None:
        """Before a seek: drain the decoder so that frames still in its reorder buffer (decoded, not yet
        output) are counted and cached rather than thrown away."""
        if self._parked is not None:
            try:
                self._take(self._stream.codec_context.decode(None), set(), "rgb", {})
            except av.FFmpegError:
                pass  # a decoder that cannot drain loses only those cached frames
        self._parked = None
        self._unconfirmed.clear()

    def _release(self) -> None:
        self._container.close()


def _to_tensor(frame: av.VideoFrame, pixel_format: str, source: str) -> torch.Tensor:
    """(H, W, 3) RGB or (H * 3 // 2, W) NV12 uint8, contiguous and owning its memory."""
    try:
        array = frame.to_ndarray(format=_AV_FORMATS[pixel_format])
    except (av.FFmpegError, ValueError) as exc:
        raise VideoDecodeError(source, f"cannot convert a decoded frame to {pixel_format} ({exc})") from exc
    return torch.from_numpy(np.ascontiguousarray(array))
