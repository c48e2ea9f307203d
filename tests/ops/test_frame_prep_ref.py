"""The torch reference of frame preparation against values worked out by hand, and its argument checks."""

from __future__ import annotations

import pytest
import torch
from frame_prep_cases import IMAGENET_MEAN, IMAGENET_STD, nv12_from_yuv, random_nv12, random_rgb
from tolerances import tol

from videoseg_o3.ops.frame_prep import (
    nv12_to_rgb_ref,
    prepare_frames,
    prepare_frames_ref,
    yuv_to_rgb_matrix,
)

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 HWC -> float CHW in [0, 1]."""
    return x.permute(2, 0, 1).float() / 255.0


def test_whole_frame_same_size_is_normalisation_only() -> None:
    frames = random_rgb(2, 9, 11)
    out = prepare_frames_ref(frames, None, (9, 11), IMAGENET_MEAN, IMAGENET_STD)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for i in range(2):
        torch.testing.assert_close(out[i], (_unit(frames[i]) - mean) / std, **tol("prepare_frames_c"))


def test_one_pixel_box_fills_the_output_with_that_pixel() -> None:
    frames = random_rgb(1, 8, 8)
    out = prepare_frames_ref(frames, torch.tensor([[3.0, 5.0, 4.0, 6.0]]), (5, 7), ZERO, ONE)
    expected = frames[0, 5, 3].float() / 255.0
    torch.testing.assert_close(out[0], expected.view(3, 1, 1).expand(3, 5, 7), **tol("prepare_frames_c"))


def test_enlarging_is_plain_bilinear_with_half_pixel_centres() -> None:
    # One row [0, 255] enlarged to 4: sample points -0.25, 0.25, 0.75, 1.25 (clamped at the edges).
    frames = torch.zeros(1, 1, 2, 3, dtype=torch.uint8)
    frames[0, 0, 1] = 255
    out = prepare_frames_ref(frames, None, (1, 4), ZERO, ONE)
    expected = torch.tensor([0.0, 0.25, 0.75, 1.0])
    for c in range(3):
        torch.testing.assert_close(out[0, c, 0], expected, **tol("prepare_frames_c"))


def test_shrinking_widens_the_triangle_filter() -> None:
    # 4 -> 2: output 0 is centred at 1.0 with support 2, taps 0, 1, 2 weighted 0.75, 0.75, 0.25 (then / 1.75).
    row = torch.tensor([10, 50, 90, 200], dtype=torch.uint8)
    frames = row.view(1, 1, 4, 1).expand(1, 1, 4, 3).contiguous()
    out = prepare_frames_ref(frames, None, (1, 2), ZERO, ONE)
    first = (0.75 * 10 + 0.75 * 50 + 0.25 * 90) / 1.75 / 255.0
    second = (0.25 * 50 + 0.75 * 90 + 0.75 * 200) / 1.75 / 255.0
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([first, second]), **tol("prepare_frames_c"))


@pytest.mark.parametrize(
    "fractional, whole",
    [
        ([1.4, 2.6, 5.5, 7.49], [1, 3, 6, 7]),  # nearest edge, halves up
        ([0.5, 0.5, 1.5, 1.5], [1, 1, 2, 2]),
        ([-3.0, -1.0, 4.0, 100.0], [0, 0, 4, 8]),  # across the borders: clamped
    ],
)
def test_fractional_and_out_of_frame_boxes_round_then_clamp(fractional: list[float], whole: list[int]) -> None:
    frames = random_rgb(1, 8, 10)
    a = prepare_frames_ref(frames, torch.tensor([fractional]), (6, 6), IMAGENET_MEAN, IMAGENET_STD)
    b = prepare_frames_ref(frames, torch.tensor([whole]), (6, 6), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)
    x0, y0, x1, y1 = whole
    c = prepare_frames_ref(frames[:, y0:y1, x0:x1].contiguous(), None, (6, 6), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(a, c, atol=0.0, rtol=0.0)


def test_empty_batch() -> None:
    out = prepare_frames(random_rgb(0, 4, 4), torch.zeros(0, 4), (3, 5), IMAGENET_MEAN, IMAGENET_STD, impl="torch")
    assert out.shape == (0, 3, 3, 5) and out.dtype == torch.float32


def test_non_contiguous_input_and_out_dtype() -> None:
    frames = random_rgb(3, 12, 20)
    strided = frames[:, ::2, 1::2]  # (3, 6, 10, 3) view with odd strides
    boxes = torch.tensor([[0, 0, 10, 6], [2, 1, 7, 6], [9, 5, 10, 6]], dtype=torch.float32)
    a = prepare_frames_ref(strided, boxes, (4, 9), IMAGENET_MEAN, IMAGENET_STD)
    b = prepare_frames_ref(strided.contiguous(), boxes, (4, 9), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)
    half = prepare_frames_ref(strided, boxes, (4, 9), IMAGENET_MEAN, IMAGENET_STD, out_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half, a.to(torch.bfloat16), atol=0.0, rtol=0.0)


@pytest.mark.parametrize(
    "color_matrix, yuv, rgb",
    [
        # The standards' limited-range codes of pure red and pure blue.
        ("bt601", (81, 90, 240), (255, 0, 0)),
        ("bt601", (41, 240, 110), (0, 0, 255)),
        ("bt709", (63, 102, 240), (255, 0, 0)),
        ("bt709", (32, 240, 118), (0, 0, 255)),
        ("bt709", (235, 128, 128), (255, 255, 255)),
        ("bt601", (16, 128, 128), (0, 0, 0)),
    ],
)
def test_nv12_conversion_of_reference_colours(color_matrix: str, yuv: tuple, rgb: tuple) -> None:
    y = torch.full((1, 2, 4), yuv[0], dtype=torch.uint8)
    u = torch.full((1, 1, 2), yuv[1], dtype=torch.uint8)
    v = torch.full((1, 1, 2), yuv[2], dtype=torch.uint8)
    out = nv12_to_rgb_ref(nv12_from_yuv(y, u, v), color_matrix)
    assert out.shape == (1, 2, 4, 3)
    # The published codes are rounded to whole levels, so the recovered primaries are within ~2 levels.
    torch.testing.assert_close(out, torch.tensor(rgb, dtype=torch.float32).expand(1, 2, 4, 3), **tol("nv12_primaries_levels"))


def test_nv12_chroma_covers_two_by_two_blocks() -> None:
    y = torch.full((1, 4, 4), 128, dtype=torch.uint8)
    u = torch.tensor([[[100, 200], [128, 60]]], dtype=torch.uint8)
    v = torch.tensor([[[128, 30], [250, 128]]], dtype=torch.uint8)
    rgb = nv12_to_rgb_ref(nv12_from_yuv(y, u, v), "bt601")
    for by in range(2):
        for bx in range(2):
            block = rgb[0, 2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2].reshape(4, 3)
            assert torch.equal(block, block[:1].expand(4, 3))
    m = torch.tensor(yuv_to_rgb_matrix("bt601")).view(3, 3)
    expected = (m @ torch.tensor([112.0, -28.0, 0.0])).clamp(0, 255)
    torch.testing.assert_close(rgb[0, 0, 0], expected)


def test_nv12_prepare_matches_rgb_prepare_of_the_converted_frame() -> None:
    frames = random_nv12(2, 6, 8)
    boxes = torch.tensor([[1, 1, 7, 5], [0, 0, 8, 6]])
    for matrix in ("bt601", "bt709"):
        out = prepare_frames_ref(frames, boxes, (5, 3), IMAGENET_MEAN, IMAGENET_STD, pixel_format="nv12", color_matrix=matrix)
        rgb = nv12_to_rgb_ref(frames, matrix)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            crop = rgb[i, y0:y1, x0:x1].permute(2, 0, 1)[None]
            want = torch.nn.functional.interpolate(crop, (5, 3), mode="bilinear", antialias=True, align_corners=False)[0]
            torch.testing.assert_close(out[i], (want / 255 - mean) / std)
    assert not torch.allclose(
        prepare_frames_ref(frames, boxes, (5, 3), ZERO, ONE, pixel_format="nv12", color_matrix="bt601"),
        prepare_frames_ref(frames, boxes, (5, 3), ZERO, ONE, pixel_format="nv12", color_matrix="bt709"),
    )


GOOD = dict(frames=random_rgb(2, 6, 8), boxes=torch.tensor([[0, 0, 4, 4], [1, 1, 8, 6]]), size=(4, 4), mean=IMAGENET_MEAN, std=IMAGENET_STD)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(frames=random_rgb(2, 6, 8).float()), "Invalid frames dtype"),
        (dict(frames=[[1, 2]]), "Invalid frames"),
        (dict(frames=torch.zeros(2, 6, 8, 4, dtype=torch.uint8)), "Invalid frames shape"),
        (dict(frames=torch.zeros(2, 6, 8, dtype=torch.uint8)), "Invalid frames shape"),
        (dict(frames=torch.zeros(2, 0, 8, 3, dtype=torch.uint8), boxes=None), "at least one pixel"),
        (dict(frames=torch.zeros(2, 6, 8, 3, dtype=torch.uint8, device="meta")), "Invalid frames device"),
        (dict(boxes=torch.zeros(3, 4)), "Invalid boxes shape"),
        (dict(boxes=torch.zeros(2, 5)), "Invalid boxes shape"),
        (dict(boxes=[[0, 0, 4, 4], [1, 1, 8, 6]]), "Invalid boxes"),
        (dict(boxes=torch.ones(2, 4, dtype=torch.bool)), "Invalid boxes dtype"),
        (dict(boxes=torch.tensor([[0, 0, 4, 4], [1, 1, float("nan"), 6]])), "Invalid box at index 1"),
        (dict(boxes=torch.tensor([[0, 0, 4, 4], [3, 1, 3, 6]])), "Invalid box at index 1"),
        (dict(boxes=torch.tensor([[0.0, 0, 0.4, 4], [1, 1, 8, 6]])), "Invalid box at index 0"),
        (dict(boxes=torch.tensor([[9, 0, 12, 4], [1, 1, 8, 6]])), "Invalid box at index 0"),
        (dict(boxes=torch.tensor([[0, 0, 4, 4], [1, 5, 8, 2]])), "Invalid box at index 1"),
        (dict(size=(0, 4)), "Invalid size"),
        (dict(size=(4,)), "Invalid size"),
        (dict(size=(4.0, 4)), "Invalid size"),
        (dict(size=-3), "Invalid size"),
        (dict(mean=(0.5, 0.5)), "Invalid mean"),
        (dict(mean="abc"), "Invalid mean"),
        (dict(std=(1.0, 0.0, 1.0)), "Invalid std"),
        (dict(std=(1.0, float("inf"), 1.0)), "Invalid std"),
        (dict(pixel_format="yuv420"), "Invalid pixel_format"),
        (dict(color_matrix="bt2020"), "Invalid color_matrix"),
        (dict(out_dtype=torch.int32), "Invalid out_dtype"),
        (dict(pixel_format="nv12", frames=torch.zeros(2, 7, 8, dtype=torch.uint8)), "Invalid NV12 frames shape"),
        (dict(pixel_format="nv12", frames=torch.zeros(2, 9, 7, dtype=torch.uint8)), "Invalid NV12 frames shape"),
        (dict(pixel_format="nv12"), "Invalid frames shape"),
    ],
)
def test_bad_arguments_raise_naming_the_problem(override: dict, message: str) -> None:
    args = {**GOOD, **override}
    kwargs = {k: args.pop(k) for k in ("pixel_format", "color_matrix", "out_dtype") if k in args}
    with pytest.raises(ValueError, match=message):
        prepare_frames(args["frames"], args["boxes"], args["size"], args["mean"], args["std"], impl="torch", **kwargs)
    with pytest.raises(ValueError, match=message):
        prepare_frames_ref(args["frames"], args["boxes"], args["size"], args["mean"], args["std"], **kwargs)


def test_one_pixel_wide_output_is_resized_vertically() -> None:
    """A one-pixel-wide output still follows the height (torch's own AA kernel returns row 0 here)."""
    frames = torch.tensor([10, 110], dtype=torch.uint8).view(1, 2, 1, 1).expand(1, 2, 1, 3).contiguous()
    out = prepare_frames_ref(frames, None, (4, 1), ZERO, ONE)
    expected = torch.tensor([10.0, 35.0, 85.0, 110.0]) / 255.0
    for c in range(3):
        torch.testing.assert_close(out[0, c, :, 0], expected, **tol("prepare_frames_c"))


def _resize_width(img: torch.Tensor, n: int) -> torch.Tensor:
    """Antialiased bilinear along the last axis, written out from the rule in the module docstring."""
    w = img.shape[-1]
    scale = w / n
    support, inv = (scale, 1.0 / scale) if scale >= 1 else (1.0, 1.0)
    out = torch.zeros(*img.shape[:-1], n, dtype=torch.float64)
    for i in range(n):
        centre = scale * (i + 0.5)
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), w)
        weights = torch.tensor([max(0.0, 1.0 - abs((j - centre + 0.5) * inv)) for j in range(lo, hi)], dtype=torch.float64)
        out[..., i] = (img[..., lo:hi].double() * (weights / weights.sum())).sum(-1)
    return out


def test_reference_equals_the_written_out_separable_filter() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(120):
        h, w, oh, ow = (int(v) for v in torch.randint(1, 9, (4,), generator=gen))
        frames = random_rgb(1, h, w, seed=h * 100 + w)
        got = prepare_frames_ref(frames, None, (oh, ow), ZERO, ONE)[0].double() * 255.0
        img = frames[0].permute(2, 0, 1).double()
        want = _resize_width(_resize_width(img, ow).transpose(1, 2), oh).transpose(1, 2)
        torch.testing.assert_close(got, want, **tol("prepare_frames_ref_levels"), msg=lambda m: f"{(h, w)} -> {(oh, ow)}: {m}")
