"""The typed per-episode input every reward reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

__all__ = ["REWARD_MODES", "RewardInput", "check_mode"]

REWARD_MODES = ("intended", "compat")


def check_mode(mode: str) -> str:
    """Validate a reward mode name; returns it."""
    if mode not in REWARD_MODES:
        raise ValueError(f"Invalid reward mode ({mode!r}). Supported values are {', '.join(REWARD_MODES)}.")
    return mode


@dataclass
class RewardInput:
    """What the rewards know about one episode (one rollout).

    Attributes:
        texts: per assistant turn, the text the policy wrote (``[SEG]`` visible; a trailing
            ``<|im_end|>`` may be present or not, no reward depends on it).
        mask_existence: ``(T,)``: whether the target is visible on each frame of the video (values
            > 0.5 count as visible, as the released code compares). ``T`` is the video's frame count.
        iou_vid: per turn, the turn's video IoU on each turn-0 spatial frame (a list of ``S`` floats;
            :func:`videoseg_o3.rewards.iou.video_iou`), ``[0.0] * S`` for a turn without ``[SEG]``.
        iou_kf: per turn, the keyframe IoU of the turn's last ``[SEG]`` (0.0 without ``[SEG]``;
            :func:`videoseg_o3.rewards.iou.keyframe_iou`, whose empty-mask rule depends on the mode).
        parses: per turn, ``protocol.parse_turn(text)``; derived from ``texts`` when not given.
        max_turns: the episode's turn limit (the intended format reward accepts a final ``<select>``
            only when the episode was cut at this limit).
    """

    texts: Sequence[str]
    mask_existence: Any
    iou_vid: Sequence[Sequence[float]] = ()
    iou_kf: Sequence[float] = ()
    parses: Sequence[Any] | None = None
    max_turns: int = 3
    existence: tuple[bool, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from videoseg_o3.protocol import parse_turn

        self.texts = tuple(self.texts)
        if any(not isinstance(t, str) for t in self.texts):
            raise ValueError("Invalid RewardInput.texts: every turn must be a str.")
        values = torch.as_tensor(self.mask_existence, dtype=torch.float32).reshape(-1)
        if values.numel() < 1:
            raise ValueError("Invalid RewardInput.mask_existence (empty): pass one value per video frame.")
        self.existence = tuple(bool(v) for v in (values > 0.5).tolist())
        self.iou_vid = tuple(tuple(float(u) for u in turn) for turn in self.iou_vid)
        self.iou_kf = tuple(float(u) for u in self.iou_kf)
        if self.parses is None:
            self.parses = tuple(parse_turn(t) for t in self.texts)
        else:
            self.parses = tuple(self.parses)
        if len(self.parses) != len(self.texts):
            raise ValueError(f"Invalid RewardInput: {len(self.parses)} parses for {len(self.texts)} turns.")
        for name in ("iou_vid", "iou_kf"):
            got = len(getattr(self, name))
            if got not in (0, len(self.texts)):
                raise ValueError(f"Invalid RewardInput.{name}: {got} turns of IoUs for {len(self.texts)} turns. "
                                 "Pass one entry per turn (or none).")

    @property
    def num_frames(self) -> int:
        """``T``, the frames in the video."""
        return len(self.existence)

    @property
    def num_turns(self) -> int:
        return len(self.texts)
