"""Loaders for the benchmark layouts, one :class:`ExpressionRecord` per (video, expression).

Layouts followed (checked against each benchmark's published description and evaluation code):

``mask_dict`` layouts — ReVOS, MeViS, ReasonVOS (as redistributed with ``mask_dict.json``)::

    ROOT/JPEGImages/<video>/<frame>.jpg
    ROOT/meta_expressions.json     {"videos": {<video>: {"frames": [...], "expressions":
                                        {<exp_id>: {"exp": str, "obj_id": [..], "anno_id": [..], "type_id": 0|1}}}}}
    ROOT/mask_dict.json            {str(anno_id): [RLE | null per frame]}     (absent for server-only splits)
    ROOT/mask_dict_foreground.json {<video>: {"masks_rle": [RLE or [RLE, ...] per frame]}}   (ReVOS, for R)

  Sources: MeViS README "File Structure" and ``tools/eval_mevis.py`` (henghuiding/MeViS): frames are indexed
  by position, ``mask_dict[str(anno_id)][frame_idx]``, null = object absent, several anno ids are summed
  (= union). ReVOS evaluation script (``eval_revos.py`` of the ReVOS/VISA release): the same plus ``type_id``
  (0 referring, 1 reasoning) and ``mask_dict_foreground.json``; the ReVOS release names its expression
  file ``meta_expressions_valid_.json`` / ``meta_expressions_train_.json``, which are found as well.

``png`` layouts — Ref-YouTube-VOS and Ref-DAVIS17 (converted to the Ref-YouTube-VOS layout)::

    ROOT/JPEGImages/<video>/<frame>.jpg
    ROOT/Annotations/<video>/<frame>.png   palette PNG, pixel = object id, 0 = background (absent for valid)
    ROOT/meta_expressions.json  or  ROOT/../meta_expressions/<ROOT name>/meta_expressions.json
        {"videos": {<video>: {"frames": [...], "expressions": {<exp_id>: {"exp": str, "obj_id": "1"}}}}}

  Sources: ReferFormer ``docs/data.md``, ``inference_ytvos.py`` and ``tools/data/convert_davis_to_ytvos.py``
  (wjn922/ReferFormer); the YouTube-VOS palette convention.

Ids and names read from JSON go through :func:`videoseg_o3.data.paths.check_component`, so no annotation can
make a loader read outside ROOT; a missing frame, mask or annotation key is an error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from videoseg_o3.data.masks import decode_rle, read_id_png
from videoseg_o3.data.paths import check_component, safe_join
from videoseg_o3.data.records import ExpressionRecord

__all__ = ["FORMATS", "BenchmarkDataset", "load_benchmark", "read_json"]

FORMATS = ("revos", "mevis", "reasonvos", "refytvos", "davis")
"""Supported ``format`` names: mask_dict layouts (revos, mevis, reasonvos) and palette-PNG layouts (refytvos, davis)."""

MASK_DICT_FORMATS = ("revos", "mevis", "reasonvos")
PNG_FORMATS = ("refytvos", "davis")

_TYPE_NAMES = {0: "referring", 1: "reasoning"}


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or corrupt file is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"Missing annotation file {path}.")
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Invalid JSON in {path}: {exc.msg} at line {exc.lineno} column {exc.colno}.") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"Invalid JSON in {path}: not UTF-8 text ({exc.reason}).") from exc


def _as_id_list(value: Any, what: str, source: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or str(item) == "":
            raise ValueError(f"Invalid {what} ({item!r}) in {source}: expected integers or non-empty strings.")
        out.append(str(item))
    return out


# ------------------------------------------------------------------------------------ mask sources


@dataclass
class MaskDictSource:
    """Ground truth from ``mask_dict.json`` (and ReVOS ``mask_dict_foreground.json``)."""

    mask_dict: dict[str, Any] = field(repr=False)
    mask_dict_path: Path
    foreground: dict[str, Any] | None = field(default=None, repr=False)
    foreground_path: Path | None = None

    def _frames_of(self, key: str, num_frames: int) -> list[Any]:
        if key not in self.mask_dict:
            raise ValueError(f"Invalid annotation id {key}: it is not a key of {self.mask_dict_path}.")
        per_frame = self.mask_dict[key]
        if not isinstance(per_frame, list) or len(per_frame) != num_frames:
            got = len(per_frame) if isinstance(per_frame, list) else type(per_frame).__name__
            raise ValueError(f"Invalid entry for annotation {key} in {self.mask_dict_path}: expected a list of {num_frames} RLEs (one per frame), got {got}.")
        return per_frame

    def load_masks(self, record: ExpressionRecord) -> np.ndarray:
        num_frames = record.num_frames
        decoded: list[tuple[int, np.ndarray, str]] = []
        for key in record.annotation_ids:
            for index, rle in enumerate(self._frames_of(key, num_frames)):
                if rle is not None:
                    where = f"{self.mask_dict_path} [{key}][{index}]"
                    decoded.append((index, decode_rle(rle, where), where))
        # The size comes from the RLEs; a target absent from every frame takes it from the video.
        shape = decoded[0][1].shape if decoded else record.frame_size()
        masks = np.zeros((num_frames, *shape), dtype=bool)
        for index, mask, where in decoded:
            if mask.shape != shape:
                raise ValueError(f"Invalid RLE size {list(mask.shape)} in {where}: other frames are {list(shape)}.")
            masks[index] |= mask
        return masks

    def load_foreground(self, record: ExpressionRecord) -> np.ndarray | None:
        if self.foreground is None:
            return None
        source = str(self.foreground_path)
        entry = self.foreground.get(record.video_id)
        if not isinstance(entry, dict) or not isinstance(entry.get("masks_rle"), list):
            raise ValueError(f"Invalid foreground entry for video {record.video_id} in {source}: expected {{'masks_rle': [RLE per frame]}}.")
        per_frame = entry["masks_rle"]
        if len(per_frame) != record.num_frames:
            raise ValueError(f"Invalid foreground for video {record.video_id} in {source}: {len(per_frame)} RLEs for {record.num_frames} frames.")
        frames = []
        for index, item in enumerate(per_frame):
            rles = item if isinstance(item, list) else [item]
            decoded = [decode_rle(rle, f"{source} [{record.video_id}][{index}]") for rle in rles if rle is not None]
            if not decoded:
                raise ValueError(f"Invalid foreground for video {record.video_id} frame {index} in {source}: no RLE.")
            # Summed per object, as the ReVOS script does (overlaps count once per object in R's denominator).
            frames.append(np.sum([m.astype(np.uint8) for m in decoded], axis=0, dtype=np.uint8))
        return np.stack(frames)


@dataclass
class PaletteSource:
    """Ground truth from ``Annotations/<video>/<frame>.png`` palette PNGs (pixel = object id)."""

    annotation_dir: Path

    def load_masks(self, record: ExpressionRecord) -> np.ndarray:
        try:
            wanted = np.array([int(obj) for obj in record.object_ids], dtype=np.int32)
        except ValueError as exc:
            raise ValueError(
                f"Invalid object ids {record.object_ids} for video {record.video_id} expression {record.expression_id}: "
                "PNG annotations need integer object ids."
            ) from exc
        if wanted.size == 0:
            raise ValueError(f"No object id for video {record.video_id} expression {record.expression_id}: PNG ground truth needs 'obj_id'.")
        masks = []
        for name in record.frame_names:
            path = safe_join(self.annotation_dir, *record.video_id.split("/"), f"{name}.png")
            ids = read_id_png(path)
            if masks and ids.shape != masks[0].shape:
                raise ValueError(f"Invalid annotation {path}: size {ids.shape} differs from the video's {masks[0].shape}.")
            masks.append(np.isin(ids, wanted))
        return np.stack(masks)

    def load_foreground(self, record: ExpressionRecord) -> np.ndarray | None:
        return None


# -------------------------------------------------------------------------------------- dataset


@dataclass
class BenchmarkDataset(Sequence[ExpressionRecord]):
    """The expressions of one benchmark split, in file order (videos, then expressions)."""

    format: str
    root: Path
    records: list[ExpressionRecord]
    meta_path: Path
    has_ground_truth: bool
    has_foreground: bool
    has_types: bool

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        return self.records[index]

    def __iter__(self) -> Iterator[ExpressionRecord]:
        return iter(self.records)

    @property
    def video_ids(self) -> list[str]:
        return list(dict.fromkeys(r.video_id for r in self.records))

    def check_files(self) -> None:
        """Raise FileNotFoundError naming the first missing frame (loaders are lazy; call this to fail early)."""
        seen: set[str] = set()
        for record in self.records:
            if record.video_id in seen:
                continue
            seen.add(record.video_id)
            for path in record.frame_paths:
                if not path.is_file():
                    raise FileNotFoundError(f"Missing frame {path} (video {record.video_id}).")


def _find_meta(root: Path, fmt: str, meta_file: str | Path | None) -> Path:
    if meta_file is not None:
        path = Path(meta_file)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"Missing expression file {path}.")
        return path
    candidates = [root / "meta_expressions.json"]
    if fmt == "revos":
        candidates += [root / "meta_expressions_valid_.json", root / "meta_expressions_test_.json"]
    if fmt in PNG_FORMATS:
        candidates.append(root.parent / "meta_expressions" / root.name / "meta_expressions.json")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"Missing expression file for format {fmt} under {root}: looked for " + ", ".join(str(c) for c in candidates) + ".")


def load_benchmark(
    root: str | Path,
    format: str,
    *,
    meta_file: str | Path | None = None,
    image_dir: str = "JPEGImages",
    frame_ext: str = ".jpg",
) -> BenchmarkDataset:
    """Load one benchmark split.

    Args:
        root: the split folder (holding ``JPEGImages`` and the annotation files).
        format: one of :data:`FORMATS`.
        meta_file: expression file, relative to ``root`` or absolute (default: found by layout).
        image_dir: frames folder under ``root``.
        frame_ext: frame file extension.
    Returns:
        A :class:`BenchmarkDataset`; masks and frames are read lazily through the records.
    """
    if format not in FORMATS:
        raise ValueError(f"Invalid format ({format}). Supported values are {', '.join(FORMATS)}.")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Missing dataset root {root}.")
    meta_path = _find_meta(root, format, meta_file)
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise ValueError(f"Invalid expression file {meta_path}: expected {{'videos': {{<video>: {{'frames': [...], 'expressions': {{...}}}}}}}}.")

    source: MaskDictSource | PaletteSource | None = None
    has_foreground = False
    if format in MASK_DICT_FORMATS:
        mask_path = root / "mask_dict.json"
        if mask_path.is_file():
            mask_dict = read_json(mask_path)
            if not isinstance(mask_dict, dict):
                raise ValueError(f"Invalid mask file {mask_path}: expected {{str(anno_id): [RLE | null per frame]}}.")
            fg_path = root / "mask_dict_foreground.json"
            foreground = None
            if fg_path.is_file():
                foreground = read_json(fg_path)
                if not isinstance(foreground, dict):
                    raise ValueError(f"Invalid foreground file {fg_path}: expected {{<video>: {{'masks_rle': [...]}}}}.")
                has_foreground = True
            source = MaskDictSource(mask_dict, mask_path, foreground, fg_path if foreground is not None else None)
    else:
        annotation_dir = root / "Annotations"
        if annotation_dir.is_dir():
            source = PaletteSource(annotation_dir)

    frames_root = root / image_dir
    src = str(meta_path)
    records: list[ExpressionRecord] = []
    has_types = False
    for raw_video, video in meta["videos"].items():
        video_id = check_component(raw_video, "video id", src, allow_nested=True)
        if not isinstance(video, dict) or not isinstance(video.get("frames"), list) or not isinstance(video.get("expressions"), dict):
            raise ValueError(f"Invalid entry for video {video_id} in {src}: expected 'frames' (list) and 'expressions' (object).")
        frame_names = [check_component(name, "frame name", src) for name in video["frames"]]
        if not frame_names:
            raise ValueError(f"Invalid entry for video {video_id} in {src}: 'frames' is empty.")
        frame_paths = [safe_join(frames_root, *video_id.split("/"), name + frame_ext) for name in frame_names]
        for raw_exp, expression in video["expressions"].items():
            exp_id = check_component(raw_exp, "expression id", src)
            where = f"{src} (video {video_id}, expression {exp_id})"
            if not isinstance(expression, dict) or not isinstance(expression.get("exp"), str):
                raise ValueError(f"Invalid expression in {where}: expected an object with 'exp' (string).")
            expression_type = None
            if format == "revos" or "type_id" in expression:
                type_id = expression.get("type_id")
                if type_id not in _TYPE_NAMES:
                    raise ValueError(f"Invalid type_id ({type_id!r}) in {where}. Supported values are 0 (referring), 1 (reasoning).")
                expression_type = _TYPE_NAMES[type_id]
                has_types = True
            anno_ids = _as_id_list(expression.get("anno_id"), "anno_id", where)
            if format in MASK_DICT_FORMATS and source is not None and not anno_ids:
                raise ValueError(f"Invalid expression in {where}: 'anno_id' is required when mask_dict.json is present.")
            records.append(
                ExpressionRecord(
                    video_id=video_id,
                    expression_id=exp_id,
                    expression=expression["exp"],
                    frame_names=frame_names,
                    frame_paths=frame_paths,
                    object_ids=_as_id_list(expression.get("obj_id"), "obj_id", where),
                    annotation_ids=anno_ids,
                    expression_type=expression_type,
                    benchmark=format,
                    mask_source=source,
                )
            )
    return BenchmarkDataset(
        format=format,
        root=root,
        records=records,
        meta_path=meta_path,
        has_ground_truth=source is not None,
        has_foreground=has_foreground,
        has_types=has_types,
    )
