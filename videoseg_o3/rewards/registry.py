"""A string registry of reward functions (the verl convention): a config lists names and weights.

A reward is a pure function ``fn(episode: RewardInput, mode: str) -> float``; it reads only the typed
per-episode input, so it is tested on hand-written tables without any model.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from videoseg_o3.rewards.inputs import RewardInput, check_mode

__all__ = ["TOTAL_KEY", "RewardFn", "compute_rewards", "get_reward", "register_reward", "registered_rewards"]

RewardFn = Callable[[RewardInput, str], float]
TOTAL_KEY = "total"
"""Key of the weighted sum in :func:`compute_rewards`' result (so no reward may be registered under it)."""

_REGISTRY: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: register ``fn(episode, mode) -> float`` under ``name``.

    Raises:
        ValueError: ``name`` is empty, reserved (``"total"``) or already registered to another function.
    """
    if not isinstance(name, str) or not name or name == TOTAL_KEY:
        raise ValueError(f"Invalid reward name ({name!r}). Use a non-empty string other than {TOTAL_KEY!r}.")

    def decorator(fn: RewardFn) -> RewardFn:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"Invalid reward name ({name!r}): already registered to {existing.__qualname__}. "
                             "Pick another name.")
        _REGISTRY[name] = fn
        return fn

    return decorator


def registered_rewards() -> list[str]:
    """Names of every registered reward, sorted."""
    return sorted(_REGISTRY)


def get_reward(name: str) -> RewardFn:
    """The reward function registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Invalid reward name ({name!r}). Supported values are {', '.join(registered_rewards())}.") from None


def compute_rewards(episodes: Sequence[RewardInput], weights: Mapping[str, float],
                    mode: str = "intended") -> dict[str, torch.Tensor]:
    """Score a batch of episodes with the named rewards.

    Args:
        episodes: ``B`` :class:`RewardInput`.
        weights: reward name -> weight (each name must be registered; a weight of 0 still computes and
            reports the term, it just does not enter the total).
        mode: ``"intended"`` (the reward forms the method describes) or ``"compat"`` (the released
            training code's exact behaviour, quirks included).

    Returns:
        ``{name: (B,) float32}`` with each term's *unweighted* value, plus ``"total"``: ``(B,) float32``
        = ``sum_k weights[k] * term_k``.
    """
    check_mode(mode)
    if not weights:
        raise ValueError(f"Invalid reward weights (empty). Name at least one of: {', '.join(registered_rewards())}.")
    out: dict[str, torch.Tensor] = {}
    total = torch.zeros(len(episodes), dtype=torch.float32)
    for name, weight in weights.items():
        fn = get_reward(name)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"Invalid weight ({weight!r}) for reward {name!r}. Pass a number.") from None
        values = torch.tensor([float(fn(ep, mode)) for ep in episodes], dtype=torch.float32)
        out[name] = values
        total = total + weight * values
    out[TOTAL_KEY] = total
    return out

