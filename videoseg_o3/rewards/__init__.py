"""GRPO rewards of the select/answer protocol: pure functions on a typed episode, registered by name.

- :class:`RewardInput`: per-turn texts and parses, ``mask_existence``, per-turn video and keyframe IoUs.
- :func:`register_reward` / :func:`get_reward`: the string registry a training config refers to.
- :func:`compute_rewards`: every named term ``(B,)`` and their weighted ``"total"``.
- The seven released terms (``DEFAULT_REWARD_WEIGHTS``), each with ``mode="intended"`` (default) and
  ``mode="compat"`` (the released code's exact behaviour).
- :mod:`videoseg_o3.rewards.iou`: the video and keyframe IoUs the mask terms read.
"""

from videoseg_o3.rewards.inputs import REWARD_MODES, RewardInput
from videoseg_o3.rewards.iou import frame_ious, keyframe_iou, logits_to_masks, video_iou
from videoseg_o3.rewards.registry import TOTAL_KEY, compute_rewards, get_reward, register_reward, registered_rewards
from videoseg_o3.rewards.terms import DEFAULT_REWARD_WEIGHTS, reference_vtg

__all__ = [
    "DEFAULT_REWARD_WEIGHTS",
    "REWARD_MODES",
    "TOTAL_KEY",
    "RewardInput",
    "compute_rewards",
    "frame_ious",
    "get_reward",
    "keyframe_iou",
    "logits_to_masks",
    "reference_vtg",
    "register_reward",
    "registered_rewards",
    "video_iou",
]
