"""Image-folder, image-list and array sources."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from videoio_factory import index_frames, read_indices

from videoseg_o3.io import VideoDecodeError, open_video
from videoseg_o3.io.image_reader import natural_key


def _save(frames: torch.Tensor, folder, names, fmt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(frames, names):
        Image.fromarray(frame.numpy()).save(folder / name, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def test_natural_order():
    names = ["10.jpg", "9.jpg", "00002.jpg", "frame_10.png", "frame_9.png", "b.jpg", "a.jpg"]
    assert sorted(names, key=natural_key) == ["00002.jpg", "9.jpg", "10.jpg", "a.jpg", "b.jpg", "frame_9.png", "frame_10.png"]


def test_png_folder_is_lossless_and_numerically_ordered(tmp_path):
    frames = index_frames(12)
    folder = tmp_path / "JPEGImages" / "video1"
    _save(frames, folder, [f"{i}.png" for i in range(12)], "PNG")  # 10.png must come after 9.png
    (folder / "Thumbs.db").write_bytes(b"not an image")  # ignored
    with open_video(folder) as reader:
        assert reader.backend == "frames" and reader.num_frames == 12 and (reader.height, reader.width) == (96, 128)
        assert reader.fps == 30.0
        out = reader.get_frames([11, 2, 10, 2])
        assert torch.equal(out, frames[[11, 2, 10, 2]])
        assert reader.num_decoded == 3  # each distinct frame decoded once
        reader.get_frames([10, 11])
        assert reader.num_decoded == 3


def test_jpeg_folder_benchmark_layout(tmp_path):
    frames = index_frames(300)
    folder = tmp_path / "JPEGImages" / "abc123"
    _save(frames, folder, [f"{i:05d}.jpg" for i in range(300)], "JPEG")
    indices = list(range(0, 300, 10))
    with open_video(folder, fps=6) as reader:
        assert reader.fps == 6.0
        out = reader.get_frames(indices[::-1])
        assert read_indices(out) == indices[::-1]
        assert (out.int() - frames[indices[::-1]].int()).abs().float().mean() < 3  # JPEG is lossy
        # 30 of 300 frames: images decode independently, so exactly the 30 requested are decoded (10x)
        assert reader.num_decoded == 30


def test_image_list_keeps_the_given_order_and_mixed_formats(tmp_path):
    frames = index_frames(4)
    _save(frames[:2], tmp_path, ["a.png", "b.PNG"], "PNG")
    _save(frames[2:], tmp_path, ["c.jpeg", "d.JPG"], "JPEG")
    paths = [tmp_path / "d.JPG", tmp_path / "a.png", str(tmp_path / "c.jpeg"), tmp_path / "b.PNG"]
    with open_video(paths) as reader:
        assert reader.num_frames == 4
        assert read_indices(reader.get_frames(range(4))) == [3, 0, 2, 1]


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    Image.new("L", (16, 8), color=200).save(tmp_path / "0.png")
    Image.new("RGBA", (16, 8), color=(10, 20, 30, 128)).save(tmp_path / "1.png")
    with open_video(tmp_path) as reader:
        out = reader.get_frames([0, 1])
        assert out.shape == (2, 8, 16, 3)
        assert out[0].unique().tolist() == [200]
        assert out[1, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_array_source(kind):
    frames = index_frames(20)
    source = frames.numpy() if kind == "numpy" else frames
    with open_video(source, fps=12) as reader:
        assert (reader.backend, reader.num_frames, reader.fps, reader.height, reader.width) == ("array", 20, 12.0, 96, 128)
        out = reader.get_frames([19, 0, 19])
        assert torch.equal(out, frames[[19, 0, 19]])
        assert reader.num_decoded == 0  # nothing to decode
        assert reader.get_frames([]).shape == (0, 96, 128, 3)
        with pytest.raises(VideoDecodeError, match=r"frame index 20 is out of range: valid indices are 0\.\.19"):
            reader.get_frames([20])
