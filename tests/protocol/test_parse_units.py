"""parse_turn on hand-written good and bad turns."""

from __future__ import annotations

import time

import pytest

from tests.protocol import released_reference as ref
from videoseg_o3.protocol import ProtocolConfig, anchor_frame, next_step, parse_turn

GOOD_SELECT = (
    "<think>Step 1: The dog runs in from the left around frame 30. Step 2: It is small and brown. "
    "Step 3: 'the dog that jumps first' means the first jumper. Action: See new segment.</think>\n"
    '<select><VTG>{"start": 30, "end": 60, "keyframe": 45}</VTG><RefSeg>[SEG]</RefSeg></select>'
)
GOOD_ANSWER = (
    "<think>Step 1: visible 30-60. Step 2: brown. Step 3: jumps first. Action: Confirmed.</think>"
    '<answer><VTG>{"start": 32, "end": 58, "keyframe": 41}</VTG><RefSeg>[SEG]</RefSeg></answer>'
)


def test_good_select() -> None:
    p = parse_turn(GOOD_SELECT)
    assert (p.action, p.start, p.end, p.keyframe) == ("select", 30, 60, 45)
    assert p.error is None and p.strict_ok and p.reference_format_ok and p.has_seg
    assert p.steps_present == (True, True, True) and p.has_action and p.num_seg_tokens == 1
    assert p.think is not None and p.think.startswith("Step 1: The dog")
    assert p.clipped(50) == (30, 49, 45)


def test_good_answer_with_trailing_end_token() -> None:
    p = parse_turn(GOOD_ANSWER + "<|im_end|>\n")
    assert p.action == "answer" and p.error is None and (p.start, p.end, p.keyframe) == (32, 58, 41)


@pytest.mark.parametrize(
    ("text", "action", "values", "error", "reference_ok"),
    [
        # Released system-prompt form: no <VTG> inside <select>; the evaluation reads the body as JSON.
        ('<think>a</think><select>{"start": 1, "end": 5, "keyframe": 3}</select>', "select", (1, 5, 3), "missing <VTG>", False),
        # Extra spaces and newlines inside the JSON and between the blocks are fine and strict.
        ('<think>a</think>\n\n <answer> <VTG> {  "start" :1 ,"end":  5,\n"keyframe":3 } </VTG> , <RefSeg> [SEG] </RefSeg> </answer>',
         "answer", (1, 5, 3), None, True),
        # Integer-valued floats and numeric strings are read (the evaluation applies int()), but not strict.
        ('<think>a</think><select><VTG>{"start": 1.0, "end": "5", "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></select>',
         "select", (1, 5, 3), "must be JSON integers", True),
        # Single-quoted (Python-style) payload: values recovered, JSON check fails as in the released reward.
        ("<think>a</think><select><VTG>{'start': 1, 'end': 5, 'keyframe': 3}</VTG><RefSeg>[SEG]</RefSeg></select>",
         "select", (1, 5, 3), "JSON object", False),
        # A select without a keyframe cannot be acted on.
        ('<think>a</think><select><VTG>{"start": 1, "end": 5}</VTG><RefSeg>[SEG]</RefSeg></select>',
         "invalid", (1, 5, None), "select without a readable", False),
        # An answer without a readable VTG still ends the episode as an answer.
        ("<think>a</think><answer><VTG>oops</VTG><RefSeg>[SEG]</RefSeg></answer>", "answer", (None, None, None), "JSON object", False),
        ('<think>a</think><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg></RefSeg></answer>',
         "answer", (1, 5, 3), "does not hold [SEG]", False),
        ('<think>a</think><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG>[SEG]</answer>',
         "answer", (1, 5, 3), "missing <RefSeg>", False),
        # No think block.
        ('<answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></answer>',
         "answer", (1, 5, 3), "missing <think>", False),
        # Upper-case think tags: usable, not strict (the released check is case-sensitive).
        ('<THINK>a</THINK><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></answer>',
         "answer", (1, 5, 3), "lower case", False),
        # Truncated turn (no closing tag): no action; the VTG is still read for the anchor.
        ('<think>a</think><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg>',
         "invalid", (1, 5, 3), "no complete", False),
        # Two actions: the first counts; the released check passes it, the strict one does not.
        ('<think>a</think><select><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></select>'
         '<answer><VTG>{"start": 2, "end": 4, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></answer>',
         "select", (1, 5, 3), "more than one action", True),
        ('Sure! <think>a</think><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></answer>',
         "answer", (1, 5, 3), "text before <think>", True),
        ('<think>a</think><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></answer> bye',
         "answer", (1, 5, 3), "text after </answer>", True),
        ('<think>a</think> So: <answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></answer>',
         "answer", (1, 5, 3), "text between </think>", False),
        ("", "invalid", (None, None, None), "missing <think>", False),
        ("I cannot help with that.", "invalid", (None, None, None), "missing <think>", False),
        ('<think>a</think><select><VTG>{"start": true, "end": 5, "keyframe": 3}</VTG><RefSeg>[SEG]</RefSeg></select>',
         "invalid", (None, 5, 3), "select without a readable", True),
        ('<think>a</think><select><VTG>[1, 5, 3]</VTG><RefSeg>[SEG]</RefSeg></select>', "invalid", (None, None, None),
         "select without a readable", False),
    ],
)
def test_hand_written_turns(text, action, values, error, reference_ok) -> None:
    p = parse_turn(text)
    assert p.action == action, p
    assert (p.start, p.end, p.keyframe) == values, p
    if error is None:
        assert p.error is None, p
    else:
        assert p.error is not None and error in p.error, p
    assert p.reference_format_ok is reference_ok
    assert ref.strict_turn_ok(text) is reference_ok  # the oracle agrees on every hand-written case


