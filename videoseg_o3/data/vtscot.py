"""VTS-CoT (SFT) and RL records built from ground truth, in the released files' field names.

SFT record (released VideoSEG-O3 code, ``projects/sa2va/datasets/cot_data_refvos_v3.py``)::

    {"video_name", "frames", "exp", "anno_id", "sample_frame_indice",
     "cot_trace": [{"start_frame", "end_frame", "key_frame"} per <select>],
     "conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}

RL record (released VideoSEG-O3 code, ``projects/open_r1/dataset.py``): each item of the file is a *list* of object
records of which the first is used: ``[{"video_name", "frames", "exp", "anno_id", "mask_existence"}]``.
Both carry an extra ``exp_id`` (the expression key in ``meta_expressions.json``), which released readers
ignore.

Traces come from the ground truth of the (union) target mask: the answer interval is where the target is
visible, its keyframe the frame where it is largest; a path of 1-3 turns narrows the interval coarse to fine
(every select's interval contains the true one and its keyframe shows the target). Every sentence of the
think text is a fact read off the ground truth. Assistant turns are written by
:func:`videoseg_o3.protocol.format_turn` and human turns by the protocol's observation builders, so the
records speak exactly the text contract of docs/architecture.md#the-turn-protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from videoseg_o3.data.synthetic import SynthQuery, SynthVideo
    from videoseg_o3.protocol import ProtocolConfig

__all__ = ["build_rl_record", "build_sft_record", "plan_turns", "region_name"]

SELECT_ACTION_TEXT = "See new segment."
ANSWER_ACTION_TEXT = "Confirmed."


def region_name(centre_y: float, centre_x: float, height: int, width: int) -> str:
    """Where a point lies in the frame, by thirds: "top-left", "top", ..., "centre", ..., "bottom-right"."""
    row = ("top", "middle", "bottom")[min(2, int(3 * centre_y / height))]
    col = ("left", "centre", "right")[min(2, int(3 * centre_x / width))]
    if row == "middle" and col == "centre":
        return "centre"
    if row == "middle":
        return col
    if col == "centre":
        return row
    return f"{row}-{col}"


def plan_turns(mask: np.ndarray, num_turns: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Coarse-to-fine ``(start, end, keyframe)`` per turn; the last one is the answer.

    Args:
        mask: ``(T, H, W)`` bool target mask (must be non-empty somewhere).
        num_turns: 1, 2 or 3.
    Each select interval widens the true one ``[first, last]`` by a margin that shrinks turn by turn and its
    keyframe is a visible frame near the interval's middle; the answer is ``(first, last, largest frame)``.
    """
    if num_turns not in (1, 2, 3):
        raise ValueError(f"Invalid num_turns ({num_turns}). Supported values are 1, 2, 3.")
    areas = mask.sum(axis=(1, 2))
    present = np.flatnonzero(areas)
    if present.size == 0:
        raise ValueError("Invalid target: its mask is empty in every frame, so no interval can be planned.")
    num_frames = mask.shape[0]
    first, last = int(present[0]), int(present[-1])
    answer = (first, last, int(np.argmax(areas)))
    plan = []
    base = rng.uniform(0.2, 0.5) * num_frames
    for r in range(num_turns - 1):
        margin = int(round(base * (num_turns - 1 - r) / (num_turns - 1)))
        start, end = max(0, first - margin), min(num_frames - 1, last + margin)
        middle = (start + end) / 2.0
        key = int(present[np.argmin(np.abs(present - middle))])
        plan.append((start, end, key))
    plan.append(answer)
    return plan


def _where(mask: np.ndarray, frame: int) -> tuple[str, int]:
    ys, xs = np.nonzero(mask[frame])
    return region_name(float(ys.mean()), float(xs.mean()), mask.shape[1], mask.shape[2]), int(ys.size)


