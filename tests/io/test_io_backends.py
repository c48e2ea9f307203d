"""Backend discovery and agreement between backends (torchcodec where it is usable, NVDEC on a GPU)."""

from __future__ import annotations

import random

import pytest
import torch
from tests.tolerances import tol
from videoio_factory import index_frames, read_indices, sequential_decode

from videoseg_o3 import device as devices
from videoseg_o3.io import available_backends, open_video, write_video
from videoseg_o3.io.nvdec_reader import nvdec_status
from videoseg_o3.io.torchcodec_reader import torchcodec_status, torchcodec_usable


def test_available_backends():
    backends = available_backends()
    assert backends[0] == "pyav" and backends[-2:] == ["frames", "array"]
    assert ("torchcodec" in backends) == (torchcodec_status() is None)
    assert ("nvdec" in backends) == (nvdec_status() is None)
    if not devices.cuda_available():
        assert "nvdec" not in backends


def test_auto_backend_per_source(long_gop_video, tmp_path):
    with open_video(long_gop_video) as reader:
        assert reader.backend == "pyav"
    with open_video(index_frames(2)) as reader:
        assert reader.backend == "array"


@pytest.mark.skipif(not torchcodec_usable(), reason=f"torchcodec is not usable here: {torchcodec_status()}")
@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm", "mov"])
def test_torchcodec_equals_pyav(tmp_path, ext):
    path = tmp_path / f"clip.{ext}"
    write_video(path, index_frames(90), fps=30, codec="libvpx-vp9" if ext == "webm" else "libx264", gop=30, bframes=None if ext == "webm" else 2)
    indices = random.Random(0).sample(range(90), 20) + [89]
    with open_video(path, backend="torchcodec") as tc, open_video(path, backend="pyav") as pa:
        assert (tc.num_frames, tc.height, tc.width) == (pa.num_frames, pa.height, pa.width)
        a, b = tc.get_frames(indices), pa.get_frames(indices)
        assert read_indices(a) == indices
        torch.testing.assert_close(a, b, **tol("torchcodec_vs_pyav_u8"))
        tc.get_frames(indices[:5])
        assert tc.num_decoded == len(set(indices))  # the repeat came from the cache


# ---- NVDEC (GPU) -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nvdec_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nvdec")
    gray, color = folder / "gray.mp4", folder / "color.mp4"
    write_video(gray, index_frames(120, gray=True), fps=30, gop=30, bframes=2)
    write_video(color, index_frames(120), fps=30, gop=30, bframes=2)
    return gray, color


@pytest.mark.gpu
def test_nvdec_nv12_is_bit_exact_with_the_cpu_decode(nvdec_videos):
    """H.264 decoding is bit-exact by specification: NVDEC's NV12 must equal FFmpeg's, plane for plane."""
    _, color = nvdec_videos
    truth = sequential_decode(color, "nv12")
    indices = random.Random(1).sample(range(120), 25) + [119, 0, 119]
    with open_video(color, backend="nvdec") as reader:
        frames = reader.get_frames(indices, pixel_format="nv12")
        assert devices.is_accelerator_tensor(frames)
        assert frames.shape == (len(indices), 96 * 3 // 2, 128) and frames.dtype == torch.uint8
        expected = torch.stack([truth[i] for i in indices]).to(frames.device)
        torch.testing.assert_close(frames, expected, **tol("nvdec_vs_cpu_nv12"))


@pytest.mark.gpu
def test_nvdec_rgb_matches_the_cpu_decode(nvdec_videos):
    gray, color = nvdec_videos
    indices = random.Random(2).sample(range(120), 20) + [119]
    for path in (gray, color):
        with open_video(path, backend="nvdec") as gpu, open_video(path) as cpu:
            a, b = gpu.get_frames(indices), cpu.get_frames(indices)
            assert devices.is_accelerator_tensor(a) and a.shape == b.shape
            assert read_indices(a) == indices
            if path == gray:  # no chroma: the two RGB conversions may differ only by rounding
                torch.testing.assert_close(a.cpu(), b, **tol("nvdec_vs_cpu_u8"))
            else:  # chroma upsampling filters differ at colour edges: compare channel means (catches swaps/matrices)
                torch.testing.assert_close(a.cpu().float().mean(dim=(1, 2)), b.float().mean(dim=(1, 2)), **tol("nvdec_vs_cpu_u8"))


@pytest.mark.gpu
def test_nvdec_caches_and_validates(nvdec_videos):
    _, color = nvdec_videos
    with open_video(color, backend="nvdec") as reader:
        reader.get_frames([5, 60])
        decoded = reader.num_decoded
        reader.get_frames([60, 5, 5])
        assert reader.num_decoded == decoded
        with pytest.raises(ValueError, match=r"frame index 120 is out of range: valid indices are 0\.\.119"):
            reader.get_frames([120])


@pytest.mark.gpu
def test_nvdec_nv12_feeds_the_cuda_frame_prep_without_a_host_copy(nvdec_videos):
    frame_prep = pytest.importorskip("videoseg_o3.ops.frame_prep")
    _, color = nvdec_videos
    with open_video(color, backend="nvdec") as reader:
        nv12 = reader.get_frames([3, 50], pixel_format="nv12")
    boxes = torch.tensor([[0.0, 0.0, 128.0, 96.0], [10.0, 20.0, 70.0, 90.0]], device=nv12.device)
    out = frame_prep.prepare_frames(nv12, boxes, (32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), pixel_format="nv12")
    assert out.shape == (2, 3, 32, 32) and out.device == nv12.device and torch.isfinite(out).all()


@pytest.mark.parametrize("gray", [True, False])
def test_cpu_nv12_frames_feed_the_frame_prep(tmp_path, gray):
    """The reader's NV12 layout is the one prepare_frames(pixel_format="nv12") expects: preparing a
    frame from its NV12 and from FFmpeg's RGB of the same decode gives the same result."""
    frame_prep = pytest.importorskip("videoseg_o3.ops.frame_prep")
    path = tmp_path / "clip.mp4"
    write_video(path, index_frames(10, gray=gray), fps=10)
    boxes = torch.tensor([[0.0, 0.0, 128.0, 96.0], [10.0, 20.0, 71.0, 90.0], [5.0, 5.0, 6.0, 6.0]])
    with open_video(path) as reader:
        nv12 = reader.get_frames([3, 7, 9], pixel_format="nv12")
        rgb = reader.get_frames([3, 7, 9])
    a = frame_prep.prepare_frames(nv12, boxes, (32, 24), (0.5,) * 3, (0.5,) * 3, pixel_format="nv12")
    b = frame_prep.prepare_frames(rgb, boxes, (32, 24), (0.5,) * 3, (0.5,) * 3)
    torch.testing.assert_close(a, b, **tol("decoded_nv12_vs_rgb_prep"))
