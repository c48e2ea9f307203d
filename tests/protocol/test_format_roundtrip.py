"""format_turn writes what parse_turn reads back exactly (the SFT trace writer relies on it)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videoseg_o3.protocol import format_turn, parse_turn

# Step texts may hold anything a caption can, except the one string that would end <think> early.
step_text = st.text(max_size=60).filter(lambda s: "</think>" not in s.lower())
index = st.integers(min_value=0, max_value=100_000)


@settings(max_examples=2000, deadline=None)
@given(
    action=st.sampled_from(["select", "answer"]),
    steps=st.tuples(step_text, step_text, step_text),
    action_text=step_text,
    start=index,
    end=index,
    keyframe=index,
)
def test_format_turn_round_trips(action, steps, action_text, start, end, keyframe) -> None:
    text = format_turn(action, steps, action_text, start, end, keyframe)
    parsed = parse_turn(text)
    assert parsed.error is None, (text, parsed)
    assert parsed.strict_ok and parsed.reference_format_ok
    assert parsed.action == action
    assert (parsed.start, parsed.end, parsed.keyframe) == (start, end, keyframe)
    assert parsed.steps_present == (True, True, True) and parsed.has_action
    assert parsed.has_seg and parsed.num_seg_tokens >= 1
    assert parsed.step_fraction == 1.0


def test_format_turn_exact_text() -> None:
    text = format_turn("select", ("Early frames.", "Left side.", "The red car."), "See new segment.", 3, 9, 5)
    assert text == (
        "<think>Step 1: Early frames. Step 2: Left side. Step 3: The red car. Action: See new segment.</think>"
        '<select><VTG>{"start": 3, "end": 9, "keyframe": 5}</VTG><RefSeg>[SEG]</RefSeg></select>'
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "stop"}, "Invalid action ('stop'). Supported values are select, answer."),
        ({"start": -1}, "Invalid start (-1)"),
        ({"keyframe": True}, "Invalid keyframe (True)"),
        ({"end": 2.0}, "Invalid end (2.0)"),
        ({"action_text": "done </THINK>"}, "contains </think>"),
        ({"steps": ("a", "b")}, "Expected a tuple of three strings"),
    ],
)
def test_format_turn_rejects_bad_arguments(kwargs, message) -> None:
    args = {"action": "answer", "steps": ("a", "b", "c"), "action_text": "Confirmed.", "start": 0, "end": 4, "keyframe": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        format_turn(**args)
