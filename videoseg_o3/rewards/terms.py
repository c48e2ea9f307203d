"""The seven GRPO rewards of the select/answer protocol, each in two modes.

``mode="compat"`` reproduces the released VideoSEG-O3 training code exactly (``projects/open_r1/rewards.py``
and ``rewards_dense.py``), quirks included; ``mode="intended"`` (the default) implements what those
functions are documented to do. Where the two differ:

- ``lr_vtg_iou_dense``: compat scores the *precision* of the half-open interval ``[s, e)`` (a one-frame
  answer ``s = e`` fails, an object absent everywhere makes every interval pass, ``s, e`` are clamped to
  ``T`` not ``T - 1``); intended scores the temporal IoU of the protocol's *inclusive* interval
  ``[s, e]`` with the frames where the object is visible (0 when it is visible nowhere: nothing to
  localise).
- ``lr_keyframe_vs_mask_dense`` and ``lr_progressive_keyframe_dense``: the released ``if``/``if``/``elif``
  chain overwrites the dense top branch, leaving step functions; intended keeps the dense branch.
- ``strict_format_cot``: compat is the released per-turn regex check; intended is the protocol's strict
  parse of every turn (``TurnParse.error is None``) and also the released docstring's rule that an episode
  ends on an ``<answer>`` (or on a ``<select>`` cut by the turn limit).
- ``lr_vtg_iou_dense`` / ``lr_vtg_keyframe``: compat reads the VTG with the released regex and
  ``ast.literal_eval``; intended with the protocol parser (the same values the episode acted on).
- The keyframe IoUs they read differ by mode too (:func:`videoseg_o3.rewards.iou.keyframe_iou`).
"""

from __future__ import annotations

import ast
import re

from videoseg_o3.rewards.inputs import RewardInput, check_mode
from videoseg_o3.rewards.registry import register_reward

__all__ = [
    "DEFAULT_REWARD_WEIGHTS",
    "keyframe_vs_mask",
    "mask_iou_score",
    "progressive_keyframe",
    "reference_vtg",
    "step_format",
    "strict_format",
    "vtg_iou",
    "vtg_keyframe",
]

# The released VTG reader: the last <select|answer> block holding a <VTG> in the turn.
_REFERENCE_VTG = re.compile(r"<(select|answer)>.*?<VTG>(.*?)</VTG>.*?</\1>", re.DOTALL)
# The lazy regex above is quadratic in the worst case; a 512-token turn is a few kB, so longer text is
# garbage and is treated as unparseable instead of being scanned.
MAX_REFERENCE_CHARS = 65_536


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def reference_vtg(text: str, num_frames: int) -> tuple[int, int, int] | None:
    """The released ``_parse_vtg_content``: ``(s, e, k)`` with ``s, e`` clamped to ``[0, T]`` and ``k`` to
    ``[0, T - 1]``, missing keys read as 0, values coerced by ``int()``; None when unreadable."""
    if len(text) > MAX_REFERENCE_CHARS:
        return None
    matches = _REFERENCE_VTG.findall(text)
    if not matches:
        return None
    try:
        data = ast.literal_eval(matches[-1][1].strip())
        s, e, k = (int(data.get(key, 0)) for key in ("start", "end", "keyframe"))
    except Exception:  # the released code catches everything: any unreadable payload scores as missing
        return None
    return _clamp(s, 0, num_frames), _clamp(e, 0, num_frames), _clamp(k, 0, num_frames - 1)


def _require(ep: RewardInput, name: str) -> None:
    if ep.num_turns and len(getattr(ep, name)) != ep.num_turns:
        raise ValueError(f"Invalid RewardInput: this reward needs {name} (one entry per turn); it is empty.")


def _mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values) if values else 0.0


# ---------------------------------------------------------------------- R1
@register_reward("strict_format_cot")
def strict_format(ep: RewardInput, mode: str = "intended") -> float:
    """+1 when every turn is well formed, else -1; 0 for an episode without turns.

    compat: each turn passes the released check (``TurnParse.reference_format_ok``: think block, then a
    select/answer block with a ``<VTG>`` JSON object holding start/end/keyframe and ``[SEG]`` in
    ``<RefSeg>``). intended: each turn parses strictly, and the episode ends on an ``<answer>`` or on a
    ``<select>`` at the turn limit.
    """
    check_mode(mode)
    if not ep.num_turns:
        return 0.0
    if mode == "compat":
        return 1.0 if all(p.reference_format_ok for p in ep.parses) else -1.0
    last = ep.parses[-1]
    ends_well = last.action == "answer" or (last.action == "select" and ep.num_turns >= ep.max_turns)
    return 1.0 if ends_well and all(p.strict_ok for p in ep.parses) else -1.0


# ---------------------------------------------------------------------- R2
@register_reward("step_format_cot")
def step_format(ep: RewardInput, mode: str = "intended") -> float:
    """Mean over turns of the fraction of "step 1", "step 2", "step 3", "action" in the turn's first
    ``<think>`` block (case-insensitive; 0 without one); 0 without turns. Same in both modes."""
    check_mode(mode)
    if not ep.num_turns:
        return 0.0
    return _mean(tuple(p.step_fraction if p.think is not None else 0.0 for p in ep.parses))


