"""Checking one request of the web demo: a video file, a query and optional scripted turns.

Every problem becomes one line on the page that names it and says what to do, never a stack trace:
a page whose upload fails silently, or shows a Python traceback, teaches the visitor nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoseg_o3.app.config import AppConfig


class RequestError(ValueError):
    """Bad input, worded for the page.

    Attributes:
        problems: one line per problem (what is wrong and the fix), in the order the page shows them.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


@dataclass
class Request:
    """A checked request: an open reader, a non-empty query, and the turns to replay (or None).

    Attributes:
        video_path: the uploaded (or example) file.
        reader: a ``videoseg_o3.io`` reader of it, already opened (its packet index is built once
            and reused by the episode, the propagation and the overlay).
        query: the stripped query.
        scripted_turns: assistant turns to teacher-force, one per turn, or None to let the policy choose.
    """

    video_path: Path
    reader: Any
    query: str
    scripted_turns: list[str] | None


def parse_scripted_turns(text: str | None) -> list[str] | None:
    """Turns to replay, one per non-empty line of ``text`` (a protocol turn is one line: think block
    then select/answer block); None when ``text`` holds none."""
    if not text:
        return None
    turns = [line.strip() for line in text.splitlines() if line.strip()]
    return turns or None


def check_request(video: str | Path | None, query: str | None, scripted: str | None, config: AppConfig) -> Request:
    """Validate a request and open its video.

    Args:
        video: path of the uploaded file (None when nothing was uploaded or picked).
        query: the text typed by the visitor.
        scripted: the "replay a reasoning path" text (one turn per line), possibly empty.
        config: the limits (``max_frames``, ``max_megabytes``).
    Returns:
        a :class:`Request` holding an open reader (the caller closes it).
    Raises:
        RequestError: every problem found before decoding (empty query, no video, too large, not a
            video extension) at once; otherwise the decode failure or the frame limit.
    """
    from videoseg_o3.io import VIDEO_EXTENSIONS, VideoDecodeError, open_video

    supported = ", ".join(VIDEO_EXTENSIONS)
    problems: list[str] = []
    text = (query or "").strip()
    if not text:
        problems.append("The query is empty. Type a question or a description of the object to segment.")
    path = Path(video) if video else None
    if path is None:
        problems.append("No video. Upload a video file or pick one of the examples.")
    elif not path.is_file():
        problems.append(f"The uploaded file '{path.name}' is gone from the server. Upload it again.")
    else:
        size = path.stat().st_size
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            problems.append(f"'{path.name}' is not a video file. Upload one of: {supported}.")
        elif size > config.max_bytes:
            problems.append(
                f"The video is {size / 1e6:.1f} MB; this app accepts at most {config.max_megabytes:g} MB "
                "(--max-megabytes). Upload a shorter or smaller clip."
            )
    if problems:
        raise RequestError(problems)
    assert path is not None
    try:
        reader = open_video(path)
    except VideoDecodeError as exc:
        raise RequestError([f"'{path.name}' could not be read as a video ({exc.reason}). Upload a playable {supported} file."]) from exc
    if int(reader.num_frames) > config.max_frames:
        num_frames = int(reader.num_frames)
        reader.close()
        raise RequestError([
            f"The video has {num_frames} frames; this app accepts at most {config.max_frames} (--max-frames). "
            "Upload a shorter clip."
        ])
    return Request(video_path=path, reader=reader, query=text, scripted_turns=parse_scripted_turns(scripted))
