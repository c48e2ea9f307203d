"""Frame preparation: crop, resize, normalise (and NV12 -> RGB) for a batch of frames.

Every model input in videoseg_o3 starts as decoded video frames that must become normalised float
tensors of a model's size: SAM2 wants a square ImageNet-normalised image, the Qwen-VL policy wants
each frame resized to its own pixel budget (:func:`qwen_resize_hw`). Doing that per frame in eager
torch costs a float copy of the whole crop plus several passes over it; the compiled tiers fuse
colour conversion, crop, antialiased resize, scaling and normalisation into one pass per output row.

Tiers (one signature, registered with :mod:`videoseg_o3.ops.dispatch` as op ``"prepare_frames"``):

- ``torch`` — :func:`prepare_frames_ref`: plain torch, fp32, per-frame ``F.interpolate``. The definition.
- ``c``     — :func:`prepare_frames_c`: ``videoseg_o3._C`` (multi-threaded C++, releases the GIL,
  reads the input tensor's memory in place, strides included).
- ``cuda``  — :func:`prepare_frames_cuda`: ``videoseg_o3._C_cuda``, on the current CUDA stream.

Semantics shared by every tier (the reference is the definition, the others match it within the
tolerances in ``tests/tolerances.py``):

1. Boxes ``(x0, y0, x1, y1)`` are in pixels, end exclusive. Each coordinate is rounded to the
   nearest whole pixel edge, halves rounding up (``floor(v + 0.5)``), then clamped to the frame.
   So ``(10.4, 0, 20.5, 5)`` selects columns 10..20 (``x1`` rounds to 21, exclusive). A box that is
   empty after rounding and clamping is an error naming its index.
2. The crop is resized to ``size`` exactly like ``F.interpolate(crop, size, mode="bilinear",
   antialias=True, align_corners=False)`` on the crop as float in [0, 255] (a triangle filter
   widened by the scale when shrinking, plain bilinear when enlarging; edge taps renormalised).
3. Values are scaled to [0, 1] and normalised per channel: ``(v / 255 - mean[c]) / std[c]``.
4. NV12 input (``pixel_format="nv12"``) is converted to RGB first, per source pixel, in float:
   limited-range BT.601 or BT.709 (``color_matrix``), each chroma sample covering its 2 x 2 block of
   luma (NVDEC's 4:2:0 siting without chroma interpolation), clamped to [0, 255] and not rounded.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from videoseg_o3 import _ext
from videoseg_o3.device import current_stream_handle, cuda_available, is_accelerator_tensor
from videoseg_o3.ops.dispatch import dispatch, register_impl

OP_NAME = "prepare_frames"
PIXEL_FORMATS = ("rgb", "nv12")
# (Kr, Kb) luma weights of each standard; the YUV -> RGB matrix follows from them.
COLOR_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

BoxesLike = torch.Tensor | None
SizeLike = int | Sequence[int]


@dataclass(frozen=True)
class _Request:
    """A validated call, shared by every tier.

    Attributes:
        frames: the input as given (uint8; RGB ``(n, H, W, 3)`` or NV12 ``(n, H*3//2, W)``).
        height, width: frame size in pixels (for NV12 the luma plane's).
        boxes: ``(n, 4) int64`` CPU tensor of whole-pixel, clamped, non-empty boxes.
        out_h, out_w: output size.
        mean, std: per-channel normalisation, in units of the [0, 1]-scaled image.
        pixel_format, color_matrix, out_dtype: as passed, validated.
    """

    frames: torch.Tensor
    height: int
    width: int
    boxes: torch.Tensor
    out_h: int
    out_w: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_format: str
    color_matrix: str
    out_dtype: torch.dtype

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def scale_bias(self) -> tuple[list[float], list[float]]:
        """``out = v * scale + bias`` for ``v`` in [0, 255]: the fused form of ``(v / 255 - mean) / std``."""
        scale = [1.0 / (255.0 * s) for s in self.std]
        bias = [-m / s for m, s in zip(self.mean, self.std)]
        return scale, bias


def yuv_to_rgb_matrix(color_matrix: str) -> tuple[float, ...]:
    """Limited-range YUV -> RGB coefficients, row-major 3 x 3.

    ``[R, G, B] = M @ [Y - 16, U - 128, V - 128]`` in 8-bit levels. Derived from the standard's
    (Kr, Kb) rather than typed in, so BT.601 and BT.709 cannot drift apart: luma spans 16..235
    (scale 255/219), chroma 16..240 (scale 255/224).
    """
    if color_matrix not in COLOR_MATRICES:
        raise ValueError(f"Invalid color_matrix ({color_matrix!r}). Supported values are {', '.join(COLOR_MATRICES)}.")
    kr, kb = COLOR_MATRICES[color_matrix]
    kg = 1.0 - kr - kb
    ys, cs = 255.0 / 219.0, 255.0 / 224.0
    rv = cs * 2.0 * (1.0 - kr)
    bu = cs * 2.0 * (1.0 - kb)
    gu = -bu * kb / kg
    gv = -rv * kr / kg
    return (ys, 0.0, rv, ys, gu, gv, ys, bu, 0.0)


def _as_size(size: SizeLike) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, (tuple, list, torch.Size))
        or len(size) != 2
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)
    ):
        raise ValueError(f"Invalid size ({size!r}). Supported values are an int or a pair (h, w) of positive ints.")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"Invalid size ({size!r}). Both sides must be positive ints.")
    return h, w


def _as_triple(name: str, value: Sequence[float] | torch.Tensor) -> tuple[float, float, float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().reshape(-1).tolist()
    try:
        values = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name} ({value!r}). Supported values are 3 numbers, one per RGB channel.") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"Invalid {name} ({value!r}). Supported values are 3 finite numbers, one per RGB channel.")
    return values  # type: ignore[return-value]


def _frame_hw(frames: torch.Tensor, pixel_format: str) -> tuple[int, int]:
    """Validate ``frames`` and return the frame (luma) size ``(H, W)``."""
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"Invalid frames (type {type(frames).__name__}). Supported values are torch.uint8 tensors.")
    if frames.dtype != torch.uint8:
        raise ValueError(f"Invalid frames dtype ({frames.dtype}). Supported values are torch.uint8.")
    if frames.device.type != "cpu" and not is_accelerator_tensor(frames):
        raise ValueError(f"Invalid frames device ({frames.device}). Supported values are CPU and CUDA tensors.")
    if pixel_format == "rgb":
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"Invalid frames shape {tuple(frames.shape)} for pixel_format='rgb'. Expected (n, H, W, 3).")
        height, width = int(frames.shape[1]), int(frames.shape[2])
    else:
        if frames.dim() != 3:
            raise ValueError(
                f"Invalid frames shape {tuple(frames.shape)} for pixel_format='nv12'. Expected (n, H*3//2, W): "
                "H rows of luma, then H//2 rows of interleaved U, V."
            )
        rows, width = int(frames.shape[1]), int(frames.shape[2])
        height = rows * 2 // 3
        if rows % 3 != 0 or height % 2 != 0 or width % 2 != 0:
            raise ValueError(
                f"Invalid NV12 frames shape {tuple(frames.shape)}: rows must be H*3//2 with H even and W even "
                "(4:2:0 chroma covers 2 x 2 blocks)."
            )
    if height <= 0 or width <= 0:
        raise ValueError(f"Invalid frames shape {tuple(frames.shape)}: frames must have at least one pixel.")
    return height, width


def _round_boxes(boxes: BoxesLike, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Whole-pixel, clamped boxes ``(n, 4) int64`` on the CPU (see the module docstring, rule 1)."""
    if boxes is None:
        return torch.tensor([[0, 0, width, height]], dtype=torch.int64).expand(num_frames, 4).contiguous()
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"Invalid boxes (type {type(boxes).__name__}). Supported values are an (n, 4) tensor or None.")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != num_frames:
        raise ValueError(f"Invalid boxes shape {tuple(boxes.shape)}. Expected ({num_frames}, 4): x0, y0, x1, y1 per frame.")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise ValueError(f"Invalid boxes dtype ({boxes.dtype}). Supported values are real floating or integer dtypes.")
    # float64 so pixel coordinates up to 2**52 round exactly; boxes are tiny, the host copy is free.
    b = boxes.detach().to(device="cpu", dtype=torch.float64)
    bad = ~torch.isfinite(b).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"Invalid box at index {i} ({b[i].tolist()}): coordinates must be finite.")
    b = torch.floor(b + 0.5)
    limits = torch.tensor([width, height, width, height], dtype=torch.float64)
    b = torch.minimum(torch.clamp(b, min=0.0), limits).to(torch.int64)
    empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bool(empty.any()):
        i = int(empty.nonzero()[0])
        raise ValueError(
            f"Invalid box at index {i} ({boxes[i].tolist()}): empty after rounding to whole pixels and clamping to "
            f"the {width} x {height} frame. Boxes are x0, y0, x1, y1 in pixels, end exclusive, x1 > x0 and y1 > y0."
        )
    return b


def _validate(
    frames: torch.Tensor,
    boxes: BoxesLike,
    size: SizeLike,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    pixel_format: str,
    color_matrix: str,
    out_dtype: torch.dtype,
) -> _Request:
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"Invalid pixel_format ({pixel_format!r}). Supported values are {', '.join(PIXEL_FORMATS)}.")
    if color_matrix not in COLOR_MATRICES:
        raise ValueError(f"Invalid color_matrix ({color_matrix!r}). Supported values are {', '.join(COLOR_MATRICES)}.")
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"Invalid out_dtype ({out_dtype}). Supported values are {', '.join(map(str, OUT_DTYPES))}.")
    height, width = _frame_hw(frames, pixel_format)
    out_h, out_w = _as_size(size)
    mean_t = _as_triple("mean", mean)
    std_t = _as_triple("std", std)
    if any(s == 0.0 for s in std_t):
        raise ValueError(f"Invalid std ({std_t}). Every channel's std must be non-zero.")
    rounded = _round_boxes(boxes, int(frames.shape[0]), height, width)
    return _Request(frames, height, width, rounded, out_h, out_w, mean_t, std_t, pixel_format, color_matrix, out_dtype)