def _target_names(video: "SynthVideo", query: "SynthQuery") -> str:
    names = [f"the {video.object(t).description()}" for t in query.targets]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _turn_steps(video: "SynthVideo", query: "SynthQuery", mask: np.ndarray, turn: tuple[int, int, int], final: bool) -> tuple[str, str, str]:
    start, end, key = turn
    num_frames = mask.shape[0]
    plural = len(query.targets) > 1
    subject = "The targets are" if plural else "The target is"
    region, area = _where(mask, key)
    if final:
        whole = start == 0 and end == num_frames - 1
        temporal = f"{subject} visible from frame {start} to frame {end}" + ("" if whole else f" and absent outside that span of the {num_frames} frames")
        hidden = int((~mask[start : end + 1].any(axis=(1, 2))).sum())
        temporal += f", though hidden in {hidden} frame{'s' if hidden > 1 else ''} in between." if hidden else "."
        spatial = f"{'They are' if plural else 'It is'} largest at frame {key}, in the {region} part of the frame, covering {area} pixels."
        expression = " ".join(query.facts) + f" So the query \"{query.text}\" refers to {_target_names(video, query)}."
    else:
        temporal = f"{subject} visible only within frames {start} to {end}; a closer look at this segment will pin down the span."
        spatial = f"At frame {key} {'they are' if plural else 'it is'} in the {region} part of the frame."
        kind = "a referring" if query.expression_type == "referring" else f"a {query.kind} reasoning"
        expression = f"The query \"{query.text}\" is {kind} expression; " + query.facts[0][0].lower() + query.facts[0][1:]
    return temporal, spatial, expression


def build_sft_record(
    video: "SynthVideo",
    query: "SynthQuery",
    exp_id: str,
    anno_ids: Sequence[int],
    rng: np.random.Generator,
    turn_weights: Sequence[float] = (1.0, 1.0, 1.0),
    protocol: "ProtocolConfig | None" = None,
) -> dict[str, Any]:
    """One VTS-CoT conversation for ``query`` on ``video`` (1-3 assistant turns, drawn by ``turn_weights``)."""
    from videoseg_o3.protocol import (
        ProtocolConfig,
        followup_observation,
        format_turn,
        initial_observation,
        parse_turn,
        system_prompt,
        turn0_frame_indices,
    )

    cfg = protocol or ProtocolConfig()
    weights = np.asarray(turn_weights, dtype=np.float64)
    num_turns = 1 + int(rng.choice(3, p=weights / weights.sum()))
    mask = video.target_masks(query)
    plan = plan_turns(mask, num_turns, rng)
    num_frames = video.num_frames

    conversations = [
        {"from": "system", "value": system_prompt(cfg)},
        {"from": "human", "value": initial_observation(query.text, num_frames, cfg).text()},
    ]
    trace = []
    for index, turn in enumerate(plan):
        final = index == len(plan) - 1
        steps = _turn_steps(video, query, mask, turn, final)
        action = "answer" if final else "select"
        text = format_turn(action, steps, ANSWER_ACTION_TEXT if final else SELECT_ACTION_TEXT, *turn)
        conversations.append({"from": "gpt", "value": text})
        if not final:
            trace.append({"start_frame": turn[0], "end_frame": turn[1], "key_frame": turn[2]})
            observation = followup_observation(query.text, num_frames, parse_turn(text), cfg)
            conversations.append({"from": "human", "value": observation.text()})
    return {
        "video_name": video.video_id,
        "frames": video.frame_names,
        "exp": query.text,
        "exp_id": exp_id,
        "anno_id": [int(a) for a in anno_ids],
        "sample_frame_indice": [int(i) for i in turn0_frame_indices(num_frames, cfg)[1]],
        "cot_trace": trace,
        "conversations": conversations,
    }


def build_rl_record(video: "SynthVideo", query: "SynthQuery", anno_ids: Sequence[int], exp_id: str | None = None) -> dict[str, Any]:
    """One RL record: the query and the per-frame presence (0/1) of its target."""
    existence = video.target_masks(query).any(axis=(1, 2))
    record = {
        "video_name": video.video_id,
        "frames": video.frame_names,
        "exp": query.text,
        "anno_id": [int(a) for a in anno_ids],
        "mask_existence": [int(v) for v in existence],
    }
    if exp_id is not None:
        record["exp_id"] = exp_id
    return record
