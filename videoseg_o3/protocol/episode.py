"""Episode control: whether to continue after a turn, and which frame anchors the video mask."""

from __future__ import annotations

from collections.abc import Sequence

from videoseg_o3.protocol.config import ProtocolConfig
from videoseg_o3.protocol.observation import _check_num_frames, turn0_frame_indices
from videoseg_o3.protocol.parse import TurnParse

__all__ = ["anchor_frame", "next_step"]


def next_step(turn: TurnParse, turn_index: int, num_frames: int, cfg: ProtocolConfig) -> str:
    """``"continue"`` (show the selected frames and generate again) or ``"stop"``.

    Stops on an ``<answer>``, on an invalid turn, on a select whose interval holds no frame of the
    video (written ``end < start``, or entirely outside ``[0, N - 1]``), and after ``cfg.max_turns``
    assistant turns (``turn_index`` is 0-based, so turn ``max_turns - 1`` is the last).
    """
    _check_num_frames(num_frames)
    if isinstance(turn_index, bool) or not isinstance(turn_index, int) or turn_index < 0:
        raise ValueError(f"Invalid turn_index ({turn_index!r}). Turns are counted from 0; pass an int >= 0.")
    if turn.action != "select" or turn.clipped(num_frames) is None or turn.interval_is_empty(num_frames):
        return "stop"
    return "continue" if turn_index + 1 < cfg.max_turns else "stop"


def anchor_frame(turns: Sequence[TurnParse], num_frames: int, cfg: ProtocolConfig | None = None) -> int:
    """The frame where the final ``[SEG]`` conditions SAM2 before propagation, in ``[0, N - 1]``.

    The keyframe of the last ``<select>`` when the episode selected at all (the answer's own keyframe
    is then ignored, as in the released evaluation); else the keyframe written in the final turn's
    ``<VTG>`` (an answer, or a turn whose VTG could still be read); else the middle frame.

    The middle frame is ``N // 2``; with ``cfg.prompt_style == "videoseg-o3"`` and the ``eval``
    variant it is the middle of the turn-0 high-resolution indices, as the released evaluation does.
    """
    _check_num_frames(num_frames)
    last = num_frames - 1
    for turn in reversed(turns):
        if turn.action == "select" and turn.keyframe is not None:
            return min(max(turn.keyframe, 0), last)
    if turns and turns[-1].keyframe is not None:
        return min(max(turns[-1].keyframe, 0), last)
    if cfg is not None and cfg.prompt_style == "videoseg-o3" and cfg.template_variant == "eval":
        spatial = turn0_frame_indices(num_frames, cfg)[1] or turn0_frame_indices(num_frames, cfg)[0]
        return spatial[len(spatial) // 2]
    return num_frames // 2