def nv12_to_rgb_ref(frames: torch.Tensor, color_matrix: str = "bt601") -> torch.Tensor:
    """Limited-range NV12 -> RGB, the reference conversion (rule 4 of the module docstring).

    Args:
        frames: ``(n, H*3//2, W) uint8``: H rows of luma, then H//2 rows of interleaved U, V.
        color_matrix: ``"bt601"`` or ``"bt709"``.
    Returns:
        ``(n, H, W, 3) float32`` RGB in [0, 255], not rounded.
    """
    height, width = _frame_hw(frames, "nv12")
    m = torch.tensor(yuv_to_rgb_matrix(color_matrix), dtype=torch.float32, device=frames.device).view(3, 3)
    y = frames[:, :height, :].float() - 16.0
    uv = frames[:, height:, :].float().reshape(frames.shape[0], height // 2, width // 2, 2) - 128.0
    uv = uv.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    yuv = torch.stack((y, uv[..., 0], uv[..., 1]), dim=-1)  # (n, H, W, 3)
    return (yuv @ m.T).clamp_(0.0, 255.0)


def _output_buffer(req: "_Request", device: torch.device, out_dtype: torch.dtype, out: torch.Tensor | None) -> torch.Tensor:
    """The float32 ``(n, 3, h, w)`` tensor a tier writes: ``out`` after checking it, else a new one."""
    shape = (req.num_frames, 3, req.out_h, req.out_w)
    if out is None:
        return torch.empty(shape, dtype=torch.float32, device=device)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"Invalid out ({type(out).__name__}). Supported values are None or a torch.Tensor.")
    if out_dtype != torch.float32 or out.dtype != torch.float32:
        raise ValueError(f"Invalid out dtype ({out.dtype}) with out_dtype={out_dtype}: out= takes float32 with out_dtype=torch.float32.")
    if tuple(out.shape) != shape:
        raise ValueError(f"Invalid out shape {tuple(out.shape)}. Expected {shape} (n, 3, h, w).")
    if out.device != device:
        raise ValueError(f"Invalid out device ({out.device}). Expected the frames' device ({device}).")
    if not out.is_contiguous():
        raise ValueError("Invalid out: it must be contiguous (call .contiguous() or allocate it with torch.empty).")
    return out


