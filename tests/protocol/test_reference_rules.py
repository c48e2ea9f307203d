"""The protocol follows the released VideoSEG-O3 code's rules (evaluation and RL rollouts).

Expected values are written out by hand or computed, outside our code, with the released libraries'
rules (qwen-vl-utils 0.0.14 ``smart_resize``, transformers' ``smart_resize``), so a change of our code
that alters what a released checkpoint sees makes these tests fail.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from videoseg_o3.agent.frames import policy_image_sizes
from videoseg_o3.protocol import (
    ProtocolConfig,
    anchor_frame,
    followup_observation,
    initial_observation,
    next_step,
    parse_turn,
    turn0_frame_indices,
)

# A Qwen3-VL image processor as released (patch 16, merge 2, preprocessor_config.json's pixel bounds).
QWEN3_VL_PROCESSOR = SimpleNamespace(patch_size=16, merge_size=2,
                                     size={"shortest_edge": 65536, "longest_edge": 16777216})

# (width, height) of common videos -> final (h, w) the Qwen3-VL processor receives in the released evaluation
# for the three frame kinds: temporal (<= 32*28^2 px), spatial (<= 256*28^2), keyframe (<= 512*28^2).
# Computed with the released chain: its _resize_image_to_limit (bilinear, int() of the scaled sides), then
# qwen-vl-utils 0.0.14 smart_resize (factor 28, 4..16384 tokens), then transformers' smart_resize (factor 32,
# the bounds above). Without the qwen-vl-utils step the 16:9 rows would read 192x352 / 320x608 instead.
RELEASED_EVAL_SIZES = {
    (1920, 1080): [(192, 384), (320, 576), (480, 832)],
    (1280, 720): [(192, 384), (320, 576), (480, 832)],
    (854, 480): [(192, 384), (320, 576), (480, 832)],
    (640, 480): [(256, 288), (384, 512), (480, 640)],
    (640, 360): [(192, 384), (320, 576), (352, 640)],
    (1080, 1920): [(384, 192), (576, 320), (832, 480)],
    (720, 1280): [(384, 192), (576, 320), (832, 480)],
    (1024, 1024): [(256, 256), (448, 448), (640, 640)],
    (3840, 2160): [(192, 384), (320, 576), (480, 832)],
    (480, 270): [(192, 384), (288, 480), (288, 480)],
    (320, 240): [(256, 288), (256, 320), (256, 320)],
    (1280, 960): [(256, 288), (384, 512), (576, 736)],
    (2560, 1440): [(192, 384), (320, 576), (480, 832)],
    (500, 375): [(256, 288), (352, 512), (352, 512)],
}

SELECT = '<think>Step 1: a Step 2: b Step 3: c Action: look</think><select><VTG>{{"start": {s}, "end": {e}, ' \
         '"keyframe": {k}}}</VTG><RefSeg>[SEG]</RefSeg></select>'
ANSWER = '<think>Step 1: a Step 2: b Step 3: c Action: Confirmed.</think><answer><VTG>{{"start": {s}, "end": {e}, ' \
         '"keyframe": {k}}}</VTG><RefSeg>[SEG]</RefSeg></answer>'


@pytest.mark.parametrize("size", sorted(RELEASED_EVAL_SIZES))
def test_eval_frames_get_the_released_token_grids(size: tuple[int, int]) -> None:
    """Guards: qwen-vl-utils' factor-28 resize before the processor's factor-32 rounding (released style)."""
    width, height = size
    cfg = ProtocolConfig.preset("eval")
    first = initial_observation("the dog", 40, cfg)
    temporal = next(f for f in first.frames() if f.role == "temporal")
    spatial = next(f for f in first.frames() if f.role == "spatial")
    turn = parse_turn(SELECT.format(s=3, e=9, k=5), cfg)
    keyframe = next(f for f in followup_observation("the dog", 40, turn, cfg).frames() if f.role == "keyframe")
    got = policy_image_sizes(height, width, [temporal, spatial, keyframe], QWEN3_VL_PROCESSOR)
    assert got == RELEASED_EVAL_SIZES[size]


def test_default_style_keeps_the_plain_pixel_limit() -> None:
    """The project's own prompt style is not bound to the released resize chain (one processor rounding)."""
    cfg = ProtocolConfig(prompt_style="default")
    spatial = next(f for f in initial_observation("x", 40, cfg).frames() if f.role == "spatial")
    assert policy_image_sizes(1080, 1920, [spatial], QWEN3_VL_PROCESSOR) == [(320, 608)]


