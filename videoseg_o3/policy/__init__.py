"""The policy: a Qwen-VL model (Qwen3-VL by default, Qwen2.5-VL too) with ``[SEG]`` and a projector.

``SegPolicy.tiny()`` builds a random tiny model with the real Qwen tokenizer (offline);
``SegPolicy.from_pretrained(dir)`` loads a local directory; ``load_released_checkpoint`` maps the
released VideoSEG-O3 layout onto ours.
"""

from videoseg_o3.policy.model import SEG_EMBED_DIM, SegPolicy, SegProjector, ensure_seg_token
from videoseg_o3.policy.tokenizer import FAMILIES, SEG_TOKEN, build_processor, build_qwen_tokenizer

__all__ = [
    "FAMILIES",
    "SEG_EMBED_DIM",
    "SEG_TOKEN",
    "SegPolicy",
    "SegProjector",
    "build_processor",
    "build_qwen_tokenizer",
    "ensure_seg_token",
]

from videoseg_o3.policy.released import load_released_checkpoint, split_released_state_dict  # noqa: E402

__all__ += ["load_released_checkpoint", "split_released_state_dict"]