def _interpolate_aa(crop: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``F.interpolate(crop, (out_h, out_w), mode="bilinear", antialias=True, align_corners=False)``.

    torch's antialiased kernel (2.14, CPU) ignores the height when the output is one pixel wide (a
    ``(4, 1) -> (8, 1)`` resize returns the first row eight times). The filter is separable and the
    same along both axes, so resizing the transposed image and transposing back is the same resize
    and avoids that case (a one-pixel-high output is handled correctly).
    """
    if out_w == 1 and out_h != 1:
        flipped = F.interpolate(crop.transpose(-1, -2), size=(out_w, out_h), mode="bilinear", antialias=True, align_corners=False)
        return flipped.transpose(-1, -2)
    return F.interpolate(crop, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)


def prepare_frames_ref(
    frames: torch.Tensor,
    boxes: BoxesLike,
    size: SizeLike,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    *,
    pixel_format: str = "rgb",
    color_matrix: str = "bt601",
    out_dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The torch reference tier of :func:`prepare_frames` (same arguments); fp32, one frame at a time."""
    req = _validate(frames, boxes, size, mean, std, pixel_format, color_matrix, out_dtype)
    device = frames.device
    buf = _output_buffer(req, device, out_dtype, out)
    mean_t = torch.tensor(req.mean, dtype=torch.float32, device=device).view(3, 1, 1)
    std_t = torch.tensor(req.std, dtype=torch.float32, device=device).view(3, 1, 1)
    for i, (x0, y0, x1, y1) in enumerate(req.boxes.tolist()):
        if pixel_format == "nv12":
            crop = nv12_to_rgb_ref(frames[i : i + 1], color_matrix)[0, y0:y1, x0:x1, :]
        else:
            crop = frames[i, y0:y1, x0:x1, :].float()
        crop = crop.permute(2, 0, 1).unsqueeze(0)
        resized = _interpolate_aa(crop, req.out_h, req.out_w)
        buf[i] = (resized[0] / 255.0 - mean_t) / std_t
    return buf if out is not None else buf.to(out_dtype)


