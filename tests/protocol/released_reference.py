"""The released VideoSEG-O3 turn checks, re-expressed as small oracles for differential tests.

Behaviour of Dmmm1997/VideoSEG-O3 (commit 451db34): ``projects/open_r1/rewards.py``
(``strict_format_reward_cot``, ``step_format_reward_cot``, per turn) and the select handling of
``predict_forward`` in ``projects/sa2va/hf/models_qwen3vl/modeling_sa2va_qwen_cotv3_keyframe_withvis.py``.
They use backtracking regexes, so they are only run on short inputs here.
"""

from __future__ import annotations

import json
import re

STEP_KEYWORDS = ("step 1", "step 2", "step 3", "action")


def strict_turn_ok(content: str) -> bool:
    """Per-turn verdict of the released strict format reward."""
    m = re.search(r"<think>.*?</think>\s*<(answer|select)>(.*?)</\1>", content, re.DOTALL)
    if m is None:
        return False
    body = m.group(2)
    vtg = re.search(r"<VTG>(.*?)</VTG>", body, re.DOTALL)
    ref = re.search(r"<RefSeg>(.*?)</RefSeg>", body, re.DOTALL)
    if vtg is None or ref is None:
        return False
    try:
        keys = json.loads(vtg.group(1)).keys()
    except Exception:
        return False
    return {"start", "end", "keyframe"} <= keys and "[SEG]" in ref.group(1)


def step_hits(content: str) -> tuple[bool, bool, bool, bool]:
    """Which step-format keywords the released reward finds in the turn's think block."""
    m = re.search(r"<think>(.*?)</think>", content, re.DOTALL | re.IGNORECASE)
    if m is None:
        return (False, False, False, False)
    low = m.group(1).lower()
    return tuple(kw in low for kw in STEP_KEYWORDS)  # type: ignore[return-value]


def eval_select(content: str, num_frames: int) -> tuple[str, tuple[int, int, int] | None]:
    """What the released evaluation loop does with one turn.

    Returns ("stop", None) when it ends the episode without a select interval, ("stop", (s, e, k))
    when a select was read but its clipped interval is empty, and ("continue", (s, e, k)).
    """
    m = re.search(r"<select>(.*?)</select>", content, re.DOTALL)
    if m is None:
        return "stop", None
    try:
        inner = re.search(r"<VTG>(.*?)</VTG>", m.group(1), re.DOTALL)
        data = json.loads(inner.group(1) if inner else m.group(1))
        s, e, k = int(data.get("start")), int(data.get("end")), int(data.get("keyframe"))
    except Exception:
        return "stop", None
    s, e, k = max(0, s), min(num_frames - 1, e), max(0, min(num_frames - 1, k))
    return ("stop" if e < s else "continue"), (s, e, k)
