"""One typed record per (video, expression) of a benchmark, with lazy access to frames and masks.

A record holds names and paths only; frames and masks are read when asked for, so a loaded benchmark of
tens of thousands of expressions costs little memory. Masks are the *union* over the objects the
expression refers to, as every benchmark scores multi-object expressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["EXPRESSION_TYPES", "ExpressionRecord", "MaskSource"]

EXPRESSION_TYPES = ("referring", "reasoning")
"""Values of :attr:`ExpressionRecord.expression_type` (ReVOS ``type_id`` 0 and 1); None where a benchmark has no types."""


class MaskSource(Protocol):
    """Where a record's ground truth comes from (a ``mask_dict.json`` or a folder of palette PNGs)."""

    def load_masks(self, record: "ExpressionRecord") -> np.ndarray:  # (T, H, W) bool
        ...

    def load_foreground(self, record: "ExpressionRecord") -> np.ndarray | None:  # (T, H, W) uint8 or None
        ...


@dataclass(eq=False)
class ExpressionRecord:
    """A (video, expression) pair of a benchmark.

    Fields hold what the benchmark's JSON says; ``frame_paths`` are resolved inside the dataset root.
    """

    video_id: str
    """Video folder name under ``JPEGImages`` (the key of ``meta_expressions.json['videos']``)."""
    expression_id: str
    """Key of the expression inside its video (``"0"``, ``"1"``, ...): the prediction sub-folder name."""
    expression: str
    """The query text."""
    frame_names: list[str]
    """Frame names without extension, in temporal order."""
    frame_paths: list[Path]
    """``JPEGImages/<video>/<frame>.jpg`` for every frame."""
    object_ids: list[str] = field(default_factory=list)
    """Object ids of the target(s) (``obj_id``; palette index in PNG layouts)."""
    annotation_ids: list[str] = field(default_factory=list)
    """Keys into ``mask_dict.json`` (``anno_id``); empty in PNG layouts."""
    expression_type: str | None = None
    """"referring" or "reasoning" where the benchmark has types (ReVOS ``type_id``), else None."""
    benchmark: str = ""
    """The format it was loaded from (revos, mevis, reasonvos, refytvos, davis)."""
    mask_source: MaskSource | None = field(default=None, repr=False)
    """Ground-truth reader; None when the split ships no masks (e.g. MeViS valid, Ref-YouTube-VOS valid)."""

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    @property
    def key(self) -> tuple[str, str]:
        """``(video_id, expression_id)``: unique within a benchmark split."""
        return (self.video_id, self.expression_id)

    @property
    def has_masks(self) -> bool:
        return self.mask_source is not None

    def open_video(self) -> Any:
        """A ``videoseg_o3.io`` reader over this record's JPEG frames (``num_frames``, ``get_frames``)."""
        from videoseg_o3.io import open_video

        return open_video(list(self.frame_paths))

    def load_frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Decode frames with PIL: ``(n, H, W, 3)`` uint8 RGB for ``indices`` (all frames when None).

        A plain reader for tools and tests; the model reads through :meth:`open_video`.
        """
        from PIL import Image, UnidentifiedImageError

        chosen = range(self.num_frames) if indices is None else indices
        out = []
        for index in chosen:
            if not 0 <= int(index) < self.num_frames:
                raise ValueError(f"Invalid frame index ({index}) for video {self.video_id}: valid indices are 0..{self.num_frames - 1}.")
            path = self.frame_paths[int(index)]
            if not path.is_file():
                raise FileNotFoundError(f"Missing frame {path} (video {self.video_id}, frame {self.frame_names[int(index)]}).")
            try:
                with Image.open(path) as image:
                    out.append(np.asarray(image.convert("RGB")))
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"Invalid image {path}: it could not be decoded ({exc}).") from exc
        if not out:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return np.stack(out)

    def frame_size(self) -> tuple[int, int]:
        """``(H, W)`` of the video, read from the first frame's header."""
        from PIL import Image

        path = self.frame_paths[0]
        if not path.is_file():
            raise FileNotFoundError(f"Missing frame {path} (video {self.video_id}).")
        with Image.open(path) as image:
            width, height = image.size
        return height, width

    def load_masks(self) -> np.ndarray:
        """Ground truth: ``(T, H, W)`` bool, the union over the expression's objects."""
        if self.mask_source is None:
            raise ValueError(
                f"No ground-truth masks for video {self.video_id} expression {self.expression_id}: this split ships none "
                "(score it with --submission on the benchmark server)."
            )
        return self.mask_source.load_masks(self)

    def load_foreground(self) -> np.ndarray | None:
        """ReVOS foreground (all annotated objects of the video, summed per object): ``(T, H, W)`` uint8, or None."""
        if self.mask_source is None:
            return None
        return self.mask_source.load_foreground(self)