def prepare_frames_c(
    frames: torch.Tensor,
    boxes: BoxesLike,
    size: SizeLike,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    *,
    pixel_format: str = "rgb",
    color_matrix: str = "bt601",
    out_dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The C++ tier of :func:`prepare_frames` (same arguments; CPU tensors only).

    The frames are handed to C++ as a strided view of the tensor's own memory (no copy, whatever the
    strides); the C++ side writes fp32 straight into the output tensor, using
    ``torch.get_num_threads()`` threads with the GIL released.
    """
    reason = _c_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"The C++ frame preparation is not available: {reason}")
    req = _validate(frames, boxes, size, mean, std, pixel_format, color_matrix, out_dtype)
    if frames.device.type != "cpu":
        raise ValueError(f"Invalid frames device ({frames.device}) for the C++ tier. Supported values are CPU tensors.")
    buf = _output_buffer(req, frames.device, out_dtype, out)
    if req.num_frames:
        scale, bias = req.scale_bias()
        boxes_np = req.boxes.to(torch.int32).numpy()
        _ext.C.prepare_frames(
            frames.numpy(),
            pixel_format,
            boxes_np,
            buf.numpy(),
            scale,
            bias,
            list(yuv_to_rgb_matrix(color_matrix)),
            torch.get_num_threads(),
        )
    return buf if out is not None else buf.to(out_dtype)


def prepare_frames_cuda(
    frames: torch.Tensor,
    boxes: BoxesLike,
    size: SizeLike,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    *,
    pixel_format: str = "rgb",
    color_matrix: str = "bt601",
    out_dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The CUDA tier of :func:`prepare_frames` (same arguments; CUDA tensors only).

    Launches one kernel on the current stream of the frames' device, reading the frames in place
    through their strides (NVDEC surfaces go in without a copy) and writing fp32 into the output.
    """
    reason = _cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"The CUDA frame preparation is not available: {reason}")
    req = _validate(frames, boxes, size, mean, std, pixel_format, color_matrix, out_dtype)
    if not is_accelerator_tensor(frames):
        raise ValueError(f"Invalid frames device ({frames.device}) for the CUDA tier. Supported values are CUDA tensors.")
    device = frames.device
    buf = _output_buffer(req, device, out_dtype, out)
    if req.num_frames:
        scale, bias = req.scale_bias()
        with torch.cuda.device(device):
            # The H2D copy is queued on the current stream, so the kernel sees it without a sync.
            boxes_host = req.boxes.to(torch.int32)
            boxes_dev = boxes_host.to(device)
            _ext.C_CUDA.prepare_frames(
                frames.data_ptr(),
                pixel_format,
                list(frames.shape),
                list(frames.stride()),
                boxes_host.numpy(),
                boxes_dev.data_ptr(),
                buf.data_ptr(),
                req.out_h,
                req.out_w,
                scale,
                bias,
                list(yuv_to_rgb_matrix(color_matrix)),
                current_stream_handle(device),
            )
    return buf if out is not None else buf.to(out_dtype)


