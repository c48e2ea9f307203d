"""A demux-only index of a video stream's packets: exact frame count, frame timestamps, keyframes.

Why an index: containers do not reliably say how many frames a stream has (Matroska/WebM never do;
duration x fps is an estimate that is off by one or more frames with B-frames, edit lists or variable
frame rate), and seeking by time lands on "some keyframe near there" rather than on a frame number.
Reading every packet header once, without decoding, gives the presentation timestamp of every frame,
so frame ``i`` is by definition the packet with the ``i``-th smallest timestamp, and the keyframe to
seek to for frame ``i`` is the last keyframe at or before it in presentation order. Decoding forward
from there and matching decoded frames by timestamp is then exact, whatever the GOP structure
(B-frames, open GOPs) — and costs only the frames between that keyframe and the target. Demuxing
reads the file but decodes nothing, which is ~100x cheaper than decoding it.

The index is also where damaged files are caught early: a demuxer error, fewer packets than the header
declares, or packets covering much less time than the declared duration all mean a truncated or corrupt
stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from videoseg_o3.io.errors import VideoDecodeError

# A stream whose packets cover less than this fraction of the declared duration (minus one frame) is
# reported as truncated. Generous on purpose: legitimate files differ from their declared duration by
# a frame or two (rounding, trailing audio), truncated ones by far more.
_TRUNCATION_COVERAGE = 0.95


def open_container(path: str | Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` with PyAV and return (container, its first video stream).

    Raises:
        VideoDecodeError: the file is not a readable media file, or it has no video stream.
    """
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.EOFError as exc:
        raise VideoDecodeError(path, "no frames before the end of the file: an empty (zero frames) or truncated video") from exc
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"not a video file, or a truncated or corrupt one (FFmpeg: {exc.strerror or exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "the file has no video stream")
    return container, container.streams.video[0]


