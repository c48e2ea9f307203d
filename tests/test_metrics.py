"""J, F, A, R against values computed by hand, and against a dense re-statement of the DAVIS-2017 code.

The hand-computed cases are worked out in the comments; the dense reference below restates the official
``f_measure`` literally (boundary map by the per-pixel rule, dilation with the skimage disk, border adds
nothing) with scipy.ndimage in place of cv2, and random masks must agree with it exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.tolerances import TOL
from videoseg_o3 import metrics

ATOL = TOL["metrics"][0]


def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


# ------------------------------------------------------------------------------------- seg2bmap


def test_seg2bmap_block_gives_ring_offset_towards_origin() -> None:
    # A 2x2 block at rows/cols 1..2 of a 5x5 frame: a pixel is boundary when it differs from its E, S or
    # SE neighbour, so the ring sits on rows/cols 0..2 with the centre (1, 1) left out.
    bmap = metrics.seg2bmap(_square(5, 5, 1, 2, 1, 2))
    expected = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(bmap, expected)


def test_seg2bmap_last_column_and_corner_rules() -> None:
    # Last column filled in a 4x4 frame: column 2 differs from its east neighbour (rows 0..3, row 3 via the
    # last-row rule); column 3 compares only with south (equal above, zero-padded at row 3 but the corner
    # is cleared).
    seg = np.zeros((4, 4), dtype=bool)
    seg[:, 3] = True
    expected = np.zeros((4, 4), dtype=bool)
    expected[:, 2] = True
    np.testing.assert_array_equal(metrics.seg2bmap(seg), expected)


def test_seg2bmap_full_frame_has_no_boundary() -> None:
    assert not metrics.seg2bmap(np.ones((6, 7), dtype=bool)).any()


def test_seg2bmap_batches_frames_independently() -> None:
    a = _square(5, 6, 1, 2, 1, 3)
    b = _square(5, 6, 0, 4, 2, 2)
    batched = metrics.seg2bmap(np.stack([a, b]))
    np.testing.assert_array_equal(batched[0], metrics.seg2bmap(a))
    np.testing.assert_array_equal(batched[1], metrics.seg2bmap(b))


# -------------------------------------------------------------------------------------------- J


def test_jaccard_hand_values() -> None:
    gt = _square(10, 10, 2, 5, 2, 5)  # 16 px
    pred = _square(10, 10, 2, 5, 4, 7)  # 16 px, overlap cols 4..5 -> 8 px, union 24
    assert metrics.jaccard(pred, gt) == pytest.approx(1 / 3, abs=ATOL)
    empty = np.zeros((10, 10), dtype=bool)
    assert metrics.jaccard(empty, empty) == 1.0
    assert metrics.jaccard(empty, gt) == 0.0
    assert metrics.jaccard(gt, gt) == 1.0


# -------------------------------------------------------------------------------------------- F


def test_boundary_radius_matches_davis_formula() -> None:
    assert metrics.boundary_radius(10, 10) == 1  # 0.008 * 14.14 = 0.113 -> 1
    assert metrics.boundary_radius(100, 100) == 2  # 0.008 * 141.4 = 1.13 -> 2
    assert metrics.boundary_radius(480, 854) == 8  # 0.008 * 979.6 = 7.84 -> 8
    assert metrics.boundary_radius(480, 854, bound_th=3) == 3
    with pytest.raises(ValueError, match="integer"):
        metrics.boundary_radius(10, 10, bound_th=2.5)
    with pytest.raises(ValueError, match="Invalid bound_th"):
        metrics.boundary_radius(10, 10, bound_th=0)


def test_boundary_f_shifted_squares_radius_one() -> None:
    # 10x10 frame -> radius 1 (the disk is the pixel and its 4 neighbours).
    # gt block rows/cols 2..5 -> boundary = perimeter of rows/cols 1..5 (16 px).
    # pred block shifted right by 2 -> perimeter of rows 1..5, cols 3..7 (16 px).
    # Matched pred pixels: top row cols 3..6 (4), bottom row cols 3..6 (4), left column (2,3) and (4,3)
    # (touching gt rows 1 and 5), right column none -> 10/16. By mirror symmetry recall is also 10/16.
    gt = _square(10, 10, 2, 5, 2, 5)
    pred = _square(10, 10, 2, 5, 4, 7)
    assert metrics.boundary_f(pred, gt) == pytest.approx(0.625, abs=ATOL)


def test_boundary_f_disk_is_round_not_square() -> None:
    # 100x100 -> radius 2: offsets with dy^2 + dx^2 <= 4, so (2, 1) is outside the disk.
    # A single pixel's boundary is a 2x2 block; moving the pixel by (2, 1) leaves exactly one of the four
    # boundary pixels on each side farther than the disk -> P = R = 3/4.
    gt = np.zeros((100, 100), dtype=bool)
    gt[50, 50] = True
    pred = np.zeros_like(gt)
    pred[52, 51] = True
    assert metrics.boundary_f(pred, gt) == pytest.approx(0.75, abs=ATOL)
    # (2, 0) keeps every pixel within the disk.
    pred2 = np.zeros_like(gt)
    pred2[52, 50] = True
    assert metrics.boundary_f(pred2, gt) == pytest.approx(1.0, abs=ATOL)


def test_boundary_f_empty_conventions() -> None:
    empty = np.zeros((8, 9), dtype=bool)
    full = np.ones((8, 9), dtype=bool)
    block = _square(8, 9, 2, 4, 2, 5)
    assert metrics.boundary_f(empty, empty) == 1.0
    assert metrics.boundary_f(empty, block) == 0.0
    assert metrics.boundary_f(block, empty) == 0.0
    # A full frame has no boundary in the DAVIS convention: full vs empty scores 1, as officially.
    assert metrics.boundary_f(full, empty) == 1.0
    assert metrics.boundary_f(block, block) == 1.0


def test_boundary_f_is_symmetric_and_video_matches_frames() -> None:
    rng = np.random.default_rng(0)
    pred = rng.random((5, 23, 31)) > 0.6
    gt = rng.random((5, 23, 31)) > 0.5
    per_video = metrics.boundary_f_video(pred, gt)
    per_frame = np.array([metrics.boundary_f(p, g) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(per_video, per_frame, atol=0)
    np.testing.assert_allclose(per_video, metrics.boundary_f_video(gt, pred), atol=1e-15)


# ------------------------------------------------------------- dense restatement of the official code


def _official_seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The BSDS rule, one pixel at a time, exactly as davis2017/metrics.py::_seg2bmap assigns it."""
    h, w = seg.shape
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = np.zeros_like(seg)
    for y in range(h):
        for x in range(w):
            b[y, x] = (seg[y, x] ^ e[y, x]) | (seg[y, x] ^ s[y, x]) | (seg[y, x] ^ se[y, x])
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _skimage_disk(radius: float) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(grid, grid)
    return (xx**2 + yy**2) <= radius**2