def test_rl_turn0_frames_use_qwen_vl_utils_with_their_own_bounds() -> None:
    """Guards: RL turn-0 frames are sized by smart_resize(factor 28, min 4*28^2, max = the frame's cap), and
    RL follow-up frames by the plain pixel limit (hand-worked for 1280x720)."""
    cfg = ProtocolConfig.preset("rl")
    first = initial_observation("x", 40, cfg)
    spatial = next(f for f in first.frames() if f.role == "spatial")
    temporal = next(f for f in first.frames() if f.role == "temporal")
    # spatial cap 128*784 = 100352: 720x1280 rounds to 728x1288 (too big); beta = sqrt(921600/100352) = 3.0305,
    # floor(237.6/28)*28 = 224, floor(422.4/28)*28 = 420
    assert spatial.policy_size(1280, 720) == (420, 224)
    # temporal cap 32*784 = 25088: beta = 6.061, floor(118.8/28)*28 = 112, floor(211.2/28)*28 = 196
    assert temporal.policy_size(1280, 720) == (196, 112)
    keyframe = next(f for f in followup_observation("x", 40, parse_turn(SELECT.format(s=1, e=4, k=2), cfg), cfg).frames()
                    if f.role == "keyframe")
    # keyframe cap 256*784 = 200704: ratio sqrt(200704/921600) = 0.46667, int(597.3) = 597, int(336.0) = 335 or 336
    w, h = keyframe.policy_size(1280, 720)
    assert (w, h) == keyframe.target_size(1280, 720) and w == 597


