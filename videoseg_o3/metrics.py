"""Region and boundary metrics of video object segmentation, exactly as the DAVIS-2017 toolkit computes them.

Per frame, on ``(H, W)`` bool masks, argument order always ``(pred, gt)``:

- :func:`jaccard` — J, the region IoU ``|P & G| / |P | G|``; 1 when both masks are empty.
- :func:`boundary_f` — F, the boundary F-measure: both masks are turned into 1-pixel boundary maps by
  :func:`seg2bmap`; a boundary pixel of one mask counts as matched when a boundary pixel of the other lies
  within a disk of radius ``ceil(0.008 * sqrt(H**2 + W**2))`` pixels; precision = matched prediction
  boundary / prediction boundary, recall = matched ground-truth boundary / ground-truth boundary,
  ``F = 2PR / (P + R)``; both boundaries empty gives 1, exactly one empty gives 0.
- :func:`accuracy` (ReVOS "A") — the fraction of pixels where prediction and ground truth agree.
- :func:`robustness` (ReVOS "R") — ``max(1 - |P & ~G| / (|foreground| + 1e-6), 0)`` where *foreground* is
  the union of every annotated object of the video (``mask_dict_foreground.json``).

Every metric also has a per-video form (``*_video``) on ``(T, H, W)`` stacks returning a ``(T,)`` float64
array, vectorised over frames.

What is followed, and why the code looks the way it does
-------------------------------------------------------
- ``davisvideochallenge/davis2017-evaluation``, ``davis2017/metrics.py``: ``db_eval_iou``, ``f_measure`` and
  ``_seg2bmap`` (the boundary convention of D. Martin's BSDS code: a pixel is a boundary pixel when it
  differs from its east, south or south-east neighbour, with the last row/column compared only along the
  border, and the bottom-right pixel never a boundary). One consequence kept on purpose: a mask that
  fills the whole frame has *no* boundary, so full-vs-full and full-vs-empty both score F = 1, as in the
  official code.
- The official code dilates each boundary map with ``cv2.dilate(b, skimage.morphology.disk(r))``. With an
  integer radius (``np.ceil`` of the tolerance) the disk holds the integer offsets ``dy**2 + dx**2 <= r**2``
  and ``cv2.dilate``'s default border adds nothing from outside the image, so "dilated map is 1 at p"
  equals "some boundary pixel lies within that disk around p". We evaluate exactly that predicate, but
  only at the other mask's boundary pixels (the only places the official code reads the dilated map):
  per disk row ``dy`` a row prefix sum answers "any boundary pixel in ``[x - w(dy), x + w(dy)]``" with
  ``w(dy) = isqrt(r**2 - dy**2)``. This needs neither OpenCV nor scikit-image (neither is a dependency)
  and costs ``O(boundary pixels * (2r + 1))`` instead of a dense dilation.
- ReVOS A and R: ``get_r2vos_accuracy`` / ``get_r2vos_robustness`` of the ReVOS evaluation script. That
  script compares raw PNG values (0/255) against 0/1 ground truth; we compare binarised masks, which is
  what the metric means (identical whenever predictions are stored as 0/1).
- Aggregation (per expression: mean over frames; per benchmark: mean over expressions; ReVOS overall:
  mean of the referring and reasoning subsets) lives in :mod:`videoseg_o3.evaluation`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_BOUND_TH",
    "accuracy",
    "accuracy_video",
    "boundary_f",
    "boundary_f_video",
    "boundary_radius",
    "jaccard",
    "jaccard_video",
    "robustness",
    "robustness_video",
    "seg2bmap",
]

DEFAULT_BOUND_TH = 0.008
"""Boundary tolerance as a fraction of the image diagonal (DAVIS default)."""

# Frames processed together by the vectorised boundary matching: bounds the prefix-sum buffer
# (int32, frames * H * (W + 1)) to ~64 MiB whatever the video length.
_MAX_CHUNK_PIXELS = 1 << 24


def _as_bool_stack(mask: np.ndarray, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != ndim:
        shape = "(H, W)" if ndim == 2 else "(T, H, W)"
        raise ValueError(f"Invalid {name} shape {array.shape}. Expected a {ndim}-D {shape} mask.")
    if array.dtype != np.bool_:
        array = array != 0
    return array


def _check_pair(pred: np.ndarray, gt: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    pred_b = _as_bool_stack(pred, "pred", ndim)
    gt_b = _as_bool_stack(gt, "gt", ndim)
    if pred_b.shape != gt_b.shape:
        raise ValueError(f"Invalid mask shapes: pred {pred_b.shape} and gt {gt_b.shape} differ. Masks must have the same shape.")
    if 0 in pred_b.shape[-2:]:
        raise ValueError(f"Invalid mask shape {pred_b.shape}: H and W must be at least 1.")
    return pred_b, gt_b


# --------------------------------------------------------------------------------------------- J


def jaccard_video(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Region similarity J per frame.

    Args:
        pred: ``(T, H, W)`` predicted masks (bool, or any dtype: nonzero = foreground).
        gt: ``(T, H, W)`` ground-truth masks.
    Returns:
        ``(T,)`` float64, ``|P & G| / |P | G|`` per frame, 1.0 where both masks are empty.
    """
    pred_b, gt_b = _check_pair(pred, gt, 3)
    inter = np.count_nonzero(pred_b & gt_b, axis=(1, 2)).astype(np.float64)
    union = np.count_nonzero(pred_b | gt_b, axis=(1, 2)).astype(np.float64)
    out = np.ones_like(union)
    nonempty = union > 0
    out[nonempty] = inter[nonempty] / union[nonempty]
    return out


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J of one frame: ``(H, W)`` masks -> IoU in [0, 1] (1 when both are empty)."""
    pred_b, gt_b = _check_pair(pred, gt, 2)
    return float(jaccard_video(pred_b[None], gt_b[None])[0])


# --------------------------------------------------------------------------------------------- F


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a mask, with the DAVIS/BSDS convention.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour; in the last
    row only the east neighbour counts, in the last column only the south one, and the bottom-right pixel
    is never a boundary pixel. Boundaries therefore sit half a pixel towards the origin.

    Args:
        mask: ``(..., H, W)`` mask (bool or nonzero = foreground); leading axes are independent frames.
    Returns:
        ``(..., H, W)`` bool boundary map.
    """
    seg = np.asarray(mask)
    if seg.ndim < 2:
        raise ValueError(f"Invalid mask shape {seg.shape}. Expected (..., H, W).")
    seg = seg != 0 if seg.dtype != np.bool_ else seg
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[..., :, :-1] = seg[..., :, 1:]
    south[..., :-1, :] = seg[..., 1:, :]
    south_east[..., :-1, :-1] = seg[..., 1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    # The order of these three assignments matters (the corner is written by both, then cleared).
    bmap[..., -1, :] = seg[..., -1, :] ^ east[..., -1, :]
    bmap[..., :, -1] = seg[..., :, -1] ^ south[..., :, -1]
    bmap[..., -1, -1] = False
    return bmap


def boundary_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Matching tolerance in pixels: ``ceil(bound_th * sqrt(H**2 + W**2))``, or ``bound_th`` itself when >= 1.

    Computed with the same float64 expression as the official code (``np.ceil(th * np.linalg.norm(shape))``)
    so ties at integer boundaries round identically.
    """
    if bound_th <= 0:
        raise ValueError(f"Invalid bound_th ({bound_th}). Supported values are a fraction of the diagonal in (0, 1) or an integer pixel radius >= 1.")
    if bound_th >= 1:
        if float(bound_th) != int(bound_th):
            raise ValueError(
                f"Invalid bound_th ({bound_th}). A pixel radius (>= 1) must be an integer; use a value in (0, 1) for a fraction of the diagonal."
            )
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def _matched_counts(query: np.ndarray, target: np.ndarray, radius: int) -> np.ndarray:
    """Per frame, how many ``query`` pixels have a ``target`` pixel within the disk of ``radius``.

    ``query``, ``target``: ``(T, H, W)`` bool. Returns ``(T,)`` int64. Equal to
    ``(query & dilate(target, disk(radius))).sum((1, 2))`` with the official disk and border semantics.
    """
    num_frames, height, width = target.shape
    t_idx, y_idx, x_idx = np.nonzero(query)
    if t_idx.size == 0:
        return np.zeros(num_frames, dtype=np.int64)
    # prefix[t, y, x] = number of target pixels in row y left of column x.
    prefix = np.zeros((num_frames, height, width + 1), dtype=np.int32)
    np.cumsum(target, axis=2, dtype=np.int32, out=prefix[:, :, 1:])
    hit = np.zeros(t_idx.size, dtype=bool)
    for dy in range(-radius, radius + 1):
        half_width = math.isqrt(radius * radius - dy * dy)
        rows = y_idx + dy
        valid = (rows >= 0) & (rows < height) & ~hit
        if not valid.any():
            continue
        t_v, r_v, x_v = t_idx[valid], rows[valid], x_idx[valid]
        lo = np.clip(x_v - half_width, 0, width)
        hi = np.clip(x_v + half_width + 1, 0, width)
        found = prefix[t_v, r_v, hi] > prefix[t_v, r_v, lo]
        hit[np.flatnonzero(valid)[found]] = True
    return np.bincount(t_idx[hit], minlength=num_frames).astype(np.int64)


def boundary_f_video(pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> np.ndarray:
    """Boundary F-measure per frame (DAVIS-2017 ``f_measure``), vectorised over frames.

    Args:
        pred: ``(T, H, W)`` predicted masks (bool, or nonzero = foreground).
        gt: ``(T, H, W)`` ground-truth masks.
        bound_th: tolerance as a fraction of the image diagonal (< 1) or an integer radius in pixels (>= 1).
    Returns:
        ``(T,)`` float64 F in [0, 1].
    """
    pred_b, gt_b = _check_pair(pred, gt, 3)
    num_frames, height, width = pred_b.shape
    radius = boundary_radius(height, width, bound_th)
    out = np.empty(num_frames, dtype=np.float64)
    chunk = max(1, _MAX_CHUNK_PIXELS // (height * (width + 1)))
    for start in range(0, num_frames, chunk):
        stop = min(start + chunk, num_frames)
        pred_bd = seg2bmap(pred_b[start:stop])
        gt_bd = seg2bmap(gt_b[start:stop])
        n_pred = np.count_nonzero(pred_bd, axis=(1, 2))
        n_gt = np.count_nonzero(gt_bd, axis=(1, 2))
        pred_matched = _matched_counts(pred_bd, gt_bd, radius)
        gt_matched = _matched_counts(gt_bd, pred_bd, radius)
        for i in range(stop - start):
            out[start + i] = _f_from_counts(int(n_pred[i]), int(n_gt[i]), int(pred_matched[i]), int(gt_matched[i]))
    return out


def _f_from_counts(n_pred: int, n_gt: int, pred_matched: int, gt_matched: int) -> float:
    # The empty-boundary conventions of the official code: one side empty -> F = 0, both empty -> F = 1.
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = pred_matched / float(n_pred)
    recall = gt_matched / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Boundary F-measure of one frame: ``(H, W)`` masks -> F in [0, 1] (see :func:`boundary_f_video`)."""
    pred_b, gt_b = _check_pair(pred, gt, 2)
    return float(boundary_f_video(pred_b[None], gt_b[None], bound_th)[0])


# ---------------------------------------------------------------------------------- ReVOS A and R


def accuracy_video(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """ReVOS "A" per frame: fraction of pixels where ``pred == gt``. ``(T, H, W)`` masks -> ``(T,)`` float64."""
    pred_b, gt_b = _check_pair(pred, gt, 3)
    return np.mean(pred_b == gt_b, axis=(1, 2), dtype=np.float64)


def accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """ReVOS "A" of one frame: ``(H, W)`` masks -> pixel accuracy in [0, 1]."""
    pred_b, gt_b = _check_pair(pred, gt, 2)
    return float(accuracy_video(pred_b[None], gt_b[None])[0])


def robustness_video(pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """ReVOS "R" per frame: ``max(1 - |pred & ~gt| / (|foreground| + 1e-6), 0)``.

    Args:
        pred, gt: ``(T, H, W)`` masks.
        foreground: ``(T, H, W)`` union of all annotated objects of the video. Integer arrays are summed
            as they are (the official script sums per-object masks, so overlaps count once per object).
    Returns:
        ``(T,)`` float64 in [0, 1].
    """
    pred_b, gt_b = _check_pair(pred, gt, 3)
    fg = np.asarray(foreground)
    if fg.shape != pred_b.shape:
        raise ValueError(f"Invalid foreground shape {fg.shape}: it must equal the mask shape {pred_b.shape}.")
    false_pos = np.count_nonzero(pred_b & ~gt_b, axis=(1, 2)).astype(np.float64)
    if fg.dtype == np.bool_:
        positives = np.count_nonzero(fg, axis=(1, 2)).astype(np.float64)
    else:
        positives = fg.sum(axis=(1, 2), dtype=np.float64)
    return np.maximum(1.0 - false_pos / (positives + 1e-6), 0.0)


def robustness(pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray) -> float:
    """ReVOS "R" of one frame: ``(H, W)`` masks and foreground -> value in [0, 1]."""
    pred_b, gt_b = _check_pair(pred, gt, 2)
    fg = np.asarray(foreground)
    if fg.ndim != 2:
        raise ValueError(f"Invalid foreground shape {fg.shape}. Expected (H, W).")
    return float(robustness_video(pred_b[None], gt_b[None], fg[None])[0])
