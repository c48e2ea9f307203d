"""The one exception type of the video readers.

Why one type: callers (dataset loaders, the episode loop, the CLI) want to catch "this video cannot be
read" without knowing which backend, container or library failed underneath; PyAV, PyNvVideoCodec,
torchcodec and Pillow each raise their own exception families. It subclasses ``ValueError`` because
every cause is a property of the input (a bad path, file, index or argument), not of the program.
"""

from __future__ import annotations

from os import PathLike


class VideoDecodeError(ValueError):
    """A video source cannot be opened or a requested frame cannot be produced.

    The message always names the source and the reason, e.g.
    ``VideoDecodeError("cannot read video '/data/a.mp4': truncated or corrupt stream (...)")``.

    Attributes:
        source: the path (or a short description of an in-memory source) that failed.
        reason: the cause in a few words, without the source.
    """

    def __init__(self, source: str | PathLike | None, reason: str) -> None:
        self.source = str(source) if source is not None else None
        self.reason = reason
        where = f"cannot read video '{self.source}'" if self.source is not None else "cannot read video"
        super().__init__(f"{where}: {reason}")
