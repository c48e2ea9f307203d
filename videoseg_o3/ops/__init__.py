"""Ops with interchangeable implementations (torch reference, C++, CUDA, Triton).

See :mod:`videoseg_o3.ops.dispatch` for the selection rule. Op modules register their tiers on import;
``prepare_frames``, ``prepare_frames_ref``, ``qwen_resize_hw`` and ``qwen_vl_utils_resize_hw`` load :mod:`videoseg_o3.ops.frame_prep`
on first access (it pulls in the compiled extension, which plain dispatcher users do not need).
"""

from __future__ import annotations

from typing import Any

from videoseg_o3.ops.dispatch import IMPL_NAMES, dispatch, register_impl, registered, requested_impl, select_impl

_FRAME_PREP = ("prepare_frames", "prepare_frames_ref", "qwen_resize_hw", "qwen_vl_utils_resize_hw")


def __getattr__(name: str) -> Any:
    if name in _FRAME_PREP:
        from videoseg_o3.ops import frame_prep

        return getattr(frame_prep, name)
    raise AttributeError(f"module 'videoseg_o3.ops' has no attribute {name!r}")


__all__ = ["IMPL_NAMES", "dispatch", "register_impl", "registered", "requested_impl", "select_impl", *_FRAME_PREP]
