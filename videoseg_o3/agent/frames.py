"""Frames for the policy: decoded frames -> Qwen-VL ``pixel_values`` / ``image_grid_thw``, on the frames' device.

Every image of an observation has its own budget (low-resolution temporal frames, high-resolution
spatial frames, the keyframe). Each frame's final size is the one the released pipeline ends with:
first the protocol's size rule (``FrameSpec.policy_size``: the released aspect-preserving pixel limit,
then, for the released prompt style, qwen-vl-utils' factor-28 rounding), then the processor's rounding
to its patch grid (``ops.frame_prep.qwen_resize_hw`` with the processor's own pixel bounds). Only that final size is
resampled to, once, by the project's fused frame preparation (``ops.frame_prep.prepare_frames``:
antialiased resize + scale + normalise in one pass, C++/CUDA where built), grouped by output size.
The normalised frames are cut into patches by the image processor's own ``patchify`` (the layout
Qwen's vision tower expects: merge-order flattening, temporal duplication), so nothing of the
patch layout is re-implemented. Frames decoded on a GPU stay there: there is no PIL/numpy round
trip through the host, unlike calling the processor on images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass
class PolicyImages:
    """The images of one observation, ready for the vision tower.

    Attributes:
        pixel_values: ``(sum(h_i * w_i / patch^2), 3 * temporal_patch * patch^2)`` float32.
        image_grid_thw: ``(n, 3)`` long, ``(1, h_i / patch, w_i / patch)`` per image.
        sizes: ``n`` pairs ``(h_i, w_i)``, the pixel size each frame was resized to.
        num_tokens: ``n`` ints, language-model tokens per image (grid cells / merge^2).
    """

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    sizes: list[tuple[int, int]]
    num_tokens: list[int]


def _pixel_bounds(image_processor: Any) -> tuple[int, int]:
    size = image_processor.size
    get = size.get if isinstance(size, dict) else (lambda k, d=None: getattr(size, k, d))
    low, high = get("shortest_edge", None), get("longest_edge", None)
    low = low if low is not None else getattr(image_processor, "min_pixels", None)
    high = high if high is not None else getattr(image_processor, "max_pixels", None)
    if low is None or high is None:
        raise ValueError(f"The policy's image processor has no pixel bounds (size={size!r}); expected "
                         "shortest_edge/longest_edge as Qwen-VL image processors have.")
    return int(low), int(high)


def policy_image_sizes(height: int, width: int, specs: Sequence[Any], image_processor: Any) -> list[tuple[int, int]]:
    """Final ``(h, w)`` of each frame: the spec's size rule (``FrameSpec.policy_size``), then the processor's
    patch-grid rounding. Sizes only: the pixels are resampled once, to the final size."""
    from videoseg_o3.ops.frame_prep import qwen_resize_hw

    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    low, high = _pixel_bounds(image_processor)
    sizes = []
    for spec in specs:
        w1, h1 = spec.policy_size(width, height)
        sizes.append(qwen_resize_hw(int(h1), int(w1), factor=factor, min_pixels=low, max_pixels=high))
    return sizes


def prepare_policy_images(frames: torch.Tensor, specs: Sequence[Any], image_processor: Any) -> PolicyImages:
    """Resize, normalise and patchify frames for a Qwen-VL vision tower.

    Args:
        frames: ``(n, H, W, 3) uint8`` (CPU or GPU), one per spec.
        specs: ``n`` ``protocol.FrameSpec``.
        image_processor: the policy's Qwen-VL image processor (patch/merge sizes, bounds, mean/std, patchify).
    Returns:
        :class:`PolicyImages` on ``frames.device``.
    """
    from videoseg_o3.ops.frame_prep import prepare_frames

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"Invalid frames {tuple(frames.shape)} {frames.dtype}: expected (n, H, W, 3) uint8.")
    if frames.shape[0] != len(specs):
        raise ValueError(f"Invalid specs: {len(specs)} frame specs for {frames.shape[0]} frames.")
    patch, merge = int(image_processor.patch_size), int(image_processor.merge_size)
    temporal = int(image_processor.temporal_patch_size)
    mean, std = list(image_processor.image_mean), list(image_processor.image_std)
    sizes = policy_image_sizes(int(frames.shape[1]), int(frames.shape[2]), specs, image_processor)
    per_image: list[torch.Tensor | None] = [None] * len(specs)
    for size in sorted(set(sizes)):
        rows = [i for i, s in enumerate(sizes) if s == size]
        normalised = prepare_frames(frames[rows], None, size, mean, std)  # (m, 3, h, w) float32
        patches, _, _ = image_processor.patchify(normalised, patch_size=patch, merge_size=merge,
                                                 temporal_patch_size=temporal)
        for row, image_patches in zip(rows, patches):
            per_image[row] = image_patches
    grids = torch.tensor([[1, h // patch, w // patch] for h, w in sizes], dtype=torch.long)
    num_tokens = [int(h // patch) * int(w // patch) // (merge * merge) for h, w in sizes]
    return PolicyImages(torch.cat(per_image), grids, sizes, num_tokens)


def expand_image_placeholders(text: str, num_tokens: Sequence[int], image_token: str) -> str:
    """Repeat the ``i``-th ``image_token`` of ``text`` ``num_tokens[i]`` times (what Qwen processors do).

    Raises:
        ValueError: the text has a different number of placeholders than there are images.
    """
    pieces = text.split(image_token)
    if len(pieces) - 1 != len(num_tokens):
        raise ValueError(f"Invalid prompt: {len(pieces) - 1} {image_token} placeholders for {len(num_tokens)} images.")
    out = [pieces[0]]
    for count, piece in zip(num_tokens, pieces[1:]):
        out.append(image_token * int(count))
        out.append(piece)
    return "".join(out)
