"""Frame-exact video reading for the multi-turn episode loop, and video writing.

``open_video(source)`` returns a :class:`VideoReader` over a video file (PyAV on the CPU, torchcodec
where usable, NVDEC on a GPU), a folder or list of JPEG/PNG frames, or an in-memory array. A reader
decodes only the frames asked for (seek to the previous keyframe, decode forward), each at most once
while it stays in the reader's bounded cache, so the later turns of an episode decode only new frames.
Every failure is a :class:`VideoDecodeError` naming the source and the reason.
"""

from videoseg_o3.io.backends import BACKENDS, VIDEO_EXTENSIONS, available_backends, open_video
from videoseg_o3.io.base import PIXEL_FORMATS, VideoReader
from videoseg_o3.io.cache import FrameCache, FrameCacheConfig
from videoseg_o3.io.errors import VideoDecodeError
from videoseg_o3.io.image_reader import IMAGE_EXTENSIONS
from videoseg_o3.io.packet_index import PacketIndex
from videoseg_o3.io.writer import VideoWriter, write_video

__all__ = [
    "BACKENDS",
    "IMAGE_EXTENSIONS",
    "PIXEL_FORMATS",
    "VIDEO_EXTENSIONS",
    "FrameCache",
    "FrameCacheConfig",
    "PacketIndex",
    "VideoDecodeError",
    "VideoReader",
    "VideoWriter",
    "available_backends",
    "open_video",
    "write_video",
]