def _official_f(pred: np.ndarray, gt: np.ndarray) -> float:
    ndimage = pytest.importorskip("scipy.ndimage")
    bound_pix = np.ceil(0.008 * np.linalg.norm(pred.shape))
    fg_b = _official_seg2bmap(pred)
    gt_b = _official_seg2bmap(gt)
    disk = _skimage_disk(bound_pix)
    # cv2.dilate's default border never dilates from outside: same as binary_dilation with border 0.
    fg_dil = ndimage.binary_dilation(fg_b, structure=disk)
    gt_dil = ndimage.binary_dilation(gt_b, structure=disk)
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        p, r = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        p, r = 1.0, 1.0
    else:
        p = (fg_b & gt_dil).sum() / float(n_fg)
        r = (gt_b & fg_dil).sum() / float(n_gt)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (13, 17), (40, 64), (130, 120)])
def test_boundary_f_agrees_with_dense_official_restatement(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for trial in range(6):
        # Blobs rather than salt noise so that boundaries are long and partly matched.
        gt = np.zeros(shape, dtype=bool)
        pred = np.zeros(shape, dtype=bool)
        for mask in (gt, pred):
            for _ in range(3):
                y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
                mask[y0 : y0 + rng.integers(1, 30), x0 : x0 + rng.integers(1, 30)] = True
        if trial == 5:
            pred = rng.random(shape) > 0.7
        np.testing.assert_array_equal(metrics.seg2bmap(gt), _official_seg2bmap(gt))
        ours = metrics.boundary_f(pred, gt)
        assert abs(ours - _official_f(pred, gt)) <= ATOL, (shape, trial)


def test_boundary_f_matches_the_official_cv2_skimage_code_when_installed() -> None:
    """The literal official dilation (cv2.dilate with skimage's disk). Neither library is a dependency, so
    this runs where both are installed (the dense scipy restatement above always runs)."""
    cv2 = pytest.importorskip("cv2")
    morphology = pytest.importorskip("skimage.morphology")

    def official(pred: np.ndarray, gt: np.ndarray) -> float:
        bound_pix = np.ceil(0.008 * np.linalg.norm(pred.shape))
        fg_b, gt_b = _official_seg2bmap(pred), _official_seg2bmap(gt)
        kernel = morphology.disk(bound_pix).astype(np.uint8)
        fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel)
        gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
        n_fg, n_gt = fg_b.sum(), gt_b.sum()
        if n_fg == 0 or n_gt == 0:
            return 1.0 if n_fg == n_gt else 0.0
        p = np.sum(fg_b * gt_dil) / float(n_fg)
        r = np.sum(gt_b * fg_dil) / float(n_gt)
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    rng = np.random.default_rng(7)
    for shape in [(2, 2), (17, 23), (120, 160), (480, 854)]:
        for trial in range(3):
            gt = np.zeros(shape, dtype=bool)
            pred = np.zeros(shape, dtype=bool)
            for mask in (gt, pred):
                for _ in range(4):
                    y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
                    mask[y0 : y0 + rng.integers(1, shape[0] // 2 + 2), x0 : x0 + rng.integers(1, shape[1] // 2 + 2)] = True
            if trial == 2:
                pred = rng.random(shape) > 0.8
            assert abs(metrics.boundary_f(pred, gt) - official(pred, gt)) <= ATOL, (shape, trial)


# ------------------------------------------------------------------------------------- A and R


def test_accuracy_and_robustness_hand_values() -> None:
    gt = _square(4, 5, 0, 1, 0, 1)  # 4 px
    pred = _square(4, 5, 0, 1, 0, 3)  # 8 px: 4 true positives, 4 false positives
    # A: 20 px, disagreement on the 4 false positives -> 16/20.
    assert metrics.accuracy(pred, gt) == pytest.approx(0.8, abs=ATOL)
    fg = _square(4, 5, 0, 1, 0, 4)  # 10 px of annotated objects
    assert metrics.robustness(pred, gt, fg) == pytest.approx(1 - 4 / (10 + 1e-6), abs=ATOL)
    # More false positives than foreground clamps at 0.
    assert metrics.robustness(np.ones((4, 5), bool), gt, fg) == 0.0
    # Integer foreground (per-object masks summed, as the ReVOS script does) counts overlaps twice.
    fg_sum = fg.astype(np.uint8) * 2
    assert metrics.robustness(pred, gt, fg_sum) == pytest.approx(1 - 4 / (20 + 1e-6), abs=ATOL)


def test_video_forms_and_errors() -> None:
    gt = np.zeros((3, 6, 6), dtype=bool)
    gt[1, 2:4, 2:4] = True
    pred = np.zeros_like(gt)
    np.testing.assert_allclose(metrics.jaccard_video(pred, gt), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(metrics.boundary_f_video(pred, gt), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(metrics.accuracy_video(pred, gt), [1.0, 32 / 36, 1.0])
    np.testing.assert_allclose(metrics.robustness_video(pred, gt, gt), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="differ"):
        metrics.jaccard_video(pred, gt[:, :5])
    with pytest.raises(ValueError, match="Expected a 2-D"):
        metrics.jaccard(pred, gt)
    with pytest.raises(ValueError, match="foreground shape"):
        metrics.robustness_video(pred, gt, gt[:2])
