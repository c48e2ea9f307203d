"""Can Triton run here, and on which tensors? One answer shared by every kernel module.

Triton decides between compiling for the GPU and its CPU interpreter when a kernel is *defined*
(``@triton.jit`` reads ``TRITON_INTERPRET``), so the mode is fixed when this module is imported.
Under the interpreter the kernels take CPU tensors (slowly: tests only); otherwise they need tensors
on the accelerator.
"""

from __future__ import annotations

import os

import torch

from videoseg_o3.device import cuda_available, is_accelerator_tensor

try:
    import triton  # noqa: F401
    import triton.language as tl  # noqa: F401

    TRITON_IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    TRITON_IMPORT_ERROR = f"`import triton` failed: {exc!r}"

#: True when kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1`` before import).
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: Floating dtypes the kernels read (they always accumulate in fp32).
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def unavailable_reason() -> str | None:
    """Why no Triton kernel can run in this process, or None when one can."""
    if TRITON_IMPORT_ERROR is not None:
        return TRITON_IMPORT_ERROR
    if not INTERPRET and not cuda_available():
        return "no CUDA device is visible and TRITON_INTERPRET is not 1 (set it before importing triton to use the CPU interpreter)"
    return None


def tensors_supported(*tensors: torch.Tensor | None) -> bool:
    """True when every given tensor can be handed to a kernel: right device for the mode, float ones in a supported dtype."""
    if unavailable_reason() is not None:
        return False
    for t in tensors:
        if t is None:
            continue
        on_accelerator = is_accelerator_tensor(t)
        if INTERPRET and on_accelerator:
            return False
        if not INTERPRET and not on_accelerator:
            return False
        if t.is_floating_point() and t.dtype not in SUPPORTED_DTYPES:
            return False
    return True
