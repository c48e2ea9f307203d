"""bench/gop_floor.py: the fewest decodes an exact decoder needs, on hand-worked streams and a real one."""

from __future__ import annotations

import numpy as np
import pytest

from bench.gop_floor import StreamLayout, gop_floor

# I0 P3 B1 B2 P6 B4 B5 | I7 P9 B8: presentation index at each decode position, keyframes at decode 0 and 7
HAND_LAYOUT = StreamLayout(np.array([0, 3, 1, 2, 6, 4, 5, 7, 9, 8]), np.array([1, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool))


@pytest.mark.parametrize("frames, expected", [
    ([0], 1),            # the keyframe alone
    ([3], 2),            # I0 -> P3
    ([2], 3),            # B2 needs I0 and P3 (decoded before it)
    ([5], 4),            # B5 needs I0, P3, P6
    ([4, 5], 5),         # shared anchors counted once
    ([8], 3),            # second GOP: I7, P9, B8 — nothing of the first GOP
    ([1, 8], 6),
    (list(range(10)), 10),
    ([5, 5, 5], 4),      # repeats ignored
])
def test_gop_floor_hand_worked(frames, expected):
    """Guards the floor's rule (keyframe of the frame's GOP + anchors decoded up to it + the frame)
    against counts worked out by hand on an I/P/B stream with two GOPs."""
    assert gop_floor(HAND_LAYOUT, frames) == expected


def test_gop_floor_intra_only_and_errors():
    """Image sequences: every frame stands alone, so the floor is the number of distinct frames."""
    layout = StreamLayout.intra_only(12)
    assert gop_floor(layout, [3, 7, 7, 11]) == 3
    assert gop_floor(layout, []) == 0
    with pytest.raises(ValueError, match="frames 0..11"):
        gop_floor(layout, [12])
    with pytest.raises(ValueError, match="permutation"):
        StreamLayout(np.array([0, 0, 1]), np.ones(3, dtype=bool))


def test_layout_anchors_match_decoder_frame_types(tmp_path):
    """The packet-only layout (demux, no decoding) must call exactly the frames the decoder reports as
    I or P "anchors", and its presentation order must match the decoder's output order (FFmpeg's own
    pict_type and timestamps are the independent reference)."""
    import av
    from av.video.frame import PictureType

    from bench.decode import make_video

    path = tmp_path / "ipb.mp4"
    make_video(path, 48, 64, 64, gop=12, bframes=2)
    layout = StreamLayout.from_file(path)
    with av.open(str(path)) as container:
        decoded = [(frame.pts, PictureType(frame.pict_type).name) for frame in container.decode(video=0)]
    assert len(decoded) == layout.num_frames == 48
    types_in_presentation = [t for _, t in sorted(decoded)]
    anchors = layout.anchors()
    decode_position = np.empty(48, dtype=np.int64)
    decode_position[layout.presentation] = np.arange(48)
    for frame, pict_type in enumerate(types_in_presentation):
        assert bool(anchors[decode_position[frame]]) == (pict_type in ("I", "P")), (frame, pict_type)
    assert "B" in types_in_presentation  # the stream does exercise reordering
    keyframes = sorted(int(layout.presentation[d]) for d in np.flatnonzero(layout.keyframe))
    assert keyframes[:4] == [0, 12, 24, 36]
    # Every frame requested: the floor is the whole stream; one frame: never more than its GOP
    assert gop_floor(layout, range(48)) == 48
    assert gop_floor(layout, [23]) <= 12
