"""User turns of the protocol: which frames to show, at what resolution, with which words.

An :class:`Observation` is one user message as an ordered list of text pieces and
:class:`FrameSpec` placeholders. The protocol decides *which* frame indices go where and at which
pixel cap; the caller (the agent) decodes those frames and resizes them, which keeps this module
free of video and tensor code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videoseg_o3.protocol import templates as T
from videoseg_o3.protocol.config import FRAME_SIZING, ProtocolConfig
from videoseg_o3.protocol.parse import TurnParse

__all__ = [
    "FRAME_ROLES",
    "FrameSpec",
    "Observation",
    "chat_messages",
    "evenly_spaced",
    "followup_frame_indices",
    "followup_observation",
    "initial_observation",
    "system_prompt",
    "to_chat_content",
    "turn0_frame_indices",
]

FRAME_ROLES = ("temporal", "spatial", "keyframe")


@dataclass(frozen=True)
class FrameSpec:
    """One image of a user message: which frame, and the pixel range to resize it into.

    The frame is resized keeping its aspect ratio so that width * height lies in
    ``[min_pixels, max_pixels]`` (the Qwen-VL processor's ``min_pixels``/``max_pixels``).
    """

    index: int
    """0-based frame index in the whole video."""
    max_pixels: int
    min_pixels: int
    role: str
    """``"temporal"`` (low-resolution overview), ``"spatial"`` (turn-0 high-resolution) or ``"keyframe"``."""
    sizing: str = "pixel_limit"
    """Which released rule sizes the frame before the VLM processor (``protocol.config.FRAME_SIZING``);
    see :meth:`policy_size`."""

    def __post_init__(self) -> None:
        if self.role not in FRAME_ROLES:
            raise ValueError(f"Invalid role ({self.role}). Supported values are {', '.join(FRAME_ROLES)}.")
        if self.sizing not in FRAME_SIZING:
            raise ValueError(f"Invalid sizing ({self.sizing}). Supported values are {', '.join(FRAME_SIZING)}.")
        if self.index < 0:
            raise ValueError(f"Invalid index ({self.index}). Frame indices are >= 0.")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"Invalid pixel range ({self.min_pixels}, {self.max_pixels}). Need 0 < min_pixels <= max_pixels."
            )

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) in pixels to resize a ``width x height`` frame to before the VLM processor.

        The released code's rule, kept so checkpoints see frames of the size they were evaluated on:
        a frame already within ``[min_pixels, max_pixels]`` keeps its size; otherwise both sides are
        scaled by ``sqrt(target / (width * height))`` (target = the bound it crossed), truncated to
        int, and kept at least 28 px. The processor then rounds to its own patch grid.
        """
        if width < 1 or height < 1:
            raise ValueError(f"Invalid frame size ({width}x{height}). Width and height must be >= 1 pixel.")
        pixels = width * height
        if self.min_pixels <= pixels <= self.max_pixels:
            return width, height
        target = self.min_pixels if pixels < self.min_pixels else self.max_pixels
        ratio = (target / pixels) ** 0.5
        return max(28, int(width * ratio)), max(28, int(height * ratio))

    def policy_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the frame has when it reaches the VLM processor (which then rounds it to its
        own patch grid), by this spec's ``sizing`` rule:

        - ``"pixel_limit"``: :meth:`target_size`;
        - ``"pixel_limit+qwen_vl_utils"``: :meth:`target_size`, then qwen-vl-utils' rule (factor 28,
          4 to 16384 tokens), as the released evaluation does through ``process_vision_info``;
        - ``"qwen_vl_utils"``: qwen-vl-utils' rule with factor 28 and this spec's own pixel bounds, as
          the released RL rollouts size their first-turn frames.
        """
        from videoseg_o3.ops.frame_prep import qwen_vl_utils_resize_hw

        if self.sizing == "qwen_vl_utils":
            if width < 1 or height < 1:
                raise ValueError(f"Invalid frame size ({width}x{height}). Width and height must be >= 1 pixel.")
            h, w = qwen_vl_utils_resize_hw(int(height), int(width), min_pixels=self.min_pixels,
                                           max_pixels=self.max_pixels)
            return w, h
        w, h = self.target_size(width, height)
        if self.sizing == "pixel_limit+qwen_vl_utils":
            h, w = qwen_vl_utils_resize_hw(int(h), int(w))
        return w, h


@dataclass
class Observation:
    """One user message: text pieces and frames, interleaved in reading order."""

    parts: list[str | FrameSpec] = field(default_factory=list)

    def frames(self) -> list[FrameSpec]:
        """The frames of this message, in order."""
        return [p for p in self.parts if isinstance(p, FrameSpec)]

    def text(self, image_placeholder: str = "<image>") -> str:
        """The message as one string with ``image_placeholder`` where each frame goes (for logs and records)."""
        return "".join(image_placeholder if isinstance(p, FrameSpec) else p for p in self.parts)


# ---------------------------------------------------------------------------------- frame choice


def evenly_spaced(first: int, last: int, count: int) -> list[int]:
    """``count`` integer indices spread evenly over ``[first, last]``, both ends included.

    Every index of the range when it holds ``count`` or fewer; otherwise
    ``numpy.linspace(first, last, count)`` truncated to int, which is exactly how the released code
    samples (so a checkpoint sees the frames it was evaluated on).
    """
    if last < first:
        return []
    if last - first + 1 <= count:
        return list(range(first, last + 1))
    return [int(i) for i in np.linspace(first, last, count, dtype=np.int64)]


def turn0_frame_indices(num_frames: int, cfg: ProtocolConfig) -> tuple[list[int], list[int]]:
    """(temporal, spatial) frame indices of the first user turn for a video of ``num_frames`` frames.

    Every frame when ``num_frames <= count + cfg.turn0_show_all_margin`` (the released RL rollouts show
    all 6 frames of a 6-frame video for 5 spatial slots), else ``count`` frames spread evenly.
    """
    _check_num_frames(num_frames)
    last = num_frames - 1

    def pick(count: int) -> list[int]:
        if not count:
            return []
        if num_frames <= count + cfg.turn0_show_all_margin:
            return list(range(num_frames))
        return evenly_spaced(0, last, count)

    return pick(cfg.turn0_temporal_frames), pick(cfg.turn0_spatial_frames)


def followup_frame_indices(turn: TurnParse, num_frames: int, cfg: ProtocolConfig) -> tuple[list[int], int]:
    """(temporal indices, keyframe) shown after a ``<select>``, from its clipped interval.

    Raises:
        ValueError: when the turn is not a select with a readable, non-empty interval (the episode
            stops there; see :func:`videoseg_o3.protocol.next_step`).
    """
    _check_num_frames(num_frames)
    if turn.action != "select":
        raise ValueError(
            f"Invalid turn action ({turn.action}). A follow-up observation answers a 'select' turn only; "
            "next_step() returns 'stop' for this turn."
        )
    clipped = turn.clipped(num_frames)
    if clipped is None or turn.interval_is_empty(num_frames):
        raise ValueError(
            f"Invalid select interval (start={turn.start}, end={turn.end}) for a video of {num_frames} frames: "
            "it holds no frame, so the episode stops here (next_step() returns 'stop')."
        )
    start, end, keyframe = clipped
    return evenly_spaced(start, end, cfg.followup_temporal_frames), keyframe


def _check_num_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"Invalid num_frames ({num_frames!r}). A video has at least 1 frame; pass an int >= 1.")


def _check_query(query: str) -> None:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"Invalid query ({query!r}). The query must be a non-empty string.")


def _index_list(indices: Sequence[int]) -> str:
    return str([int(i) for i in indices])


# ---------------------------------------------------------------------------------- messages


def system_prompt(cfg: ProtocolConfig) -> str:
    """The system message of every episode, in ``cfg.prompt_style``."""
    return T.VIDEOSEG_O3_SYSTEM_PROMPT if cfg.prompt_style == "videoseg-o3" else T.DEFAULT_SYSTEM_PROMPT


def _videoseg_o3_question(query: str, num_frames: int, cfg: ProtocolConfig) -> str:
    if cfg.template_variant == "rl":
        return T.VIDEOSEG_O3_QUESTION_RL.format(query=query, num_frames=num_frames)
    # The released evaluation strips these two placeholders from the question text before use.
    text = T.VIDEOSEG_O3_QUESTION_EVAL.format(query=query, num_frames=num_frames)
    return text.replace("<image>", "").replace("<video>", "")


def initial_observation(query: str, num_frames: int, cfg: ProtocolConfig) -> Observation:
    """The first user turn: the overview frames, the high-resolution frames, the query and the frame count.

    Args:
        query: the referring or reasoning expression, e.g. ``"the dog that jumps first"``.
        num_frames: frames in the whole video (N); indices shown are 0-based in ``[0, N - 1]``.
        cfg: budgets and wording.
    """
    _check_query(query)
    temporal, spatial = turn0_frame_indices(num_frames, cfg)
    sizing = cfg.turn0_sizing
    t_specs = [FrameSpec(i, cfg.turn0_temporal_max_pixels, cfg.min_pixels, "temporal", sizing) for i in temporal]
    s_specs = [FrameSpec(i, cfg.turn0_spatial_max_pixels, cfg.min_pixels, "spatial", sizing) for i in spatial]
    parts: list[str | FrameSpec] = []
    if cfg.prompt_style == "videoseg-o3":
        # Released order: temporal images, their index line, spatial images, their index line, question.
        if t_specs:
            parts += [*t_specs, T.VIDEOSEG_O3_TURN0_TEMPORAL.format(count=len(temporal), indices=_index_list(temporal))]
        if s_specs:
            parts += [*s_specs, T.VIDEOSEG_O3_TURN0_SPATIAL.format(count=len(spatial), indices=_index_list(spatial))]
        parts.append(_videoseg_o3_question(query, num_frames, cfg))
    else:
        if t_specs:
            parts.append(T.DEFAULT_TURN0_TEMPORAL_HEADER.format(count=len(t_specs)))
            parts += _labelled(t_specs)
        if s_specs:
            parts.append(T.DEFAULT_TURN0_SPATIAL_HEADER.format(count=len(s_specs)))
            parts += _labelled(s_specs)
        parts.append(T.DEFAULT_QUESTION.format(query=query, num_frames=num_frames, last_frame=num_frames - 1))
    return Observation(parts)


def followup_observation(query: str, num_frames: int, turn: TurnParse, cfg: ProtocolConfig) -> Observation:
    """The user turn that answers a ``<select>``: frames of the chosen interval, the keyframe, a reminder.

    The interval is clipped into ``[0, N - 1]``; up to ``cfg.followup_temporal_frames`` frames of it are
    shown at low resolution, then the keyframe at ``cfg.keyframe_max_pixels``, then the query and the
    output format again.

    Raises:
        ValueError: when ``turn`` is not a select with a non-empty interval (check :func:`next_step` first).
    """
    _check_query(query)
    temporal, keyframe = followup_frame_indices(turn, num_frames, cfg)
    sizing = cfg.followup_sizing
    t_specs = [FrameSpec(i, cfg.followup_temporal_max_pixels, cfg.min_pixels, "temporal", sizing) for i in temporal]
    k_spec = FrameSpec(keyframe, cfg.keyframe_max_pixels, cfg.min_pixels, "keyframe", sizing)
    parts: list[str | FrameSpec] = []
    if cfg.prompt_style == "videoseg-o3":
        parts += [*t_specs, T.VIDEOSEG_O3_FOLLOWUP_TEMPORAL.format(count=len(temporal), indices=_index_list(temporal))]
        parts += [k_spec, T.VIDEOSEG_O3_FOLLOWUP_KEYFRAME.format(keyframe=keyframe)]
        # The evaluation quotes its whole first-turn question here, the RL rollouts the bare query.
        reminder = query if cfg.template_variant == "rl" else _videoseg_o3_question(query, num_frames, cfg)
        parts.append(T.VIDEOSEG_O3_FOLLOWUP_INSTRUCTION.format(query=reminder))
    else:
        parts.append(T.DEFAULT_FOLLOWUP_TEMPORAL_HEADER.format(start=temporal[0], end=temporal[-1], count=len(t_specs)))
        parts += _labelled(t_specs)
        parts.append(T.DEFAULT_FOLLOWUP_KEYFRAME_HEADER.format(keyframe=keyframe))
        parts += _labelled([k_spec])
        parts.append(T.DEFAULT_FOLLOWUP_INSTRUCTION.format(query=query))
    return Observation(parts)


def _labelled(specs: Sequence[FrameSpec]) -> list[str | FrameSpec]:
    out: list[str | FrameSpec] = []
    for spec in specs:
        out += [T.DEFAULT_FRAME_LABEL.format(index=spec.index), spec, "\n"]
    return out


# ---------------------------------------------------------------------------------- chat format


def to_chat_content(observation: Observation) -> list[dict[str, Any]]:
    """The observation as a Qwen-VL chat ``content`` list, in order.

    Text pieces become ``{"type": "text", "text": ...}`` (empty pieces are dropped: they render to
    nothing). Frames become ``{"type": "image", "frame": FrameSpec}``; the caller replaces or
    augments each with the decoded, resized image (e.g. adds ``"image": PIL.Image``) before applying
    the processor's chat template, which renders one vision placeholder per image item.
    """
    content: list[dict[str, Any]] = []
    for part in observation.parts:
        if isinstance(part, FrameSpec):
            content.append({"type": "image", "frame": part})
        elif part:
            content.append({"type": "text", "text": part})
    return content


def chat_messages(
    system: str,
    observations: Sequence[Observation],
    assistant_texts: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """A whole dialogue as chat messages: system, then user/assistant alternating.

    Args:
        system: the system prompt (:func:`system_prompt`).
        observations: the user turns, first one from :func:`initial_observation`.
        assistant_texts: the assistant turns so far: one per observation (a finished dialogue) or
            one fewer (the next assistant turn is to be generated).
    """
    if len(assistant_texts) not in (len(observations), len(observations) - 1) or not observations:
        raise ValueError(
            f"Invalid dialogue: {len(observations)} observations and {len(assistant_texts)} assistant turns. "
            "Pass at least one observation and one assistant turn per observation, or one fewer."
        )
    messages: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": system}]}]
    for i, obs in enumerate(observations):
        messages.append({"role": "user", "content": to_chat_content(obs)})
        if i < len(assistant_texts):
            messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant_texts[i]}]})
    return messages
