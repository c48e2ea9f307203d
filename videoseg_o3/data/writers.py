"""Write videos with per-object masks and expressions in the benchmark layouts read by :mod:`.formats`.

Used by the synthetic task (and its tests) so that every loader is exercised on files laid out exactly as
the real releases are: ``revos`` (mask_dict + type_id + foreground), ``mevis`` (mask_dict, no types),
``refytvos`` / ``davis`` (palette PNG annotations; ``meta_expressions.json`` in the split root).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from videoseg_o3.data.masks import encode_rle, write_id_png
from videoseg_o3.data.paths import check_component, safe_join

__all__ = ["WRITE_LAYOUTS", "ExpressionSpec", "VideoAnnotation", "DatasetWriter"]

WRITE_LAYOUTS = ("revos", "mevis", "reasonvos", "refytvos", "davis")


@dataclass
class ExpressionSpec:
    """One expression of a video to write."""

    expression_id: str
    text: str
    object_ids: list[int]
    """Targets (ids into :attr:`VideoAnnotation.object_masks`); several = union mask."""
    expression_type: str = "referring"
    """"referring" (type_id 0) or "reasoning" (type_id 1)."""


@dataclass
class VideoAnnotation:
    """A video in memory: frames, exact per-object masks and expressions."""

    video_id: str
    frame_names: list[str]
    frames: np.ndarray | None
    """``(T, H, W, 3)`` uint8 RGB, or None to write annotations only."""
    object_masks: dict[int, np.ndarray]
    """object id (1..255) -> ``(T, H, W)`` bool visible mask."""
    expressions: list[ExpressionSpec] = field(default_factory=list)


class DatasetWriter:
    """Streams videos into one split folder of a given layout; :meth:`close` writes the JSON files.

    Annotation ids (``anno_id``) are numbered across the split from ``first_anno_id``, one per
    (video, object), as in the mask_dict releases.
    """

    def __init__(self, root: str | Path, layout: str, *, jpeg_quality: int = 90, first_anno_id: int = 0) -> None:
        if layout not in WRITE_LAYOUTS:
            raise ValueError(f"Invalid layout ({layout}). Supported values are {', '.join(WRITE_LAYOUTS)}.")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"Invalid jpeg_quality ({jpeg_quality}). Supported values are 1..100.")
        self.root = Path(root)
        self.layout = layout
        self.jpeg_quality = jpeg_quality
        self._next_anno = first_anno_id
        self.meta: dict[str, dict] = {}
        self.mask_dict: dict[str, list] = {}
        self.foreground: dict[str, dict] = {}
        self.anno_ids: dict[tuple[str, int], int] = {}
        """(video id, object id) -> anno_id, for records built on top (VTS-CoT, RL)."""
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def uses_mask_dict(self) -> bool:
        return self.layout in ("revos", "mevis", "reasonvos")

    def add(self, video: VideoAnnotation) -> None:
        """Write one video's frames and masks and remember its expressions."""
        source = f"video {video.video_id!r}"
        video_id = check_component(video.video_id, "video id", source, allow_nested=True)
        names = [check_component(n, "frame name", source) for n in video.frame_names]
        if video_id in self.meta:
            raise ValueError(f"Invalid video id ({video_id}): already written to {self.root}.")
        num_frames = len(names)
        for obj, masks in video.object_masks.items():
            if not 1 <= int(obj) <= 255:
                raise ValueError(f"Invalid object id ({obj}) in {source}. Supported values are 1..255.")
            if masks.shape[0] != num_frames:
                raise ValueError(f"Invalid masks for object {obj} in {source}: {masks.shape[0]} frames, expected {num_frames}.")
        if video.frames is not None:
            self._write_frames(video_id, names, video.frames)

        expressions: dict[str, dict] = {}
        if self.uses_mask_dict:
            for obj in sorted(video.object_masks):
                anno = self._next_anno
                self._next_anno += 1
                self.anno_ids[(video_id, obj)] = anno
                masks = video.object_masks[obj]
                self.mask_dict[str(anno)] = [encode_rle(m) if m.any() else None for m in masks]
            if self.layout == "revos":
                union = np.zeros_like(next(iter(video.object_masks.values())))
                for masks in video.object_masks.values():
                    union |= masks
                self.foreground[video_id] = {"masks_rle": [encode_rle(m) for m in union]}
        else:
            self._write_palette(video_id, names, video.object_masks)

        for spec in video.expressions:
            exp_id = check_component(spec.expression_id, "expression id", source)
            entry: dict = {"exp": spec.text, "obj_id": [int(o) for o in spec.object_ids]}
            if self.uses_mask_dict:
                entry["anno_id"] = [self.anno_ids[(video_id, int(o))] for o in spec.object_ids]
            else:
                # Ref-YouTube-VOS stores one object id as a string.
                entry["obj_id"] = str(spec.object_ids[0]) if len(spec.object_ids) == 1 else [str(o) for o in spec.object_ids]
            if self.layout == "revos":
                entry["type_id"] = {"referring": 0, "reasoning": 1}[spec.expression_type]
            expressions[exp_id] = entry
        self.meta[video_id] = {"vid_id": video_id, "frames": names, "expressions": expressions}

    def _write_frames(self, video_id: str, names: list[str], frames: np.ndarray) -> None:
        from PIL import Image

        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] != len(names):
            raise ValueError(f"Invalid frames for video {video_id}: expected ({len(names)}, H, W, 3) uint8, got {frames.shape} {frames.dtype}.")
        folder = safe_join(self.root / "JPEGImages", *video_id.split("/"))
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in zip(names, frames):
            with open(folder / f"{name}.jpg", "wb") as handle:
                Image.fromarray(frame).save(handle, format="JPEG", quality=self.jpeg_quality)

    def _write_palette(self, video_id: str, names: list[str], object_masks: dict[int, np.ndarray]) -> None:
        first = next(iter(object_masks.values()), None)
        if first is None:
            raise ValueError(f"Invalid video {video_id}: PNG layouts need at least one object mask for the frame size.")
        ids = np.zeros(first.shape, dtype=np.uint8)
        for obj in sorted(object_masks):
            masks = object_masks[obj]
            if (ids[masks] != 0).any():
                raise ValueError(f"Invalid masks in video {video_id}: object {obj} overlaps another object; palette PNGs hold one id per pixel.")
            ids[masks] = obj
        folder = safe_join(self.root / "Annotations", *video_id.split("/"))
        for name, frame_ids in zip(names, ids):
            write_id_png(folder / f"{name}.png", frame_ids)

    def close(self) -> None:
        """Write ``meta_expressions.json`` (and ``mask_dict.json`` / ``mask_dict_foreground.json``)."""
        _dump(self.root / "meta_expressions.json", {"videos": self.meta})
        if self.uses_mask_dict:
            _dump(self.root / "mask_dict.json", self.mask_dict)
        if self.layout == "revos":
            _dump(self.root / "mask_dict_foreground.json", self.foreground)


def _dump(path: Path, obj: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    # json.dumps (one string) runs the C encoder; json.dump to a file would run the pure-Python one.
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    tmp.replace(path)


def write_dataset(root: str | Path, layout: str, videos: Iterable[VideoAnnotation], **kwargs) -> DatasetWriter:
    """Write all ``videos`` to ``root`` in ``layout``; returns the closed writer (its ``anno_ids``)."""
    writer = DatasetWriter(root, layout, **kwargs)
    for video in videos:
        writer.add(video)
    writer.close()
    return writer


__all__.append("write_dataset")
