"""Mask storage formats of the benchmarks: COCO RLE (``mask_dict.json``) and PNG annotations.

- COCO RLE is decoded and encoded by ``pycocotools``. Before a compressed ``counts`` string reaches its C
  decoder we check that the runs add up to ``H * W``: pycocotools 2.0.x fills short RLEs from uninitialised
  memory (a corrupt annotation would silently become random pixels), so :func:`_compressed_run_total` parses
  the run lengths only to validate them. The mask itself is always produced by pycocotools.
- Palette PNGs (Ref-YouTube-VOS / DAVIS ``Annotations/<video>/<frame>.png``): pixel value = object id,
  0 = background. Written with the DAVIS/PASCAL colour palette so standard viewers show them as usual.
- Prediction PNGs (``PRED/<video>/<expression>/<frame>.png``): 0 = background, anything else = foreground,
  as the official scripts read them (``cv2.imread(..., IMREAD_GRAYSCALE)`` then ``astype(bool)``); palette
  PNGs are read by index.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "davis_palette",
    "decode_rle",
    "encode_rle",
    "read_id_png",
    "read_mask_png",
    "write_id_png",
    "write_mask_png",
]


# ------------------------------------------------------------------------------------------ RLE


def _compressed_run_total(counts: str) -> int | None:
    """Sum of the run lengths of a compressed COCO RLE string, or None if the string is malformed.

    The encoding (pycocotools ``rleToString``): each run is a little-endian sequence of 5-bit groups stored
    as ``chr(48 + group | 0x20 if more follow)``, the last group's 0x10 bit is a sign, and from the third run
    on each value is a delta from the run two places earlier.
    """
    runs: list[int] = []
    pos = 0
    n = len(counts)
    while pos < n:
        value = 0
        shift = 0
        more = True
        while more:
            if pos >= n:
                return None  # the last group announced a continuation that never came
            code = ord(counts[pos]) - 48
            if code < 0 or code > 63:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
    return sum(runs)


def decode_rle(rle: Any, source: str) -> np.ndarray:
    """Decode one COCO RLE annotation into a ``(H, W)`` bool mask.

    Args:
        rle: ``{"size": [H, W], "counts": str | list[int]}`` (compressed or uncompressed counts).
        source: where it came from (file and key), for the error message.
    Raises:
        ValueError: the RLE is malformed (names ``source``).
    """
    from pycocotools import mask as coco_mask

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"Invalid RLE in {source}: expected an object with 'size' and 'counts', got {type(rle).__name__}.")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"Invalid RLE size ({size!r}) in {source}: expected [height, width] with positive integers.")
    height, width = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts) or sum(counts) != height * width:
            raise ValueError(
                f"Invalid RLE counts in {source}: uncompressed runs must be non-negative integers summing to "
                f"height * width = {height * width}."
            )
        encoded = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    elif isinstance(counts, (str, bytes)):
        text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
        total = _compressed_run_total(text)
        if total != height * width:
            got = "a malformed string" if total is None else f"runs summing to {total}"
            raise ValueError(f"Invalid RLE counts in {source}: {got}, expected runs summing to height * width = {height * width}.")
        encoded = {"size": [height, width], "counts": text.encode("ascii")}
    else:
        raise ValueError(f"Invalid RLE counts in {source}: expected a string or a list of integers, got {type(counts).__name__}.")
    try:
        with warnings.catch_warnings():
            # pycocotools' own numpy-2 deprecation notice, raised for every decode; nothing we can act on.
            warnings.filterwarnings("ignore", message=".*__array__ implementation", category=DeprecationWarning)
            mask = coco_mask.decode(encoded)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Invalid RLE in {source}: pycocotools could not decode it ({exc}).") from exc
    return mask.astype(bool)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a ``(H, W)`` bool mask as JSON-ready compressed COCO RLE ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as coco_mask

    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"Invalid mask shape {array.shape}. Expected (H, W).")
    encoded = coco_mask.encode(np.asfortranarray(array.astype(np.uint8)))
    return {"size": [int(array.shape[0]), int(array.shape[1])], "counts": encoded["counts"].decode("ascii")}


# ------------------------------------------------------------------------------------------ PNG


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS / YouTube-VOS annotations (the PASCAL VOC colour map), flat RGB."""
    palette: list[int] = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((r, g, b))
    return palette


def _open_png(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"Missing mask file {path}.")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"Invalid PNG {path}: it could not be decoded ({exc}).") from exc
    return image


def read_id_png(path: Path) -> np.ndarray:
    """Object-id map from a palette (or grayscale) annotation PNG: ``(H, W)`` int32, 0 = background."""
    image = _open_png(path)
    if image.mode in ("P", "L", "I", "I;16", "1"):
        return np.asarray(image).astype(np.int32)
    raise ValueError(f"Invalid annotation PNG {path}: mode {image.mode}. Supported modes are P (palette), L, I, I;16, 1.")


def read_mask_png(path: Path) -> np.ndarray:
    """Binary mask from a prediction PNG: ``(H, W)`` bool, nonzero = foreground (palette PNGs by index)."""
    image = _open_png(path)
    if image.mode in ("P", "L", "I", "I;16", "1"):
        return np.asarray(image) != 0
    if image.mode in ("RGB", "RGBA", "LA"):
        return np.asarray(image.convert("L")) != 0
    raise ValueError(f"Invalid mask PNG {path}: mode {image.mode}. Supported modes are L, P, 1, I, RGB, RGBA, LA.")


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """Write a ``(H, W)`` bool mask as an 8-bit PNG with values 0 / 255 (the submission servers' format)."""
    from PIL import Image

    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"Invalid mask shape {array.shape}. Expected (H, W).")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(array != 0, 255, 0).astype(np.uint8), mode="L").save(path)


def write_id_png(path: Path, ids: np.ndarray) -> None:
    """Write a ``(H, W)`` object-id map (0..255) as a palette PNG with the DAVIS palette."""
    from PIL import Image

    array = np.asarray(ids)
    if array.ndim != 2:
        raise ValueError(f"Invalid id map shape {array.shape}. Expected (H, W).")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"Invalid object ids in {path}: palette PNGs hold ids 0..255, got {array.min()}..{array.max()}.")
    image = Image.fromarray(array.astype(np.uint8), mode="P")
    image.putpalette(davis_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
