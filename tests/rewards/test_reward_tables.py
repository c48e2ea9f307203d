"""Every branch of every reward, in both modes, against values worked out by hand.

Each row is (mode, episode, expected). The expected numbers come from the reward formulas of the
released training code (compat) and of the method description (intended), computed by hand in the
comment beside the row; they are not produced by the code under test. Guards: the seven reward
functions of ``videoseg_o3.rewards.terms`` (thresholds, boundaries, the compat quirks).
"""

from __future__ import annotations

import pytest

from tests.tolerances import tol
from videoseg_o3.protocol import format_turn
from videoseg_o3.rewards import RewardInput, get_reward

STEPS = ("the object moves", "it is red", "the query means the red one")


def sel(s, e, k):
    return format_turn("select", STEPS, "See new segment.", s, e, k)


def ans(s, e, k):
    return format_turn("answer", STEPS, "Answer.", s, e, k)


def raw(tag, payload, think="Step 1: a Step 2: b Step 3: c Action: d", seg="[SEG]", tail=""):
    return f"<think>{think}</think><{tag}><VTG>{payload}</VTG><RefSeg>{seg}</RefSeg></{tag}>{tail}"


# T = 10 frames, object visible on frames 2, 3, 4, 5
EXIST = [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
NONE = [0] * 10
ONLY3 = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
FIRST_AND_LAST = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
GARBAGE = "lorem ipsum <answer> {start: oops"
EPS = 1e-6  # the released precision adds 1e-6 to the interval length


def ep(texts, existence=EXIST, iou_vid=None, iou_kf=None, max_turns=3):
    n = len(texts)
    return RewardInput(texts=texts, mask_existence=existence,
                       iou_vid=iou_vid if iou_vid is not None else [[0.0] * 5] * n,
                       iou_kf=iou_kf if iou_kf is not None else [0.0] * n, max_turns=max_turns)


def check(name, mode, episode, expected):
    got = get_reward(name)(episode, mode)
    atol, rtol = tol("reward_tables").values()
    assert got == pytest.approx(expected, abs=atol, rel=rtol), f"{name} [{mode}]: got {got}, expected {expected}"


BOTH = ("intended", "compat")

# ---------------------------------------------------------------------- R1 strict_format_cot
R1 = [
    # no turns: 0 in both
    *[(m, ep([]), 0.0) for m in BOTH],
    # one clean answer / select then answer: +1
    *[(m, ep([ans(2, 5, 3)]), 1.0) for m in BOTH],
    *[(m, ep([sel(0, 9, 4), ans(2, 5, 3)]), 1.0) for m in BOTH],
    # a select cut by the turn limit (3 selects, max_turns 3): +1 in both
    *[(m, ep([sel(0, 9, 4), sel(1, 8, 3), sel(2, 6, 3)]), 1.0) for m in BOTH],
    # episode ending on a select before the limit (an empty-interval stop): released check passes, intended fails
    ("compat", ep([sel(6, 2, 3)]), 1.0),
    ("intended", ep([sel(6, 2, 3)]), -1.0),
    # text after the action block: the released regex does not care; strict parse does
    ("compat", ep([raw("answer", '{"start": 2, "end": 5, "keyframe": 3}', tail=" trailing")]), 1.0),
    ("intended", ep([raw("answer", '{"start": 2, "end": 5, "keyframe": 3}', tail=" trailing")]), -1.0),
    # float indices: released json-key check passes, strict (integers) fails
    ("compat", ep([raw("answer", '{"start": 2.0, "end": 5, "keyframe": 3}')]), 1.0),
    ("intended", ep([raw("answer", '{"start": 2.0, "end": 5, "keyframe": 3}')]), -1.0),
    # no [SEG] in RefSeg: -1 in both
    *[(m, ep([raw("answer", '{"start": 2, "end": 5, "keyframe": 3}', seg="none")]), -1.0) for m in BOTH],
    # VTG holding a JSON list (no keys): -1 in both
    *[(m, ep([raw("answer", "[2, 5, 3]")]), -1.0) for m in BOTH],
    # a missing key: -1 in both
    *[(m, ep([raw("answer", '{"start": 2, "end": 5}')]), -1.0) for m in BOTH],
    # one bad turn among good ones: -1
    *[(m, ep([sel(0, 9, 4), GARBAGE]), -1.0) for m in BOTH],
]

# ---------------------------------------------------------------------- R2 step_format_cot
R2 = [
    *[(m, ep([]), 0.0) for m in BOTH],
    *[(m, ep([ans(2, 5, 3)]), 1.0) for m in BOTH],  # Step 1/2/3 + Action: 4/4
    # case-insensitive tags and words; "step 1" and "step 3" only: 2/4
    *[(m, ep(["<THINK>STEP 1 then step 3</Think><answer></answer>"]), 0.5) for m in BOTH],
    # keywords outside the think block do not count: 0
    *[(m, ep(["Step 1 Step 2 Step 3 Action <answer></answer>"]), 0.0) for m in BOTH],
    # mean over turns: (1 + 1/4) / 2
    *[(m, ep([sel(0, 9, 4), "<think>action only</think>"]), 0.625) for m in BOTH],
]

# ---------------------------------------------------------------------- R3 lr_vtg_iou_dense
R3 = [
    *[(m, ep([]), -0.5) for m in BOTH],
    *[(m, ep([GARBAGE]), -0.5) for m in BOTH],
    # answer [2, 5] = the visible frames. compat: [2,5) = 3 visible of 3 -> 0.5 * 3/(3+eps);
    # intended: inclusive [2,5], IoU 4/4 -> 0.5
    ("compat", ep([ans(2, 5, 3)]), 0.5 * 3 / (3 + EPS)),
    ("intended", ep([ans(2, 5, 3)]), 0.5),
    # [2, 7]. compat [2,7): 4 of 5 -> 0.5 * 4/(5+eps); intended: inter 4, union 6 -> 0.5 * 2/3
    ("compat", ep([ans(2, 7, 3)]), 0.5 * 4 / (5 + EPS)),
    ("intended", ep([ans(2, 7, 3)]), 1 / 3),
    # [1, 9]. compat [1,9): 4 of 8 = 0.5 minus the eps -> < 0.5 -> -0.5; intended 4/9 < 0.5 -> -0.5
    *[(m, ep([ans(1, 9, 3)]), -0.5) for m in BOTH],
    # a one-frame answer on the only visible frame: compat s >= e -> -0.5; intended IoU 1 -> 0.5
    ("compat", ep([ans(3, 3, 3)], existence=ONLY3), -0.5),
    ("intended", ep([ans(3, 3, 3)], existence=ONLY3), 0.5),
    # end past the video: compat clamps e to T = 10: [2,10) 4 of 8 -> -0.5; intended clamps to 9: [2,9] 4/8 -> 0.25
    ("compat", ep([ans(2, 100, 3)]), -0.5),
    ("intended", ep([ans(2, 100, 3)]), 0.25),
    # negative start (written by hand: format_turn refuses it) clamps to 0.
    # compat [0,5): 3 of 5 -> 0.5 * 3/(5+eps); intended [0,5]: inter 4, union 6 -> 1/3
    ("compat", ep([raw("answer", '{"start": -3, "end": 5, "keyframe": 3}')]), 0.5 * 3 / (5 + EPS)),
    ("intended", ep([raw("answer", '{"start": -3, "end": 5, "keyframe": 3}')]), 1 / 3),
    # object visible nowhere: compat P := 1 -> 0.5 for any interval; intended abstains (0)
    ("compat", ep([ans(0, 1, 0)], existence=NONE), 0.5),
    ("intended", ep([ans(0, 1, 0)], existence=NONE), 0.0),
    # end before start: -0.5 in both
    *[(m, ep([ans(6, 2, 3)]), -0.5) for m in BOTH],
    # single-quoted payload: literal_eval reads it (compat, [2,6): 4 of 4), the tolerant parse too (intended [2,6]: 4/5)
    ("compat", ep([raw("answer", "{'start': 2, 'end': 6, 'keyframe': 3}")]), 0.5 * 4 / (4 + EPS)),
    ("intended", ep([raw("answer", "{'start': 2, 'end': 6, 'keyframe': 3}")]), 0.4),
    # a missing keyframe does not matter to this term
    ("compat", ep([raw("answer", '{"start": 2, "end": 6}')]), 0.5 * 4 / (4 + EPS)),
    ("intended", ep([raw("answer", '{"start": 2, "end": 6}')]), 0.4),
    # two answer blocks: compat reads the LAST ([2,6) -> ~0.5), the protocol parse the first ([0,1]: no overlap -> -0.5)
    ("compat", ep(['<answer><VTG>{"start": 0, "end": 1, "keyframe": 0}</VTG></answer>'
                   '<answer><VTG>{"start": 2, "end": 6, "keyframe": 3}</VTG></answer>']), 0.5 * 4 / (4 + EPS)),
    ("intended", ep(['<answer><VTG>{"start": 0, "end": 1, "keyframe": 0}</VTG></answer>'
                     '<answer><VTG>{"start": 2, "end": 6, "keyframe": 3}</VTG></answer>']), -0.5),
    # a VTG outside any select/answer block: unreadable in both
    *[(m, ep(['<think>x</think><VTG>{"start": 2, "end": 5, "keyframe": 3}</VTG>']), -0.5) for m in BOTH],
    # only the final turn counts; a final select is scored like an answer
    ("compat", ep([ans(2, 5, 3), sel(2, 7, 3)]), 0.5 * 4 / (5 + EPS)),
    ("intended", ep([sel(0, 9, 3), sel(2, 7, 3)]), 1 / 3),
    *[(m, ep([ans(2, 5, 3), GARBAGE]), -0.5) for m in BOTH],
]

# ---------------------------------------------------------------------- R4 lr_vtg_keyframe
R4 = [
    *[(m, ep([]), -1.0) for m in BOTH],
    *[(m, ep([GARBAGE]), -1.0) for m in BOTH],
    *[(m, ep([ans(2, 5, 3)]), 1.0) for m in BOTH],     # frame 3 visible
    *[(m, ep([ans(2, 5, 7)]), -1.0) for m in BOTH],    # frame 7 not
    *[(m, ep([sel(2, 5, 4)]), 1.0) for m in BOTH],     # a final select counts like an answer
    # keyframe past the end clamps to 9 (visible in FIRST_AND_LAST); negative clamps to 0
    *[(m, ep([ans(2, 5, 50)], existence=FIRST_AND_LAST), 1.0) for m in BOTH],
    *[(m, ep([raw("answer", '{"start": 2, "end": 5, "keyframe": -2}')], existence=FIRST_AND_LAST), 1.0) for m in BOTH],
    *[(m, ep([ans(2, 5, 50)]), -1.0) for m in BOTH],   # frame 9 not visible in EXIST
    # end not an integer: the released int() coercion fails -> -1; the protocol parse still has the keyframe -> +1
    ("compat", ep([raw("answer", '{"start": 2, "end": "x", "keyframe": 3}')]), -1.0),
    ("intended", ep([raw("answer", '{"start": 2, "end": "x", "keyframe": 3}')]), 1.0),
    # missing keyframe: the released default 0 (visible in FIRST_AND_LAST) -> +1; intended: no keyframe -> -1
    ("compat", ep([raw("answer", '{"start": 2, "end": 5}')], existence=FIRST_AND_LAST), 1.0),
    ("intended", ep([raw("answer", '{"start": 2, "end": 5}')], existence=FIRST_AND_LAST), -1.0),
]

# ---------------------------------------------------------------------- R5 lr_maskiou_dense
ONE = [ans(2, 5, 3)]
R5 = [
    *[(m, ep([], iou_vid=[]), 0.0) for m in BOTH],
    *[(m, ep(ONE, iou_vid=[[]]), -1.0) for m in BOTH],  # empty IoU list
    # g(0.9)=min(1.5,1.5)=1.5, g(0.5)=0.3, g(0.4)=0 (boundary), g(0.3)=0, g(0.2)=-1 (boundary); mean 0.8/5
    *[(m, ep(ONE, iou_vid=[[0.9, 0.5, 0.4, 0.3, 0.2]]), 0.16) for m in BOTH],
    *[(m, ep(ONE, iou_vid=[[1.0] * 5]), 1.5) for m in BOTH],          # capped at 1.5 (3 * 0.6 = 1.8)
    *[(m, ep(ONE, iou_vid=[[0.0] * 5]), -1.0) for m in BOTH],         # a turn without [SEG]
    *[(m, ep([sel(0, 9, 4), ans(2, 5, 3)], iou_vid=[[1.0] * 5, [0.0] * 5]), -1.0) for m in BOTH],  # last turn only
]

# ---------------------------------------------------------------------- R6 lr_keyframe_vs_mask_dense
TWO = [sel(0, 9, 4), ans(2, 5, 3)]


def r6(kf_last, vid_last):
    return ep(TWO, iou_vid=[[0.9] * 5, vid_last], iou_kf=[0.9, kf_last])


R6 = [
    *[(m, ep(ONE, iou_vid=[[0.0] * 5], iou_kf=[1.0]), 0.0) for m in BOTH],   # < 2 turns
    # d = 0.9 - 0.5 = 0.4: intended min(5 * 0.3, 2) = 1.5; compat 0.5
    ("intended", r6(0.9, [0.5] * 5), 1.5),
    ("compat", r6(0.9, [0.5] * 5), 0.5),
    # d = 1: intended capped at 2.0
    ("intended", r6(1.0, [0.0] * 5), 2.0),
    ("compat", r6(1.0, [0.0] * 5), 0.5),
    # d = 0.2 exactly: not > 0.2 -> 0.5 in both
    *[(m, r6(0.2, [0.0] * 5), 0.5) for m in BOTH],
    # d = 0.125: 0.5 in both
    *[(m, r6(0.75, [0.625] * 5), 0.5) for m in BOTH],
    # d = 0.1 exactly: not > 0.1 -> 0
    *[(m, r6(0.1, [0.0] * 5), 0.0) for m in BOTH],
    # mean of the video IoUs: (0 + 1) / 2 = 0.5 = kf -> d = 0 -> 0
    *[(m, r6(0.5, [0.0, 1.0]), 0.0) for m in BOTH],
    # d = -0.05 exactly: not > -0.05 -> -1; d = -0.5 -> -1
    *[(m, r6(0.0, [0.05] * 5), -1.0) for m in BOTH],
    *[(m, r6(0.25, [0.75] * 5), -1.0) for m in BOTH],
]

# ---------------------------------------------------------------------- R7 lr_progressive_keyframe_dense
def r7(kfs):
    texts = [sel(0, 9, 4)] * (len(kfs) - 1) + [ans(2, 5, 3)]
    return ep(texts, iou_vid=[[0.0] * 5] * len(kfs), iou_kf=kfs)


R7 = [
    *[(m, ep(ONE, iou_kf=[1.0]), 0.0) for m in BOTH],       # < 2 turns
    # d = 0.3: intended min(10 * 0.25, 2) = 2.0; compat 0.5
    ("intended", r7([0.2, 0.5]), 2.0),
    ("compat", r7([0.2, 0.5]), 0.5),
    # d = 0.125: intended 10 * 0.075 = 0.75; compat 0.5
    ("intended", r7([0.5, 0.625]), 0.75),
    ("compat", r7([0.5, 0.625]), 0.5),
    # d = 0.1 exactly: not > 0.1 -> 0.5 in both; d = 0.05 exactly -> 0
    *[(m, r7([0.0, 0.1]), 0.5) for m in BOTH],
    *[(m, r7([0.0, 0.05]), 0.0) for m in BOTH],
    *[(m, r7([0.25, 0.25]), 0.0) for m in BOTH],
    # previous best over all earlier turns (turn 0 included): max(0.5, 0) = 0.5 -> d = -0.25 -> -1
    *[(m, r7([0.5, 0.0, 0.25]), -1.0) for m in BOTH],
    # d = -0.05 exactly -> -1
    *[(m, r7([0.05, 0.0]), -1.0) for m in BOTH],
]

TABLES = {
    "strict_format_cot": R1,
    "step_format_cot": R2,
    "lr_vtg_iou_dense": R3,
    "lr_vtg_keyframe": R4,
    "lr_maskiou_dense": R5,
    "lr_keyframe_vs_mask_dense": R6,
    "lr_progressive_keyframe_dense": R7,
}
CASES = [pytest.param(name, m, e, x, id=f"{name}-{i}-{m}") for name, rows in TABLES.items()
         for i, (m, e, x) in enumerate(rows)]


@pytest.mark.parametrize("name,mode,episode,expected", CASES)
def test_reward_table(name, mode, episode, expected):
    check(name, mode, episode, expected)


def test_every_reward_has_a_table_in_both_modes():
    """Guards against a reward (or a mode) shipped without table rows."""
    from videoseg_o3.rewards import DEFAULT_REWARD_WEIGHTS

    assert set(TABLES) == set(DEFAULT_REWARD_WEIGHTS)
    for name, rows in TABLES.items():
        assert {m for m, _, _ in rows} == set(BOTH), name
