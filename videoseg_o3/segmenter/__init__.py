"""SAM2 prompted by the policy's [SEG] embedding: single-frame decode (training, RL) and video propagation.

See :class:`Sam2Segmenter`; the configuration is :class:`SegmenterConfig`.
"""

from videoseg_o3.segmenter.config import SAM2_CONFIG_FILES, SegmenterConfig
from videoseg_o3.segmenter.frames import TensorVideo, VideoSource
from videoseg_o3.segmenter.model import (
    SEG_EMBED_DIM,
    FrameFeatures,
    Sam2Segmenter,
    SegmenterOutput,
    upsample_logits,
)

__all__ = [
    "SAM2_CONFIG_FILES",
    "SEG_EMBED_DIM",
    "FrameFeatures",
    "Sam2Segmenter",
    "SegmenterConfig",
    "SegmenterOutput",
    "TensorVideo",
    "VideoSource",
    "upsample_logits",
]
