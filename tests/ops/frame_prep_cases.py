"""Shared inputs for the frame-preparation tests: small random frames and boxes with a fixed seed."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_rgb(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(n, H, W, 3) uint8`` noise: every pixel differs, so any misplaced tap shows."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, height, width, 3), dtype=torch.uint8, generator=gen)


def random_nv12(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(n, H*3//2, W) uint8`` NV12 noise spanning the full 0..255 range (out-of-gamut values exercise the clamp)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, height * 3 // 2, width), dtype=torch.uint8, generator=gen)


def nv12_from_yuv(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pack planes ``y (n, H, W)``, ``u, v (n, H/2, W/2)`` (uint8) into NV12 ``(n, H*3//2, W)``."""
    n, h, w = y.shape
    uv = torch.stack((u, v), dim=-1).reshape(n, h // 2, w)
    return torch.cat((y, uv), dim=1)


# Output sizes (h, w) covering the odd cases: 1 x 1, odd sides, enlarging, shrinking, mixed.
SIZES = [(1, 1), (7, 5), (16, 16), (33, 17), (64, 96)]