def _c_unavailable_reason() -> str | None:
    if not _ext.HAS_C:
        return f"videoseg_o3._C did not load ({_ext.C_ERROR}); reinstall with `pip install -v .`"
    if not hasattr(_ext.C, "prepare_frames"):
        return "videoseg_o3._C is a stale build without prepare_frames; reinstall with `pip install -v .`"
    return None


def _cuda_unavailable_reason() -> str | None:
    if not _ext.HAS_CUDA_EXT:
        return (
            f"videoseg_o3._C_cuda is not built or did not load ({_ext.CUDA_ERROR}); reinstall with nvcc on PATH "
            "and VIDEOSEG_WITH_CUDA=on"
        )
    if not hasattr(_ext.C_CUDA, "prepare_frames"):
        return "videoseg_o3._C_cuda is a stale build without prepare_frames; reinstall with `pip install -v .`"
    if not cuda_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    return None


def _frames_arg(args: tuple, kwargs: dict) -> object:
    return args[0] if args else kwargs.get("frames")


def _on_cpu(args: tuple, kwargs: dict) -> bool:
    frames = _frames_arg(args, kwargs)
    return isinstance(frames, torch.Tensor) and frames.device.type == "cpu"


def _on_accelerator(args: tuple, kwargs: dict) -> bool:
    frames = _frames_arg(args, kwargs)
    return isinstance(frames, torch.Tensor) and is_accelerator_tensor(frames)


register_impl(OP_NAME, "torch", prepare_frames_ref, priority=0)
register_impl(OP_NAME, "c", prepare_frames_c, priority=10, supports=_on_cpu, unavailable_reason=_c_unavailable_reason())
register_impl(
    OP_NAME, "cuda", prepare_frames_cuda, priority=20, supports=_on_accelerator, unavailable_reason=_cuda_unavailable_reason()
)


