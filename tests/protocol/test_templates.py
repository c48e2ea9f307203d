"""The videoseg-o3 prompt style reproduces the released checkpoints' texts; both styles label every frame."""

from __future__ import annotations

import numpy as np
import pytest

from videoseg_o3.protocol import (
    FrameSpec,
    Observation,
    ProtocolConfig,
    chat_messages,
    followup_observation,
    format_turn,
    initial_observation,
    parse_turn,
    system_prompt,
    to_chat_content,
)
from videoseg_o3.protocol import templates as T

# The system prompt as the released evaluation model file writes it, on one line
# (projects/sa2va/hf/models_qwen3vl/modeling_sa2va_qwen_cotv3_keyframe_withvis.py, SYS_PROMPT); the module
# constant was transcribed from the multi-line copy in projects/open_r1/constants.py (SEG_COT_SYS).
RELEASED_SYS_PROMPT_ONE_LINE = "You are a helpful assistant. Your ultimate goal is to perform video temporal grounding (VTG) and referring video object segmentation (RefVOS). Based on the text query and video content, output your thinking process within <think> and </think> tags. If anything is unclear, you can select frames from the video for a clearer view by outputting <select>{\"start\": start, \"end\": end, \"keyframe\": keyframe}</select>, where 'start' and 'end' are the start and end frame indices of the region for detailed analysis, and 'keyframe' is the corresponding keyframe index. Once the final answer is confirmed, provide it within <answer><VTG>{\"start\": start, \"end\": end, \"keyframe\": keyframe}</VTG>, <RefSeg></RefSeg></answer>."  # noqa: E501

EVAL = ProtocolConfig.preset("eval")
RL = ProtocolConfig.preset("rl")
DEFAULT = ProtocolConfig(prompt_style="default")


def _select(s: int, e: int, k: int):
    # Written by hand rather than with format_turn, which refuses negative indices.
    vtg = f'{{"start": {s}, "end": {e}, "keyframe": {k}}}'
    return parse_turn(f"<think>Step 1: a</think><select><VTG>{vtg}</VTG><RefSeg>[SEG]</RefSeg></select>")


def test_released_system_prompt() -> None:
    sp = system_prompt(EVAL)
    assert sp == RELEASED_SYS_PROMPT_ONE_LINE
    assert system_prompt(RL) == sp
    for fragment in (
        "You are a helpful assistant. Your ultimate goal is to perform video temporal grounding (VTG)",
        "output your thinking process within <think> and </think> tags.",
        '<select>{"start": start, "end": end, "keyframe": keyframe}</select>',
        '<answer><VTG>{"start": start, "end": end, "keyframe": keyframe}</VTG>, <RefSeg></RefSeg></answer>.',
    ):
        assert fragment in sp


def test_released_turn0_eval_text() -> None:
    obs = initial_observation("the red car", 100, EVAL)
    frames = obs.frames()
    temporal = [f.index for f in frames if f.role == "temporal"]
    spatial = [f.index for f in frames if f.role == "spatial"]
    assert temporal == np.linspace(0, 99, 20, dtype=int).tolist()
    assert spatial == [0, 14, 28, 42, 56, 70, 84, 99]
    assert {(f.max_pixels, f.min_pixels) for f in frames if f.role == "temporal"} == {(25088, 3136)}
    assert {(f.max_pixels, f.min_pixels) for f in frames if f.role == "spatial"} == {(200704, 3136)}
    # Released order: 20 images, their line, 8 images, their line, the question.
    assert obs.parts[:20] == frames[:20] and obs.parts[21:29] == frames[20:]
    assert obs.parts[20] == (
        "\nHere are 20 low-resolution frames in this video (frame indice is "
        "[0, 5, 10, 15, 20, 26, 31, 36, 41, 46, 52, 57, 62, 67, 72, 78, 83, 88, 93, 99])\n"
    )
    assert obs.parts[29] == "Here are 8 high-resolution frames in this video (frame indice:[0, 14, 28, 42, 56, 70, 84, 99]).\n"
    assert obs.parts[30] == (
        'The query is "the red car". Show me your thought process for finding and segmenting this target. '
        "This video has 100 frames."
    )
    assert len(obs.parts) == 31


def test_released_turn0_rl_text() -> None:
    obs = initial_observation("the red car", 100, RL)
    frames = obs.frames()
    assert [f.index for f in frames if f.role == "temporal"] == np.linspace(0, 99, 10, dtype=int).tolist()
    assert [f.index for f in frames if f.role == "spatial"] == [0, 24, 49, 74, 99]
    assert {f.max_pixels for f in frames if f.role == "spatial"} == {128 * 28 * 28}
    assert obs.parts[-1] == (
        '\nThe query is "the red car". Show me your thought process for finding and segmenting this target. '
        "This video has 100 frames.\n"
    )


