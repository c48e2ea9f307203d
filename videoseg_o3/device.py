"""The one place that knows device names. Everything else asks these functions.

Why: scattering ``"cuda"`` literals makes CPU fallbacks and multi-device runs inconsistent; the
frame-prep dispatcher, the decoders and the trainers all need the same answers.
"""

from __future__ import annotations

import torch

ACCELERATOR = "cuda"


def cuda_available() -> bool:
    """True when torch sees at least one CUDA device."""
    return torch.cuda.is_available()


def is_accelerator_tensor(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` lives on a CUDA device."""
    return tensor.device.type == ACCELERATOR


def default_device() -> torch.device:
    """The device new work should go to: the current CUDA device if any, else the CPU."""
    return torch.device(ACCELERATOR, torch.cuda.current_device()) if cuda_available() else torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn ``None``/``"auto"`` into :func:`default_device`; validate explicit requests.

    Raises:
        ValueError: an accelerator was asked for on a machine without one.
    """
    if device is None or device == "auto":
        return default_device()
    dev = torch.device(device)
    if dev.type == ACCELERATOR and not cuda_available():
        raise ValueError(f"Invalid device ({device}): no CUDA device is available here. Use 'cpu' or 'auto'.")
    return dev


def current_stream_handle(device: torch.device) -> int:
    """Raw ``cudaStream_t`` of the current stream on ``device`` (0 on CPU), for compiled ops."""
    if device.type != ACCELERATOR:
        return 0
    return torch.cuda.current_stream(device).cuda_stream


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU); used around timings."""
    if device.type == ACCELERATOR:
        torch.cuda.synchronize(device)
