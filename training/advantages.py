"""Group-relative advantages (GRPO): each rollout's reward against its prompt group's.

``A_i = (R_i - mean_g R) / (std_g R + 1e-4)`` over the ``G`` rollouts of a group, with the unbiased
standard deviation (``n - 1``), as TRL's GRPO and the released training code compute it. The 1e-4 keeps a
tight group finite; a group whose rewards are all equal carries no learning signal and gets exactly 0
(never NaN, also for ``G = 1`` where the unbiased std is undefined).
"""

from __future__ import annotations

import torch

__all__ = ["ADVANTAGE_EPS", "group_advantages"]

ADVANTAGE_EPS = 1e-4


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """Normalise rewards within consecutive groups.

    Args:
        rewards: ``(B,)`` float, prompt-major (the ``group_size`` rollouts of a prompt consecutive).
        group_size: ``G`` >= 1; ``B`` must be a multiple of it.
        eps: added to the group std.
    Returns:
        ``(B,) float32`` advantages; 0 for every rollout of a zero-spread group.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"Invalid group_size ({group_size!r}). Set it to an int >= 1.")
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"Invalid rewards shape {tuple(rewards.shape)}: expected (B,) with B a multiple of "
                         f"group_size {group_size} (groups are never split).")
    if not torch.isfinite(rewards).all():
        raise ValueError("Invalid rewards: some are NaN or infinite; fix the reward function that produced them.")
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if group_size == 1:
        return torch.zeros_like(rewards)
    std = groups.std(dim=1, unbiased=True, keepdim=True)
    # Exact zero for a constant group: float rounding in the mean could otherwise leave ~1e-8 / 1e-4.
    spread = (groups.max(dim=1, keepdim=True).values > groups.min(dim=1, keepdim=True).values)
    return torch.where(spread, centred / (std + eps), torch.zeros_like(centred)).reshape(-1)
