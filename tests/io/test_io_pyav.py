"""Frame-exact decoding with the PyAV backend: random access equals a front-to-back decode."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from videoio_factory import index_frames, read_indices, sequential_decode

from videoseg_o3.io import FrameCacheConfig, VideoDecodeError, open_video, write_video


def _assert_exact(frames: torch.Tensor, indices: list[int], truth: list[torch.Tensor]) -> None:
    assert read_indices(frames) == list(indices)
    for row, index in enumerate(indices):
        if not torch.equal(frames[row], truth[index]):
            diff = (frames[row].int() - truth[index].int()).abs()
            raise AssertionError(f"frame {index} differs from the sequential decode: max |diff| {diff.max()}, {int((diff > 0).sum())} values")


def test_metadata(long_gop_video):
    with open_video(long_gop_video) as reader:
        assert reader.backend == "pyav"
        assert (reader.num_frames, reader.height, reader.width) == (300, 96, 128)
        assert reader.fps == pytest.approx(30.0)
        assert reader.source == str(long_gop_video)
        assert len(reader) == 300 and reader.num_decoded == 0
        assert list(reader.index.keyframes) == [0, 60, 120, 180, 240]


@pytest.mark.parametrize("seed", range(4))
def test_random_subsets_in_random_order_are_exact(long_gop_video, long_gop_truth, seed):
    rng = random.Random(seed)
    indices = rng.sample(range(300), rng.randint(1, 40))
    indices += rng.choices(indices, k=3)  # duplicates
    rng.shuffle(indices)
    with open_video(long_gop_video) as reader:
        frames = reader.get_frames(indices)
        assert frames.shape == (len(indices), 96, 128, 3) and frames.dtype == torch.uint8
        _assert_exact(frames, indices, long_gop_truth)


def test_first_last_and_keyframe_neighbours(long_gop_video, long_gop_truth):
    indices = [299, 0, 59, 60, 61, 239, 240, 298]
    with open_video(long_gop_video) as reader:
        _assert_exact(reader.get_frames(indices), indices, long_gop_truth)
    with open_video(long_gop_video) as reader:  # the last frame alone, from a fresh reader
        _assert_exact(reader.get_frames([299]), [299], long_gop_truth)


def test_accepts_ranges_arrays_and_tensors(long_gop_video, long_gop_truth):
    with open_video(long_gop_video) as reader:
        for indices in (range(10, 14), np.array([5, 3], dtype=np.int32), torch.tensor([7, 7, 1])):
            _assert_exact(reader.get_frames(indices), [int(i) for i in indices], long_gop_truth)
        assert reader.get_frames([]).shape == (0, 96, 128, 3)


def test_repeated_requests_hit_the_cache(long_gop_video):
    with open_video(long_gop_video) as reader:
        first = reader.get_frames([250, 10, 130])
        decoded = reader.num_decoded
        assert decoded > 0
        again = reader.get_frames([130, 250, 10, 10])
        assert reader.num_decoded == decoded
        assert torch.equal(again[0], first[2]) and torch.equal(again[3], first[1])


def test_later_turn_decodes_only_new_frames(long_gop_video, long_gop_truth):
    turn0 = [0, 50, 100, 150, 200, 250]
    turn1 = [100, 150, 121, 125]  # two cached, two new in the GOP starting at 120
    with open_video(long_gop_video) as reader:
        reader.get_frames(turn0)
        before = reader.num_decoded
        _assert_exact(reader.get_frames(turn1), turn1, long_gop_truth)
        # keyframe 120 .. 125, plus at most the B-frame reorder delay of this pass and of the previous one
        assert reader.num_decoded - before <= (125 - 120 + 1) + 2 + 2


def test_continuing_forward_does_not_redecode_the_gop(long_gop_video, long_gop_truth):
    with open_video(long_gop_video) as reader:
        reader.get_frames([130])
        before = reader.num_decoded
        _assert_exact(reader.get_frames([140, 141]), [140, 141], long_gop_truth)
        continued = reader.num_decoded - before
    with open_video(long_gop_video) as fresh:
        fresh.get_frames([140, 141])
        from_keyframe = fresh.num_decoded
    assert continued <= 141 - 130 + 2 < from_keyframe


def test_passed_through_frames_are_not_decoded_again(long_gop_video, long_gop_truth):
    with open_video(long_gop_video) as reader:
        reader.skip_unrequested = False  # decode every frame on the way, so all of them are cached
        reader.get_frames([150])
        before = reader.num_decoded
        assert reader.cache.num_low_priority >= 150 - 120
        _assert_exact(reader.get_frames([125, 149, 120, 137]), [125, 149, 120, 137], long_gop_truth)
        assert reader.num_decoded == before


@pytest.mark.parametrize("seed", range(3))
def test_random_turn_sequences_on_one_reader_are_exact(long_gop_video, long_gop_truth, seed):
    """Turns that move forward, backward, revisit and continue: decoder reuse must never shift a frame."""
    rng = random.Random(100 + seed)
    with open_video(long_gop_video) as reader:
        for _ in range(6):
            centre = rng.randrange(300)
            indices = [min(299, max(0, centre + rng.randint(-12, 12))) for _ in range(rng.randint(1, 6))]
            _assert_exact(reader.get_frames(indices), indices, long_gop_truth)
            _assert_exact(reader.get_frames(indices, pixel_format="rgb"), indices, long_gop_truth)


def test_skipping_unrequested_frames_changes_no_pixel(long_gop_video, long_gop_truth):
    indices = sorted(random.Random(7).sample(range(300), 25))
    with open_video(long_gop_video) as skipping, open_video(long_gop_video) as full:
        full.skip_unrequested = False
        a, b = skipping.get_frames(indices), full.get_frames(indices)
        assert torch.equal(a, b)
        _assert_exact(a, indices, long_gop_truth)
        assert skipping.num_decoded < full.num_decoded


def test_decoded_count_never_exceeds_the_seek_plan(long_gop_video):
    for seed in range(3):
        indices = sorted(random.Random(seed).sample(range(300), 30))
        with open_video(long_gop_video) as reader:
            reader.get_frames(indices)
            runs = reader.index.plan(indices)
            # each run decodes at most keyframe..last target plus the reorder delay (2 B-frames)
            assert len(indices) <= reader.num_decoded <= reader.index.decode_cost(indices) + 2 * len(runs)


def test_nv12_equals_the_sequential_nv12_decode(long_gop_video):
    truth = sequential_decode(long_gop_video, "nv12")
    indices = [3, 299, 64, 64]
    with open_video(long_gop_video) as reader:
        frames = reader.get_frames(indices, pixel_format="nv12")
        assert frames.shape == (4, 96 * 3 // 2, 128) and frames.dtype == torch.uint8
        for row, index in enumerate(indices):
            assert torch.equal(frames[row], truth[index])
        # rgb and nv12 are cached separately
        decoded = reader.num_decoded
        reader.get_frames([3], pixel_format="rgb")
        assert reader.num_decoded > decoded


def test_cache_budget_in_frames_evicts_least_recently_used(long_gop_video):
    with open_video(long_gop_video, cache=FrameCacheConfig(max_frames=2, max_bytes=None)) as reader:
        reader.get_frames([0, 1, 2])
        assert len(reader.cache) == 2
        decoded = reader.num_decoded
        reader.get_frames([1, 2])  # the two most recent: cached
        assert reader.num_decoded == decoded
        reader.get_frames([0])  # evicted: decoded again
        assert reader.num_decoded > decoded


def test_cache_budget_in_bytes(long_gop_video):
    frame_bytes = 96 * 128 * 3
    with open_video(long_gop_video, cache=FrameCacheConfig(max_frames=None, max_bytes=3 * frame_bytes)) as reader:
        frames = reader.get_frames(range(10))  # a request larger than the budget is still served whole
        assert frames.shape[0] == 10
        assert len(reader.cache) == 3 and reader.cache.nbytes == 3 * frame_bytes
    with open_video(long_gop_video, cache=FrameCacheConfig(max_frames=0)) as reader:
        reader.get_frames([5])
        assert len(reader.cache) == 0


def test_cache_config_rejects_bad_budgets():
    with pytest.raises(ValueError, match=r"Invalid FrameCacheConfig.max_frames \(-1\)"):
        FrameCacheConfig(max_frames=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        FrameCacheConfig(max_bytes=1.5)


def test_close_and_context_manager(long_gop_video):
    reader = open_video(long_gop_video)
    with reader:
        reader.get_frames([1])
    assert reader.closed
    reader.close()  # idempotent
    with pytest.raises(VideoDecodeError, match="closed"):
        reader.get_frames([1])


def test_open_gop_stream_is_exact(tmp_path):
    """Open GOPs put B-frames that reference the previous GOP before a keyframe in display order."""
    path = tmp_path / "open_gop.mkv"
    write_video(path, index_frames(150), fps=25, gop=30, bframes=3, encoder_options={"x264-params": "keyint=30:min-keyint=30:scenecut=0:open-gop=1"})
    truth = sequential_decode(path)
    indices = [29, 28, 30, 58, 59, 60, 61, 149, 0]
    with open_video(path) as reader:
        _assert_exact(reader.get_frames(indices), indices, truth)
    for index in (28, 58, 88):  # each alone, from a fresh reader
        with open_video(path) as reader:
            _assert_exact(reader.get_frames([index]), [index], truth)


CONTAINERS = [
    ("mkv", "libx264", {"gop": 30, "bframes": 2}),
    ("mov", "libx264", {"gop": 30, "bframes": 2}),
    ("webm", "libvpx-vp9", {"gop": 30}),
    ("avi", "mpeg4", {"gop": 30, "bframes": 2}),
    ("avi", "mjpeg", {}),
    ("mp4", "libx265", {"gop": 30, "bframes": 2}),
]


@pytest.mark.parametrize(("ext", "codec", "options"), CONTAINERS, ids=[f"{c}-{e}" for e, c, _ in CONTAINERS])
def test_containers_and_codecs_are_exact(tmp_path, ext, codec, options):
    path = tmp_path / f"clip.{ext}"
    write_video(path, index_frames(90), fps=24, codec=codec, **options)
    truth = sequential_decode(path)
    assert len(truth) == 90
    indices = random.Random(3).sample(range(90), 15) + [89, 0, 89]
    with open_video(path) as reader:
        assert reader.num_frames == 90 and reader.fps == pytest.approx(24.0)
        _assert_exact(reader.get_frames(indices), indices, truth)
        nv12 = reader.get_frames([10], pixel_format="nv12")
        assert nv12.shape == (1, 144, 128)
        rng = random.Random(5)
        position = 0
        for _ in range(15):  # turns that jump and step forward on the same reader
            position = rng.randrange(90) if rng.random() < 0.3 else min(89, position + rng.randint(1, 4))
            turn = [position, min(89, position + rng.randint(0, 3))]
            _assert_exact(reader.get_frames(turn), turn, truth)


def test_decode_count_for_30_of_300_frames(gop30_video):
    """30 evenly spread frames of a 300-frame video with GOP 30 and 2 B-frames.

    An isolated frame costs the reference frames before it in its GOP (keyframe, P-frames and the
    referenced B-frame: about 2/3 of its offset), and with three requests per GOP the last one sits near
    the GOP's end: about 200 frames decoded, 1.5x fewer than decoding all 300. The 5x goal needs
    requests clustered near keyframes, shorter GOPs, or image folders (where exactly the requested
    frames are decoded: tests/io/test_io_frames.py). Without skipping unrequested non-reference frames
    the saving drops to ~1.1x: this is what the skipping buys.
    """
    indices = [int(round(x)) for x in np.linspace(0, 299, 30)]
    with open_video(gop30_video) as reader:
        assert read_indices(reader.get_frames(indices)) == indices
        skipping = reader.num_decoded
    with open_video(gop30_video) as reader:
        reader.skip_unrequested = False
        reader.get_frames(indices)
        full_gops = reader.num_decoded
    assert 300 / skipping >= 1.4
    assert skipping < 0.75 * full_gops


def test_a_seek_that_lands_late_falls_back_to_the_file_start(long_gop_video, long_gop_truth):
    """If a demuxer seeks past the keyframe asked for, decoding from there would never meet the target:
    the reader must notice (the first packet is past the keyframe) and start from the file start."""
    with open_video(long_gop_video) as reader:
        index = reader.index
        late = np.append(index.pts[index.keyframes[1:]], index.pts[-1])  # each seek aims one GOP too far
        index.keyframe_seek_timestamps[:] = late
        indices = [70, 10, 250, 130]
        _assert_exact(reader.get_frames(indices), indices, long_gop_truth)


def test_next_frames_after_a_request_are_exact(long_gop_video, long_gop_truth):
    """The decoder reads a few packets ahead of the frame it outputs; frames among those it was allowed
    to drop must not be expected from the parked decoder."""
    for p in range(120, 136):
        for step in (1, 2, 3):
            with open_video(long_gop_video) as reader:
                reader.get_frames([p])
                _assert_exact(reader.get_frames([p + step]), [p + step], long_gop_truth)


@pytest.mark.parametrize("seed", range(3))
def test_small_forward_steps_on_one_reader_are_exact(long_gop_video, long_gop_truth, seed):
    """Playback-like access, where the parked decoder is continued again and again."""
    rng = random.Random(200 + seed)
    position = rng.randrange(0, 200)
    with open_video(long_gop_video) as reader:
        for _ in range(20):
            position = min(299, position + rng.randint(1, 4))
            indices = [position] if rng.random() < 0.5 else [position, min(299, position + rng.randint(1, 3))]
            _assert_exact(reader.get_frames(indices), indices, long_gop_truth)
