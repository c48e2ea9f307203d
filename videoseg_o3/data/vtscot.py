"""VTS-CoT (SFT) and RL records in the released files' convention: writing them from ground truth, and
reading any VTS-CoT record (released or ours) back into the dialogue it stands for.

SFT record (``projects/sa2va/datasets/cot_data_refvos_v3.py`` of the public VideoSEG-O3 code)::

    {"video_name", "frames", "exp", "anno_id", "sample_frame_indice",
     "cot_trace": [{"start_frame", "end_frame", "key_frame"} per <select>],
     "conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}

RL record (``projects/open_r1/dataset.py``): each item of the file is a *list* of object records of which
the first is used: ``[{"video_name", "frames", "exp", "anno_id", "mask_existence"}]``. Both carry an extra
``exp_id`` (the expression key in ``meta_expressions.json``), which released readers ignore.

The released convention stores text only; the reader inserts the frames. The first human turn holds the
question alone: the reader puts the turn-0 frame blocks in front of it (low-resolution frames over the
whole video, then the ``sample_frame_indice`` frames at high resolution, each block followed by its index
line). Every later human turn holds an ``<image>`` placeholder, which the reader replaces by the frames of
the interval the previous ``<select>`` chose, the keyframe, their index lines and (released wording) the
line ``The text query is '<exp>'``. :func:`build_sft_record` writes that convention and
:func:`record_dialogue` reads it, so the observations a trained policy sees are exactly the protocol's
(:func:`videoseg_o3.protocol.initial_observation` / :func:`~videoseg_o3.protocol.followup_observation`).

Traces come from the ground truth of the (union) target mask: the answer interval is where the target is
visible, its keyframe the frame where it is largest; a path of 1-3 turns narrows the interval coarse to fine
(every select's interval contains the true one and its keyframe shows the target). How many turns a trace takes
is one of :data:`TURN_PLANS`: drawn at random (``"random"``, the weights of ``turn_weights``), or
``"adaptive"`` (:func:`plan_adaptive_turns`): one turn when the first user turn shows the frame where the target
is largest, else a ``<select>`` of the frames around it keyed on it (the mask's anchor, then seen at high
resolution) and the answer, so that a policy learns to look closer when the coarse view missed the best anchor
for its mask. Every sentence of the
think text is a fact read off the ground truth. Assistant turns are written by
:func:`videoseg_o3.protocol.format_turn`, so the records speak exactly the protocol's text contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from videoseg_o3.data.synthetic import SynthQuery, SynthVideo
    from videoseg_o3.protocol import ProtocolConfig

__all__ = [
    "IMAGE_PLACEHOLDER",
    "THINK_STYLES",
    "TURN_PLANS",
    "RELEASED_QUERY_LINE",
    "VtsCotDialogue",
    "build_rl_record",
    "build_sft_record",
    "followup_human_value",
    "initial_human_value",
    "plan_adaptive_turns",
    "plan_texts",
    "plan_turns",
    "turn0_shown_frames",
    "record_dialogue",
    "region_name",
]

IMAGE_PLACEHOLDER = "<image>"
"""Where the reader inserts a follow-up turn's frames in a released human turn."""
RELEASED_QUERY_LINE = "The text query is '{query}'"
"""What the released reader writes after a follow-up turn's frames (``prompt_style="videoseg-o3"``)."""

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


TURN_PLANS = ("random", "adaptive")
"""How a synthetic trace's number of turns is chosen (see the module docstring)."""


def turn0_shown_frames(num_frames: int, protocol: "ProtocolConfig") -> list[int]:
    """Sorted frame indices the first user turn shows, low and high resolution together."""
    from videoseg_o3.protocol import turn0_frame_indices

    return sorted({int(i) for part in turn0_frame_indices(num_frames, protocol) for i in part})


