"""GPU decoding with NVDEC through PyNvVideoCodec; frames stay in GPU memory.

Why it matters: at 1080p a host round trip costs more than the decode itself; NVDEC output goes
straight to the CUDA frame prep (``videoseg_o3.ops.frame_prep.prepare_frames(..., pixel_format="nv12")``)
through DLPack, with no host copy.

PyNvVideoCodec raises RuntimeError (not ImportError) on import when no GPU driver is present, so the
import is guarded for both. Its ``SimpleDecoder.get_batch_frames_by_index`` seeks to keyframes and
decodes forward itself; this reader adds the shared cache and errors, and takes the frame count and
size from the packet index so that frame numbers mean the same as with the CPU backends.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from videoseg_o3 import device as devices
from videoseg_o3.io.base import VideoReader
from videoseg_o3.io.cache import FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError
from videoseg_o3.io.packet_index import PacketIndex, open_container


@functools.cache
def nvdec_status() -> str | None:
    """None when NVDEC decoding is possible here, else why not."""
    if not devices.cuda_available():
        return "no CUDA device is visible"
    try:
        import PyNvVideoCodec  # noqa: F401
    except (ImportError, RuntimeError, OSError) as exc:
        return f"PyNvVideoCodec does not import ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def nvdec_usable() -> bool:
    """True when a CUDA device is visible and PyNvVideoCodec imports."""
    return nvdec_status() is None


class NvdecReader(VideoReader):
    """Reads a video file with NVDEC on the current CUDA device; returns CUDA tensors.

    One PyNvVideoCodec decoder per pixel format is created on first use ("rgb": NVIDIA's own NV12 to
    interleaved RGB conversion; "nv12": the native surface). ``num_decoded`` counts the frames the
    decoder returned: PyNvVideoCodec does not report the frames it passes through internally.
    """

    backend = "nvdec"
    supported_pixel_formats = ("rgb", "nv12")

    def __init__(self, path: str | Path, *, cache: FrameCacheConfig | None = None, device: str | torch.device | None = None) -> None:
        path = str(path)
        status = nvdec_status()
        if status is not None:
            raise VideoDecodeError(path, f"backend 'nvdec' is not usable here ({status})")
        target = devices.resolve_device(device)
        if target.type != devices.ACCELERATOR:
            raise VideoDecodeError(path, f"backend 'nvdec' decodes on a CUDA device, got device {target}")
        container, stream = open_container(path)
        try:
            index = PacketIndex.build(container, stream, path)
        finally:
            container.close()
        super().__init__(path, num_frames=index.num_frames, fps=index.fps, height=index.height, width=index.width, cache=cache)
        self.index = index
        self._device = target
        self._decoders: dict[str, object] = {}

    def _output_device(self) -> torch.device:
        return self._device

    def _decoder(self, pixel_format: str):
        decoder = self._decoders.get(pixel_format)
        if decoder is not None:
            return decoder
        import PyNvVideoCodec as nvc

        color = nvc.OutputColorType.RGB if pixel_format == "rgb" else nvc.OutputColorType.NATIVE
        try:
            decoder = nvc.SimpleDecoder(
                self._source,
                gpu_id=self._device.index or 0,
                use_device_memory=True,
                output_color_type=color,
                # Matroska/WebM headers carry no frame count; let PyNvVideoCodec count packets then.
                need_scanned_stream_metadata=True,
            )
        except Exception as exc:  # noqa: BLE001 - PyNvVideoCodec raises bare Exception/RuntimeError
            raise VideoDecodeError(self._source, f"NVDEC cannot open it ({exc}); use backend='pyav'") from exc
        if len(decoder) != self._num_frames:
            raise VideoDecodeError(
                self._source, f"NVDEC counts {len(decoder)} frames but the container has {self._num_frames}; use backend='pyav'"
            )
        self._decoders[pixel_format] = decoder
        return decoder

    def _decode_frames(self, indices: list[int], pixel_format: str) -> dict[int, torch.Tensor]:
        decoder = self._decoder(pixel_format)
        try:
            frames = decoder.get_batch_frames_by_index(indices)
        except Exception as exc:  # noqa: BLE001
            raise VideoDecodeError(self._source, f"truncated or corrupt stream while decoding with NVDEC ({exc})") from exc
        if len(frames) != len(indices):
            raise VideoDecodeError(self._source, f"NVDEC returned {len(frames)} of {len(indices)} requested frames")
        # The decoder writes on its own stream and recycles its surfaces: finish, then copy out.
        devices.synchronize(self._device)
        out = {index: self._to_tensor(frame, pixel_format) for index, frame in zip(indices, frames)}
        self._num_decoded += len(indices)
        return out

    def _to_tensor(self, frame: object, pixel_format: str) -> torch.Tensor:
        """(H, W, 3) RGB or (H * 3 // 2, W) NV12 uint8 CUDA tensor owning its memory."""
        h, w = self._height, self._width
        expected = (h, w, 3) if pixel_format == "rgb" else (h * 3 // 2, w)
        tensor = torch.from_dlpack(frame)
        if tensor.ndim == 3 and tensor.shape[-1] == 1:  # some releases export planar surfaces as (rows, W, 1)
            tensor = tensor[..., 0]
        if tensor.ndim == len(expected) and tensor.shape[0] == expected[0] and tensor.shape[1] > w:
            tensor = tensor[:, :w]  # a pitched surface: drop the row padding
        if tuple(tensor.shape) != expected:
            numel = expected[0] * expected[1] * (expected[2] if len(expected) == 3 else 1)
            if tensor.numel() != numel:
                raise VideoDecodeError(self._source, f"NVDEC returned a frame of shape {tuple(tensor.shape)}, expected {expected}")
            tensor = tensor.contiguous().reshape(expected)
        return tensor.clone(memory_format=torch.contiguous_format)

    def _release(self) -> None:
        self._decoders.clear()
