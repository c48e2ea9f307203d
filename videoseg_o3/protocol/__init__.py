"""The text contract of the multi-turn select/answer protocol (design.md §3): prompts and turn parsing."""

from __future__ import annotations

from videoseg_o3.protocol.parse import SEG_TOKEN, TurnParse, format_turn, parse_turn

__all__ = ["SEG_TOKEN", "TurnParse", "format_turn", "parse_turn"]