@dataclass
class DecodeRun:
    """One seek followed by forward decoding that yields every frame in ``targets``.

    Attributes:
        keyframe: presentation index of the keyframe decoding starts from (-1: the file start).
        seek_timestamp: stream timestamp to seek to (None: the file start).
        targets: requested frame indices served by this run, ascending.
    """

    keyframe: int
    seek_timestamp: int | None
    targets: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PacketIndex:
    """Per-frame timestamps and keyframes of one video stream, in presentation order.

    Attributes:
        pts: (N,) int64, presentation timestamp of frame i in ``time_base`` units, strictly ascending.
        keyframes: (K,) int64, ascending presentation indices of the keyframes.
        keyframe_seek_timestamps: (K,) int64, timestamp to seek to for each keyframe: min(pts, dts),
            so that demuxers that index by either land at or before the keyframe, never after it.
        first_decode_is_keyframe: whether the first packet in decode order is a keyframe (else frames
            before the first keyframe may not be decodable after a seek to the start).
        time_base: seconds per timestamp unit.
        fps: average frame rate (frames/s; 0.0 when the container gives none and N == 1).
        height, width: frame size in pixels.
        codec: the codec name, e.g. "h264".
    """

    pts: np.ndarray
    keyframes: np.ndarray
    keyframe_seek_timestamps: np.ndarray
    time_base: Fraction
    fps: float
    height: int
    width: int
    codec: str
    _position_of_pts: dict[int, int] = field(repr=False, compare=False, default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.pts.shape[0])

    def position_of(self, pts: int | None) -> int | None:
        """Frame index of a decoded frame's timestamp, or None when it matches no packet."""
        return None if pts is None else self._position_of_pts.get(int(pts))

    def keyframe_before(self, index: int) -> int:
        """Position in ``keyframes`` of the last keyframe at or before frame ``index`` (-1: none)."""
        return int(np.searchsorted(self.keyframes, index, side="right")) - 1

    def plan(self, indices: list[int]) -> list[DecodeRun]:
        """Group sorted, unique frame indices into runs of seek + forward decode.

        A target joins the current run when its keyframe is at or before the run's last target: the
        decoder is already past that keyframe, so continuing forward costs no more than seeking. Otherwise
        a new run seeks to the target's own keyframe, skipping everything in between.
        """
        runs: list[DecodeRun] = []
        for index in indices:
            k = self.keyframe_before(index)
            keyframe = int(self.keyframes[k]) if k >= 0 else -1
            if runs and keyframe <= runs[-1].targets[-1]:
                runs[-1].targets.append(index)
                continue
            seek = int(self.keyframe_seek_timestamps[k]) if k >= 0 else None
            runs.append(DecodeRun(keyframe=keyframe, seek_timestamp=seek, targets=[index]))
        return runs

    def decode_cost(self, indices: list[int]) -> int:
        """Frames a keyframe-seek-and-decode-forward strategy decodes for ``indices`` (sorted, unique):
        the span from each run's keyframe to its last target. An estimate of decoder work used by the
        benchmark for backends that do not report their own count."""
        return sum(run.targets[-1] - max(run.keyframe, 0) + 1 for run in self.plan(indices))

    @classmethod
    def build(cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str | Path) -> PacketIndex:
        """Demux every packet of ``stream`` (no decoding) and index it.

        Leaves the container at the end of the file; callers seek before decoding.

        Raises:
            VideoDecodeError: demuxer error, packets without timestamps, duplicate timestamps, zero
                frames, or a stream that is evidently truncated.
        """
        timestamps: list[int] = []
        seek_timestamps: list[int] = []
        is_key: list[bool] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker, not a frame
                    continue
                pts, dts = packet.pts, packet.dts
                ts = pts if pts is not None else dts
                if ts is None:
                    raise VideoDecodeError(path, f"packet {len(timestamps)} has no timestamp; frame-exact access is impossible")
                timestamps.append(int(ts))
                seek_timestamps.append(int(min(ts, dts)) if dts is not None else int(ts))
                is_key.append(bool(packet.is_keyframe))
        except av.FFmpegError as exc:
            raise VideoDecodeError(path, f"truncated or corrupt stream: demuxing failed after {len(timestamps)} packets ({exc})") from exc

        num_frames = len(timestamps)
        if num_frames == 0:
            raise VideoDecodeError(path, "the video stream has zero frames")
        pts = np.asarray(timestamps, dtype=np.int64)
        order = np.argsort(pts, kind="stable")
        sorted_pts = pts[order]
        if num_frames > 1 and np.any(np.diff(sorted_pts) == 0):
            dup = int(sorted_pts[np.flatnonzero(np.diff(sorted_pts) == 0)[0]])
            raise VideoDecodeError(path, f"two packets share the timestamp {dup}; frame-exact access is impossible")
        key_mask = np.asarray(is_key, dtype=bool)[order]
        keyframes = np.flatnonzero(key_mask).astype(np.int64)
        seek_ts = np.asarray(seek_timestamps, dtype=np.int64)[order][key_mask]

        time_base = stream.time_base or Fraction(1, 1)
        fps = _frame_rate(stream, sorted_pts, time_base)
        declared = stream.frames or 0
        if declared > num_frames:
            raise VideoDecodeError(path, f"truncated or corrupt stream: the header declares {declared} frames, only {num_frames} packets are present")
        _check_duration(container, stream, path, sorted_pts, time_base, fps)

        ctx = stream.codec_context
        height, width = int(ctx.height or 0), int(ctx.width or 0)
        if height <= 0 or width <= 0:
            raise VideoDecodeError(path, f"the video stream has no valid frame size ({height}x{width})")
        return cls(
            pts=sorted_pts,
            keyframes=keyframes,
            keyframe_seek_timestamps=seek_ts,
            time_base=Fraction(time_base),
            fps=fps,
            height=height,
            width=width,
            codec=ctx.name,
            _position_of_pts={int(t): i for i, t in enumerate(sorted_pts.tolist())},
        )


def _frame_rate(stream: av.video.stream.VideoStream, pts: np.ndarray, time_base: Fraction) -> float:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return float(rate)
    if pts.shape[0] > 1 and pts[-1] > pts[0]:
        return float((pts.shape[0] - 1) / (float(pts[-1] - pts[0]) * time_base))
    return 0.0


def _check_duration(container, stream, path, pts: np.ndarray, time_base: Fraction, fps: float) -> None:
    """Flag a stream whose packets cover far less time than the container declares (Matroska/WebM
    headers state a duration but no frame count, so this is how a cut-off file shows)."""
    if fps <= 0:
        return
    declared_s = None
    if stream.duration:
        declared_s = float(stream.duration * time_base)
    elif container.duration and len(container.streams) == 1:
        # container.duration spans all streams: only trust it when the video is the only one
        declared_s = container.duration / av.time_base
    if not declared_s:
        return
    covered_s = float((pts[-1] - pts[0]) * time_base) + 1.0 / fps
    if covered_s < _TRUNCATION_COVERAGE * declared_s - 1.0 / fps:
        raise VideoDecodeError(
            path, f"truncated or corrupt stream: packets cover {covered_s:.2f} s of the declared {declared_s:.2f} s"
        )
