"""write_video: what the tests' generated videos and the overlay output rely on."""

from __future__ import annotations

import io

import av
import pytest
from videoio_factory import index_frames, read_indices

from videoseg_o3.io import PacketIndex, open_video, write_video
from videoseg_o3.io.packet_index import open_container


def _index(path) -> PacketIndex:
    container, stream = open_container(path)
    try:
        return PacketIndex.build(container, stream, path)
    finally:
        container.close()


@pytest.mark.parametrize("gop", [10, 25])
def test_gop_is_exact(tmp_path, gop):
    path = tmp_path / "g.mp4"
    write_video(path, index_frames(60), fps=30, gop=gop, bframes=2)
    assert _index(path).keyframes.tolist() == list(range(0, 60, gop))


def test_bframes_zero_means_decode_order_equals_display_order(tmp_path):
    path = tmp_path / "nob.mp4"
    write_video(path, index_frames(20), fps=30, gop=10, bframes=0)
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert pts == sorted(pts)
    path_b = tmp_path / "b.mp4"
    write_video(path_b, index_frames(20), fps=30, gop=10, bframes=2)
    with av.open(str(path_b)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert pts != sorted(pts)  # B-frames reorder


def test_roundtrip_tensor_on_any_container_and_file_object(tmp_path):
    frames = index_frames(8)
    path = tmp_path / "out.mkv"
    write_video(path, frames, fps=12.5)
    with open_video(path) as reader:
        assert reader.num_frames == 8 and reader.fps == pytest.approx(12.5)
        assert read_indices(reader.get_frames(range(8))) == list(range(8))
    buffer = io.BytesIO()
    write_video(buffer, frames.numpy(), fps=8, container_format="mp4")
    assert buffer.getbuffer().nbytes > 0


def test_bad_arguments_name_the_value(tmp_path):
    frames = index_frames(2)
    cases = [
        (dict(frames=frames.float()), r"Invalid frames"),
        (dict(frames=frames[:, :, :, :2]), r"Invalid frames"),
        (dict(frames=frames[:0]), r"T >= 1"),
        (dict(frames=frames[:, :95]), r"Invalid frame size 128x95 for pix_fmt yuv420p"),
        (dict(fps=0), r"Invalid fps \(0\)"),
        (dict(gop=0), r"Invalid gop \(0\)"),
        (dict(bframes=-1), r"Invalid bframes \(-1\)"),
        (dict(codec="nosuchcodec"), r"Invalid codec \('nosuchcodec'\)"),
    ]
    for overrides, match in cases:
        kwargs = dict(frames=frames, fps=10) | overrides
        with pytest.raises(ValueError, match=match):
            write_video(tmp_path / "bad.mp4", **kwargs)
    assert not (tmp_path / "bad.mp4").exists()


def test_streaming_writer_in_chunks(tmp_path):
    from videoseg_o3.io import VideoWriter

    frames = index_frames(25)
    path = tmp_path / "chunks.mp4"
    with VideoWriter(path, fps=10, gop=10) as writer:
        for start in range(0, 25, 8):
            writer.write(frames[start:start + 8])
        writer.write(frames[:0])
    assert writer.num_frames == 25
    with open_video(path) as reader:
        assert reader.num_frames == 25 and read_indices(reader.get_frames([24, 0, 13])) == [24, 0, 13]


def test_streaming_writer_errors_remove_the_partial_file(tmp_path):
    from videoseg_o3.io import VideoWriter

    path = tmp_path / "partial.mp4"
    with pytest.raises(ValueError, match=r"Invalid frame size 64x48: this video is 128x96"):
        with VideoWriter(path, fps=10) as writer:
            writer.write(index_frames(3))
            writer.write(index_frames(1)[:, :48, :64])
    assert not path.exists()
    with pytest.raises(ValueError, match="no frames were written"):
        with VideoWriter(tmp_path / "empty.mp4", fps=10):
            pass
    assert not (tmp_path / "empty.mp4").exists()