def test_short_video_shows_every_frame() -> None:
    obs = initial_observation("x", 6, EVAL)
    assert [f.index for f in obs.frames() if f.role == "temporal"] == [0, 1, 2, 3, 4, 5]
    assert [f.index for f in obs.frames() if f.role == "spatial"] == [0, 1, 2, 3, 4, 5]
    assert "Here are 6 low-resolution frames in this video (frame indice is [0, 1, 2, 3, 4, 5])" in obs.text()
    one = initial_observation("x", 1, EVAL)
    assert [f.index for f in one.frames()] == [0, 0]


def test_released_followup_eval_text() -> None:
    obs = followup_observation("the red car", 100, _select(10, 40, 25), EVAL)
    frames = obs.frames()
    assert [(f.index, f.role) for f in frames] == [(10, "temporal"), (17, "temporal"), (25, "temporal"),
                                                   (32, "temporal"), (40, "temporal"), (25, "keyframe")]
    assert frames[-1].max_pixels == 512 * 28 * 28 and frames[0].max_pixels == 32 * 28 * 28
    assert obs.parts[5] == "\nHere are 5 low-resolution frames in this video (frame indices are [10, 17, 25, 32, 40])\n"
    assert obs.parts[6] == frames[-1]
    assert obs.parts[7] == "Here is key frames (frame indice:25).\n"
    # The released evaluation passes its whole turn-0 question as the query of this reminder.
    assert obs.parts[8] == (
        "The text query is 'The query is \"the red car\". Show me your thought process for finding and segmenting "
        "this target. This video has 100 frames.'.\n Continue your reasoning process inside <think> and </think>. "
        "If needed, you can continue to select images on the original video, by outputting <select> and </select> "
        "as before. If the final answer is confirmed, put your final answer inside <answer> and </answer>."
    )


def test_released_followup_rl_text() -> None:
    obs = followup_observation("the red car", 100, _select(10, 12, 50), RL)
    frames = obs.frames()
    assert [f.index for f in frames] == [10, 11, 12, 50]
    assert frames[-1].max_pixels == 256 * 28 * 28
    assert "(frame indices are [10, 11, 12])" in obs.text()
    assert obs.parts[-1].startswith("The text query is 'the red car'.\n Continue your reasoning process")


@pytest.mark.parametrize(
    ("s", "e", "k", "n", "temporal", "key"),
    [
        (10, 14, 12, 100, [10, 11, 12, 13, 14], 12),  # 5 frames: arange
        (10, 15, 12, 100, [10, 11, 12, 13, 15], 12),  # 6 frames: linspace(10, 15, 5) truncated
        (-4, 500, 900, 100, [0, 24, 49, 74, 99], 99),  # clipped into the video
        (7, 7, 7, 100, [7], 7),
        (0, 3, -1, 4, [0, 1, 2, 3], 0),
    ],
)
def test_followup_frames(s, e, k, n, temporal, key) -> None:
    obs = followup_observation("q", n, _select(s, e, k), EVAL)
    frames = obs.frames()
    assert [f.index for f in frames[:-1]] == temporal and all(f.role == "temporal" for f in frames[:-1])
    assert (frames[-1].index, frames[-1].role) == (key, "keyframe")


def test_followup_refuses_turns_that_stop() -> None:
    with pytest.raises(ValueError, match="holds no frame"):
        followup_observation("q", 100, _select(50, 10, 20), EVAL)
    answer = parse_turn(format_turn("answer", ("a", "b", "c"), "Confirmed.", 1, 2, 1))
    with pytest.raises(ValueError, match=r"Invalid turn action \(answer\)"):
        followup_observation("q", 100, answer, EVAL)


@pytest.mark.parametrize("query", ["", "   ", None])
def test_empty_query_is_rejected(query) -> None:
    with pytest.raises(ValueError, match="Invalid query"):
        initial_observation(query, 10, EVAL)


def test_default_style_labels_every_frame() -> None:
    for obs in (initial_observation("the dog", 37, DEFAULT), followup_observation("the dog", 37, _select(3, 30, 9), DEFAULT)):
        for i, part in enumerate(obs.parts):
            if isinstance(part, FrameSpec):
                assert obs.parts[i - 1] == f"Frame {part.index}: "
        assert "the dog" in obs.text()
    assert "37 frames, numbered 0 to 36" in initial_observation("the dog", 37, DEFAULT).text()
    sp = system_prompt(DEFAULT)
    for tag in ("<think>", "</think>", "<select><VTG>", "</VTG><RefSeg>[SEG]</RefSeg></select>", "<answer><VTG>", "Step 1:"):
        assert tag in sp


