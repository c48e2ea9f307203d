"""Every bad input ends in one VideoDecodeError naming the source and the reason, quickly."""

from __future__ import annotations

import os
import sys
import time

import av
import numpy as np
import pytest
import torch
from PIL import Image
from videoio_factory import index_frames

from videoseg_o3.io import VideoDecodeError, open_video, write_video
from videoseg_o3.io import nvdec_reader


def _raises(source, match, **kwargs):
    start = time.monotonic()
    with pytest.raises(VideoDecodeError, match=match) as info:
        with open_video(source, **kwargs) as reader:
            reader.get_frames([0, reader.num_frames - 1])
    assert time.monotonic() - start < 20, "damaged input must fail fast"
    assert str(source) in str(info.value) or not isinstance(source, (str, os.PathLike))
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.fixture(scope="module")
def good_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("err") / "good.mp4"
    write_video(path, index_frames(60), fps=30, gop=30, bframes=2)
    return path


def test_missing_path(tmp_path):
    _raises(tmp_path / "nope.mp4", "no such file or folder")


def test_text_file_is_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 100)
    _raises(path, "not a video file")


def test_garbage_bytes(tmp_path):
    for ext in ("mkv", "webm", "avi", "mov", "mp4"):
        path = tmp_path / f"garbage.{ext}"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
        _raises(path, "not a video file|no video stream|truncated or corrupt|zero frames")


def test_unsupported_extension(tmp_path):
    for name in ("clip.gif", "notes.txt", "noext"):
        path = tmp_path / name
        path.write_bytes(b"x")
        err = _raises(path, "unsupported format")
        assert ".mp4, .mkv, .webm, .avi, .mov" in str(err)


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "webm", "avi"])
def test_truncated_file(tmp_path, ext):
    path = tmp_path / f"full.{ext}"
    codec = {"webm": "libvpx-vp9", "avi": "mpeg4"}.get(ext, "libx264")
    write_video(path, index_frames(90), fps=30, codec=codec, gop=30)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    _raises(cut, "truncated or corrupt|not a video file")


def test_truncated_faststart_mp4(tmp_path):
    """With the index (moov) at the front the file opens; the missing frames must still be noticed."""
    path = tmp_path / "faststart.mp4"
    write_video(path, index_frames(90), fps=30, gop=30)
    with av.open(str(path)) as src, av.open(str(tmp_path / "fs.mp4"), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    data = (tmp_path / "fs.mp4").read_bytes()
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    _raises(cut, "truncated or corrupt")


@pytest.mark.parametrize(("ext", "codec"), [("avi", "mpeg4"), ("mkv", "libx264")])
def test_zero_frames(tmp_path, ext, codec):
    path = tmp_path / f"empty.{ext}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # a header with a video track, then no packets
    assert path.stat().st_size > 0
    _raises(path, "zero frames|no frames before the end of the file")


def test_audio_only_file(tmp_path):
    path = tmp_path / "audio.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    _raises(path, "no video stream")


def test_index_out_of_range_names_index_and_range(good_mp4):
    with open_video(good_mp4) as reader:
        for bad in (60, -1, 10**9):
            with pytest.raises(VideoDecodeError, match=rf"frame index {bad} is out of range: valid indices are 0\.\.59 \(60 frames\)"):
                reader.get_frames([0, bad])
        assert reader.num_decoded == 0  # validation happens before any decoding


def test_bad_index_types(good_mp4):
    with open_video(good_mp4) as reader:
        for bad in ([1.5], [True], ["3"], 3, np.zeros((2, 2), dtype=np.int64), torch.tensor([1.0])):
            with pytest.raises(VideoDecodeError, match="frame indices must be"):
                reader.get_frames(bad)


def test_unknown_backend_lists_the_allowed_ones(good_mp4):
    err = _raises(good_mp4, r"invalid backend \('ffmpeg'\)", backend="ffmpeg")
    assert "auto, pyav, torchcodec, nvdec, frames, array" in str(err)


def test_backend_that_cannot_read_the_source(good_mp4, tmp_path):
    _raises(good_mp4, "backend 'frames' cannot read a video file", backend="frames")
    _raises(tmp_path, "backend 'pyav' cannot read a folder", backend="pyav")
    _raises(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "backend 'pyav' cannot read in-memory frames", backend="pyav")


def test_bad_pixel_format(good_mp4, tmp_path):
    with open_video(good_mp4) as reader:
        with pytest.raises(VideoDecodeError, match=r"invalid pixel_format \('yuv'\) for backend 'pyav'. Supported values are rgb, nv12."):
            reader.get_frames([0], pixel_format="yuv")
    with open_video(np.zeros((2, 8, 8, 3), dtype=np.uint8)) as reader:
        with pytest.raises(VideoDecodeError, match="Supported values are rgb."):
            reader.get_frames([0], pixel_format="nv12")


def test_fps_argument_is_for_frames_only(good_mp4):
    _raises(good_mp4, "fps applies to image folders", fps=10)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    _raises(tmp_path, "the folder has no images")


def test_images_of_different_sizes(tmp_path):
    Image.new("RGB", (32, 24)).save(tmp_path / "00000.jpg")
    Image.new("RGB", (32, 26)).save(tmp_path / "00001.jpg")
    err = _raises(tmp_path, "images of different sizes")
    assert "00001.jpg" in str(err)


def test_corrupt_and_missing_images(tmp_path):
    Image.new("RGB", (32, 24)).save(tmp_path / "00000.jpg")
    (tmp_path / "00001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _raises(tmp_path, "not an image")
    _raises([tmp_path / "00000.jpg", tmp_path / "missing.jpg"], "no such image file")
    _raises([tmp_path / "00000.jpg", tmp_path / "clip.gif"], "unsupported image format")
    _raises([], "zero frames")


def test_truncated_jpeg_fails_at_decode(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "0.jpg")
    data = (tmp_path / "0.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    with open_video(tmp_path) as reader:
        with pytest.raises(VideoDecodeError, match="1.jpg.*truncated or corrupt image"):
            reader.get_frames([1])


def test_bad_arrays():
    _raises(np.zeros((2, 8, 8, 3), dtype=np.float32), r"expected uint8 frames of shape \(T, H, W, 3\)")
    _raises(np.zeros((2, 8, 8), dtype=np.uint8), r"expected uint8 frames")
    _raises(np.zeros((0, 8, 8, 3), dtype=np.uint8), "zero frames")
    _raises({"frames": 1}, "unsupported source type dict")


def test_unusable_nvdec_is_reported(good_mp4, monkeypatch):
    monkeypatch.setattr(nvdec_reader, "nvdec_status", lambda: "no CUDA device is visible")
    _raises(good_mp4, r"backend 'nvdec' is not usable here \(no CUDA device is visible\)", backend="nvdec")


def test_pynvvideocodec_runtime_error_on_import_is_guarded(tmp_path, monkeypatch):
    """PyNvVideoCodec raises RuntimeError (not ImportError) when it finds no GPU driver."""
    fake = tmp_path / "fake_pkgs"
    fake.mkdir()
    (fake / "PyNvVideoCodec.py").write_text("raise RuntimeError('no NVIDIA driver found')\n")
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.delitem(sys.modules, "PyNvVideoCodec", raising=False)
    monkeypatch.setattr(nvdec_reader.devices, "cuda_available", lambda: True)
    nvdec_reader.nvdec_status.cache_clear()
    try:
        status = nvdec_reader.nvdec_status()
        assert status is not None and "RuntimeError: no NVIDIA driver found" in status
    finally:
        nvdec_reader.nvdec_status.cache_clear()
