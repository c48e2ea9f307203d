"""The text contract of the multi-turn select/answer protocol (docs/architecture.md#the-turn-protocol).

- :class:`ProtocolConfig`: frame budgets, pixel caps, turn limit and prompt style (eval/RL presets).
- :func:`system_prompt`, :func:`initial_observation`, :func:`followup_observation`: the messages,
  as :class:`Observation` (text and :class:`FrameSpec` placeholders in order); :func:`to_chat_content`
  and :func:`chat_messages` turn them into Qwen-VL chat messages.
- :func:`parse_turn` / :func:`format_turn`: read and write one assistant turn (:class:`TurnParse`).
- :func:`next_step`, :func:`anchor_frame`: episode control.
"""

from __future__ import annotations

from videoseg_o3.protocol.config import PRESETS, PROMPT_STYLES, TEMPLATE_VARIANTS, ProtocolConfig
from videoseg_o3.protocol.episode import anchor_frame, next_step
from videoseg_o3.protocol.observation import (
    FRAME_ROLES,
    FrameSpec,
    Observation,
    chat_messages,
    evenly_spaced,
    followup_frame_indices,
    followup_observation,
    initial_observation,
    system_prompt,
    to_chat_content,
    turn0_frame_indices,
)
from videoseg_o3.protocol.parse import ACTIONS, SEG_TOKEN, TurnParse, format_turn, parse_turn

__all__ = [
    "ACTIONS",
    "FRAME_ROLES",
    "PRESETS",
    "PROMPT_STYLES",
    "SEG_TOKEN",
    "TEMPLATE_VARIANTS",
    "FrameSpec",
    "Observation",
    "ProtocolConfig",
    "TurnParse",
    "anchor_frame",
    "chat_messages",
    "evenly_spaced",
    "followup_frame_indices",
    "followup_observation",
    "format_turn",
    "initial_observation",
    "next_step",
    "parse_turn",
    "system_prompt",
    "to_chat_content",
    "turn0_frame_indices",
]