def plan_adaptive_turns(mask: np.ndarray, shown: Sequence[int], window: int) -> list[tuple[int, int, int]]:
    """The ``"adaptive"`` plan: look closer only when the first user turn misses the best anchor for the mask.

    The mask is anchored on the keyframe of the last ``<select>`` when there is one (that frame is then seen at
    high resolution before the answer's ``[SEG]``), else on the answer's keyframe
    (:func:`videoseg_o3.protocol.anchor_frame`).

    Args:
        mask: ``(T, H, W)`` bool target mask (must be non-empty somewhere).
        shown: frame indices the first user turn shows (low and high resolution together).
        window: frames a follow-up turn shows in full (the protocol's ``followup_temporal_frames``).
    Returns:
        With ``best`` the frame where the target is largest: ``[(first, last, best)]`` when ``best`` is shown,
        else ``[(start, end, best), (first, last, best)]``: a select of the ``window`` frames around ``best`` keyed
        on it (the follow-up shows every frame of the window and ``best`` at high resolution), then the answer.
    """
    areas = mask.sum(axis=(1, 2))
    present = np.flatnonzero(areas)
    if present.size == 0:
        raise ValueError("Invalid target: its mask is empty in every frame, so no interval can be planned.")
    if window < 1:
        raise ValueError(f"Invalid window ({window}). A follow-up turn shows at least 1 frame.")
    num_frames = mask.shape[0]
    first, last, best = int(present[0]), int(present[-1]), int(np.argmax(areas))
    answer = (first, last, best)
    if best in {int(i) for i in shown}:
        return [answer]
    start = min(max(0, best - window // 2), max(0, num_frames - window))
    end = min(num_frames - 1, start + window - 1)
    return [(start, end, best), answer]


def _where(mask: np.ndarray, frame: int) -> tuple[str, int]:
    ys, xs = np.nonzero(mask[frame])
    return region_name(float(ys.mean()), float(xs.mean()), mask.shape[1], mask.shape[2]), int(ys.size)


def _target_names(video: "SynthVideo", query: "SynthQuery") -> str:
    names = [f"the {video.object(t).description()}" for t in query.targets]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


THINK_STYLES = ("full", "terse")
"""How much think text a synthetic trace carries: ``full`` sentences (the released traces' register) or ``terse``
notes (the same facts in a few words, for models small enough to train on a CPU)."""


def _terse_steps(video: "SynthVideo", query: "SynthQuery", mask: np.ndarray, turn: tuple[int, int, int]) -> tuple[str, str, str]:
    """The three steps as short notes: the span, the keyframe's region, and the query kind."""
    start, end, key = turn
    region, _ = _where(mask, key)
    kind = "referring" if query.expression_type == "referring" else query.kind
    return f"frames {start}-{end}.", f"frame {key}, {region}.", f"{kind}."


def _turn_steps(video: "SynthVideo", query: "SynthQuery", mask: np.ndarray, turn: tuple[int, int, int], final: bool,
                style: str = "full", adaptive: bool = False) -> tuple[str, str, str]:
    if style == "terse":
        return _terse_steps(video, query, mask, turn)
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
        if adaptive:  # a look around the frame where the target is largest, keyed on it
            temporal = (f"Frames {start} to {end}, not all seen yet, may show {'them' if plural else 'it'} larger than any "
                        "frame so far; a closer look will tell.")
        else:
            temporal = f"{subject} visible only within frames {start} to {end}; a closer look at this segment will pin down the span."
        spatial = f"At frame {key} {'they are' if plural else 'it is'} in the {region} part of the frame."
        kind = "a referring" if query.expression_type == "referring" else f"a {query.kind} reasoning"
        expression = f"The query \"{query.text}\" is {kind} expression; " + query.facts[0][0].lower() + query.facts[0][1:]
    return temporal, spatial, expression


def plan_texts(video: "SynthVideo", query: "SynthQuery", plan: Sequence[tuple[int, int, int]], think_style: str = "full",
               *, adaptive: bool = False) -> list[str]:
    """The assistant turns of ``plan`` (``(start, end, keyframe)`` per turn; selects, then the answer), written
    by :func:`videoseg_o3.protocol.format_turn` with think text read off the ground truth. ``adaptive``: the
    selects' wording of :func:`plan_adaptive_turns` plans."""
    from videoseg_o3.protocol import format_turn

    mask = video.target_masks(query)
    texts = []
    for index, turn in enumerate(plan):
        final = index == len(plan) - 1
        steps = _turn_steps(video, query, mask, turn, final, think_style, adaptive)
        action = "answer" if final else "select"
        texts.append(format_turn(action, steps, ANSWER_ACTION_TEXT if final else SELECT_ACTION_TEXT, *turn))
    return texts


def build_sft_record(
    video: "SynthVideo",
    query: "SynthQuery",
    exp_id: str,
    anno_ids: Sequence[int],
    rng: np.random.Generator,
    turn_weights: Sequence[float] = (1.0, 1.0, 1.0),
    protocol: "ProtocolConfig | None" = None,
    think_style: str = "full",
    turn_plan: str = "random",
) -> dict[str, Any]:
    """One VTS-CoT conversation for ``query`` on ``video`` (1-3 assistant turns).

    ``turn_plan`` (:data:`TURN_PLANS`): ``"random"`` draws 1-3 turns by ``turn_weights`` (:func:`plan_turns`);
    ``"adaptive"`` takes one turn or two, by whether ``protocol``'s first user turn shows the keyframe
    (:func:`plan_adaptive_turns`; ``turn_weights`` unused). ``think_style`` (:data:`THINK_STYLES`) chooses full
    sentences or terse notes for the three reasoning steps.

    Human turns follow the released convention (text only; see the module docstring), so
    :func:`record_dialogue` turns the record back into the protocol's observations for ``protocol``.
    """
    from videoseg_o3.protocol import ProtocolConfig, system_prompt, turn0_frame_indices

    if think_style not in THINK_STYLES:
        raise ValueError(f"Invalid think_style ({think_style!r}). Supported values are {', '.join(THINK_STYLES)}.")
    if turn_plan not in TURN_PLANS:
        raise ValueError(f"Invalid turn_plan ({turn_plan!r}). Supported values are {', '.join(TURN_PLANS)}.")
    cfg = protocol or ProtocolConfig()
    mask = video.target_masks(query)
    num_frames = video.num_frames
    if turn_plan == "adaptive":
        plan = plan_adaptive_turns(mask, turn0_shown_frames(num_frames, cfg), cfg.followup_temporal_frames)
    else:
        weights = np.asarray(turn_weights, dtype=np.float64)
        plan = plan_turns(mask, 1 + int(rng.choice(3, p=weights / weights.sum())), rng)

    conversations = [
        {"from": "system", "value": system_prompt(cfg)},
        {"from": "human", "value": initial_human_value(query.text, num_frames, cfg)},
    ]
    trace = []
    texts = plan_texts(video, query, plan, think_style, adaptive=turn_plan == "adaptive")
    for index, (turn, text) in enumerate(zip(plan, texts)):
        conversations.append({"from": "gpt", "value": text})
        if index < len(plan) - 1:
            trace.append({"start_frame": turn[0], "end_frame": turn[1], "key_frame": turn[2]})
            conversations.append({"from": "human", "value": followup_human_value(query.text, cfg)})
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


# ------------------------------------------------------------------------------ released convention


def initial_human_value(query: str, num_frames: int, protocol: "ProtocolConfig") -> str:
    """The first human turn as a released record stores it: the question alone (no frames, no index lines)."""
    from videoseg_o3.protocol import initial_observation

    last = initial_observation(query, num_frames, protocol).parts[-1]
    assert isinstance(last, str)  # the question closes the first observation in both prompt styles
    return last


def followup_human_value(query: str, protocol: "ProtocolConfig") -> str:
    """A later human turn as a released record stores it: ``<image>`` then the instruction.

    ``prompt_style="videoseg-o3"``: the reader writes ``The text query is '<exp>'`` after the frames, so the
    record keeps only the rest of the released instruction; ``"default"``: the whole instruction.
    """
    from videoseg_o3.protocol import templates

    if protocol.prompt_style == "videoseg-o3":
        template = templates.VIDEOSEG_O3_FOLLOWUP_INSTRUCTION
        if not template.startswith(RELEASED_QUERY_LINE):  # both are released texts; they must stay in step
            raise RuntimeError("The released follow-up instruction no longer starts with the released query line.")
        return IMAGE_PLACEHOLDER + template[len(RELEASED_QUERY_LINE):]
    return IMAGE_PLACEHOLDER + templates.DEFAULT_FOLLOWUP_INSTRUCTION.format(query=query)


@dataclass
class VtsCotDialogue:
    """A VTS-CoT record read back into a dialogue (what the policy sees, and what it should answer).

    Attributes:
        system: the system prompt (the record's, else the protocol's).
        observations: one ``protocol.Observation`` per human turn, frames in reading order.
        assistant_texts: the gpt turns, stripped (as the released reader does), one per observation.
        parses: ``protocol.TurnParse`` of each assistant turn.
        spatial_frames: the turn-0 high-resolution frames (``sample_frame_indice``, sorted).
        turn_keyframes: per assistant turn, the keyframe its ``<VTG>`` names (clipped into the video), or None.
    """

    system: str
    observations: list[Any]
    assistant_texts: list[str]
    parses: list[Any]
    spatial_frames: list[int]
    turn_keyframes: list[int | None]
    num_frames: int
    query: str

    def frame_specs(self) -> list[Any]:
        """Every image of the dialogue in text order (``protocol.FrameSpec``)."""
        return [spec for obs in self.observations for spec in obs.frames()]


def _bad(source: str, problem: str) -> ValueError:
    return ValueError(f"Invalid VTS-CoT record in {source}: {problem}.")


def _int_list(record: dict, key: str, source: str, num_frames: int) -> list[int]:
    value = record.get(key)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _bad(source, f"'{key}' must be a list of ints, got {value!r}")
    if any(not 0 <= v < num_frames for v in value):
        raise _bad(source, f"'{key}' {value} has indices outside 0..{num_frames - 1}")
    return [int(v) for v in value]


def _turn0_observation(query: str, question: str, num_frames: int, spatial: list[int], cfg: "ProtocolConfig") -> Any:
    """Frame blocks of turn 0 for the record's spatial frames, then the record's question."""
    from videoseg_o3.protocol import FrameSpec, Observation, initial_observation, turn0_frame_indices
    from videoseg_o3.protocol import templates as T

    temporal, default_spatial = turn0_frame_indices(num_frames, cfg)
    if spatial == default_spatial:
        parts = list(initial_observation(query, num_frames, cfg).parts[:-1])
    else:  # a released record's own high-resolution frames: same layout, other indices
        t_specs = [FrameSpec(i, cfg.turn0_temporal_max_pixels, cfg.min_pixels, "temporal") for i in temporal]
        s_specs = [FrameSpec(i, cfg.turn0_spatial_max_pixels, cfg.min_pixels, "spatial") for i in spatial]
        parts = []
        if cfg.prompt_style == "videoseg-o3":
            if t_specs:
                parts += [*t_specs, T.VIDEOSEG_O3_TURN0_TEMPORAL.format(count=len(temporal), indices=str(temporal))]
            if s_specs:
                parts += [*s_specs, T.VIDEOSEG_O3_TURN0_SPATIAL.format(count=len(spatial), indices=str(spatial))]
        else:
            for header, specs in ((T.DEFAULT_TURN0_TEMPORAL_HEADER, t_specs), (T.DEFAULT_TURN0_SPATIAL_HEADER, s_specs)):
                if specs:
                    parts.append(header.format(count=len(specs)))
                    for spec in specs:
                        parts += [T.DEFAULT_FRAME_LABEL.format(index=spec.index), spec, "\n"]
    # The released evaluation drops these placeholders from its question; frames are inserted above instead.
    question = question.replace("<video>", "").replace(IMAGE_PLACEHOLDER, "")
    return Observation(parts + [question])


def record_dialogue(record: dict[str, Any], protocol: "ProtocolConfig", *, source: str = "record") -> VtsCotDialogue:
    """Read one VTS-CoT record (released convention) into the dialogue the protocol would show.

    Turn 0 = the protocol's turn-0 frame blocks (``sample_frame_indice`` as the high-resolution frames) +
    the record's question. Turn r > 0 = the record's human text with ``<image>`` replaced by
    the protocol's follow-up frames for the previous ``<select>`` (which must parse and equal
    ``cot_trace[r - 1]``, as the released reader asserts) and, in the released wording, the query line.

    Raises:
        ValueError: a malformed record; the message names ``source`` and the problem.
    """
    from videoseg_o3.protocol import Observation, followup_observation, parse_turn, system_prompt

    if not isinstance(record, dict):
        raise _bad(source, f"expected an object, got {type(record).__name__}")
    for key in ("frames", "exp", "conversations"):
        if key not in record:
            raise _bad(source, f"missing '{key}'")
    frames, query, turns = record["frames"], record["exp"], record["conversations"]
    if not isinstance(frames, list) or not frames:
        raise _bad(source, "'frames' must be a non-empty list of frame names")
    if not isinstance(query, str) or not query.strip():
        raise _bad(source, "'exp' must be a non-empty string")
    num_frames = len(frames)
    spatial = sorted(_int_list(record, "sample_frame_indice", source, num_frames)) if "sample_frame_indice" in record \
        else None
    if not isinstance(turns, list) or not all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in turns):
        raise _bad(source, "'conversations' must be a list of {from, value} objects")
    roles = [t.get("from") for t in turns]
    system = system_prompt(protocol)
    if roles and roles[0] == "system":
        system, turns, roles = turns[0]["value"], turns[1:], roles[1:]
    if not roles or len(roles) % 2 or roles != ["human", "gpt"] * (len(roles) // 2):
        raise _bad(source, f"conversations must alternate human/gpt after the system turn and end with gpt, got {roles}")
    trace = record.get("cot_trace", [])
    if not isinstance(trace, list):
        raise _bad(source, "'cot_trace' must be a list")
    if spatial is None:
        from videoseg_o3.protocol import turn0_frame_indices

        spatial = turn0_frame_indices(num_frames, protocol)[1]
    observations: list[Any] = []
    texts: list[str] = []
    parses: list[Any] = []
    for r in range(len(roles) // 2):
        human, gpt = turns[2 * r]["value"], turns[2 * r + 1]["value"].strip()
        if r == 0:
            observation = _turn0_observation(query, human, num_frames, spatial, protocol)
        else:
            previous = parses[-1]
            if previous.action != "select" or previous.clipped(num_frames) is None or previous.interval_is_empty(num_frames):
                raise _bad(source, f"human turn {r} follows a turn that is not a readable <select> ({previous.error})")
            expected = trace[r - 1] if r - 1 < len(trace) else None
            said = {"start_frame": previous.start, "end_frame": previous.end, "key_frame": previous.keyframe}
            if expected != said:
                raise _bad(source, f"cot_trace[{r - 1}] = {expected} but the select before human turn {r} says {said}")
            if human.count(IMAGE_PLACEHOLDER) != 1:
                raise _bad(source, f"human turn {r} must hold exactly one {IMAGE_PLACEHOLDER} placeholder")
            shown = followup_observation(query, num_frames, previous, protocol)
            inserted: list[Any] = list(shown.parts[:-1])
            if protocol.prompt_style == "videoseg-o3":
                inserted.append(RELEASED_QUERY_LINE.format(query=query))
            before, after = human.split(IMAGE_PLACEHOLDER)
            observation = Observation([p for p in [before, *inserted, after] if not isinstance(p, str) or p])
        parse = parse_turn(gpt)
        observations.append(observation)
        texts.append(gpt)
        parses.append(parse)
    keyframes = []
    for parse in parses:
        clipped = parse.clipped(num_frames)
        keyframes.append(clipped[2] if clipped is not None else None)
    return VtsCotDialogue(system=system, observations=observations, assistant_texts=texts, parses=parses,
                          spatial_frames=list(spatial), turn_keyframes=keyframes, num_frames=num_frames, query=query)