# ---------------------------------------------------------------------- R3
@register_reward("lr_vtg_iou_dense")
def vtg_iou(ep: RewardInput, mode: str = "intended") -> float:
    """Temporal grounding of the final turn's interval: ``0.5 * q`` when ``q >= 0.5``, else -0.5.

    compat: ``q`` = precision of the half-open ``[s, e)`` against the visible frames (1 when the object
    is visible nowhere), -0.5 when unreadable or ``s >= e``. intended: ``q`` = IoU of the inclusive
    ``[s, e]`` (clipped into the video) with the visible frames; -0.5 when the final turn has no usable
    action or interval or the interval misses the video; 0 when the object is visible nowhere.
    """
    check_mode(mode)
    fail = -0.5
    if not ep.num_turns:
        return fail
    existence, num_frames = ep.existence, ep.num_frames
    if mode == "compat":
        parsed = reference_vtg(ep.texts[-1], num_frames)
        if parsed is None:
            return fail
        s, e, _ = parsed
        if s >= e:
            return fail
        q = 1.0 if not any(existence) else sum(existence[s:e]) / (e - s + 1e-6)
    else:
        last = ep.parses[-1]
        if last.action == "invalid" or last.start is None or last.end is None or last.interval_is_empty(num_frames):
            return fail
        if not any(existence):
            return 0.0
        s, e = _clamp(last.start, 0, num_frames - 1), _clamp(last.end, 0, num_frames - 1)
        inter = sum(existence[s:e + 1])
        union = (e - s + 1) + sum(existence) - inter
        q = inter / union
    return 0.5 * q if q >= 0.5 else fail


# ---------------------------------------------------------------------- R4
@register_reward("lr_vtg_keyframe")
def vtg_keyframe(ep: RewardInput, mode: str = "intended") -> float:
    """+1 when the object is visible on the final turn's keyframe (clamped into the video), else -1;
    -1 when unreadable. compat reads the VTG with the released regex (a payload whose start/end
    cannot be coerced fails too); intended uses the protocol parse of a select/answer turn."""
    check_mode(mode)
    if not ep.num_turns:
        return -1.0
    if mode == "compat":
        parsed = reference_vtg(ep.texts[-1], ep.num_frames)
        if parsed is None:
            return -1.0
        k = parsed[2]
    else:
        last = ep.parses[-1]
        if last.action == "invalid" or last.keyframe is None:
            return -1.0
        k = _clamp(last.keyframe, 0, ep.num_frames - 1)
    return 1.0 if ep.existence[k] else -1.0


# ---------------------------------------------------------------------- R5
def _mask_score(u: float) -> float:
    if u > 0.4:
        return min(3.0 * (u - 0.4), 1.5)
    if u > 0.2:
        return 0.0
    return -1.0


@register_reward("lr_maskiou_dense")
def mask_iou_score(ep: RewardInput, mode: str = "intended") -> float:
    """Mean over the spatial frames of ``g(IoU_vid(last turn))`` with ``g(u) = min(3(u - 0.4), 1.5)`` for
    ``u > 0.4``, 0 for ``0.2 < u <= 0.4``, -1 below; -1 for an empty IoU list; 0 without turns.
    Same in both modes."""
    check_mode(mode)
    if not ep.num_turns:
        return 0.0
    _require(ep, "iou_vid")
    last = ep.iou_vid[-1]
    if not last:
        return -1.0
    return sum(_mask_score(u) for u in last) / len(last)


# ---------------------------------------------------------------------- R6
def _stepped(delta: float, dense_above: float, dense_offset: float, dense_scale: float, bonus_above: float,
             mode: str) -> float:
    """The released shape ``if d > a: dense; if d > b: 0.5; elif d > -0.05: 0; else: -1``: the second
    ``if`` (an ``elif`` slip) overwrites the dense branch, so compat skips it."""
    if mode == "intended" and delta > dense_above:
        return min(dense_scale * (delta - dense_offset), 2.0)
    if delta > bonus_above:
        return 0.5
    if delta > -0.05:
        return 0.0
    return -1.0


@register_reward("lr_keyframe_vs_mask_dense")
def keyframe_vs_mask(ep: RewardInput, mode: str = "intended") -> float:
    """The final keyframe mask beats the final video masks: ``d = IoU_kf(last) - mean IoU_vid(last)``;
    0 for fewer than 2 turns. intended: ``min(5(d - 0.1), 2)`` for ``d > 0.2``, 0.5 for ``d > 0.1``, 0 for
    ``d > -0.05``, else -1; compat: the same without the first branch (a step function)."""
    check_mode(mode)
    if ep.num_turns < 2:
        return 0.0
    _require(ep, "iou_vid")
    _require(ep, "iou_kf")
    delta = ep.iou_kf[-1] - _mean(ep.iou_vid[-1])
    return _stepped(delta, 0.2, 0.1, 5.0, 0.1, mode)


# ---------------------------------------------------------------------- R7
@register_reward("lr_progressive_keyframe_dense")
def progressive_keyframe(ep: RewardInput, mode: str = "intended") -> float:
    """The final keyframe IoU improves on every earlier turn's (turn 0's ``N // 2`` frame included):
    ``d = IoU_kf(last) - max_{t < last} IoU_kf(t)``; 0 for fewer than 2 turns. intended:
    ``min(10(d - 0.05), 2)`` for ``d > 0.1``, 0.5 for ``d > 0.05``, 0 for ``d > -0.05``, else -1; compat:
    the same without the first branch."""
    check_mode(mode)
    if ep.num_turns < 2:
        return 0.0
    _require(ep, "iou_kf")
    delta = ep.iou_kf[-1] - max(ep.iou_kf[:-1])
    return _stepped(delta, 0.1, 0.05, 10.0, 0.05, mode)


DEFAULT_REWARD_WEIGHTS: dict[str, float] = {
    "strict_format_cot": 1.0,
    "step_format_cot": 1.0,
    "lr_vtg_iou_dense": 1.0,
    "lr_vtg_keyframe": 1.0,
    "lr_maskiou_dense": 1.0,
    "lr_keyframe_vs_mask_dense": 1.0,
    "lr_progressive_keyframe_dense": 1.0,
}
"""The released run's seven terms, each with weight 1 (``reward_scale`` 1)."""