def test_steps_are_case_insensitive_like_the_released_reward() -> None:
    p = parse_turn("<think>STEP 1 ... sTeP 2 ... step 3 ... ACTION</think>")
    assert p.steps_present == (True, True, True) and p.has_action and p.step_fraction == 1.0
    q = parse_turn("<think>Step1 and Step  2</think>")
    assert q.steps_present == (False, False, False) and q.step_fraction == 0.0


def test_non_string_input_is_an_invalid_turn() -> None:
    for value in (None, b"<think>", 3, ["<think>"]):
        p = parse_turn(value)  # type: ignore[arg-type]
        assert p.action == "invalid" and "Expected str" in (p.error or "")


def test_select_interval_clipping_and_stop_rules() -> None:
    cfg = ProtocolConfig()
    def sel(s, e, k):
        return parse_turn(
            f'<think>a</think><select><VTG>{{"start": {s}, "end": {e}, "keyframe": {k}}}</VTG><RefSeg>[SEG]</RefSeg></select>'
        )
    assert sel(-5, 500, 700).clipped(100) == (0, 99, 99)
    assert next_step(sel(-5, 500, 700), 0, 100, cfg) == "continue"
    assert next_step(sel(10, 5, 7), 0, 100, cfg) == "stop"  # e < s
    assert next_step(sel(150, 200, 160), 0, 100, cfg) == "stop"  # entirely after the video
    assert next_step(sel(-9, -2, 0), 0, 100, cfg) == "stop"  # entirely before it
    assert next_step(sel(3, 3, 3), 0, 100, cfg) == "continue"
    assert next_step(sel(3, 9, 5), 1, 100, cfg) == "continue"
    assert next_step(sel(3, 9, 5), 2, 100, cfg) == "stop"  # max_turns = 3
    assert next_step(parse_turn(GOOD_ANSWER), 0, 100, cfg) == "stop"
    assert next_step(parse_turn("junk"), 0, 100, cfg) == "stop"
    for turn_text in (GOOD_SELECT, GOOD_ANSWER, "junk"):
        for n in (1, 2, 50, 100):
            want = ref.eval_select(turn_text, n)[0]
            assert next_step(parse_turn(turn_text), 0, n, cfg) == want


def test_next_step_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"Invalid turn_index \(-1\)"):
        next_step(parse_turn(GOOD_SELECT), -1, 10, ProtocolConfig())
    with pytest.raises(ValueError, match=r"Invalid num_frames \(0\)"):
        next_step(parse_turn(GOOD_SELECT), 0, 0, ProtocolConfig())


def test_anchor_frame_rules() -> None:
    sel, ans, bad = parse_turn(GOOD_SELECT), parse_turn(GOOD_ANSWER), parse_turn("<think>x</think>")
    assert anchor_frame([sel, ans], 100) == 45  # the last select wins over the answer's keyframe
    assert anchor_frame([ans], 100) == 41
    assert anchor_frame([sel], 40) == 39  # clipped
    assert anchor_frame([bad], 100) == 50  # middle frame
    assert anchor_frame([], 7) == 3
    assert anchor_frame([bad], 100, ProtocolConfig()) == 56  # released eval: middle of linspace(0, 99, 8)
    assert anchor_frame([bad], 100, ProtocolConfig.preset("rl")) == 50  # released RL: N // 2
    truncated = parse_turn('<think>a</think><answer><VTG>{"start": 1, "end": 5, "keyframe": 3}</VTG>')
    assert anchor_frame([truncated], 100) == 3


@pytest.mark.parametrize(
    "text",
    [
        "<think>" * 200_000,
        "<think></think><select>" * 60_000,
        "<think>a</think><select><VTG>" + "[" * 200_000 + "</VTG><RefSeg>[SEG]</RefSeg></select>",
        '<think>a</think><select><VTG>{"start": ' + "9" * 100_000 + ', "end": 1, "keyframe": 1}</VTG><RefSeg>[SEG]</RefSeg></select>',
        '<think>a</think><answer><VTG>{"start": 1e999, "end": NaN, "keyframe": -Infinity}</VTG><RefSeg>[SEG]</RefSeg></answer>',
        '<think>a</think><answer><VTG>{"start": ' + "1" * 4000 + ', "end": 2, "keyframe": 2}</VTG><RefSeg>[SEG]</RefSeg></answer>',
        "<select>" * 100_000 + "</select>",
        "</think>" + " " * 300_000 + "<select>" + "</think> <answer>" * 30_000,
        "\ud800\udfff<think>\u212a\x00</think>" * 1000,
        "x" * 2_000_000,
        "<think>a</think><select><VTG>start:" + " " * 4000 + "</VTG><RefSeg>[SEG]</RefSeg></select>",
    ],
    ids=["many-think", "think-select-no-close", "json-nesting", "huge-number", "non-finite", "long-int",
         "many-select", "whitespace-runs", "surrogates", "too-long", "loose-pair-whitespace"],
)
def test_adversarial_inputs_are_bounded(text) -> None:
    t0 = time.perf_counter()
    p = parse_turn(text)
    elapsed = time.perf_counter() - t0
    assert p.action in ("select", "answer", "invalid")
    assert elapsed < 1.0, f"parse_turn took {elapsed:.2f}s on a {len(text)}-character input"


def test_huge_json_payload_is_not_decoded() -> None:
    p = parse_turn(
        '<think>a</think><answer><VTG>{"start": 1, "end": 2, "keyframe": 1' + " " * 10_000 + "}</VTG><RefSeg>[SEG]</RefSeg></answer>"
    )
    assert p.action == "answer" and p.error is not None  # beyond MAX_VTG_CHARS: never json-decoded