def prepare_frames(
    frames: torch.Tensor,
    boxes: BoxesLike,
    size: SizeLike,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    *,
    pixel_format: str = "rgb",
    color_matrix: str = "bt601",
    out_dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Crop, resize (antialiased bilinear), scale to [0, 1] and normalise a batch of frames.

    Args:
        frames: ``(n, H, W, 3) uint8`` RGB, or for ``pixel_format="nv12"`` ``(n, H*3//2, W) uint8``
            (H rows of luma followed by H//2 rows of interleaved U, V: NVDEC's layout; H, W even).
            CPU or CUDA; any strides.
        boxes: ``(n, 4)`` float or int, ``x0, y0, x1, y1`` in pixels, end exclusive; rounded with
            ``floor(v + 0.5)`` and clamped to the frame. ``None`` takes whole frames.
        size: output ``(h, w)`` in pixels, or one int for a square.
        mean, std: 3 numbers each, in units of the [0, 1]-scaled image (e.g. ImageNet's
            ``(0.485, 0.456, 0.406)``, ``(0.229, 0.224, 0.225)``); ``std`` non-zero.
        pixel_format: ``"rgb"`` or ``"nv12"``.
        color_matrix: ``"bt601"`` or ``"bt709"`` (limited range); used for NV12 only.
        out_dtype: float32 (computed), or float16 / bfloat16 / float64 (converted at the end).
        out: an optional contiguous float32 ``(n, 3, h, w)`` tensor on the frames' device to write into
            (with ``out_dtype`` float32). A loop that prepares same-sized batches reuses it and skips
            the page faults of a fresh allocation, which cost as much as the resampling itself on CPU.
        impl: ``None`` (``$VIDEOSEG_KERNEL_IMPL`` or ``auto``), ``"torch"``, ``"c"`` or ``"cuda"``.

    Returns:
        ``(n, 3, h, w)`` tensor of ``out_dtype`` on the frames' device; ``(0, 3, h, w)`` when n = 0.

    Raises:
        ValueError: a bad argument (the message names it and the allowed values), or a box that is
            empty after rounding and clamping (the message names its index).
        RuntimeError: an explicitly requested tier is unavailable or cannot take these inputs.
    """
    # Validate before choosing a tier so bad input reads as bad input, not as "no tier accepts it".
    _validate(frames, boxes, size, mean, std, pixel_format, color_matrix, out_dtype)
    return dispatch(
        OP_NAME,
        frames,
        boxes,
        size,
        mean,
        std,
        impl=impl,
        pixel_format=pixel_format,
        color_matrix=color_matrix,
        out_dtype=out_dtype,
        out=out,
    )


def _check_resize_args(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> None:
    """The argument checks both Qwen size rules share (positive ints, an ordered budget, aspect <= 200)."""
    for name, value in (("height", height), ("width", width), ("factor", factor), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"Invalid {name} ({value!r}). Supported values are positive ints.")
    if min_pixels > max_pixels:
        raise ValueError(f"Invalid pixel budget: min_pixels ({min_pixels}) > max_pixels ({max_pixels}).")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"Invalid aspect ratio ({height} x {width}): the longer side may be at most 200x the shorter.")


def qwen_resize_hw(height: int, width: int, *, factor: int = 28, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The output size Qwen-VL processors resize an image of ``height x width`` to.

    Both sides become multiples of ``factor`` (patch size x spatial merge: 28 for Qwen2.5-VL, 32 for
    Qwen3-VL), the pixel count lands in ``[min_pixels, max_pixels]`` and the aspect ratio is kept as
    closely as that allows. This is the rule of transformers' ``smart_resize`` (qwen2_vl image
    processing), rounding included (Python's round-half-even); it is restated here because frame
    budgets are computed on every turn and importing the processor module costs seconds, and so the
    arguments are validated with the project's errors. A test checks agreement on many sizes.

    Returns:
        ``(h, w)`` in pixels. As in transformers, an extreme aspect ratio may leave ``h * w`` above
        ``max_pixels`` because no side goes below ``factor``.
    Raises:
        ValueError: non-positive sizes, ``min_pixels > max_pixels``, or an aspect ratio above 200.
    """
    _check_resize_args(height, width, factor, min_pixels, max_pixels)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return int(h_bar), int(w_bar)


# qwen-vl-utils' image budget for an image item given without min_pixels/max_pixels: factor 28 (its default
# image_patch_size 14 x spatial merge 2), 4 to 16384 tokens of 28 x 28 pixels.
QWEN_VL_UTILS_FACTOR = 28
QWEN_VL_UTILS_MIN_PIXELS = 4 * 28 * 28
QWEN_VL_UTILS_MAX_PIXELS = 16384 * 28 * 28


def qwen_vl_utils_resize_hw(height: int, width: int, *, factor: int = QWEN_VL_UTILS_FACTOR,
                            min_pixels: int = QWEN_VL_UTILS_MIN_PIXELS,
                            max_pixels: int = QWEN_VL_UTILS_MAX_PIXELS) -> tuple[int, int]:
    """The size qwen-vl-utils 0.0.14 (``process_vision_info`` / ``fetch_image`` / ``smart_resize``) gives an
    image of ``height x width``; the defaults are its budget for images without their own bounds.

    The released VideoSEG-O3 evaluation passes every policy frame through it (factor 28) before the
    Qwen3-VL processor rounds to its own factor 32, and its RL rollouts size the first-turn frames with it;
    skipping this step changes the token grid a released checkpoint sees. It differs from
    :func:`qwen_resize_hw` (transformers' rule) in one place: the first rounding keeps each side at least
    ``factor``, and the shrinking branch does not. Restated rather than imported so that the library does
    not depend on qwen-vl-utils (which pulls in a video decoder and an HTTP client).

    Returns:
        ``(h, w)`` in pixels, multiples of ``factor``.
    Raises:
        ValueError: non-positive sizes, ``min_pixels > max_pixels``, or an aspect ratio above 200.
    """
    _check_resize_args(height, width, factor, min_pixels, max_pixels)
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return int(h_bar), int(w_bar)


__all__ = [
    "COLOR_MATRICES",
    "PIXEL_FORMATS",
    "nv12_to_rgb_ref",
    "prepare_frames",
    "prepare_frames_c",
    "prepare_frames_cuda",
    "prepare_frames_ref",
    "qwen_resize_hw",
    "qwen_vl_utils_resize_hw",
    "yuv_to_rgb_matrix",
]
