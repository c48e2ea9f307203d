"""SEG-aware logit calibration: the mask log-likelihood ``m`` added to log pi([SEG]) in the policy loss.

For each [SEG] (docs/architecture.md#seg-aware-calibration): resize the current decoder's keyframe mask logits ``z`` and the
rollout's mask logits to ``size x size`` (bilinear, ``align_corners=False``, no antialiasing: what
``F.interpolate`` does), binarise the rollout's at a logit threshold, and return

    m = mean over the grid of [ b log sigmoid(z) + (1 - b) log(1 - sigmoid(z)) ] = -mean BCE-with-logits(z, b)

so a REINFORCE step on the keyframe mask reaches the mask decoder through ``d m / d z``.

Threshold: the intended rule binarises at logit 0 (probability 0.5). The reference code compares
the resized *logits* with 0.5 (probability ~0.62); ``compat_threshold=0.5`` reproduces it.

Tiers, one signature: :func:`seg_calibration_ref` (torch), :func:`seg_calibration_triton` (one
Triton program per mask fuses resize + BCE + mean; the backward recomputes the resized logits and
scatters ``d m / d z`` through the bilinear weights with atomics, so no resized tensor is stored),
and :func:`seg_calibration` (Triton when it can take the tensors, else the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import _triton_support
from kernels._triton_support import TRITON_IMPORT_ERROR

if TRITON_IMPORT_ERROR is None:
    import triton
    import triton.language as tl

#: The reference code's threshold on resized logits (kept for reproducing its numbers).
REFERENCE_CODE_THRESHOLD = 0.5


def _check_inputs(mask_logits: torch.Tensor, rollout_mask_logits: torch.Tensor, size: int) -> None:
    if mask_logits.dim() != 3 or rollout_mask_logits.dim() != 3:
        raise ValueError(
            f"Invalid shapes: mask_logits {tuple(mask_logits.shape)} must be (n, h, w) and rollout_mask_logits "
            f"{tuple(rollout_mask_logits.shape)} must be (n, h', w')."
        )
    if mask_logits.shape[0] != rollout_mask_logits.shape[0]:
        raise ValueError(f"Invalid shapes: {mask_logits.shape[0]} current masks but {rollout_mask_logits.shape[0]} rollout masks; need one per [SEG].")
    if min(mask_logits.shape[1:]) < 1 or min(rollout_mask_logits.shape[1:]) < 1:
        raise ValueError("Invalid shapes: mask sides must be >= 1 pixel.")
    if not (mask_logits.is_floating_point() and rollout_mask_logits.is_floating_point()):
        raise ValueError(f"Invalid dtypes ({mask_logits.dtype}, {rollout_mask_logits.dtype}). Mask logits must be floating point.")
    if size < 1:
        raise ValueError(f"Invalid size ({size}). It must be >= 1 (the paper uses 32).")


def _threshold(compat_threshold: float | None) -> float:
    return 0.0 if compat_threshold is None else float(compat_threshold)


def seg_calibration_ref(
    mask_logits: torch.Tensor, rollout_mask_logits: torch.Tensor, *, compat_threshold: float | None = None, size: int = 32
) -> torch.Tensor:
    """Plain-torch calibration term.

    Args:
        mask_logits: (n, h, w) float, current decoder's keyframe mask logits, one per [SEG] (differentiable).
        rollout_mask_logits: (n, h', w') float, the rollout's mask logits on the same keyframes (no gradient).
        compat_threshold: None binarises the rollout at logit 0; a float binarises at that logit
            (``REFERENCE_CODE_THRESHOLD`` = 0.5 reproduces the reference code).
        size: side of the square grid both masks are resized to.
    Returns:
        m: (n,) fp32, mean per-pixel Bernoulli log-likelihood (<= 0; the bonus added to log pi([SEG])).
    """
    _check_inputs(mask_logits, rollout_mask_logits, size)
    z = F.interpolate(mask_logits[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    with torch.no_grad():
        r = F.interpolate(rollout_mask_logits[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        target = (r > _threshold(compat_threshold)).float()
    return -F.binary_cross_entropy_with_logits(z, target, reduction="none").mean(dim=(-2, -1))


if TRITON_IMPORT_ERROR is None:

    @triton.jit
    def _source_index(dst, scale, in_size):
        """F.interpolate's bilinear source index (align_corners=False): (i0, i1, weight of i1)."""
        real = tl.maximum((dst.to(tl.float32) + 0.5) * scale - 0.5, 0.0)
        i0 = tl.minimum(real.to(tl.int32), in_size - 1)  # real >= 0, so truncation is floor
        lam = tl.minimum(tl.maximum(real - i0.to(tl.float32), 0.0), 1.0)
        i1 = tl.where(i0 < in_size - 1, i0 + 1, i0)
        return i0, i1, lam

    @triton.jit
    def _bilinear_sample(base_ptr, stride_h, stride_w, i, j, valid, scale_h, scale_w, in_h, in_w):
        y0, y1, ly = _source_index(i, scale_h, in_h)
        x0, x1, lx = _source_index(j, scale_w, in_w)
        v00 = tl.load(base_ptr + y0 * stride_h + x0 * stride_w, mask=valid, other=0.0).to(tl.float32)
        v01 = tl.load(base_ptr + y0 * stride_h + x1 * stride_w, mask=valid, other=0.0).to(tl.float32)
        v10 = tl.load(base_ptr + y1 * stride_h + x0 * stride_w, mask=valid, other=0.0).to(tl.float32)
        v11 = tl.load(base_ptr + y1 * stride_h + x1 * stride_w, mask=valid, other=0.0).to(tl.float32)
        return (1.0 - ly) * ((1.0 - lx) * v00 + lx * v01) + ly * ((1.0 - lx) * v10 + lx * v11)

    @triton.jit
    def _resized_pair(
        cur_ptr, roll_ptr, pid,
        cur_sn, cur_sh, cur_sw, cur_h, cur_w, cur_scale_h, cur_scale_w,
        roll_sn, roll_sh, roll_sw, roll_h, roll_w, roll_scale_h, roll_scale_w,
        threshold, SIZE: tl.constexpr, BLOCK: tl.constexpr,
    ):
        """Mask ``pid``'s current logits ``z`` and binarised rollout mask ``b`` on the SIZE x SIZE grid
        (flattened to BLOCK lanes), with each lane's grid cell ``(i, j)`` and ``valid`` lane mask."""
        offs = tl.arange(0, BLOCK)
        valid = offs < SIZE * SIZE
        i = offs // SIZE
        j = offs % SIZE
        z = _bilinear_sample(cur_ptr + pid * cur_sn, cur_sh, cur_sw, i, j, valid, cur_scale_h, cur_scale_w, cur_h, cur_w)
        r = _bilinear_sample(roll_ptr + pid * roll_sn, roll_sh, roll_sw, i, j, valid, roll_scale_h, roll_scale_w, roll_h, roll_w)
        b = tl.where(r > threshold, 1.0, 0.0)
        return z, b, i, j, valid

    @triton.jit
    def _seg_calibration_forward_kernel(
        cur_ptr, roll_ptr, out_ptr,
        cur_sn, cur_sh, cur_sw, cur_h, cur_w, cur_scale_h, cur_scale_w,
        roll_sn, roll_sh, roll_sw, roll_h, roll_w, roll_scale_h, roll_scale_w,
        threshold, SIZE: tl.constexpr, BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        z, b, i, j, valid = _resized_pair(
            cur_ptr, roll_ptr, pid, cur_sn, cur_sh, cur_sw, cur_h, cur_w, cur_scale_h, cur_scale_w,
            roll_sn, roll_sh, roll_sw, roll_h, roll_w, roll_scale_h, roll_scale_w, threshold, SIZE, BLOCK,
        )
        bce = tl.maximum(z, 0.0) - z * b + tl.log(1.0 + tl.exp(-tl.abs(z)))
        bce = tl.where(valid, bce, 0.0)
        tl.store(out_ptr + pid, -tl.sum(bce, axis=0) / (SIZE * SIZE))

    @triton.jit
    def _seg_calibration_backward_kernel(
        cur_ptr, roll_ptr, grad_m_ptr, grad_cur_ptr,
        cur_sn, cur_sh, cur_sw, cur_h, cur_w, cur_scale_h, cur_scale_w,
        roll_sn, roll_sh, roll_sw, roll_h, roll_w, roll_scale_h, roll_scale_w,
        threshold, SIZE: tl.constexpr, BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        z, b, i, j, valid = _resized_pair(
            cur_ptr, roll_ptr, pid, cur_sn, cur_sh, cur_sw, cur_h, cur_w, cur_scale_h, cur_scale_w,
            roll_sn, roll_sh, roll_sw, roll_h, roll_w, roll_scale_h, roll_scale_w, threshold, SIZE, BLOCK,
        )
        grad_m = tl.load(grad_m_ptr + pid)
        # d m / d z = -(sigmoid(z) - b) / SIZE^2, then through the four bilinear weights.
        dz = tl.where(valid, -(tl.sigmoid(z) - b) * (grad_m / (SIZE * SIZE)), 0.0)
        y0, y1, ly = _source_index(i, cur_scale_h, cur_h)
        x0, x1, lx = _source_index(j, cur_scale_w, cur_w)
        base = grad_cur_ptr + pid * cur_h * cur_w
        # Atomics: when upsampling, several grid cells read the same source pixel.
        tl.atomic_add(base + y0 * cur_w + x0, dz * (1.0 - ly) * (1.0 - lx), mask=valid)
        tl.atomic_add(base + y0 * cur_w + x1, dz * (1.0 - ly) * lx, mask=valid)
        tl.atomic_add(base + y1 * cur_w + x0, dz * ly * (1.0 - lx), mask=valid)
        tl.atomic_add(base + y1 * cur_w + x1, dz * ly * lx, mask=valid)


def _kernel_args(cur: torch.Tensor, roll: torch.Tensor, size: int) -> tuple:
    # Scales as F.interpolate computes them (input / output); Triton passes Python floats as fp32.
    return (
        cur.stride(0), cur.stride(1), cur.stride(2), cur.shape[1], cur.shape[2], cur.shape[1] / size, cur.shape[2] / size,
        roll.stride(0), roll.stride(1), roll.stride(2), roll.shape[1], roll.shape[2], roll.shape[1] / size, roll.shape[2] / size,
    )


class SegCalibrationTritonFunction(torch.autograd.Function):
    """Autograd wrapper: saves only the two inputs (the resized grids are recomputed in backward)."""

    @staticmethod
    def forward(ctx, mask_logits, rollout_mask_logits, threshold, size):  # type: ignore[override]
        n = mask_logits.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=mask_logits.device)
        if n > 0:
            _seg_calibration_forward_kernel[(n,)](
                mask_logits, rollout_mask_logits, out, *_kernel_args(mask_logits, rollout_mask_logits, size),
                threshold, SIZE=size, BLOCK=triton.next_power_of_2(size * size),
            )
        ctx.save_for_backward(mask_logits, rollout_mask_logits)
        ctx.threshold = threshold
        ctx.size = size
        return out

    @staticmethod
    def backward(ctx, grad_m):  # type: ignore[override]
        mask_logits, rollout_mask_logits = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        n, h, w = mask_logits.shape
        grad_cur = torch.zeros((n, h, w), dtype=torch.float32, device=mask_logits.device)
        if n > 0:
            _seg_calibration_backward_kernel[(n,)](
                mask_logits, rollout_mask_logits, grad_m.float().contiguous(), grad_cur,
                *_kernel_args(mask_logits, rollout_mask_logits, ctx.size), ctx.threshold,
                SIZE=ctx.size, BLOCK=triton.next_power_of_2(ctx.size * ctx.size),
            )
        return grad_cur.to(mask_logits.dtype), None, None, None


def seg_calibration_triton(
    mask_logits: torch.Tensor, rollout_mask_logits: torch.Tensor, *, compat_threshold: float | None = None, size: int = 32
) -> torch.Tensor:
    """:func:`seg_calibration_ref` as one fused Triton kernel each way; raises when Triton cannot take the tensors."""
    reason = _triton_support.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"The Triton calibration kernel is unavailable: {reason}")
    _check_inputs(mask_logits, rollout_mask_logits, size)
    if not _triton_support.tensors_supported(mask_logits, rollout_mask_logits):
        raise RuntimeError(f"The Triton calibration kernel cannot take tensors on {mask_logits.device} ({mask_logits.dtype}, {rollout_mask_logits.dtype}).")
    return SegCalibrationTritonFunction.apply(mask_logits, rollout_mask_logits.detach(), _threshold(compat_threshold), int(size))


def seg_calibration(
    mask_logits: torch.Tensor, rollout_mask_logits: torch.Tensor, *, compat_threshold: float | None = None, size: int = 32
) -> torch.Tensor:
    """The calibration term m (n,): the Triton kernel when it can take the tensors, else the reference."""
    fn = seg_calibration_triton if _triton_support.tensors_supported(mask_logits, rollout_mask_logits) else seg_calibration_ref
    return fn(mask_logits, rollout_mask_logits, compat_threshold=compat_threshold, size=size)


def triton_supports(args: tuple, kwargs: dict) -> bool:
    """Dispatcher predicate: can the Triton tier take this call's two mask tensors?"""
    tensors = list(args[:2]) + [kwargs[k] for k in ("mask_logits", "rollout_mask_logits") if k in kwargs]
    return len(tensors) == 2 and all(isinstance(t, torch.Tensor) for t in tensors) and _triton_support.tensors_supported(*tensors)
