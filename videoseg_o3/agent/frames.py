"""Frames for the policy: each requested frame resized to its own pixel budget.

Every image of an observation carries its own ``(min_pixels, max_pixels)`` (low-resolution
temporal frames, high-resolution spatial frames, the keyframe), but one Qwen processor call
applies one size setting to all its images. So each frame is first resized here to the size its
``FrameSpec`` asks for (``FrameSpec.target_size``: the released evaluation's aspect-preserving
rule, so released checkpoints see frames of the size they were evaluated on); the processor then
only rounds to its patch grid, rescales, normalises and patchifies. Patchifying through the
processor keeps the exact patch layout Qwen's vision tower expects (temporal duplication,
merge-order flattening) without re-implementing it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def resize_for_policy(frames: torch.Tensor, specs: Sequence[Any]) -> list[torch.Tensor]:
    """Resize each frame to its spec's target size.

    Args:
        frames: ``(n, H, W, 3) uint8``, one per spec (any device).
        specs: ``n`` ``protocol.FrameSpec`` (``target_size(width, height) -> (w, h)``).
    Returns:
        ``n`` tensors ``(3, h, w) uint8`` on the CPU (the processor's input).
    """
    from torchvision.transforms.v2 import functional as tvF

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"Invalid frames {tuple(frames.shape)} {frames.dtype}: expected (n, H, W, 3) uint8.")
    if frames.shape[0] != len(specs):
        raise ValueError(f"Invalid specs: {len(specs)} frame specs for {frames.shape[0]} frames.")
    height, width = int(frames.shape[1]), int(frames.shape[2])
    out = []
    for frame, spec in zip(frames, specs):
        w, h = spec.target_size(width, height)
        chw = frame.permute(2, 0, 1)
        if (h, w) != (height, width):
            # Bicubic with antialiasing, as Qwen's own image processor resizes.
            chw = tvF.resize(chw, [h, w], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        out.append(chw.contiguous().cpu())
    return out
