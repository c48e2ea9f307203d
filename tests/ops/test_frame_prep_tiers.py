"""The compiled tiers of prepare_frames against the torch reference.

The C++ tier runs here; the CUDA tier's twins are marked ``gpu`` (they compare CUDA with C++ and the
reference on the same inputs) and run on a GPU runner.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from frame_prep_cases import IMAGENET_MEAN, IMAGENET_STD, SIZES, random_nv12, random_rgb
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import tol

from videoseg_o3 import _ext
from videoseg_o3.ops.frame_prep import (
    _validate,
    prepare_frames,
    prepare_frames_c,
    prepare_frames_cuda,
    prepare_frames_ref,
    yuv_to_rgb_matrix,
)

requires_c = pytest.mark.skipif(
    not (_ext.HAS_C and hasattr(_ext.C, "prepare_frames")),
    reason=f"videoseg_o3._C with prepare_frames is not built ({_ext.C_ERROR}); CI sets VIDEOSEG_REQUIRE_EXT=1 and fails instead",
)

# Boxes for (3, 37, 53) frames: whole frame, 1 x 1, across every border, fractional, a thin column.
BOXES = torch.tensor(
    [
        [0.0, 0.0, 53.0, 37.0],
        [3.2, 5.0, 4.0, 6.0],
        [-5.0, 10.0, 300.0, 100.0],
    ]
)
BOXES_2 = torch.tensor([[10.5, -2.0, 12.4, 36.6], [52.0, 36.0, 53.0, 37.0], [0.49, 0.5, 20.5, 3.5]])


def _report(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    """assert_close with the worst element named (the Liger-Kernel style mismatch report)."""
    try:
        torch.testing.assert_close(got, want, **tol(name))
    except AssertionError as exc:
        diff = (got.float() - want.float()).abs()
        idx = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
        raise AssertionError(f"{exc}\nworst at (n, c, y, x) = {idx}: got {got[idx].item()}, want {want[idx].item()}") from None


@requires_c
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("boxes", [BOXES, BOXES_2], ids=["borders", "fractional"])
def test_c_matches_reference_rgb(size: tuple[int, int], boxes: torch.Tensor) -> None:
    frames = random_rgb(3, 37, 53)
    want = prepare_frames_ref(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD)
    _report("prepare_frames_c", prepare_frames_c(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD), want)
    _report("prepare_frames_c", prepare_frames(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD, impl="c"), want)


@requires_c
@pytest.mark.parametrize("color_matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("size", [(1, 1), (9, 13), (40, 60)])
def test_c_matches_reference_nv12(color_matrix: str, size: tuple[int, int]) -> None:
    frames = random_nv12(3, 36, 54)
    boxes = torch.tensor([[0, 0, 54, 36], [1, 1, 2, 2], [7.4, -3.0, 60.0, 19.5]])
    kw = dict(pixel_format="nv12", color_matrix=color_matrix)
    want = prepare_frames_ref(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD, **kw)
    _report("prepare_frames_nv12", prepare_frames_c(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD, **kw), want)


@requires_c
def test_c_reads_non_contiguous_frames_in_place() -> None:
    base = random_rgb(4, 40, 64)
    views = {
        "strided rows and columns": base[::2, 1::3, ::2],
        "channels reversed by a permuted layout": base.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1),
        "broadcast frame": base[:1].expand(3, 40, 64, 3),
    }
    for name, frames in views.items():
        n, h, w, _ = frames.shape
        boxes = torch.tensor([[1, 2, w, h]] * n, dtype=torch.float32)
        want = prepare_frames_ref(frames.contiguous(), boxes, (11, 7), IMAGENET_MEAN, IMAGENET_STD)
        got = prepare_frames_c(frames, boxes, (11, 7), IMAGENET_MEAN, IMAGENET_STD)
        _report("prepare_frames_c", got, want)
    nv12 = random_nv12(2, 12, 20)
    padded = torch.zeros(2, 18, 32, dtype=torch.uint8)
    padded[:, :, :20] = nv12  # a row pitch wider than the width, as decoders allocate surfaces
    got = prepare_frames_c(padded[:, :, :20], None, (5, 9), IMAGENET_MEAN, IMAGENET_STD, pixel_format="nv12")
    want = prepare_frames_ref(nv12, None, (5, 9), IMAGENET_MEAN, IMAGENET_STD, pixel_format="nv12")
    _report("prepare_frames_nv12", got, want)
    spread = torch.zeros(2, 18, 40, dtype=torch.uint8)
    spread[:, :, ::2] = nv12  # every other byte: the generic (non-unit column stride) NV12 path
    boxes = torch.tensor([[3, 1, 20, 12], [0, 0, 7, 5]])
    got = prepare_frames_c(spread[:, :, ::2], boxes, (5, 9), IMAGENET_MEAN, IMAGENET_STD, pixel_format="nv12")
    want = prepare_frames_ref(nv12, boxes, (5, 9), IMAGENET_MEAN, IMAGENET_STD, pixel_format="nv12")
    _report("prepare_frames_nv12", got, want)


@requires_c
def test_c_empty_batch_and_out_dtypes() -> None:
    out = prepare_frames_c(random_rgb(0, 5, 5), torch.zeros(0, 4), (2, 3), IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (0, 3, 2, 3)
    frames = random_rgb(2, 9, 9)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        got = prepare_frames_c(frames, None, (4, 4), IMAGENET_MEAN, IMAGENET_STD, out_dtype=dtype)
        assert got.dtype == dtype
        want = prepare_frames_ref(frames, None, (4, 4), IMAGENET_MEAN, IMAGENET_STD, out_dtype=dtype)
        torch.testing.assert_close(got.float(), want.float(), **tol("prepare_frames_lowp"))


@requires_c
@pytest.mark.parametrize("num_threads", [1, 2, 5])
def test_c_result_does_not_depend_on_thread_count(num_threads: int) -> None:
    frames = random_rgb(3, 37, 53)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = prepare_frames_c(frames, BOXES_2, (17, 23), IMAGENET_MEAN, IMAGENET_STD)
        torch.set_num_threads(num_threads)
        many = prepare_frames_c(frames, BOXES_2, (17, 23), IMAGENET_MEAN, IMAGENET_STD)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one, many, atol=0.0, rtol=0.0)


@requires_c
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    out_hw=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    nv12=st.booleans(),
    data=st.data(),
)
def test_c_matches_reference_on_random_geometry(
    n: int, hw: tuple[int, int], out_hw: tuple[int, int], nv12: bool, data: st.DataObject
) -> None:
    h, w = hw
    if nv12:  # 4:2:0 needs even sides
        h, w = 2 * ((h + 1) // 2), 2 * ((w + 1) // 2)
    boxes = []
    for _ in range(n):
        x0 = data.draw(st.integers(-3, w - 1))
        y0 = data.draw(st.integers(-3, h - 1))
        x1 = data.draw(st.integers(max(x0, 0) + 1, w + 3))
        y1 = data.draw(st.integers(max(y0, 0) + 1, h + 3))
        boxes.append([x0, y0, x1, y1])
    frames = random_nv12(n, h, w, seed=h * 31 + w) if nv12 else random_rgb(n, h, w, seed=h * 31 + w)
    b = torch.tensor(boxes, dtype=torch.float32)
    kw = dict(pixel_format="nv12" if nv12 else "rgb", color_matrix=data.draw(st.sampled_from(["bt601", "bt709"])))
    want = prepare_frames_ref(frames, b, out_hw, IMAGENET_MEAN, IMAGENET_STD, **kw)
    got = prepare_frames_c(frames, b, out_hw, IMAGENET_MEAN, IMAGENET_STD, **kw)
    _report("prepare_frames_nv12" if nv12 else "prepare_frames_c", got, want)


@requires_c
def test_c_binding_rejects_inconsistent_arrays() -> None:
    frames = random_rgb(1, 8, 8).numpy()
    out = np.zeros((1, 3, 4, 4), dtype=np.float32)
    args = dict(scale=[1.0] * 3, bias=[0.0] * 3, yuv_matrix=[0.0] * 9, num_threads=1)
    ok = np.array([[0, 0, 8, 8]], dtype=np.int32)
    cases = [
        (dict(boxes=np.array([[0, 0, 9, 8]], dtype=np.int32)), "box at index 0"),
        (dict(boxes=np.array([[4, 0, 4, 8]], dtype=np.int32)), "box at index 0"),
        (dict(boxes=ok.astype(np.int64)), "Invalid boxes"),
        (dict(out=np.zeros((1, 3, 4, 4), dtype=np.float64)), "Invalid out"),
        (dict(out=np.zeros((1, 3, 4, 8), dtype=np.float32)[..., ::2]), "Invalid out"),
        (dict(out=np.zeros((2, 3, 4, 4), dtype=np.float32)), "Invalid out"),
        (dict(frames=frames.astype(np.float32)), "Invalid frames dtype"),
        (dict(frames=frames[..., :2]), "Invalid frames shape"),
        (dict(pixel_format="yuv"), "Invalid pixel_format"),
    ]
    for override, message in cases:
        call = {"frames": frames, "pixel_format": "rgb", "boxes": ok, "out": out, **args, **override}
        with pytest.raises(ValueError, match=message):
            _ext.C.prepare_frames(**call)


@requires_c
def test_c_releases_the_gil() -> None:
    """Another Python thread makes progress while the C++ op runs (on one worker thread)."""
    frames = random_rgb(8, 240, 320).numpy()
    boxes = np.array([[0, 0, 320, 240]] * 8, dtype=np.int32)
    out = np.empty((8, 3, 224, 224), dtype=np.float32)
    window: list[float] = []

    def work() -> None:
        t0 = time.perf_counter()
        for _ in range(3):
            _ext.C.prepare_frames(frames, "rgb", boxes, out, [1.0] * 3, [0.0] * 3, [0.0] * 9, 1)
        window.extend((t0, time.perf_counter()))

    stamps: list[float] = []
    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    t0, t1 = window
    margin = 0.25 * (t1 - t0)
    inside = [t for t in stamps if t0 + margin < t < t1 - margin]
    assert len(inside) > 100, f"only {len(inside)} main-thread steps during a {t1 - t0:.3f} s call: the GIL was held"


# --- the CUDA kernel's per-pixel arithmetic, compiled for the host ---------------------------------------


def _pixelwise(frames: torch.Tensor, boxes: torch.Tensor | None, size: tuple[int, int], **kw: str) -> torch.Tensor:
    """What the CUDA tier computes, evaluated on the CPU by ``_C.prepare_frames_pixelwise``."""
    req = _validate(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD, kw.get("pixel_format", "rgb"), kw.get("color_matrix", "bt601"), torch.float32)
    out = torch.empty((req.num_frames, 3, req.out_h, req.out_w))
    scale, bias = req.scale_bias()
    matrix = list(yuv_to_rgb_matrix(req.color_matrix))
    _ext.C.prepare_frames_pixelwise(frames.numpy(), req.pixel_format, req.boxes.to(torch.int32).numpy(), out.numpy(), scale, bias, matrix)
    return out


@requires_c
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("boxes", [BOXES, BOXES_2], ids=["borders", "fractional"])
def test_cuda_arithmetic_matches_reference_rgb(size: tuple[int, int], boxes: torch.Tensor) -> None:
    frames = random_rgb(3, 37, 53)
    want = prepare_frames_ref(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD)
    _report("prepare_frames_cuda", _pixelwise(frames, boxes, size), want)
    _report("prepare_frames_cuda", _pixelwise(frames[:, ::2, ::3], None, size), prepare_frames_ref(frames[:, ::2, ::3], None, size, IMAGENET_MEAN, IMAGENET_STD))


@requires_c
@pytest.mark.parametrize("color_matrix", ["bt601", "bt709"])
def test_cuda_arithmetic_matches_reference_nv12(color_matrix: str) -> None:
    nv12 = random_nv12(3, 36, 54)
    padded = torch.zeros(3, 54, 64, dtype=torch.uint8)
    padded[:, :, :54] = nv12
    boxes = torch.tensor([[0, 0, 54, 36], [1, 1, 2, 2], [7.4, -3.0, 60.0, 19.5]])
    kw = dict(pixel_format="nv12", color_matrix=color_matrix)
    for size in [(1, 1), (31, 17), (72, 100)]:
        want = prepare_frames_ref(nv12, boxes, size, IMAGENET_MEAN, IMAGENET_STD, **kw)
        _report("prepare_frames_nv12", _pixelwise(padded[:, :, :54], boxes, size, **kw), want)


# --- CUDA tier: runs on a GPU runner -------------------------------------------------------------------


def _cuda(x: torch.Tensor) -> torch.Tensor:
    from videoseg_o3.device import default_device

    return x.to(default_device())


@pytest.mark.gpu
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("boxes", [BOXES, BOXES_2], ids=["borders", "fractional"])
def test_cuda_matches_c_and_reference_rgb(size: tuple[int, int], boxes: torch.Tensor) -> None:
    frames = random_rgb(3, 37, 53)
    want = prepare_frames_ref(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD)
    got = prepare_frames_cuda(_cuda(frames), boxes, size, IMAGENET_MEAN, IMAGENET_STD)
    _report("prepare_frames_cuda", got.cpu(), want)
    _report("prepare_frames_cuda", got.cpu(), prepare_frames_c(frames, boxes, size, IMAGENET_MEAN, IMAGENET_STD))
    auto = prepare_frames(_cuda(frames), _cuda(boxes), size, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(auto, got, atol=0.0, rtol=0.0)


@pytest.mark.gpu
@pytest.mark.parametrize("color_matrix", ["bt601", "bt709"])
def test_cuda_matches_c_nv12_with_pitch(color_matrix: str) -> None:
    nv12 = random_nv12(3, 36, 54)
    padded = torch.zeros(3, 54, 64, dtype=torch.uint8)
    padded[:, :, :54] = nv12
    boxes = torch.tensor([[0, 0, 54, 36], [1, 1, 2, 2], [7.4, -3.0, 60.0, 19.5]])
    kw = dict(pixel_format="nv12", color_matrix=color_matrix)
    got = prepare_frames_cuda(_cuda(padded)[:, :, :54], boxes, (31, 17), IMAGENET_MEAN, IMAGENET_STD, **kw)
    want_c = prepare_frames_c(nv12, boxes, (31, 17), IMAGENET_MEAN, IMAGENET_STD, **kw)
    _report("prepare_frames_cuda", got.cpu(), want_c)
    _report("prepare_frames_nv12", got.cpu(), prepare_frames_ref(nv12, boxes, (31, 17), IMAGENET_MEAN, IMAGENET_STD, **kw))


@pytest.mark.gpu
def test_cuda_non_contiguous_empty_and_side_stream() -> None:
    frames = random_rgb(4, 40, 64)
    view = _cuda(frames)[::2, 1::3, ::2]
    n, h, w, _ = view.shape
    boxes = torch.tensor([[1, 2, w, h]] * n, dtype=torch.float32)
    want = prepare_frames_c(frames[::2, 1::3, ::2], boxes, (11, 7), IMAGENET_MEAN, IMAGENET_STD)
    stream = torch.cuda.Stream(device=view.device)
    with torch.cuda.stream(stream):
        got = prepare_frames_cuda(view, boxes, (11, 7), IMAGENET_MEAN, IMAGENET_STD, out_dtype=torch.bfloat16)
    stream.synchronize()
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float().cpu(), want, **tol("prepare_frames_lowp"))
    empty = prepare_frames_cuda(_cuda(random_rgb(0, 4, 4)), torch.zeros(0, 4), (2, 2), IMAGENET_MEAN, IMAGENET_STD)
    assert empty.shape == (0, 3, 2, 2) and empty.device == view.device


@pytest.mark.gpu
def test_c_tier_refuses_cuda_tensors() -> None:
    with pytest.raises(RuntimeError, match="cannot take these inputs"):
        prepare_frames(_cuda(random_rgb(1, 4, 4)), None, (2, 2), IMAGENET_MEAN, IMAGENET_STD, impl="c")
