"""VideoSegO3.segment: the episode, the anchor, SAM2 propagation and the result record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from videoseg_o3.protocol import format_turn

STEPS = ("The ball rolls in the middle.", "It is small and red.", "The query names it.")


def _video(num_frames: int = 8, height: int = 40, width: int = 56) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (num_frames, height, width, 3), dtype=torch.uint8, generator=gen)


def test_scripted_select_then_answer_anchors_on_the_selected_keyframe(tiny_pipeline) -> None:
    video = _video()
    turns = [format_turn("select", STEPS, "See new segment.", 2, 6, 5), format_turn("answer", STEPS, "Confirmed.", 2, 6, 3)]
    result = tiny_pipeline.segment(video, "the small red ball", forced_turns=turns)

    assert result.error is None
    assert result.masks.shape == (8, 40, 56) and result.masks.dtype == torch.bool
    # docs/architecture.md#the-turn-protocol: the anchor is the last <select>'s keyframe, not the answer's.
    assert result.anchor_frame == 5
    assert [t["action"] for t in result.turns] == ["select", "answer"]
    assert result.turns[0]["interval"] == [2, 6] and result.turns[1]["keyframe"] == 3
    # the follow-up observation shows frames of the chosen interval and the keyframe
    assert set(result.turns[1]["frames_shown"]) <= set(range(2, 7)) and 5 in result.turns[1]["frames_shown"]
    # the masks are SAM2's propagation of the final [SEG] from the anchor
    expected = tiny_pipeline.segmenter.propagate(video, result.trajectory.final_seg_embedding, 5)
    assert torch.equal(result.masks, expected)
    assert result.masks.any(), "with the object score forced on, some pixels must be foreground"
    record = result.to_json()
    json.dumps(record)
    assert record["num_frames"] == 8 and record["anchor_frame"] == 5 and record["error"] is None
    assert {"episode", "propagation"} <= set(record["timings"])


def test_single_answer_anchors_on_its_keyframe(tiny_pipeline) -> None:
    result = tiny_pipeline.segment(_video(6), "the ball", forced_turns=[format_turn("answer", STEPS, "Confirmed.", 0, 5, 4)])
    assert result.anchor_frame == 4 and len(result.turns) == 1


def test_malformed_final_turn_gives_empty_masks_and_a_reason(tiny_pipeline) -> None:
    result = tiny_pipeline.segment(_video(5), "the ball", forced_turns=["I am not sure what to do."])
    assert result.masks.shape == (5, 40, 56) and not result.masks.any()
    assert result.error is not None and "[SEG]" in result.error
    assert result.turns[0]["action"] == "invalid" and result.turns[0]["error"]


def test_reader_is_reused_and_frames_decode_once(tiny_pipeline, tmp_path) -> None:
    from videoseg_o3.io import open_video

    reader = open_video(np.asarray(_video(7)))
    tiny_pipeline.segment(reader, "the ball", forced_turns=[format_turn("answer", STEPS, "Confirmed.", 0, 6, 3)])
    assert reader.num_decoded <= 7


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_is_rejected(tiny_pipeline, query: str) -> None:
    with pytest.raises(ValueError, match="query"):
        tiny_pipeline.segment(_video(3), query)


def test_missing_checkpoint_names_the_directory(tmp_path) -> None:
    from videoseg_o3.pipeline import VideoSegO3

    with pytest.raises(FileNotFoundError, match="nope"):
        VideoSegO3.from_pretrained(tmp_path / "nope")


def test_bad_video_is_a_clear_error(tiny_pipeline, tmp_path) -> None:
    from videoseg_o3.io import VideoDecodeError

    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoDecodeError, match="clip.mp4"):
        tiny_pipeline.segment(bad, "the ball")


def test_on_turn_reports_every_turn_before_propagation(tiny_pipeline) -> None:
    """Guards the live view (the web demo's turn cards): each finished turn is reported once, in
    order, equal to the final records, and all of them before SAM2 propagation starts."""
    events: list[tuple[str, object]] = []
    turns = [format_turn("select", STEPS, "See new segment.", 1, 4, 2), format_turn("answer", STEPS, "Confirmed.", 1, 4, 3)]
    result = tiny_pipeline.segment(
        _video(6), "the ball", forced_turns=turns,
        on_turn=lambda record: events.append(("turn", record)),
        progress=lambda done, total: events.append(("progress", done)),
    )
    kinds = [kind for kind, _ in events]
    assert kinds == ["turn", "turn"] + ["progress"] * 6
    assert [record for kind, record in events if kind == "turn"] == result.turns
    # without scripted turns the policy chooses, and its (single, malformed) turn is still reported
    seen: list[dict] = []
    free = tiny_pipeline.segment(_video(4), "the ball", on_turn=seen.append)
    assert seen == free.turns and len(seen) >= 1