@pytest.mark.parametrize("num_frames,expected_spatial,expected_temporal", [
    (5, 5, 5), (6, 6, 6), (7, 5, 7), (10, 5, 10), (11, 5, 11), (12, 5, 10),
])
def test_rl_turn0_shows_all_frames_when_n_is_at_most_k_plus_1(num_frames, expected_spatial, expected_temporal) -> None:
    """Guards: the released RL rule ``linspace if N > k + 1 else arange(N)`` (k = 5 spatial, 10 temporal)."""
    temporal, spatial = turn0_frame_indices(num_frames, ProtocolConfig.preset("rl"))
    assert (len(spatial), len(temporal)) == (expected_spatial, expected_temporal)
    if num_frames > 6:
        assert spatial == [0, (num_frames - 1) // 4, (num_frames - 1) // 2, 3 * (num_frames - 1) // 4, num_frames - 1]


def test_eval_turn0_thresholds_are_unchanged() -> None:
    """The released evaluation samples when N >= count (arange for N < 20 / < 8): no margin."""
    temporal, spatial = turn0_frame_indices(9, ProtocolConfig.preset("eval"))
    assert len(temporal) == 9 and spatial == [0, 1, 2, 3, 4, 5, 6, 8]  # int(linspace(0, 8, 8))


def test_rl_select_needs_vtg_inside() -> None:
    """Guards: the RL rollouts match ``<select>.*?<VTG>(.*?)</VTG>.*?</select>`` only; the evaluation also
    reads ``<select>{json}</select>``."""
    # the form the released system prompt shows; the evaluation json.loads the whole select body
    bare = '<think>Step 1: a Step 2: b Step 3: c Action: x</think><select>{"start": 1, "end": 4, "keyframe": 2}</select>'
    rl, ev = ProtocolConfig.preset("rl"), ProtocolConfig.preset("eval")
    assert parse_turn(bare, ev).action == "select" and parse_turn(bare, ev).keyframe == 2
    assert parse_turn(bare, rl).action == "invalid"
    assert next_step(parse_turn(bare, rl), 0, 20, rl) == "stop"
    assert parse_turn(SELECT.format(s=1, e=4, k=2), rl).action == "select"


@pytest.mark.parametrize("payload", ["{'start': 1, 'end': 4, 'keyframe': 2}", "start: 1, end: 4, keyframe: 2",
                                     '{"start": 1, "end": 4, "keyframe": 2,}'])
def test_released_style_reads_vtg_with_strict_json(payload: str) -> None:
    """Guards: released evaluation = ``json.loads``; a payload it cannot decode ends the episode. The tolerant
    reading stays available as an option."""
    text = f"<think>Step 1: a Step 2: b Step 3: c Action: x</think><select><VTG>{payload}</VTG>" \
           "<RefSeg>[SEG]</RefSeg></select>"
    strict = ProtocolConfig.preset("eval")
    assert strict.vtg_json == "strict"
    assert parse_turn(text, strict).action == "invalid"
    assert next_step(parse_turn(text, strict), 0, 20, strict) == "stop"
    tolerant = ProtocolConfig(vtg_json="tolerant")
    assert parse_turn(text, tolerant).action == "select"
    assert (parse_turn(text, tolerant).start, parse_turn(text, tolerant).keyframe) == (1, 2)
    assert ProtocolConfig(prompt_style="default").vtg_json == "tolerant"


def test_strict_json_still_applies_int_like_the_released_code() -> None:
    """``int()`` of what ``json.loads`` returned: 4.7 -> 4, "6" -> 6 (the released code does the same)."""
    text = SELECT.replace("{s}", "1").replace("{e}", "4.7").replace("{k}", '"6"').replace("{{", "{").replace("}}", "}")
    turn = parse_turn(text, ProtocolConfig.preset("eval"))
    assert turn.action == "select" and (turn.start, turn.end, turn.keyframe) == (1, 4, 6)


def test_anchor_rule_with_two_selects() -> None:
    """Guards the released anchor rule: the keyframe of the LAST select, even though the answer names
    another keyframe and an earlier select named a third one."""
    cfg = ProtocolConfig.preset("eval")
    turns = [parse_turn(SELECT.format(s=0, e=20, k=7), cfg), parse_turn(SELECT.format(s=10, e=15, k=12), cfg),
             parse_turn(ANSWER.format(s=10, e=14, k=3), cfg)]
    assert anchor_frame(turns, 30, cfg) == 12
    assert anchor_frame(turns[:2], 30, cfg) == 12  # the episode ended on the second select (max turns)
    assert anchor_frame(turns[:1] + turns[2:], 30, cfg) == 7
    assert anchor_frame([turns[2]], 30, cfg) == 3  # no select: the answer's keyframe
    # a keyframe past the end is clipped, as the released code clips it
    assert anchor_frame([parse_turn(SELECT.format(s=0, e=5, k=99), cfg)], 30, cfg) == 29
    # nothing readable: the middle of the eight turn-0 spatial indices (linspace(0, 29, 8)[4] = 16)
    assert anchor_frame([parse_turn("no tags", cfg)], 30, cfg) == 16


@pytest.mark.parametrize("bad", [dict(turn0_sizing="bicubic"), dict(followup_sizing=""), dict(vtg_json="loose"),
                                 dict(turn0_show_all_margin=-1), dict(select_requires_vtg="yes")])
def test_new_config_fields_reject_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError, match="Invalid"):
        ProtocolConfig(**bad)


def test_config_round_trips_with_the_resolved_rules() -> None:
    for cfg in (ProtocolConfig.preset("eval"), ProtocolConfig.preset("rl"), ProtocolConfig(prompt_style="default")):
        assert ProtocolConfig.from_dict(cfg.to_dict()) == cfg
    rl = ProtocolConfig.preset("rl")
    assert (rl.turn0_sizing, rl.followup_sizing, rl.turn0_show_all_margin, rl.select_requires_vtg) == \
        ("qwen_vl_utils", "pixel_limit", 1, True)


@pytest.mark.parametrize("hw,expected", [
    ((720, 1280), (728, 1288)),   # round(25.7) = 26, round(45.7) = 46 sides of 28; within 4..16384 tokens
    ((10, 500), (28, 504)),       # qwen-vl-utils keeps a side >= 28 on the first rounding (transformers: 28 x 420)
    ((336, 597), (336, 588)),     # the released 16:9 spatial frame: 597 / 28 = 21.3 -> 588
    ((14, 14), (56, 56)),         # 28 x 28 < 4 tokens: beta = sqrt(3136 / 196) = 4, ceil(56 / 28) * 28
])
def test_qwen_vl_utils_rule_hand_worked(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    """Guards ``ops.frame_prep.qwen_vl_utils_resize_hw`` against qwen-vl-utils 0.0.14's smart_resize, by hand."""
    from videoseg_o3.ops.frame_prep import qwen_vl_utils_resize_hw

    assert qwen_vl_utils_resize_hw(*hw) == expected