def test_videoseg_o3_style_labels_every_frame_by_index_lists() -> None:
    # Each index line lists the preceding images' indices, in order.
    obs = initial_observation("q", 57, EVAL)
    pending: list[int] = []
    for part in obs.parts:
        if isinstance(part, FrameSpec):
            pending.append(part.index)
        elif pending:
            assert str(pending) in part
            pending = []
    assert not pending


def test_chat_content_and_messages() -> None:
    obs0 = initial_observation("q", 30, EVAL)
    content = to_chat_content(obs0)
    assert [c["type"] for c in content] == ["image"] * 20 + ["text"] + ["image"] * 8 + ["text", "text"]
    assert all(isinstance(c["frame"], FrameSpec) for c in content if c["type"] == "image")
    assert to_chat_content(Observation(["", "a", ""])) == [{"type": "text", "text": "a"}]
    turn = format_turn("select", ("a", "b", "c"), "d", 1, 9, 4)
    obs1 = followup_observation("q", 30, parse_turn(turn), EVAL)
    msgs = chat_messages(system_prompt(EVAL), [obs0, obs1], [turn])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == [{"type": "text", "text": T.VIDEOSEG_O3_SYSTEM_PROMPT}]
    assert msgs[2]["content"] == [{"type": "text", "text": turn}]
    assert len(chat_messages("s", [obs0, obs1], [turn, turn])) == 5
    with pytest.raises(ValueError, match="Invalid dialogue"):
        chat_messages("s", [obs0], [turn, turn])
    with pytest.raises(ValueError, match="Invalid dialogue"):
        chat_messages("s", [], [])


def test_frame_spec_validation() -> None:
    with pytest.raises(ValueError, match=r"Invalid role \(overview\)"):
        FrameSpec(0, 100, 10, "overview")
    with pytest.raises(ValueError, match="Invalid pixel range"):
        FrameSpec(0, 10, 100, "temporal")


def test_messages_render_like_the_released_evaluation() -> None:
    """Through the project's ChatML template, turn 0 renders as the released evaluation's prompt text."""
    import jinja2

    from videoseg_o3.policy.tokenizer import CHAT_TEMPLATE

    obs = initial_observation("the red car", 100, EVAL)
    msgs = chat_messages(system_prompt(EVAL), [obs])
    rendered = jinja2.Environment().from_string(CHAT_TEMPLATE).render(messages=msgs, add_generation_prompt=True)
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    expected = (
        f"<|im_start|>system\n{RELEASED_SYS_PROMPT_ONE_LINE}<|im_end|>\n<|im_start|>user\n"
        + image * 20
        + "\nHere are 20 low-resolution frames in this video (frame indice is "
        "[0, 5, 10, 15, 20, 26, 31, 36, 41, 46, 52, 57, 62, 67, 72, 78, 83, 88, 93, 99])\n"
        + image * 8
        + "Here are 8 high-resolution frames in this video (frame indice:[0, 14, 28, 42, 56, 70, 84, 99]).\n"
        'The query is "the red car". Show me your thought process for finding and segmenting this target. '
        "This video has 100 frames.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rendered == expected


@pytest.mark.parametrize(
    ("size", "max_pixels", "expected"),
    [
        ((1280, 720), 32 * 784, (211, 118)),    # 921,600 px down to <= 25,088, aspect kept
        ((1280, 720), 512 * 784, (844, 475)),
        ((150, 100), 32 * 784, (150, 100)),     # already inside the range
        ((40, 30), 32 * 784, (64, 48)),         # below min_pixels (3,136): scaled up
        ((4000, 10), 32 * 784, (3167, 28)),     # a side never drops below 28 px
    ],
)
def test_frame_target_size(size, max_pixels, expected) -> None:
    spec = FrameSpec(0, max_pixels, 4 * 784, "temporal")
    w, h = spec.target_size(*size)
    assert (w, h) == expected
    if size[0] * size[1] > max_pixels and min(expected) > 28:
        assert w * h <= max_pixels


def test_frame_target_size_rejects_empty_frames() -> None:
    with pytest.raises(ValueError, match=r"Invalid frame size \(0x10\)"):
        FrameSpec(0, 100, 10, "keyframe").target_size(0, 10)
